"""A model evaluated on a region that labels fewer classes than it predicts.

A tree-and-snag model on a region where only trees were drawn: the region's labels say
nothing about snags, so snags are not scored, and a snag predicted on a labelled tree is a
tree missed.
"""

import logging
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from test_evaluate_curve import _region_file, _two_class_region

from geotl.config import load_region
from geotl.evaluate import evaluate_model, headline
from geotl.metrics import pixel_scores


@pytest.fixture(scope="module")
def tree_snag_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-step segmentation model of the demo crowns split into trees and snags."""
    import torch

    from geotl.train import TrainOptions, train_model

    tmp = tmp_path_factory.mktemp("tree-snag")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = tmp / "model"
        train_model(
            [load_region(_two_class_region(tmp))], out, TrainOptions(steps=2, val_every=2, seed=0)
        )
    finally:
        torch.set_num_threads(before)
    return out


def _full_counts(model: Path, region_path: Path, chips: Path) -> tuple[np.ndarray, np.ndarray]:
    """Per chip confusion and object counts over all the model's classes (nothing folded)."""
    from geotl.chips import read_chip_index
    from geotl.evaluate.chips import load_split
    from geotl.evaluate.segmentation import _chip_counts
    from geotl.models.artefact import load_artefact

    region = load_region(region_path)
    artefact = load_artefact(model, device="cpu")
    data = load_split(artefact.card, region, chips, "test")
    frame = read_chip_index(chips).frame.set_index("chip_id")
    return _chip_counts(artefact, region, chips, frame, data, 8)


def test_a_region_of_fewer_classes_is_scored_on_its_own_classes(
    tree_snag_model, demo_chips, tmp_path, caplog, one_thread
):
    region_path = _region_file(tmp_path)  # the demo region: trees only
    confs, objs = _full_counts(tree_snag_model, region_path, demo_chips)
    total = confs.sum(0)  # rows truth, columns prediction: background, tree, snag
    assert not total[2].any()  # the region labels no snag ...
    # ... and the model predicts snags both on labelled trees and on background
    assert total[1, 2] > 0 and total[0, 2] > 0

    with caplog.at_level(logging.WARNING):
        metrics = evaluate_model(
            tree_snag_model, load_region(region_path), chips_dir=demo_chips, n_boot=20
        )
    pixel = metrics["pixel"]
    assert set(pixel["per_class"]) == {"background", "tree"} and set(metrics["objects"]) == {"tree"}
    assert metrics["classes_not_in_region"] == ["snag"]
    assert "count as background" in metrics["classes_not_in_region_note"]
    assert pixel["classes_without_test_pixels"] == []
    warned = [r for r in caplog.records if r.levelno == logging.WARNING and "snag" in r.message]
    assert len(warned) == 1 and str(region_path) in warned[0].message

    # a snag on a labelled tree is a tree missed: tree's IoU over the model's predictions
    tp = total[1, 1]
    tree_iou = tp / (tp + total[1].sum() - tp + total[:, 1].sum() - tp)
    assert pixel["per_class"]["tree"]["iou"] == pytest.approx(tree_iou, abs=1e-6)
    assert pixel["mean_iou"] == pixel["per_class"]["tree"]["iou"]
    # a snag on background is background (not a tree), and so is one on a tree (a miss)
    bg_tp = total[0, 0] + total[0, 2]
    bg_fp = total[1, 0] + total[1, 2]
    bg_iou = bg_tp / (bg_tp + bg_fp + total[0, 1])
    assert pixel["per_class"]["background"]["iou"] == pytest.approx(bg_iou, abs=1e-6)
    assert bg_iou != pytest.approx(pixel_scores(total)[0][0], abs=1e-6)  # it was scored apart
    # tree objects as before; snag objects (all false positives here) nowhere
    tree = metrics["objects"]["tree"]
    assert [tree["tp"], tree["fp"], tree["fn"]] == objs[:, :, 0].sum(0).tolist()
    assert "snag not scored" in headline(metrics)


def test_a_region_of_the_models_classes_scores_them_all(tree_snag_model, tmp_path, one_thread):
    from geotl.evaluate.segmentation import segmentation_scores

    two = _two_class_region(tmp_path)
    chips = tree_snag_model / "chips"
    metrics = evaluate_model(tree_snag_model, load_region(two), chips_dir=chips, n_boot=20)
    assert "classes_not_in_region" not in metrics and "not scored" not in headline(metrics)
    confs, objs = _full_counts(tree_snag_model, two, chips)
    ids = metrics["objects"]["tree"]["count_per_chip"]
    expected = segmentation_scores(confs, objs, ["tree", "snag"], [c["chip"] for c in ids], 20, 0)
    assert metrics["pixel"] == expected["pixel"] and metrics["objects"] == expected["objects"]


def test_detection_boxes_of_a_class_the_region_lacks_are_not_scored() -> None:
    from geotl.evaluate.chips import scored_classes
    from geotl.evaluate.detection import _scored_boxes, detection_scores

    card = SimpleNamespace(classes=["tree", "snag"])
    lut = scored_classes(card, SimpleNamespace(classes=["tree"], path="trees.toml")).lut
    # a snag found on a labelled tree, a snag on bare ground, a tree found
    pred = {
        "boxes": np.array([[0.0, 0, 10, 10], [40, 40, 50, 50], [20, 0, 30, 10]], np.float32),
        "scores": np.array([0.9, 0.9, 0.9], np.float32),
        "labels": np.array([2, 2, 1]),
    }
    truth = {
        "boxes": np.array([[0.0, 0, 10, 10], [20, 0, 30, 10]], np.float32),
        "labels": np.array([1, 1]),
        "ignore": np.zeros((0, 4), np.float32),
    }
    (p,), (t,) = _scored_boxes([pred], lut), _scored_boxes([truth], lut)
    scores = detection_scores([p], [t], ["tree"], 0.5, n_boot=10)
    at = scores["iou_0.5"]
    # the tree under a snag box is missed; the snag on bare ground is no false positive
    assert (at["tp"], at["fp"], at["fn"]) == (1, 0, 1) and set(at["per_class"]) == {"tree"}
    assert scores["predicted"] == 1 and scores["objects"] == 2
    # the model's classes all labelled: the boxes stay as they were
    same = scored_classes(card, SimpleNamespace(classes=["tree", "snag"], path="all.toml")).lut
    (q,) = _scored_boxes([pred], same)
    assert q["labels"].tolist() == [2, 2, 1] and np.array_equal(q["boxes"], pred["boxes"])
