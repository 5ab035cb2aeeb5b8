"""task = "detection": box targets, augmentation, training, evaluation, prediction, bad input."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import pytest
import shapely
import torch
from click.testing import CliRunner

from geotl.chips import chip_region, read_chip_index
from geotl.cli.main import cli
from geotl.config import load_region
from geotl.errors import BaseModelError
from geotl.evaluate import evaluate_model
from geotl.export import export_onnx
from geotl.models.artefact import load_artefact
from geotl.models.detector import level_anchors
from geotl.predict import PredictOptions, predict_scene
from geotl.predict.engine import OrtEngine, _ExportingEngine, load_model
from geotl.train import TrainOptions, load_region_chips, select_objects, train_model
from geotl.train.tasks.detection import (
    BoxValidation,
    DetectionTask,
    dihedral,
    flip_rotate_boxes,
)

torch.set_num_threads(2)
REPO = Path(__file__).resolve().parents[1]
SCENE = REPO / "regions" / "demo-osbs" / "imagery" / "OSBS_029.tif"


@pytest.fixture(scope="module")
def det_region(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo plot as a detection region (128 px chips, low score threshold)."""
    text = (REPO / "regions" / "demo-osbs.toml").read_text()
    text = text.replace('task = "segmentation"', 'task = "detection"')
    text = text.replace('paths = ["demo-osbs/', f'paths = ["{REPO}/regions/demo-osbs/')
    text = text.replace('path = "demo-osbs/', f'path = "{REPO}/regions/demo-osbs/')
    text = text.replace("size_px = 64\nstride_px = 64", "size_px = 128\nstride_px = 128")
    text = text.replace("block_size_m = 24.0", "block_size_m = 40.0")
    text = text.replace("min_area_m2 = 0.5", "min_area_m2 = 0.0\nthreshold = 0.05\nnms_iou = 0.4")
    path = tmp_path_factory.mktemp("detregion") / "det.toml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def det_model(det_region: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("detmodel") / "m"
    train_model(
        [load_region(det_region)],
        out,
        TrainOptions(epochs=2, samples_per_epoch=1, batch_size=4, seed=0),
    )
    return out


def test_boxes_move_with_the_pixels() -> None:
    mask = torch.zeros(1, 16, 16, dtype=torch.uint8)
    mask[0, 2:7, 3:12] = 1  # box x 3..12, y 2..7
    box = torch.tensor([[3.0, 2.0, 12.0, 7.0]])
    for code in range(8):
        rows, cols = np.nonzero(dihedral(mask, code)[0].numpy())
        expect = [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]
        assert flip_rotate_boxes(box, code, 16)[0].tolist() == expect, code


def test_label_budget_turns_unsampled_boxes_into_ignore(det_region: Path, tmp_path: Path) -> None:
    region = load_region(det_region)
    chip_region(region, tmp_path / "chips")
    train = read_chip_index(tmp_path / "chips").split("train")
    sampled = select_objects([list(v) for v in train["object_ids"]], 3, 0)
    full = load_region_chips(region, tmp_path / "chips", "train", ["red", "green", "blue"])
    few = load_region_chips(region, tmp_path / "chips", "train", ["red", "green", "blue"], sampled)
    assert full.boxes is not None and few.boxes is not None
    n_full = sum(len(b.boxes) for b in full.boxes)
    few_ids = {int(i) for b in few.boxes for i in b.object_ids}
    assert 0 < len(few_ids) <= 3 < n_full and few_ids <= sampled
    # in the chips both keep, the unsampled objects' boxes became ignore boxes
    same = dict(zip(full.chip_ids, full.boxes, strict=True))
    extra = [
        len(b.ignore) - len(same[c].ignore) for c, b in zip(few.chip_ids, few.boxes, strict=True)
    ]
    assert min(extra) >= 0 and sum(extra) > 0


