"""Model files you can trust: the weights' sha256 in the card, checked on every load."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from geotl.cli.main import cli
from geotl.errors import ModelArtefactError
from geotl.models.artefact import WEIGHTS_FILE, load_artefact, verify_weights

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from predict import data


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("model") / "m"
    data.write_constant_model(d)
    return d


@pytest.fixture()
def copy(tmp_path: Path, model_dir: Path) -> Path:
    d = tmp_path / "copy"
    shutil.copytree(model_dir, d)
    return d


@pytest.fixture()
def scene(tmp_path: Path) -> Path:
    return data.write_scene(tmp_path / "s.tif", data.blobs(80, 80))


def _run(*args: str) -> tuple[int, str, str]:
    res = CliRunner().invoke(cli, ["-q", *args])
    return res.exit_code, res.stdout, res.stderr


def _predict(model: Path, scene: Path, out: Path, *extra: str) -> tuple[int, str, str]:
    return _run("predict", str(model), str(scene), "-o", str(out), "--no-progress", *extra)


def test_card_records_weights_sha256(model_dir: Path) -> None:
    card = json.loads((model_dir / "model.json").read_text())
    digest = hashlib.sha256((model_dir / WEIGHTS_FILE).read_bytes()).hexdigest()
    assert card["weights_sha256"] == digest
    assert card["model_id"].endswith(digest[:12])
    assert verify_weights(model_dir) == model_dir / WEIGHTS_FILE


def _truncate(d: Path) -> None:
    w = d / WEIGHTS_FILE
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])


def _flip_one_byte(d: Path) -> None:
    w = d / WEIGHTS_FILE
    raw = bytearray(w.read_bytes())
    raw[-7] ^= 0x01  # inside the last tensor's data: still a loadable safetensors file
    w.write_bytes(bytes(raw))


def _swap(d: Path, tmp: Path) -> None:
    other = tmp / "other"
    data.write_constant_model(other, fg=False)
    shutil.copyfile(other / WEIGHTS_FILE, d / WEIGHTS_FILE)


@pytest.mark.parametrize("damage", ["truncated", "one byte", "swapped"])
def test_damaged_weights_refused_exit_2(
    damage: str, copy: Path, scene: Path, tmp_path: Path
) -> None:
    if damage == "truncated":
        _truncate(copy)
    elif damage == "one byte":
        _flip_one_byte(copy)
        # the altered file still loads: only the hash can tell
        from safetensors.numpy import load_file

        assert load_file(str(copy / WEIGHTS_FILE))
    else:
        _swap(copy, tmp_path)
    out = tmp_path / "o.geojson"
    code, stdout, stderr = _predict(copy, scene, out)
    assert code == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    assert str(copy / WEIGHTS_FILE) in lines[0] and "copy the model folder again" in lines[0]
    assert stdout == "" and not out.exists()
    with pytest.raises(ModelArtefactError, match="sha256"):
        load_artefact(copy)
    code, stdout, stderr = _run("models", "verify", str(copy))
    assert code == 2 and stdout == "" and "sha256" in stderr


def test_models_verify_ok(model_dir: Path) -> None:
    code, stdout, stderr = _run("models", "verify", str(model_dir))
    assert code == 0, stderr
    assert stdout.strip() == str(model_dir / WEIGHTS_FILE)


def test_models_verify_refuses_an_edited_card(copy: Path) -> None:
    """A class renamed in model.json keeps the model id in outputs: verify says so."""
    card = json.loads((copy / "model.json").read_text())
    (copy / "model.json").write_text(json.dumps(card, indent=4))  # laid out anew: still ok
    code, _, stderr = _run("models", "verify", str(copy))
    assert code == 0, stderr
    card["classes"] = [f"{card['classes'][0]}-renamed"]
    (copy / "model.json").write_text(json.dumps(card))
    code, stdout, stderr = _run("models", "verify", str(copy))
    lines = stderr.strip().splitlines()
    assert code == 2 and stdout == "" and len(lines) == 1, stderr
    assert (
        str(copy / "model.json") in lines[0] and "changed since the model was written" in lines[0]
    )
    card["model_id"] = "m-" + card["model_id"].rpartition("-")[2]  # an id without the digest
    (copy / "model.json").write_text(json.dumps(card))
    assert _run("models", "verify", str(copy))[0] == 0


def test_models_verify_missing_folder(tmp_path: Path) -> None:
    code, _, stderr = _run("models", "verify", str(tmp_path / "nope"))
    assert code == 2 and "nope" in stderr


def test_card_without_sha256_checked_against_model_id(copy: Path) -> None:
    card = json.loads((copy / "model.json").read_text())
    del card["weights_sha256"]  # a card written before the sha256 was recorded
    (copy / "model.json").write_text(json.dumps(card))
    assert verify_weights(copy)
    _flip_one_byte(copy)
    with pytest.raises(ModelArtefactError, match="does not match"):
        verify_weights(copy)


def test_predict_still_works(model_dir: Path, scene: Path, tmp_path: Path) -> None:
    code, _, stderr = _predict(model_dir, scene, tmp_path / "o.geojson")
    assert code == 0, stderr
    fc = json.loads((tmp_path / "o.geojson").read_text())
    assert fc["features"] and np.all(
        [
            f["properties"]["model"].endswith(
                json.loads((model_dir / "model.json").read_text())["weights_sha256"][:12]
            )
            for f in fc["features"]
        ]
    )
