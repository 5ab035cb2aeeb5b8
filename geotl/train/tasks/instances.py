"""``task = "instances"``: segmentation that separates touching objects.

The network is the segmentation U-Net with two more output channels, learnt from the label
polygons (:mod:`geotl.chips.targets`): the object **border** and the **contact** zone
between touching objects. Prediction grows one object from each interior core with a
seeded watershed (:mod:`geotl.predict.objects.instances`).

The targets are computed once per chip from the label polygons and packed into the chip
masks (bits 0-3 the class, bit 4 border, bit 5 contact, 255 ignore), so that the flips and
rotations of the training loop move them with the pixels like any mask.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from geotl.chips.labels import IGNORE
from geotl.chips.targets import chip_instance_targets
from geotl.config import Region
from geotl.errors import ConfigError
from geotl.models.adapt import BandPlan, build_adapted_network
from geotl.models.catalogue import LoadedBase
from geotl.models.network import NetworkSpec
from geotl.predict.objects.instances import INSTANCE_CHANNELS
from geotl.train.metrics import ConfusionIoU
from geotl.train.tasks.base import Task
from geotl.train.tasks.segmentation import SegmentationTask

__all__ = ["InstancesTask", "pack_masks"]

MAX_CLASSES = 15  # classes live in the mask's low 4 bits
_BORDER_BIT, _CONTACT_BIT = 16, 32
_CONTACT_WEIGHT = 3.0  # contact pixels are rare and what separates objects


def pack_masks(masks: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Class masks ``(N, H, W)`` + border/contact ``(N, 2, H, W)`` -> packed uint8 masks.

    >>> m = np.array([[[0, 1, 255]]], dtype=np.uint8)
    >>> t = np.array([[[[0, 1, 255]], [[1, 0, 255]]]], dtype=np.uint8)
    >>> pack_masks(m, t).tolist()
    [[[32, 17, 255]]]
    """
    ignore = masks == IGNORE
    packed = masks.astype(np.uint8) & 15
    packed |= np.where(targets[:, 0] == 1, _BORDER_BIT, 0).astype(np.uint8)
    packed |= np.where(targets[:, 1] == 1, _CONTACT_BIT, 0).astype(np.uint8)
    packed[ignore] = IGNORE
    return packed


class _ClassIoU(ConfusionIoU):
    """Mean foreground pixel IoU on the class channels of an instance network."""

    def update(self, logits: torch.Tensor, target: Any) -> None:
        """Add a batch (class logits only; ``target`` from :meth:`InstancesTask.targets`)."""
        super().update(logits[:, : self.num_classes], target[0])


class InstancesTask(Task):
    """Classes (ce/dice/focal as configured) + border and contact (binary cross-entropy)."""

    name: ClassVar[str] = "instances"

    def __init__(self, classes: list[str], loss: str = "ce+dice") -> None:
        if len(classes) > MAX_CLASSES:
            raise ConfigError(
                f"task = 'instances' takes at most {MAX_CLASSES} classes, not {len(classes)}: "
                "merge classes or use task = 'segmentation'"
            )
        super().__init__(classes, loss)
        self.segmentation = SegmentationTask(classes, loss)
        self.pos_weight = torch.tensor([1.0, _CONTACT_WEIGHT])[:, None, None]

    def set_class_prior(self, offsets: torch.Tensor | None) -> None:
        """The class channels' offsets (border and contact keep their own weighting)."""
        super().set_class_prior(offsets)
        self.segmentation.set_class_prior(offsets)

    def build_network(
        self, base: LoadedBase, bands: list[str], seed: int, encoder: str | None
    ) -> tuple[torch.nn.Module, NetworkSpec, BandPlan | None]:
        """The U-Net with the border and contact channels after the classes.

        From an instance model (``model:``), its border and contact channels are reused too.
        """
        extra = [f":{c}" for c in INSTANCE_CHANNELS]
        if base.classes is not None and base.card is not None and base.card.task == "instances":
            base = dataclasses.replace(base, classes=[*base.classes, *extra])
        return build_adapted_network(
            base, bands, [*self.classes, *extra], seed=seed, encoder=encoder
        )

    def prepare_chips(self, region: Region, chips_dir: Path, data: Any) -> None:
        """Pack each chip's border and contact targets into its mask."""
        targets = chip_instance_targets(region, chips_dir, list(data.chip_ids), data.masks)
        data.masks = pack_masks(data.masks, targets)

    def targets(self, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(classes long with 255 ignore, border/contact float (B, 2, H, W), valid)``."""
        m = masks.long()
        valid = m != IGNORE
        classes = torch.where(valid, m & 15, IGNORE)
        extra = torch.stack([(m & _BORDER_BIT) > 0, (m & _CONTACT_BIT) > 0], 1).float()
        return classes, extra, valid

    def loss(self, outputs: torch.Tensor, targets: Any) -> torch.Tensor:
        """The segmentation loss on the classes + masked BCE on border and contact."""
        classes, extra, valid = targets
        k = self.num_classes
        seg = self.segmentation.loss(outputs[:, :k], classes)
        if not bool(valid.any()):
            return seg
        bce = torch.nn.functional.binary_cross_entropy_with_logits(
            outputs[:, k:].float(),
            extra,
            reduction="none",
            pos_weight=self.pos_weight.to(outputs.device),
        )
        per_px = bce.sum(1) * valid
        out: torch.Tensor = seg + per_px.sum() / valid.sum().clamp_min(1)
        return out

    def validation_metric(self, device: torch.device) -> ConfusionIoU:
        """Mean foreground pixel IoU of the class channels at prediction's threshold."""
        return _ClassIoU(self.num_classes, device, self.threshold_set)