def test_train_evaluate_predict(det_model: Path, det_region: Path, tmp_path: Path) -> None:
    art = load_artefact(det_model)
    card = art.card
    assert card.task == "detection" and card.network.arch == "retinanet"
    assert card.threshold == 0.05 and card.nms_iou == 0.4  # the region's [predict]
    assert card.metrics["validations"] == 2
    assert card.metrics["window_px"] == 128  # a detector trains on whole chips

    metrics = evaluate_model(
        det_model, load_region(det_region), chips_dir=det_model / "chips", n_boot=50
    )
    det = metrics["detection"]
    for key in ("iou_0.4", "iou_0.5"):
        assert {"precision", "recall", "f1", "f1_ci95", "tp", "fp", "fn"} <= set(det[key])
        assert det[key]["tp"] + det[key]["fn"] == det["objects"] > 0
    assert det["ap50"] is None or 0 <= det["ap50"] <= 1

    # two epochs do not make a detector: keep every box down to a tiny score for the contract
    art.network.score_thresh = 0.0  # type: ignore[assignment]
    opts = PredictOptions(window_px=256, overlap_px=64, threshold=0.001, progress=False)
    result = predict_scene(art, SCENE, opts)
    assert result.stats.windows == 4
    feats = result.features
    assert list(feats.columns[:7]) == [
        "id",
        "class",
        "score",
        "area_m2",
        "scene",
        "acquired",
        "model",
    ]
    assert len(feats) > 0 and (feats["score"] >= 0.001).all()
    assert feats["id"].is_unique
    # one box per object: rectangles in the scene's CRS
    assert all(len(g.exterior.coords) == 5 for g in result.native.geometry)


def test_detection_model_refuses_probabilities(det_model: Path, tmp_path: Path) -> None:
    res = CliRunner().invoke(
        cli,
        ["predict", str(det_model), str(SCENE), "-o", str(tmp_path / "o.geojson"),
         "--probabilities", str(tmp_path / "p.tif")],
    )  # fmt: skip
    assert res.exit_code == 2 and "drop --probabilities" in res.output
    assert not (tmp_path / "o.geojson").exists()


def test_segmentation_base_refused_for_detection(
    demo_model: Path, det_region: Path, tmp_path: Path
) -> None:
    with pytest.raises(
        BaseModelError, match="is a segmentation model, the region's task is detection"
    ):
        train_model(
            [load_region(det_region)],
            tmp_path / "m",
            TrainOptions(base=f"model:{demo_model}", epochs=1, samples_per_epoch=1),
        )


def test_detection_base_refused_for_segmentation(det_model: Path, tmp_path: Path) -> None:
    region = load_region(REPO / "regions" / "demo-osbs.toml")
    with pytest.raises(BaseModelError, match="is a detection model"):
        train_model(
            [region],
            tmp_path / "m",
            TrainOptions(base=f"model:{det_model}", epochs=1, samples_per_epoch=1),
        )


def test_card_is_json(det_model: Path) -> None:
    card = json.loads((det_model / "model.json").read_text())
    assert card["network"]["anchor_sizes"] == [16, 32, 64, 128, 256]


def _matched(ours: list[Any], ref: list[Any], min_iou: float) -> int:
    """How many of ``ref``'s boxes one of ``ours`` overlaps at ``min_iou`` or more."""
    tree = shapely.STRtree(ours)
    hits = 0
    for box in ref:
        near = tree.query(box)
        if any(box.intersection(ours[i]).area / box.union(ours[i]).area >= min_iou for i in near):
            hits += 1
    return hits


