"""Object score intervals when a test split holds only a few objects."""

import numpy as np

from geotl.evaluate.detection import detection_scores
from geotl.evaluate.scores import bootstrap_ci
from geotl.evaluate.segmentation import segmentation_scores
from geotl.metrics import precision_recall_f1


def _scores(objs: np.ndarray) -> dict:
    confs = np.zeros((len(objs), 2, 2), dtype=np.int64)
    confs[:, 1, 1] = confs[:, 0, 0] = 10
    chips = [f"c{i}" for i in range(len(objs))]
    return segmentation_scores(confs, objs[..., None], ["shrub"], chips, 200, 0)["objects"]["shrub"]


def test_none_of_three_objects_found_is_not_reported_as_certainly_zero() -> None:
    # 3 labelled shrubland samples in 2 of 12 test chips, none found: every resample of
    # the chips scores 0, and the bootstrap alone said F1 0.00 [0.00, 0.00]
    objs = np.zeros((12, 3), dtype=np.int64)
    objs[0] = [0, 1, 2]
    objs[5] = [0, 0, 1]
    shrub = _scores(objs)
    assert shrub["f1"] == 0 and shrub["recall"] == 0
    assert shrub["recall_ci95"] == [0.0, 0.707598]  # none of 3: up to 0.71 (Clopper-Pearson)
    assert shrub["precision_ci95"][1] > 0.9 and 0 < shrub["f1_ci95"][1] < 1
    assert "3 labelled, 1 predicted" in shrub["ci95_note"]


def test_many_objects_keep_the_bootstrap_interval() -> None:
    rng = np.random.default_rng(0)
    objs = rng.integers(0, 6, size=(40, 3))
    shrub = _scores(objs)
    lo, hi = bootstrap_ci(
        objs, lambda s: np.stack(precision_recall_f1(s[:, 0], s[:, 1], s[:, 2]), 1), 200, 0
    )
    assert shrub["f1_ci95"] == [round(float(lo[2]), 6), round(float(hi[2]), 6)]
    assert "ci95_note" not in shrub
    # none of 300 objects found: the interval stays near its point
    zero = _scores(np.tile([0, 2, 10], (30, 1)))
    assert zero["recall_ci95"][1] < 0.013


def test_detection_scores_say_the_same_of_one_missed_box() -> None:
    box = np.array([[0.0, 0, 10, 10]], np.float32)
    preds = [{"boxes": np.zeros((0, 4), np.float32), "scores": np.zeros(0), "labels": np.zeros(0)}]
    truths = [{"boxes": box, "labels": np.array([1]), "ignore": np.zeros((0, 4))}]
    at = detection_scores(preds, truths, ["tree"], 0.5, n_boot=50)["iou_0.5"]
    assert at["recall"] == 0 and at["recall_ci95"] == [0.0, 0.975]
    assert "ci95_note" in at
