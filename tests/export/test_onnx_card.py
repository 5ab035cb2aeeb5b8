"""The model card embedded in an ONNX export is checked on load, like a model folder's.

The graph's sha256 does not cover the metadata, so a ``geotl_card`` edited in the file
(threshold, classes) used to be read as the model's own, and its outputs carried a model id
that was not theirs.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import onnx
import pytest
from click.testing import CliRunner

from geotl.cli.main import cli
from geotl.errors import ModelArtefactError
from geotl.export import export_onnx, read_onnx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from predict import data


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("card")
    data.write_constant_model(d / "m")
    out = d / "m.onnx"
    export_onnx(d / "m", out, tile_px=64)
    return out


def _rewrite(src: Path, dst: Path, edit_card: dict[str, object], drop: set[str]) -> Path:
    """``src`` with entries of its embedded card replaced and metadata keys removed."""
    model = onnx.load(str(src))
    props = [p for p in model.metadata_props if p.key not in drop]
    for p in props:
        if p.key == "geotl_card":
            p.value = json.dumps(json.loads(p.value) | edit_card)
    kept = [(p.key, p.value) for p in props]
    del model.metadata_props[:]
    for key, value in kept:
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(dst))
    return dst


def _run(*args: str) -> tuple[int, str, str]:
    res = CliRunner().invoke(cli, ["-q", *args])
    return res.exit_code, res.stdout, res.stderr


@pytest.mark.parametrize(
    "edit", [{"threshold": 0.05}, {"classes": ["building"]}, {"min_area_m2": 123.0}]
)
def test_edited_card_refused_by_verify_and_predict(
    exported: Path, tmp_path: Path, edit: dict[str, object]
) -> None:
    edited = _rewrite(exported, tmp_path / "edited.onnx", edit, set())
    with pytest.raises(ModelArtefactError, match="changed after export"):
        read_onnx(edited)
    code, stdout, stderr = _run("models", "verify", str(edited))
    assert code == 2 and stdout == "", stderr
    assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr
    assert str(edited) in stderr and "geotl_card" in stderr and "export it again" in stderr
    scene = data.write_scene(tmp_path / "s.tif", data.blobs(80, 80))
    out = tmp_path / "o.geojson"
    code, _, stderr = _run("predict", str(edited), str(scene), "-o", str(out), "--no-progress")
    assert code == 2 and "changed after export" in stderr and not out.exists()


def test_untouched_export_verifies(exported: Path) -> None:
    meta = {p.key: p.value for p in onnx.load(str(exported)).metadata_props}
    assert "geotl_card_sha256" in meta
    code, stdout, stderr = _run("models", "verify", str(exported))
    assert code == 0 and stdout.strip() == str(exported), stderr


def test_export_from_before_the_card_hash_still_loads(
    exported: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    old = _rewrite(exported, tmp_path / "old.onnx", {}, {"geotl_card_sha256"})
    with caplog.at_level(logging.INFO, logger="geotl.export.onnx"):
        model = read_onnx(old)
    assert model.card == read_onnx(exported).card
    assert "not verified" in caplog.text
    scene = data.write_scene(tmp_path / "s.tif", data.blobs(80, 80))
    out = tmp_path / "o.geojson"
    code, _, stderr = _run("predict", str(old), str(scene), "-o", str(out), "--no-progress")
    assert code == 0 and out.is_file(), stderr


def _as_newer_geotl(src: Path, dst: Path, edit_card: dict[str, object]) -> Path:
    """``src`` as a newer geotl would write it: its card edited, the card's hash recorded."""
    import hashlib

    model = onnx.load(str(src))
    for p in model.metadata_props:
        if p.key == "geotl_card":
            p.value = json.dumps(json.loads(p.value) | edit_card)
            text = p.value
    for p in model.metadata_props:
        if p.key == "geotl_card_sha256":
            p.value = json.dumps(hashlib.sha256(text.encode()).hexdigest())
    onnx.save(model, str(dst))
    return dst


@pytest.mark.parametrize("edit", [{"card_format": 99}, {"tile_policy": "pad"}])
def test_export_of_a_newer_geotl_says_newer(
    exported: Path, tmp_path: Path, edit: dict[str, object]
) -> None:
    # before: "(1 validation error) export it again" for an unknown entry, and a higher
    # card format read silently as this geotl's
    newer = _as_newer_geotl(exported, tmp_path / "newer.onnx", edit)
    with pytest.raises(ModelArtefactError, match="newer") as err:
        read_onnx(newer)
    assert "validation error" not in str(err.value) and str(newer) in str(err.value)
    code, _, stderr = _run("models", "verify", str(newer))
    assert code == 2 and "newer" in stderr and len(stderr.strip().splitlines()) == 1, stderr
