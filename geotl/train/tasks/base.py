"""What a task provides to training: the small base every task module implements.

A task turns the chips' masks into training targets, builds the network and its head,
computes the loss, scores validation batches and names what goes on the model card.
The training loop (:mod:`geotl.train.loop`) only ever talks to a :class:`Task`, in the
spirit of torchgeo's ``BaseTask`` (one module per task on a small base).

How to add a task (e.g. ``task = "instances"``):

1. Write ``geotl/train/tasks/<name>.py`` with a subclass of :class:`Task`: set ``name``,
   implement :meth:`Task.targets`, :meth:`Task.loss` and :meth:`Task.validation_metric`;
   override :meth:`Task.build_network` when the network is not the default U-Net (e.g. a
   torchvision detector), :meth:`Task.training_loss` when the network computes its own
   loss, :meth:`Task.forward` when validation needs other outputs than ``network(x)``,
   and :meth:`Task.card_fields` for task-specific card entries.
2. Register it with one line in ``geotl/train/tasks/__init__.py``: ``TASKS[name] = Class``.
3. Allow the name in ``Region.task`` (``geotl/config.py``) and copy the task test of
   ``tests/test_train.py`` (train two steps on the demo chips, check the card).

Batches reach a task already normalised and augmented: ``x`` is ``(B, C, H, W)`` float,
``masks`` ``(B, H, W)`` uint8 with 0 background, 1..K the classes and 255 ignore (nodata,
outside complete areas, guard bands, unsampled objects under a label budget). Targets are
derived from the *augmented* masks, so geometric augmentation never needs to know the
target format.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import torch

from geotl.chips.boxes import ChipBoxes
from geotl.config import Region
from geotl.models.adapt import BandPlan, build_adapted_network
from geotl.models.catalogue import LoadedBase
from geotl.models.network import NetworkSpec
from geotl.train.freeze import freeze_encoder

if TYPE_CHECKING:
    import geopandas as gpd

__all__ = ["Task", "ValidationMetric"]


class ValidationMetric(Protocol):
    """Accumulates one validation pass; ``compute`` is the score early stopping maximises."""

    def update(self, outputs: Any, targets: Any) -> None:
        """Add one batch of network outputs and targets."""

    def compute(self) -> float:
        """The pass's score (higher is better)."""
        ...


