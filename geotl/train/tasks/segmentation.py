"""``task = "segmentation"``: a U-Net scoring every pixel (areas such as clearings, water)."""

from __future__ import annotations

from typing import ClassVar, cast

import segmentation_models_pytorch as smp
import torch

from geotl.chips.labels import IGNORE
from geotl.train.metrics import ConfusionIoU
from geotl.train.tasks.base import Task

__all__ = ["SegmentationTask"]


class SegmentationTask(Task):
    """Per-pixel classes; loss ``ce``, ``dice``, ``focal`` or ``ce+dice``, ignore 255.

    The loss sees the logits plus the class-prior offsets (:meth:`Task.set_class_prior`);
    validation and prediction see the logits as they are.
    """

    name: ClassVar[str] = "segmentation"
    pixel_candidate: ClassVar[bool] = True

    def __init__(self, classes: list[str], loss: str = "ce+dice") -> None:
        super().__init__(classes, loss)
        self.ce = torch.nn.CrossEntropyLoss(ignore_index=IGNORE)
        self.dice = smp.losses.DiceLoss("multiclass", ignore_index=IGNORE)
        self.focal = smp.losses.FocalLoss("multiclass", ignore_index=IGNORE)

    def targets(self, masks: torch.Tensor) -> torch.Tensor:
        """Class index per pixel (long), 255 ignore."""
        return masks.long()

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The configured loss; zero (with a gradient path) when every pixel is ignore."""
        if (targets != IGNORE).sum() == 0:
            return outputs.sum() * 0.0
        if self.logit_offsets is not None:
            outputs = outputs + self.logit_offsets.to(outputs)[None, :, None, None]
        if self.loss_name == "ce":
            return cast(torch.Tensor, self.ce(outputs, targets))
        if self.loss_name == "dice":
            return cast(torch.Tensor, self.dice(outputs, targets))
        if self.loss_name == "focal":
            return cast(torch.Tensor, self.focal(outputs, targets))
        return cast(torch.Tensor, self.ce(outputs, targets) + self.dice(outputs, targets))

    def validation_metric(self, device: torch.device) -> ConfusionIoU:
        """Mean foreground pixel IoU at the threshold prediction will use."""
        return ConfusionIoU(self.num_classes, device, self.threshold_set)
