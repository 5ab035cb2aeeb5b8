"""An exported detector or instance model, used without geotl: plain ONNX Runtime.

What a third party sees: the output shape ONNX Runtime reports, the metadata key
``geotl_output`` (the output's layout and how geotl makes objects of it), and the STAC
item of the model folder. Each is checked against what the graph gives on a real scene.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import rasterio
import torch

from geotl.export import export_onnx
from geotl.export.onnx import OUTPUT_KEY
from geotl.models.artefact import (
    STAC_FILE,
    BaseModelRef,
    ModelCard,
    Normalisation,
    write_artefact,
)
from geotl.models.catalogue import load_base
from geotl.models.detector import build_adapted_detector, level_anchors
from geotl.models.network import NetworkSpec, build_network

REPO = Path(__file__).resolve().parents[2]
SCENE = REPO / "regions" / "demo-osbs" / "imagery" / "OSBS_029.tif"
TILE = 128


def _card(network: NetworkSpec, **update: object) -> ModelCard:
    card = ModelCard(
        name="third-party", network=network, classes=["tree", "snag"], bands=["red", "green", "blue"],
        normalisation=Normalisation(mean=[120.0, 120.0, 110.0], std=[40.0, 40.0, 35.0]),
        chip_size_px=TILE, resolution_m=0.1,
        base=BaseModelRef(id="none", architecture="x", licence="n/a", commercial_use=True),
        freeze="none",
    )  # fmt: skip
    return card.model_copy(update=update)


@pytest.fixture(scope="module")
def detector_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained two-class RetinaNet with its own threshold and suppression IoU."""
    torch.manual_seed(0)
    net, spec, _ = build_adapted_detector(load_base("none"), ["red", "green", "blue"], ["tree", "snag"])  # fmt: skip
    d = tmp_path_factory.mktemp("third-party-det") / "m"
    write_artefact(d, net, _card(spec, task="detection", threshold=0.3, nms_iou=0.45))
    return d


@pytest.fixture(scope="module")
def instance_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained two-class instance U-Net (classes, then border and contact)."""
    torch.manual_seed(0)
    spec = NetworkSpec(
        encoder="tu-mobilenetv3_small_050", in_channels=3, num_classes=5, encoder_depth=3,
        decoder_channels=(16, 8, 8),
    )  # fmt: skip
    d = tmp_path_factory.mktemp("third-party-inst") / "m"
    write_artefact(d, build_network(spec), _card(spec, task="instances", seed_threshold=0.7))
    return d


def _tile() -> np.ndarray:
    """A real tile as a third party feeds it: the raw bands / 255."""
    with rasterio.open(SCENE) as ds:
        raw = ds.read(window=((0, TILE), (0, TILE))).astype(np.float32)
    return (raw / 255.0)[None]


def _session(path: Path) -> tuple[ort.InferenceSession, dict[str, object]]:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    meta = sess.get_modelmeta()
    assert OUTPUT_KEY in meta.description  # the docstring says where the output is described
    return sess, json.loads(meta.custom_metadata_map[OUTPUT_KEY])


def test_detector_output_shape_and_columns_are_said(detector_dir: Path, tmp_path: Path) -> None:
    """The graph declares the rows' fixed shape (not the exporter's generated axis names,
    which onnx, Netron and converters read), and ``geotl_output`` names the columns and the
    card's selection numbers."""
    out = export_onnx(detector_dir, tmp_path / "det.onnx", tile_px=TILE).path
    sess, said = _session(out)
    anchors = sum(level_anchors(TILE))
    dims = onnx.load(str(out)).graph.output[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims] == [1, anchors, 5 + 3]
    rows = sess.run(None, {"image": _tile()})[0]
    assert list(rows.shape) == said["shape"] == [1, anchors, 8]
    assert said["columns"] == ["cx", "cy", "w", "h", "conf", "p_background", "p_tree", "p_snag"]
    assert said["threshold"] == 0.3 and said["nms_iou"] == 0.45
    assert str(level_anchors(TILE)) in str(said["objects"])  # the per-level split it needs
    # what the columns are said to be holds on real imagery: conf is the best class score
    cols = {c: rows[0, :, i] for i, c in enumerate(said["columns"])}
    assert np.allclose(cols["conf"], np.maximum(cols["p_tree"], cols["p_snag"]))
    assert ((cols["p_tree"] >= 0) & (cols["p_tree"] <= 1)).all() and (cols["w"] > 0).all()


def test_instance_output_says_which_channels_are_maps(instance_dir: Path, tmp_path: Path) -> None:
    """Softmax over background and classes, then sigmoid maps, and the seed threshold."""
    out = export_onnx(instance_dir, tmp_path / "inst.onnx", tile_px=TILE).path
    sess, said = _session(out)
    probs = sess.run(None, {"image": _tile()})[0]
    assert said["channels"] == ["background", "tree", "snag", "border", "contact"]
    assert said["shape"] == ["batch", 5, TILE, TILE] and probs.shape[1:] == (5, TILE, TILE)
    assert said["seed_threshold"] == 0.7 and "border, contact" in str(said["meaning"])
    assert np.allclose(probs[0, :3].sum(axis=0), 1.0, atol=1e-5)  # the softmax part
    assert not np.allclose(probs[0].sum(axis=0), 1.0, atol=1e-3)  # the maps are not in it


def test_detector_folder_item_describes_boxes_not_class_maps(detector_dir: Path) -> None:
    """The model folder's STAC item: a RetinaNet gives boxes per window, not class maps."""
    item = json.loads((detector_dir / STAC_FILE).read_text())
    (out,) = item["properties"]["mlm:output"]
    assert item["properties"]["mlm:tasks"] == ["object-detection"]
    assert out["result"]["dim_order"] == ["batch", "detection", "channel"]
    assert out["result"]["shape"] == [-1, -1, 6] and "x0, y0, x1, y1" in out["name"]
    assert [c["name"] for c in out["classification:classes"]] == ["background", "tree", "snag"]


def test_int8_detector_names_every_node_left_in_float(detector_dir: Path, tmp_path: Path) -> None:
    """A detector quantises its convolutions only: ``geotl_int8_float_nodes`` names the rest
    (group normalisation, pyramid sums, box decoding), so a reader of the metadata is not
    told that everything but the input scaling runs in int8."""
    from geotl.export.onnx import INT8_FLOAT_NODES_KEY

    tiles = np.concatenate([_tile(), _tile()[..., ::-1].copy()])  # real imagery, raw / 255
    res = export_onnx(detector_dir, tmp_path / "det8.onnx", tile_px=TILE, int8=True, calibration=tiles)  # fmt: skip
    graph = onnx.load(str(res.path))
    meta = {p.key: json.loads(p.value) for p in graph.metadata_props}
    listed = {n for names in meta[INT8_FLOAT_NODES_KEY].values() for n in names}
    qdq = {"QuantizeLinear", "DequantizeLinear", "Conv", "Constant"}
    unlisted = [f"{n.name} ({n.op_type})" for n in graph.graph.node if n.op_type not in qdq and n.name not in listed]  # fmt: skip
    assert not unlisted, unlisted[:5]
    kinds = {n.op_type for n in graph.graph.node if n.name in listed}
    assert {"InstanceNormalization", "Exp", "Sigmoid"} <= kinds
    assert "nodes besides the convolutions" in res.card.quantisation
