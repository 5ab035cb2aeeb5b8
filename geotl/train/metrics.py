"""Validation metrics computed during training (pixel confusion, IoU)."""

from __future__ import annotations

import numpy as np
import torch

from geotl.chips.labels import IGNORE
from geotl.metrics import pixel_scores

__all__ = ["THRESHOLDS", "ConfusionIoU", "confusion"]


def confusion(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Confusion counts (rows truth, columns prediction), ignore pixels left out."""
    nn = num_classes * num_classes
    ok = target != IGNORE
    idx = torch.where(ok, target.long() * num_classes + pred.long(), nn).flatten()
    counts = torch.zeros(nn + 1, dtype=torch.long, device=idx.device)
    counts.index_add_(0, idx, torch.ones_like(idx))
    return counts[:nn].reshape(num_classes, num_classes)


#: foreground thresholds tried on validation (prediction's rule: the most probable
#: foreground class where its probability reaches the threshold, else background)
THRESHOLDS = tuple(round(0.1 + 0.05 * i, 2) for i in range(17))


class ConfusionIoU:
    """Mean foreground IoU over a validation pass, counted on the device (one read at the end).

    ``compute`` scores the argmax (what early stopping watches); the same pass also counts
    every threshold of :data:`THRESHOLDS`, and :meth:`best_threshold` says which one
    scores best, so the foreground threshold can be chosen on validation.
    """

    def __init__(self, num_classes: int, device: torch.device | str = "cpu") -> None:
        self.num_classes = num_classes
        self.counts = torch.zeros(num_classes, num_classes, dtype=torch.long, device=device)
        self.by_threshold = torch.zeros(
            len(THRESHOLDS), num_classes, num_classes, dtype=torch.long, device=device
        )

    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch: ``logits`` (B, K, H, W), ``target`` (B, H, W) with 255 ignore."""
        self.counts += confusion(logits.argmax(1), target, self.num_classes)
        fg = torch.softmax(logits.float(), dim=1)[:, 1:]
        best_p, best = fg.max(dim=1)
        for k, t in enumerate(THRESHOLDS):
            pred = torch.where(best_p >= t, best + 1, 0)
            self.by_threshold[k] += confusion(pred, target, self.num_classes)

    def compute(self) -> float:
        """Mean IoU of the foreground classes present (0 when none is)."""
        return _mean_foreground_iou(self.counts.cpu().numpy())

    def best_threshold(self) -> tuple[float, float]:
        """``(threshold, mean foreground IoU)`` of the best threshold; ties go to 0.5."""
        scores = [_mean_foreground_iou(c) for c in self.by_threshold.cpu().numpy()]
        k = max(range(len(THRESHOLDS)), key=lambda i: (scores[i], -abs(THRESHOLDS[i] - 0.5)))
        return THRESHOLDS[k], scores[k]


def _mean_foreground_iou(counts: np.ndarray) -> float:
    iou, _ = pixel_scores(counts)
    fg = iou[1:]
    return float(np.nanmean(fg)) if np.isfinite(fg).any() else 0.0