def test_onnx_export_predicts_the_same_boxes(det_model: Path, tmp_path: Path) -> None:
    """A detector's ONNX graph (every anchor's box and scores) + geotl's post-processing."""
    onnx_path = tmp_path / "det.onnx"
    res = CliRunner().invoke(
        cli, ["-q", "export", str(det_model), "--onnx", str(onnx_path), "--tile-px", "256"]
    )
    assert res.exit_code == 0, res.stderr
    graph = onnx.load(str(onnx_path))
    meta = {p.key: json.loads(p.value) for p in graph.metadata_props}
    card = load_artefact(det_model).card
    assert meta["model_type"] == "Detector" and meta["det_type"] == "YOLO_v5_v7_DEFAULT"
    assert meta["det_conf"] == card.threshold and meta["det_iou_thresh"] == card.nms_iou
    assert meta["class_names"] == {"0": "background", "1": "tree"}
    assert meta["tiles_size"] == 256 and meta["geotl_card"]["task"] == "detection"
    stac = json.loads(onnx_path.with_suffix(".stac.json").read_text())["properties"]
    assert stac["mlm:tasks"] == ["object-detection"]
    assert stac["mlm:output"][0]["result"]["shape"] == [1, -1, 7]
    # Deepness's layout: one window, one row per anchor: cx, cy, w, h, conf, class scores
    rows = ort.InferenceSession(str(onnx_path)).run(None, {"image": np.zeros((1, 3, 256, 256), np.float32)})[0]  # fmt: skip
    assert rows.shape == (1, sum(level_anchors(256)), 5 + 2)
    assert np.allclose(rows[0, :, 4], rows[0, :, 6])  # conf: the best object class

    # two epochs do not make a detector: keep every box down to a tiny score
    art = load_artefact(det_model)
    art.network.score_thresh = 0.0  # type: ignore[assignment]
    exported = load_model(onnx_path, "onnxruntime", threads=1)
    assert isinstance(exported.engine, OrtEngine)
    exported.engine.score_thresh = 0.0
    opts = PredictOptions(window_px=256, overlap_px=64, threshold=0.001, progress=False)
    ref = predict_scene(art, SCENE, opts)
    ours = predict_scene(exported, SCENE, opts)
    a, b = list(ref.native.geometry), list(ours.native.geometry)
    assert len(a) > 20 and abs(len(a) - len(b)) <= len(a) // 50
    # the same boxes up to ties (near-equal scores of a weak model at the per-level
    # candidate limit and in suppression)
    assert _matched(b, a, 0.99) >= 0.97 * len(a), (len(a), len(b), _matched(b, a, 0.99))
    assert np.allclose(
        np.sort(ref.features["score"])[-20:], np.sort(ours.features["score"])[-20:], atol=1e-3
    )
    # code written for the torch network (geotl evaluate) runs the graph unchanged
    out = exported.network(torch.zeros(1, 3, 256, 256))
    assert isinstance(out, list) and set(out[0]) == {"boxes", "scores", "labels"}
    # the default engine on CPU: the model folder, exported into the cache on first use
    auto = load_model(det_model, "auto", threads=1)
    assert isinstance(auto.engine, _ExportingEngine)
    auto.engine.engine(256).score_thresh = 0.0  # as above: keep the weak model's boxes
    b = list(predict_scene(auto, SCENE, opts).native.geometry)
    assert _matched(b, a, 0.99) >= 0.97 * len(a), (len(a), len(b), _matched(b, a, 0.99))


def test_int8_detector_quantises_its_convolutions(
    det_model: Path, det_region: Path, tmp_path: Path
) -> None:
    """--int8 on a detector: int8 convolutions, box decoding and scores in float."""
    fp32, int8 = tmp_path / "det.onnx", tmp_path / "det8.onnx"
    export_onnx(det_model, fp32, tile_px=256)
    res = export_onnx(det_model, int8, tile_px=256, int8=True, region_path=det_region)
    assert (
        res.card.quantisation.startswith("int8 static")
        and res.size_bytes < 0.5 * fp32.stat().st_size
    )
    graph = onnx.load(str(int8))
    ops = [n.op_type for n in graph.graph.node]
    assert ops.count("DequantizeLinear") > 50 and "Exp" in ops and "Sigmoid" in ops
    opts = PredictOptions(window_px=256, overlap_px=64, threshold=0.02, progress=False)
    boxes = {}
    for key, path in (("fp32", fp32), ("int8", int8)):
        model = load_model(path, "onnxruntime", threads=1)
        assert isinstance(model.engine, OrtEngine)
        model.engine.score_thresh = 0.0  # a weak model: its best scores are a few hundredths
        boxes[key] = list(predict_scene(model, SCENE, opts).native.geometry)
    assert len(boxes["fp32"]) > 5
    # int8 moves scores and boxes a little: most fp32 boxes are still found
    assert _matched(boxes["int8"], boxes["fp32"], 0.5) >= 0.5 * len(boxes["fp32"])


def test_a_box_in_ground_two_chips_share_is_scored_once() -> None:
    from geotl.evaluate.chips import owned_pixels
    from geotl.evaluate.detection import detection_scores, owned_boxes

    # two 8-px chips overlapping by 4 px; one object in the shared ground, found by both
    rows = pd.DataFrame(
        {"scene": ["s", "s"], "row_off": [0, 0], "col_off": [0, 4], "height": 8, "width": 8}
    )
    found = {
        "boxes": np.array([[5.0, 1, 7, 3]], np.float32),
        "scores": np.array([0.9], np.float32),
        "labels": np.array([1]),
    }
    preds = [found, {**found, "boxes": found["boxes"] - [4, 0, 4, 0]}]
    truths = [
        {"boxes": p["boxes"].copy(), "labels": np.array([1]), "ignore": np.zeros((0, 4))}
        for p in preds
    ]
    preds, truths = owned_boxes(preds, truths, owned_pixels(rows))
    counts = detection_scores(preds, truths, ["tree"], 0.5, n_boot=10)["iou_0.5"]
    assert (counts["tp"], counts["fp"], counts["fn"]) == (1, 0, 0)
    assert len(truths[1]["boxes"]) == 0 and len(truths[1]["ignore"]) == 1


