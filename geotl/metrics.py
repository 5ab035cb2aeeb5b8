"""Scores from counts: the arithmetic that training's validation and ``geotl evaluate`` share.

Plain NumPy on summed counts (any leading axes, e.g. bootstrap resamples), NaN where a score
is undefined (nothing to count).
"""

from __future__ import annotations

import numpy as np

__all__ = ["pixel_scores", "precision_recall_f1"]


def pixel_scores(conf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-class IoU and F1 from a confusion matrix (rows truth, columns prediction).

    >>> iou, f1 = pixel_scores(np.array([[3, 1], [1, 3]]))
    >>> iou.round(3).tolist(), f1.round(3).tolist()
    ([0.6, 0.6], [0.75, 0.75])
    """
    conf = np.asarray(conf, dtype=np.float64)
    tp = np.diagonal(conf, axis1=-2, axis2=-1)
    fp = conf.sum(-2) - tp
    fn = conf.sum(-1) - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(tp + fp + fn > 0, tp / (tp + fp + fn), np.nan)
        f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), np.nan)
    return iou, f1


def precision_recall_f1(
    tp: np.ndarray, fp: np.ndarray, fn: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall and F1 from true positive, false positive and false negative counts.

    >>> [float(v) for v in precision_recall_f1(np.array(3), np.array(1), np.array(3))]
    [0.75, 0.5, 0.6]
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(tp + fp > 0, tp / (tp + fp), np.nan)
        r = np.where(tp + fn > 0, tp / (tp + fn), np.nan)
        f = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), np.nan)
    return p, r, f