class Task(ABC):
    """One kind of learning problem (segmentation, instances, detection).

    Args:
        classes: the region's classes (background is implicit, index 0).
        loss: the ``[model] loss`` name; a task may ignore it.
    """

    name: ClassVar[str]
    # parameters under this prefix are the pretrained backbone (trained at ``encoder_lr``)
    encoder_prefix: ClassVar[str] = "encoder."
    # trains on the loop's random windows (False: on whole chips, see augment_batch)
    random_windows: ClassVar[bool] = True
    # what the validation score is, as the training log names it
    score_name: ClassVar[str] = "IoU"
    # a per-pixel model (geotl.train.pixel) can stand in for the network: its outputs are
    # class logits alone, scored by ConfusionIoU
    pixel_candidate: ClassVar[bool] = False

    def __init__(self, classes: list[str], loss: str = "ce+dice") -> None:
        self.classes = list(classes)
        self.loss_name = loss
        # the threshold chosen on validation (foreground probability or box score); the
        # card takes it unless the region sets [predict] threshold
        self.best_threshold: float | None = None
        # the region's [predict] threshold when its file sets one: validation scores there
        self.threshold_set: float | None = None
        # per-class logit offsets added in the training loss only (see set_class_prior)
        self.logit_offsets: torch.Tensor | None = None

    @property
    def num_classes(self) -> int:
        """Output classes, background included."""
        return len(self.classes) + 1

    # ---------------------------------------------------------------- network

    def build_network(
        self, base: LoadedBase, bands: list[str], seed: int, encoder: str | None
    ) -> tuple[torch.nn.Module, NetworkSpec, BandPlan | None]:
        """The network initialised from ``base`` (default: a band-adapted U-Net)."""
        return build_adapted_network(base, bands, self.classes, seed=seed, encoder=encoder)

    def freeze(self, network: torch.nn.Module, mode: str, keep_first_conv: bool) -> list[str]:
        """Freeze part of the pretrained network; returns the frozen module prefixes."""
        return freeze_encoder(network, mode, keep_first_conv)

    # ---------------------------------------------------------------- training

    def prepare_chips(self, region: Region, chips_dir: Path, data: Any) -> None:
        """Adjust a region's loaded chips (:class:`~geotl.train.data.ChipData`) in place.

        Called once per loaded set before training; the default keeps them as they are.
        A task that needs more than the class masks (e.g. where touching objects meet)
        derives it here from the region's labels and keeps it in the masks, so that
        augmentation moves it with the pixels.
        """
        return None

    def set_class_prior(self, offsets: torch.Tensor | None) -> None:
        """Correct the class balance of the training labels (``None``: as they are).

        ``offsets`` (one per class, background first) are ``log(train share) - log(target
        share)``: a task that scores classes adds them to its class logits in the loss, so
        that the logits themselves model the target balance (logit adjustment). A task
        without class logits (detection) overrides this to keep none.
        """
        self.logit_offsets = offsets

    @abstractmethod
    def targets(self, masks: torch.Tensor) -> Any:
        """Training/validation targets from a batch of (augmented) chip masks."""

    def augment_batch(
        self,
        augment: Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
        x: torch.Tensor,
        masks: torch.Tensor,
        valid: torch.Tensor,
        boxes: list[ChipBoxes] | None,
    ) -> tuple[torch.Tensor, torch.Tensor, Any]:
        """Augment a raw training batch: ``(x, valid, targets)``.

        By default the loop's augmentation (:class:`geotl.train.augment.Augment`) moves
        masks with the pixels and :meth:`targets` reads them; a task whose targets are not
        masks (detection boxes) moves its own targets.
        """
        x, masks, valid = augment(x, masks, valid)
        return x, valid, self.targets(masks)

    def batch_targets(self, masks: torch.Tensor, boxes: list[ChipBoxes] | None) -> Any:
        """Validation targets of a batch of whole chips: by default :meth:`targets`."""
        return self.targets(masks)

    def forward(self, network: torch.nn.Module, x: torch.Tensor) -> Any:
        """The network's outputs for a normalised batch."""
        return network(x)

    @abstractmethod
    def loss(self, outputs: Any, targets: Any) -> torch.Tensor:
        """The training loss of one batch (a scalar tensor)."""

    def training_loss(
        self, network: torch.nn.Module, x: torch.Tensor, targets: Any
    ) -> torch.Tensor:
        """Forward + loss (override when the network computes its own loss)."""
        return self.loss(self.forward(network, x), targets)

    @abstractmethod
    def validation_metric(self, device: torch.device) -> ValidationMetric:
        """A fresh accumulator for one validation pass (``compute`` is maximised)."""

    # ---------------------------------------------------------------- card

    def card_fields(self, region: Region) -> dict[str, Any]:
        """Model-card entries this task sets (how outputs become objects at predict time).

        The threshold is the region's ``[predict] threshold`` when the file sets one, else
        the one chosen on validation, else the default. The smallest object is the region's
        ``[predict] min_area_m2`` when set, else :func:`default_min_area_m2`.
        """
        threshold = region.predict.threshold_set or self.best_threshold or region.predict.threshold
        min_area = region.predict.given("min_area_m2")
        return {
            "task": region.task,
            "threshold": threshold,
            "min_area_m2": min_area if min_area is not None else default_min_area_m2(region),
            "simplify_px": region.predict.simplify_px,
        }


#: without ``[predict] min_area_m2``: objects smaller than this share of the labelled
#: objects' area at this quantile are specks, not objects
MIN_AREA_SHARE, MIN_AREA_QUANTILE = 0.25, 0.05


def default_min_area_m2(region: Region, chips: gpd.GeoDataFrame | None = None) -> float:
    """The smallest object worth a polygon, from the region's own labels (m²).

    A quarter of the 5th percentile of the labelled objects' areas: a few stray pixels
    are never an object, while an object the size of the small labelled ones always is.
    0 when the region has no labelled polygon.

    Args:
        region: the region (its ``[labels]``).
        chips: the region's chip index rows: only the objects in them count (their
            ``object_ids``), those the model learns from, and only the labels over them
            are read (:func:`~geotl.io.vectors.chip_areas`). A national layer read whole
            cost a second and its memory, and its percentile was the nation's objects',
            not the imagery's. None: every label of the file.
    """
    import logging

    import numpy as np

    from geotl.io.vectors import chip_areas, read_labels

    labels = read_labels(region, within=chip_areas(chips) if chips is not None else None)
    if chips is not None and "object_ids" in chips.columns:
        # the chips were checked against this label file: their ids are its label_id
        ids = {int(i) for ids in chips["object_ids"] for i in ids}
        labels = labels[labels["label_id"].isin(ids)]
    if labels.empty:
        return 0.0
    areas = labels.to_crs(labels.estimate_utm_crs()).area.to_numpy()  # m², any CRS
    areas = areas[areas > 0]
    if not len(areas):
        return 0.0
    value = float(f"{MIN_AREA_SHARE * float(np.quantile(areas, MIN_AREA_QUANTILE)):.3g}")
    logging.getLogger(__name__).info(
        "%s: objects under %g m2 are left out at predict time (a quarter of the labelled "
        "objects' 5th percentile area); set [predict] min_area_m2 to choose",
        region.name,
        value,
    )
    return value