def test_ap_ignore_boxes_hold_for_every_class() -> None:
    from geotl.evaluate.detection import average_precision_50

    # class 2: one object found, one detection on an ignore box (a sliver at a chip edge)
    truth = {
        "boxes": np.array([[0.0, 0, 10, 10]], np.float32),
        "labels": np.array([2]),
        "ignore": np.array([[20.0, 20, 30, 30]], np.float32),
    }
    pred = {
        "boxes": np.array([[0.0, 0, 10, 10], [20, 20, 30, 30]], np.float32),
        "scores": np.array([0.5, 0.9], np.float32),
        "labels": np.array([2, 2]),
    }
    assert average_precision_50([pred], [truth]) == pytest.approx(1.0)


def test_ap_counts_more_than_100_boxes_per_chip() -> None:
    from geotl.evaluate.detection import average_precision_50

    # a dense chip (cars in a car park): 150 objects, all found
    n = 150
    boxes = np.array(
        [[i % 15 * 10, i // 15 * 10, i % 15 * 10 + 8, i // 15 * 10 + 8] for i in range(n)]
    )
    truth = {"boxes": boxes.astype(np.float32), "labels": np.ones(n), "ignore": np.zeros((0, 4))}
    pred = {
        "boxes": boxes.astype(np.float32),
        "scores": np.linspace(0.9, 0.5, n).astype(np.float32),
        "labels": np.ones(n),
    }
    assert average_precision_50([pred], [truth]) == pytest.approx(1.0)


def test_boxes_all_too_small_refused_before_training(det_region: Path, tmp_path: Path) -> None:
    import geopandas as gpd

    # labels as 0.15 m squares (1.5 px at 0.1 m): every box is dropped when chipping
    region = load_region(det_region)
    labels = gpd.read_file(region.labels_path())
    labels["geometry"] = labels.geometry.centroid.buffer(0.075, cap_style="square")
    labels.to_file(tmp_path / "tiny.geojson")
    text = det_region.read_text()
    text = text.replace(str(region.labels_path()), str(tmp_path / "tiny.geojson"))
    (tmp_path / "tiny.toml").write_text(text)
    result = CliRunner().invoke(
        cli,
        ["train", str(tmp_path / "tiny.toml"), "--out", str(tmp_path / "m"), "--epochs", "1"],
    )
    assert result.exit_code == 2, result.output
    line = result.output.strip().splitlines()[-1]
    assert "tiny.geojson" in line and "2 px" in line and "point_box_m" in line
    assert not (tmp_path / "m" / "model.json").exists()


def test_chips_off_the_stride_are_padded_like_prediction_windows() -> None:
    from geotl.train.tasks.detection import DetectionTask

    class Recorder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.shapes: list[tuple[int, ...]] = []

        def forward(self, x: torch.Tensor, targets: Any = None) -> Any:
            self.shapes.append(tuple(x.shape))
            return {"loss": x.sum()} if targets is not None else []

    # 100 px chips: anchors spaced by 100 // 13 = 7 px at P3 would sit off the feature cells
    net, task = Recorder(), DetectionTask(["tree"])
    x = torch.ones(2, 3, 100, 100)
    task.training_loss(net, x, [{}, {}])
    task.forward(net, x)
    assert net.shapes == [(2, 3, 128, 128), (2, 3, 128, 128)]
    assert task.forward(net, torch.ones(1, 3, 64, 64)) == [] and net.shapes[-1] == (1, 3, 64, 64)


def test_a_class_without_test_objects_is_named() -> None:
    from geotl.evaluate.detection import detection_scores

    # one snag in the whole region, and it fell in train: the test chips hold trees only
    truth = {
        "boxes": np.array([[0.0, 0, 10, 10]], np.float32),
        "labels": np.array([1]),
        "ignore": np.zeros((0, 4), np.float32),
    }
    pred = {
        "boxes": np.array([[0.0, 0, 10, 10], [20, 20, 30, 30]], np.float32),
        "scores": np.array([0.9, 0.8], np.float32),
        "labels": np.array([1, 2]),
    }
    scores = detection_scores([pred], [truth], ["tree", "snag"], 0.5, n_boot=10)
    assert scores["classes_without_test_objects"] == ["snag"]
    assert scores["iou_0.5"]["per_class"]["snag"] == {"tp": 0, "fp": 1, "fn": 0}


def test_evaluate_leaves_out_boxes_predict_drops_as_too_small(
    det_model: Path, det_region: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # predict drops boxes under [predict] min_area_m2; evaluate scored them all the same, so
    # a min_area_m2 larger than every crown gave a recall that predict never delivers
    art = load_artefact(det_model)
    art.network.score_thresh = 0.0  # type: ignore[assignment]
    big = tmp_path / "big.toml"
    big.write_text(det_region.read_text().replace("min_area_m2 = 0.0", "min_area_m2 = 5000.0"))
    chips = det_model / "chips"
    with caplog.at_level("WARNING", logger="geotl.evaluate.detection"):
        det = evaluate_model(det_model, load_region(big), chips_dir=chips, n_boot=10)["detection"]
    assert det["objects"] == 0 and det["predicted"] == 0
    assert det["objects_under_min_area"] > 0 and det["min_area_m2"] == 5000.0
    assert "lower [predict] min_area_m2" in caplog.text
    # predict with that minimum writes no box either: the two agree
    opts = PredictOptions(window_px=256, overlap_px=64, threshold=0.001, progress=False)
    assert len(predict_scene(art, SCENE, replace(opts, min_area_m2=5000.0)).features) == 0
    # the region's own minimum (0) leaves every labelled box in
    det = evaluate_model(det_model, load_region(det_region), chips_dir=chips, n_boot=10)
    assert det["detection"]["objects_under_min_area"] == 0
    assert det["detection"]["objects"] > 0


def test_validation_scores_the_boxes_predict_keeps() -> None:
    """The score threshold is chosen on the boxes min_area_m2 leaves, as evaluate scores."""

    def scored(min_box_px: float | None) -> float:
        task = DetectionTask(["tree"])
        task.min_box_px = min_box_px
        val = BoxValidation(task)
        small = torch.tensor([[0.0, 0.0, 4.0, 4.0]])  # 16 px, found exactly
        outputs = [{"boxes": small, "scores": torch.tensor([0.9]), "labels": torch.tensor([1])}]
        targets = [{"boxes": small, "labels": torch.tensor([1]), "ignore": torch.zeros((0, 4))}]
        val.update(outputs, targets)
        return val.compute()

    assert scored(None) == pytest.approx(1.0)
    assert scored(0.0) == pytest.approx(1.0)
    assert scored(20.0) == 0.0  # predict drops it: nothing left to find


def test_evaluate_scores_an_exported_detector_as_its_folder(
    det_region: Path, tmp_path: Path
) -> None:
    """``geotl evaluate DET.onnx`` runs the graph on the test chips, scored as the folder is."""
    # a weak detector (8 short epochs) and a low threshold: enough boxes to compare (188)
    region = tmp_path / "det-low.toml"
    region.write_text(det_region.read_text().replace("threshold = 0.05", "threshold = 0.001"))
    model = tmp_path / "m"
    train_model(
        [load_region(region)], model, TrainOptions(epochs=8, samples_per_epoch=4, batch_size=4)
    )
    onnx_path = tmp_path / "det.onnx"
    export_onnx(model, onnx_path, tile_px=128)  # the chips' size
    runs = {}
    for name, path in (("torch", model), ("onnx", onnx_path)):
        out = tmp_path / f"{name}.json"
        args = [str(path), str(region), "--chips", str(model / "chips"), "--out", str(out)]
        res = CliRunner().invoke(cli, ["-q", "evaluate", *args])
        assert res.exit_code == 0, res.stderr
        runs[name] = json.loads(out.read_text())
    assert runs["torch"]["engine"] == "torch" and runs["onnx"]["engine"] == "onnxruntime"
    assert runs["onnx"]["onnx"]["file"] == str(onnx_path)
    ref, ours = runs["torch"]["detection"], runs["onnx"]["detection"]
    assert ref["score_threshold"] == ours["score_threshold"] == 0.001
    assert ours["objects"] == ref["objects"] > 0 and ref["predicted"] > 10
    # the same boxes up to ties of a weak model's near-equal scores
    assert abs(ours["predicted"] - ref["predicted"]) <= max(2, ref["predicted"] // 20)
    assert ours["ap50"] == pytest.approx(ref["ap50"], abs=0.02)
    for key in ("iou_0.4", "iou_0.5"):
        for k in ("tp", "fp", "fn"):
            assert abs(ours[key][k] - ref[key][k]) <= max(2, ref[key][k] // 20), (key, ours, ref)
