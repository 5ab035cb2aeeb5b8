"""Validation metrics computed during training (pixel confusion, IoU)."""

from __future__ import annotations

import numpy as np
import torch

from geotl.chips.labels import IGNORE
from geotl.metrics import pixel_scores

__all__ = ["ConfusionIoU", "confusion"]


def confusion(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Confusion counts (rows truth, columns prediction), ignore pixels left out."""
    nn = num_classes * num_classes
    ok = target != IGNORE
    idx = torch.where(ok, target.long() * num_classes + pred.long(), nn).flatten()
    counts = torch.zeros(nn + 1, dtype=torch.long, device=idx.device)
    counts.index_add_(0, idx, torch.ones_like(idx))
    return counts[:nn].reshape(num_classes, num_classes)


class ConfusionIoU:
    """Mean foreground IoU over a validation pass, counted on the device (one read at the end)."""

    def __init__(self, num_classes: int, device: torch.device | str = "cpu") -> None:
        self.num_classes = num_classes
        self.counts = torch.zeros(num_classes, num_classes, dtype=torch.long, device=device)

    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch: ``logits`` (B, K, H, W), ``target`` (B, H, W) with 255 ignore."""
        self.counts += confusion(logits.argmax(1), target, self.num_classes)

    def compute(self) -> float:
        """Mean IoU of the foreground classes present (0 when none is)."""
        iou, _ = pixel_scores(self.counts.cpu().numpy())
        fg = iou[1:]
        return float(np.nanmean(fg)) if np.isfinite(fg).any() else 0.0
