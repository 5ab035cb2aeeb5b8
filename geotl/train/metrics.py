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
THRESHOLDS = tuple(round(0.05 * i, 2) for i in range(1, 20))


class ConfusionIoU:
    """Mean foreground IoU over a validation pass, counted on the device (one read at the end).

    The pass scores every threshold of :data:`THRESHOLDS` (and the region's own, when it
    sets one) at once: each pixel falls into a bin of (truth, most probable foreground
    class, how many thresholds its probability reaches), and a cumulative sum over the
    bins gives every threshold's confusion matrix.

    :meth:`compute` (what early stopping and the kept weights follow) is the IoU at the
    threshold prediction will use: ``threshold`` when given (the region sets one), else the
    best of the grid, since that is the one the card will keep. :meth:`argmax` is the
    plain argmax score, for the record.

    Args:
        num_classes: classes including background (index 0).
        device: where the counts live.
        threshold: the region's ``[predict] threshold``; ``None``: chosen on validation.
    """

    def __init__(
        self,
        num_classes: int,
        device: torch.device | str = "cpu",
        threshold: float | None = None,
    ) -> None:
        self.num_classes = num_classes
        self.fixed = threshold
        grid = sorted(set(THRESHOLDS) | ({threshold} if threshold is not None else set()))
        self.thresholds = tuple(grid)
        self.edges = torch.tensor(grid, dtype=torch.float32, device=device)
        self.counts = torch.zeros(num_classes, num_classes, dtype=torch.long, device=device)
        # (truth, foreground class - 1, number of thresholds reached)
        self.bins = torch.zeros(
            num_classes * max(1, num_classes - 1) * (len(grid) + 1),
            dtype=torch.long,
            device=device,
        )

    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch: ``logits`` (B, K, H, W), ``target`` (B, H, W) with 255 ignore."""
        k = self.num_classes
        self.counts += confusion(logits.argmax(1), target, k)
        if k < 2:
            return
        best_p, best = torch.softmax(logits.float(), dim=1)[:, 1:].max(dim=1)
        best_p = torch.nan_to_num(best_p, nan=0.0)  # a diverged network predicts nothing
        reached = torch.bucketize(best_p, self.edges.to(best_p.device), right=True)
        ok = target != IGNORE
        n = len(self.thresholds) + 1
        idx = (target.long().clamp(max=k - 1) * (k - 1) + best) * n + reached
        self.bins += torch.bincount(idx[ok], minlength=self.bins.numel())

    def _by_threshold(self) -> np.ndarray:
        """Confusion matrices ``(thresholds, K, K)`` from the bins."""
        k, n = self.num_classes, len(self.thresholds)
        h = self.bins.cpu().numpy().reshape(k, k - 1, n + 1)
        # above[..., j]: pixels whose probability reaches threshold j (bins j + 1 and up)
        above = np.flip(np.cumsum(np.flip(h, -1), -1), -1)[..., 1:]
        out = np.zeros((n, k, k), dtype=np.int64)
        out[:, :, 1:] = np.moveaxis(above, -1, 0)
        out[:, :, 0] = h.sum(axis=(1, 2))[None, :] - out[:, :, 1:].sum(-1)
        return out

    def compute(self) -> float:
        """Mean foreground IoU at the threshold prediction will use (0 when none is present)."""
        if self.num_classes < 2:
            return self.argmax()
        if self.fixed is not None:
            return _mean_foreground_iou(self._by_threshold()[self.thresholds.index(self.fixed)])
        return self.best_threshold()[1]

    def argmax(self) -> float:
        """Mean foreground IoU of the argmax prediction."""
        return _mean_foreground_iou(self.counts.cpu().numpy())

    def floor(self) -> float:
        """Mean foreground IoU of the constant map: every pixel labelled as each class.

        A class covering a share ``p`` of the valid pixels has IoU ``p`` when the whole
        map is that class; a network that does not beat this has learnt nothing usable.

        >>> m = ConfusionIoU(2)
        >>> m.counts[:] = torch.tensor([[60, 0], [30, 10]])
        >>> m.floor()
        0.4
        """
        totals = self.counts.sum(dim=1).cpu().numpy().astype(np.float64)
        n = totals.sum()
        return float(np.mean(totals[1:] / n)) if n > 0 and len(totals) > 1 else 0.0

    def threshold_record(self) -> dict[str, float]:
        """The pass's best threshold as the card keeps it.

        Its value and IoU, the argmax IoU, and the constant map's IoU (:meth:`floor`: what
        a model must beat to be of any use).
        """
        value, iou = self.best_threshold()
        return {
            "value": value,
            "val_iou": round(iou, 4),
            "val_iou_argmax": round(self.argmax(), 4),
            "floor_iou": round(self.floor(), 4),
        }

    def best_threshold(self) -> tuple[float, float]:
        """``(threshold, mean foreground IoU)`` of the best threshold; ties go to 0.5."""
        scores = [_mean_foreground_iou(c) for c in self._by_threshold()]
        t = self.thresholds
        i = max(range(len(t)), key=lambda j: (scores[j], -abs(t[j] - 0.5)))
        return t[i], scores[i]


def _mean_foreground_iou(counts: np.ndarray) -> float:
    iou, _ = pixel_scores(counts)
    fg = iou[1:]
    return float(np.nanmean(fg)) if np.isfinite(fg).any() else 0.0
