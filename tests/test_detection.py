"""task = "detection": box targets, augmentation, training, evaluation, prediction, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from geotl.chips import chip_region, read_chip_index
from geotl.config import load_region
from geotl.errors import BaseModelError
from geotl.evaluate import evaluate_model
from geotl.models.artefact import load_artefact
from geotl.predict import PredictOptions, predict_scene
from geotl.train import TrainOptions, load_region_chips, select_objects, train_model
from geotl.train.tasks.detection import dihedral, flip_rotate_boxes

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
    train_model([load_region(det_region)], out, TrainOptions(epochs=2, batch_size=4, seed=0))
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
    from geotl.cli.main import cli

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
            TrainOptions(base=f"model:{demo_model}", epochs=1),
        )


def test_detection_base_refused_for_segmentation(det_model: Path, tmp_path: Path) -> None:
    region = load_region(REPO / "regions" / "demo-osbs.toml")
    with pytest.raises(BaseModelError, match="is a detection model"):
        train_model([region], tmp_path / "m", TrainOptions(base=f"model:{det_model}", epochs=1))


def test_card_is_json(det_model: Path) -> None:
    card = json.loads((det_model / "model.json").read_text())
    assert card["network"]["anchor_sizes"] == [16, 32, 64, 128, 256]
