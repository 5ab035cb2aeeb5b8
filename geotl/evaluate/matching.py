"""Pairing predicted objects with labelled ones: one to one, best pairs first.

Polygons (segmentation and instances) are paired by IoU at :data:`MATCH_IOU`
(:func:`match_objects`); boxes (detection) at a given IoU, with ``ignore`` boxes for
objects that count neither way (:func:`match_boxes`). Both return ``(tp, fp, fn)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["MATCH_IOU", "match_boxes", "match_objects"]

MATCH_IOU = 0.5


def match_objects(
    pred: list[Any], truth: list[Any], min_iou: float = MATCH_IOU
) -> tuple[int, int, int]:
    """One-to-one greedy matching of polygons by IoU; returns (tp, fp, fn).

    >>> from shapely.geometry import box
    >>> match_objects([box(0, 0, 1, 1), box(5, 5, 6, 6)], [box(0, 0, 1, 1.2)])
    (1, 1, 0)
    """
    import shapely

    if not pred or not truth:
        return 0, len(pred), len(truth)
    pairs = []
    tree = shapely.STRtree(truth)
    for i, p in enumerate(pred):
        for j in tree.query(p, predicate="intersects"):
            t = truth[int(j)]
            inter = p.intersection(t).area
            union = p.area + t.area - inter
            if union > 0 and inter / union >= min_iou:
                pairs.append((inter / union, i, int(j)))
    pairs.sort(reverse=True)
    used_p: set[int] = set()
    used_t: set[int] = set()
    for _, i, j in pairs:
        if i not in used_p and j not in used_t:
            used_p.add(i)
            used_t.add(j)
    tp = len(used_p)
    return tp, len(pred) - tp, len(truth) - tp


def match_boxes(
    pred: np.ndarray,
    truth: np.ndarray,
    min_iou: float,
    ignore: np.ndarray | None = None,
) -> tuple[int, int, int]:
    """One-to-one greedy matching of boxes by IoU (best pairs first); returns (tp, fp, fn).

    An unmatched prediction whose centre lies in an ``ignore`` box (an object mostly
    outside the chip, or not labelled) is neither a true nor a false positive.

    >>> t = np.array([[0, 0, 10, 10], [20, 0, 30, 10]], dtype=float)
    >>> match_boxes(np.array([[1, 0, 10, 10], [50, 50, 60, 60]], dtype=float), t, 0.5)
    (1, 1, 1)
    >>> match_boxes(np.array([[50, 50, 60, 60]], dtype=float), t, 0.5, np.array([[45, 45, 70, 70]]))
    (0, 0, 2)
    """
    from torchvision.ops import box_iou

    pred = np.asarray(pred, dtype=np.float64).reshape(-1, 4)
    truth = np.asarray(truth, dtype=np.float64).reshape(-1, 4)
    used_p: set[int] = set()
    if len(pred) and len(truth):
        iou = box_iou(torch.from_numpy(pred), torch.from_numpy(truth)).numpy()
        pi, ti = np.nonzero(iou >= min_iou)
        order = np.argsort(-iou[pi, ti], kind="stable")
        used_t: set[int] = set()
        for k in order.tolist():
            i, j = int(pi[k]), int(ti[k])
            if i not in used_p and j not in used_t:
                used_p.add(i)
                used_t.add(j)
    tp = len(used_p)
    fp_idx = [i for i in range(len(pred)) if i not in used_p]
    if ignore is not None and len(ignore) and fp_idx:
        ig = np.asarray(ignore, dtype=np.float64).reshape(-1, 4)
        c = (pred[fp_idx, :2] + pred[fp_idx, 2:]) / 2
        inside = (
            (c[:, None, 0] >= ig[None, :, 0])
            & (c[:, None, 0] <= ig[None, :, 2])
            & (c[:, None, 1] >= ig[None, :, 1])
            & (c[:, None, 1] <= ig[None, :, 3])
        ).any(axis=1)
        fp_idx = [i for i, hit in zip(fp_idx, inside.tolist(), strict=True) if not hit]
    return tp, len(fp_idx), len(truth) - tp
