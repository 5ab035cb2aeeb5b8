"""STAC items with the ML Model extension for the safetensors artefact and an ONNX export."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from stac_model.schema import MLModelProperties

from geotl.export import export_onnx
from geotl.models.artefact import STAC_FILE, WEIGHTS_FILE

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from predict import data


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("stac") / "m"
    data.write_constant_model(d)
    return d


def _mlm(item: dict) -> MLModelProperties:
    props = {k: v for k, v in item["properties"].items() if k.startswith("mlm:")}
    return MLModelProperties.model_validate(props)  # the extension's own pydantic model


def _checks_file(item: dict, path: Path) -> None:
    asset = item["assets"]["model"]
    assert asset["href"] == path.name and "mlm:model" in asset["roles"]
    assert asset["file:size"] == path.stat().st_size
    assert asset["file:checksum"] == "1220" + hashlib.sha256(path.read_bytes()).hexdigest()


def test_artefact_has_a_valid_mlm_item(model_dir: Path) -> None:
    item = json.loads((model_dir / STAC_FILE).read_text())
    card = json.loads((model_dir / "model.json").read_text())
    assert item["type"] == "Feature" and item["id"] == card["model_id"]
    assert any("mlm" in e for e in item["stac_extensions"])
    mlm = _mlm(item)
    assert mlm.name == card["model_id"] and mlm.framework == "pytorch"
    assert {str(t.value) if hasattr(t, "value") else t for t in mlm.tasks} == {
        "semantic-segmentation"
    }
    (inp,) = mlm.input
    assert [b if isinstance(b, str) else b.name for b in inp.bands] == card["bands"]
    scaling = [s.model_dump() for s in inp.value_scaling or []]
    assert [s["mean"] for s in scaling] == card["normalisation"]["mean"]
    assert [c.name for c in mlm.output[0].classes] == ["background", "tree"]
    assert "Apache-2.0" in (mlm.pretrained_source or "")
    assert item["properties"]["geotl:weights_sha256"] == card["weights_sha256"]
    _checks_file(item, model_dir / WEIGHTS_FILE)


def test_onnx_export_has_its_own_item(model_dir: Path, tmp_path: Path) -> None:
    res = export_onnx(model_dir, tmp_path / "m.onnx", tile_px=64)
    assert res.stac == tmp_path / "m.stac.json"
    item = json.loads(res.stac.read_text())
    mlm = _mlm(item)
    assert mlm.framework == "ONNX Runtime"
    assert mlm.input[0].input.shape == [-1, 3, 64, 64]
    assert [s.model_dump()["value"] for s in mlm.input[0].value_scaling or []] == [255.0] * 3
    _checks_file(item, res.path)


@pytest.fixture(scope="module")
def instance_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained one-class ``task = "instances"`` artefact (its item written with it)."""
    import torch

    from geotl.models.artefact import write_artefact
    from geotl.models.network import build_network

    base = data.card()
    card = base.model_copy(
        update={"task": "instances", "network": base.network.model_copy(update={"num_classes": 4})}
    )
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("stac-instances") / "m"
    write_artefact(d, build_network(card.network), card)
    return d


def test_instance_items_describe_every_output_channel(instance_dir: Path, tmp_path: Path) -> None:
    """Background, the class, then border and contact: the channels the network gives."""
    import onnxruntime
    import torch

    from geotl.models.artefact import load_artefact

    art = load_artefact(instance_dir)
    with torch.no_grad():
        logits = art.network(torch.zeros(1, 3, 64, 64))
    item = json.loads((instance_dir / STAC_FILE).read_text())
    (out,) = _mlm(item).output
    assert out.result.shape[1] == logits.shape[1] == 4
    assert [c.name for c in out.classes] == ["background", "tree", "border", "contact"]
    assert "border" in out.name and "contact" in out.name
    assert "not a class" in (out.classes[2].description or "")

    res = export_onnx(instance_dir, tmp_path / "m.onnx", tile_px=64)
    (out,) = _mlm(json.loads(res.stac.read_text())).output
    session = onnxruntime.InferenceSession(str(res.path), providers=["CPUExecutionProvider"])
    (probabilities,) = session.run(None, {"image": np.zeros((1, 3, 64, 64), np.float32)})
    assert out.result.shape == [-1, probabilities.shape[1], 64, 64] == [-1, 4, 64, 64]
    assert [c.name for c in out.classes] == ["background", "tree", "border", "contact"]
