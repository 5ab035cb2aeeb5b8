"""``task = "detection"``: a RetinaNet finds one box per object (crowns, vehicles).

- **Targets** are the object boxes stored in the chip index (:mod:`geotl.chips.boxes`):
  clipped boxes of objects mostly inside a chip, *ignore* boxes for objects mostly
  outside it and, under a label budget, for objects outside the budget (neither object
  nor background: anchors mostly inside them take no loss).
- **Augmentation** moves the boxes with the pixels: flips and quarter turns of whole chips
  (:func:`dihedral`, and :func:`flip_rotate_boxes` for the boxes).
- **Network**: :mod:`geotl.models.detector` (torchvision RetinaNet, timm backbone +
  feature pyramid), band-adapted from the base; ``freeze`` acts on the backbone.
- **Validation** scores AP at IoU 0.5 (torchmetrics, COCO style); the score threshold that
  maximises object F1 at IoU 0.4 on the validation chips of the best epoch goes on the
  card, unless the region sets ``[predict] threshold``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, ClassVar, cast

import numpy as np
import torch

from geotl.chips.boxes import MIN_BOX_PX, ChipBoxes, unflat_boxes
from geotl.config import Region
from geotl.errors import LabelError
from geotl.metrics import precision_recall_f1
from geotl.models.adapt import BandPlan
from geotl.models.catalogue import LoadedBase
from geotl.models.detector import build_adapted_detector
from geotl.models.network import NetworkSpec
from geotl.train.freeze import freeze_leading
from geotl.train.tasks.base import Task

__all__ = ["DetectionTask", "dihedral", "flip_rotate_boxes", "pad_to_stride"]

log = logging.getLogger(__name__)

# score thresholds tried when choosing the card's (object F1 at IoU 0.4 on validation)
_THRESHOLDS = np.round(np.arange(0.05, 0.96, 0.05), 2)
_SELECT_IOU = 0.4


def dihedral(t: torch.Tensor, code: int) -> torch.Tensor:
    """Flip left-right if ``code & 4``, then ``code & 3`` quarter turns (last two dims)."""
    if code & 4:
        t = t.flip(-1)
    return torch.rot90(t, code & 3, (-2, -1))


def flip_rotate_boxes(boxes: torch.Tensor, code: int, size: int) -> torch.Tensor:
    """Boxes ``(n, 4)`` after the augmentation ``code`` of a square ``size`` px chip.

    Code ``c``: flip left-right if ``c & 4``, then ``c & 3`` quarter turns of
    ``torch.rot90(..., (-2, -1))`` (counter-clockwise), exactly as :func:`dihedral` moves
    the pixels.

    >>> b = torch.tensor([[1.0, 2.0, 3.0, 6.0]])
    >>> flip_rotate_boxes(b, 4, 10).tolist(), flip_rotate_boxes(b, 1, 10).tolist()
    ([[7.0, 2.0, 9.0, 6.0]], [[2.0, 7.0, 6.0, 9.0]])
    """
    b = boxes
    if code & 4:
        b = torch.stack([size - b[:, 2], b[:, 1], size - b[:, 0], b[:, 3]], dim=1)
    for _ in range(code & 3):
        b = torch.stack([b[:, 1], size - b[:, 2], b[:, 3], size - b[:, 0]], dim=1)
    return b


def pad_to_stride(x: torch.Tensor, stride: int = 32) -> torch.Tensor:
    """Zero-pad a normalised batch below and right to a multiple of ``stride`` px.

    The anchors' spacing is the input size over each pyramid level's size: on chips that
    are no multiple of 32 px (``size_px = 100`` or ``400``) they would sit off the feature
    cells, unlike in prediction's windows (multiples of 32, zero padding). Zeros are what
    nodata becomes; boxes keep their coordinates (the origin is the top-left corner).

    >>> pad_to_stride(torch.ones(1, 3, 100, 128)).shape
    torch.Size([1, 3, 128, 128])
    """
    h, w = int(x.shape[-2]), int(x.shape[-1])
    ph, pw = -h % stride, -w % stride
    return torch.nn.functional.pad(x, (0, pw, 0, ph)) if ph or pw else x


class DetectionTask(Task):
    """Boxes with classes and scores; RetinaNet focal + box losses, ignore boxes."""

    name: ClassVar[str] = "detection"
    encoder_prefix: ClassVar[str] = "backbone.body."
    random_windows: ClassVar[bool] = False  # boxes follow the chip-edge rule of whole chips
    uses_boxes: ClassVar[bool] = True
    score_name: ClassVar[str] = "AP50"

    def __init__(self, classes: list[str], loss: str = "ce+dice") -> None:
        super().__init__(classes, loss)
        self.best_score = -1.0
        # [predict] min_area_m2 in chip pixels: validation scores the boxes predict keeps
        self.min_box_px: float | None = None

    def prepare_chips(self, region: Region, chips_dir: Path, data: Any) -> None:
        """Refuse a region whose train chips hold no object box: nothing to learn.

        The chips keep only boxes at least :data:`~geotl.chips.boxes.MIN_BOX_PX` wide and
        tall: labels smaller than that at the chip resolution (points drawn as tiny boxes,
        vehicles at a coarse resolution) all vanish, and training would fit background only.

        Raises:
            LabelError: the train split of ``chips_dir`` holds no object box.
        """
        from geotl.chips import read_chip_index

        index = read_chip_index(chips_dir)
        res = [s["resolution_m"] for s in index.meta.get("scenes", []) if s.get("resolution_m")]
        if self.min_box_px is None:  # the first region's, as the card's min_area_m2
            m = float(np.median(res)) if res else 0.0
            self.min_box_px = region.predict.min_area_m2 / (m * m) if m > 0 else 0.0
        frame = index.frame
        if "boxes" not in frame.columns:
            return  # old chips: _targets says to rechip
        train = frame.loc[frame["split"] == "train", "boxes"]
        if sum(len(unflat_boxes(b)) for b in train):
            return
        counts = index.meta.get("counts", {})
        small = int(counts.get("boxes_too_small", 0))
        size = f" ({MIN_BOX_PX * float(min(res)):g} m)" if res else ""
        why = (
            f"{small} label box(es) were narrower or shorter than {MIN_BOX_PX:g} px{size} at "
            "the chip resolution and dropped: draw boxes around whole objects (points: a larger "
            "[labels] point_box_m) or chip at a finer resolution"
            if small
            else "label objects inside the imagery's train chips"
        )
        raise LabelError(
            f"the {len(train)} train chip(s) of {chips_dir} hold no object box for "
            f"task = 'detection': {why}",
            region.labels_path(),
        )

    def set_class_prior(self, offsets: torch.Tensor | None) -> None:
        """Nothing to correct: RetinaNet's focal loss scores boxes, not pixel classes."""
        self.logit_offsets = None

    def build_network(
        self, base: LoadedBase, bands: list[str], seed: int, encoder: str | None
    ) -> tuple[torch.nn.Module, NetworkSpec, BandPlan | None]:
        """A band-adapted RetinaNet (:func:`geotl.models.detector.build_adapted_detector`)."""
        return build_adapted_detector(base, bands, self.classes, seed=seed, encoder=encoder)

    def freeze(self, network: torch.nn.Module, mode: str, keep_first_conv: bool) -> list[str]:
        """Freeze the backbone (``backbone``) or its stem and stride <= 8 stages (``partial``)."""
        if mode == "none":
            return []
        body = cast(torch.nn.Module, cast(Any, network).backbone.body)
        names = [n for n, _ in body.named_parameters()]
        if mode == "backbone":
            cut = len(names)
        else:  # the modules before the first pyramid level's stage (stride 8), and it
            first_out = str(cast(Any, body).feature_info.module_name()[0])
            idx = [i for i, n in enumerate(names) if n.startswith(first_out + ".")]
            cut = idx[-1] + 1 if idx else len(names) // 3
        frozen = freeze_leading(body, cut, keep_first_conv, mode, "backbone")
        return sorted({"backbone.body." + n.rsplit(".", 1)[0] for n in frozen})

    def augment_batch(
        self,
        augment: Any,
        x: torch.Tensor,
        masks: torch.Tensor,
        valid: torch.Tensor,
        boxes: list[ChipBoxes] | None,
    ) -> tuple[torch.Tensor, torch.Tensor, list[dict[str, torch.Tensor]]]:
        """Whole chips turned by a random dihedral code each, boxes moved with the pixels.

        The loop's random windows are not used: the chip-edge rule of the boxes
        (:mod:`geotl.chips.boxes`) was applied to whole chips.
        """
        codes = torch.randint(0, 8, (x.shape[0],))
        x = torch.stack([dihedral(xi, int(c)) for xi, c in zip(x, codes, strict=True)])
        valid = torch.stack([dihedral(v, int(c)) for v, c in zip(valid, codes, strict=True)])
        return x, valid, self._targets(masks, boxes, codes)

    def batch_targets(
        self, masks: torch.Tensor, boxes: list[ChipBoxes] | None
    ) -> list[dict[str, torch.Tensor]]:
        """Validation targets: the whole chips' boxes as they are."""
        return self._targets(masks, boxes, None)

    def _targets(
        self, masks: torch.Tensor, boxes: list[ChipBoxes] | None, codes: torch.Tensor | None
    ) -> list[dict[str, torch.Tensor]]:
        """Torchvision targets (``boxes``, ``labels``, ``ignore``), augmented like the pixels."""
        if boxes is None:
            raise LabelError(
                "these chips hold no object boxes (cut by an older geotl): rechip the region "
                "with geotl chip --overwrite"
            )
        size, device = int(masks.shape[-1]), masks.device
        out = []
        for i, cb in enumerate(boxes):
            b = torch.from_numpy(cb.boxes).float()
            ig = torch.from_numpy(cb.ignore).float()
            if codes is not None:
                code = int(codes[i])
                b, ig = flip_rotate_boxes(b, code, size), flip_rotate_boxes(ig, code, size)
            out.append(
                {
                    "boxes": b.to(device),
                    "labels": torch.from_numpy(cb.classes).long().to(device),
                    "ignore": ig.to(device),
                }
            )
        return out

    def targets(self, masks: torch.Tensor) -> Any:
        """Not used: detection targets come from the chip index's boxes (:meth:`batch_targets`)."""
        raise NotImplementedError("detection targets are boxes: use batch_targets")

    def loss(self, outputs: Any, targets: Any) -> torch.Tensor:
        """Not used: the detector computes its losses (:meth:`training_loss`)."""
        raise NotImplementedError("the detector computes its own loss")

    def forward(self, network: torch.nn.Module, x: torch.Tensor) -> Any:
        """Detections of whole chips, padded like prediction windows (:func:`pad_to_stride`)."""
        return network(pad_to_stride(x))

    def training_loss(
        self, network: torch.nn.Module, x: torch.Tensor, targets: Any
    ) -> torch.Tensor:
        """Focal classification loss + box regression loss (torchvision's RetinaNet)."""
        losses = network(pad_to_stride(x), targets)
        return cast(torch.Tensor, sum(losses.values()))

    def validation_metric(self, device: torch.device) -> BoxValidation:
        """AP at IoU 0.5 over the validation chips."""
        return BoxValidation(self)

    def card_fields(self, region: Region) -> dict[str, Any]:
        """Score threshold (the region's, else the best on validation) and NMS IoU."""
        fields = super().card_fields(region)
        if region.predict.threshold_set is None and self.best_threshold is not None:
            log.info(
                "score threshold %.2f (best object F1 at IoU 0.4 on validation)",
                self.best_threshold,
            )
        return {**fields, "nms_iou": region.predict.nms_iou}


class BoxValidation:
    """One validation pass: AP50 (what early stopping maximises) and the best threshold."""

    def __init__(self, task: DetectionTask) -> None:
        self.task = task
        self.preds: list[dict[str, np.ndarray]] = []
        self.truths: list[dict[str, np.ndarray]] = []

    def update(self, outputs: Any, targets: Any) -> None:
        """Add a batch of detections and their box targets."""
        for o, t in zip(outputs, targets, strict=True):
            self.preds.append(
                {
                    "boxes": o["boxes"].detach().float().cpu().numpy(),
                    "scores": o["scores"].detach().float().cpu().numpy(),
                    "labels": o["labels"].cpu().numpy().astype(np.int64),
                }
            )
            self.truths.append(
                {
                    "boxes": t["boxes"].cpu().numpy(),
                    "labels": t["labels"].cpu().numpy().astype(np.int64),
                    "ignore": t["ignore"].cpu().numpy(),
                }
            )

    def compute(self) -> float:
        """AP50 (0 when undefined); remembers the F1-best threshold of the best pass.

        Boxes under ``[predict] min_area_m2`` are left out on both sides, as evaluate
        leaves them out (:func:`~geotl.evaluate.detection.without_small_boxes`): the score
        threshold is chosen on the boxes predict writes.
        """
        from geotl.evaluate import average_precision_50, match_boxes
        from geotl.evaluate.detection import without_small_boxes

        preds, truths = self.preds, self.truths
        if self.task.min_box_px:  # boxes predict drops are neither found nor missed
            preds, truths, _ = without_small_boxes(
                preds, truths, [self.task.min_box_px] * len(preds)
            )
        ap = average_precision_50(preds, truths)
        score = 0.0 if np.isnan(ap) else ap
        if score > self.task.best_score:
            self.task.best_score = score
            counts = np.zeros((len(_THRESHOLDS), 3), dtype=np.int64)
            for p, t in zip(preds, truths, strict=True):
                for k, thr in enumerate(_THRESHOLDS):
                    keep = p["scores"] >= thr
                    for c in np.unique(np.concatenate([p["labels"], t["labels"]])):
                        counts[k] += match_boxes(
                            p["boxes"][keep & (p["labels"] == c)],
                            t["boxes"][t["labels"] == c],
                            _SELECT_IOU,
                            t["ignore"],
                        )
            f1 = np.nan_to_num(precision_recall_f1(counts[:, 0], counts[:, 1], counts[:, 2])[2])
            self.task.best_threshold = float(_THRESHOLDS[int(np.argmax(f1))])
        return score
