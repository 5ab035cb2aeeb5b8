"""The object detector: torchvision's RetinaNet on a timm backbone with a feature pyramid.

The backbone is a timm feature extractor (``features_only``; strides 8, 16 and 32) under a
torchvision :class:`~torchvision.ops.FeaturePyramidNetwork` with P6/P7, and RetinaNet's
classification and box heads (group-normalised, as in RetinaNet v2). Nothing is fetched
from any hub: torchvision builds the detector without weights and geotl loads the base
model's backbone weights itself (:func:`build_adapted_detector`).

Inputs are batches already normalised with the model card's statistics, in windows whose
sides are multiples of 32 px: the detector neither resizes nor re-normalises (its
``transform`` is an identity), so box coordinates are window pixels.

Labels are the class ids of the chip masks (1..K; 0 is an unused background logit, as in
torchvision's own fine-tuning recipe). Training targets may hold ``ignore`` boxes: anchors
mostly inside one are neither foreground nor background (see :mod:`geotl.chips.boxes`).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from functools import partial
from typing import Any, Literal, cast

import torch
from torch import Tensor, nn
from torchvision.models.detection import RetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.retinanet import RetinaNetHead
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import FeaturePyramidNetwork, box_area, box_iou
from torchvision.ops.feature_pyramid_network import LastLevelP6P7

from geotl.errors import BandMismatchError, BaseModelError
from geotl.models.adapt import BandPlan, adapt_first_conv
from geotl.models.catalogue import LoadedBase
from geotl.models.network import NetworkSpec

__all__ = [
    "DETECTIONS_PER_WINDOW",
    "DETECTOR_ARCH",
    "SCORE_THRESH",
    "TOPK_CANDIDATES",
    "AnchorRows",
    "GeotlRetinaNet",
    "build_adapted_detector",
    "build_detector",
    "level_anchors",
    "select_detections",
    "timm_backbone_name",
]

log = logging.getLogger(__name__)

DETECTOR_ARCH: Literal["retinanet"] = "retinanet"
# anchor base sizes (px) of the pyramid levels P3..P7, each at three scales and three
# aspect ratios: from ~16 px (vehicles at 0.3 m) to ~400 px (large crowns at 0.1 m)
ANCHOR_SIZES: tuple[int, ...] = (16, 32, 64, 128, 256)
# how much of an anchor must lie inside an ignore box for it to be left out of the loss
IGNORE_IOA = 0.5
# RetinaNet's own post-processing per window (torchvision's names), shared by the PyTorch
# network and the ONNX path (select_detections): the lowest score considered, the best
# candidates kept per pyramid level, the boxes kept per window after suppression
SCORE_THRESH = 0.05
TOPK_CANDIDATES = 1000
DETECTIONS_PER_WINDOW = 300
# the timm architectures a detector can be built on (smp encoder name -> timm name)
_TIMM = {
    "tu-tf_efficientnet_lite0": "tf_efficientnet_lite0",
    "resnet18": "resnet18",
    "resnet34": "resnet34",
    "resnet50": "resnet50",
    "resnet152": "resnet152",
}


def timm_backbone_name(encoder: str) -> str:
    """The timm model a catalogue encoder maps to.

    >>> timm_backbone_name("tu-tf_efficientnet_lite0")
    'tf_efficientnet_lite0'

    Raises:
        BaseModelError: the architecture has no detector backbone in geotl.
    """
    if encoder in _TIMM:
        return _TIMM[encoder]
    if encoder.startswith("tu-"):
        return encoder.removeprefix("tu-")
    raise BaseModelError(
        f"architecture {encoder} cannot be a detector backbone: use pkg:efficientnet-lite0, a "
        "torchgeo ResNet, a model: base trained for detection, or none"
    )


class _Backbone(nn.Module):
    """timm features (strides 8, 16, 32) + a feature pyramid P3..P7."""

    def __init__(self, timm_name: str, in_channels: int, out_channels: int) -> None:
        import timm

        super().__init__()
        self.body = timm.create_model(
            timm_name,
            features_only=True,
            out_indices=(2, 3, 4),
            pretrained=False,
            in_chans=in_channels,
        )
        channels = list(cast(Any, self.body).feature_info.channels())
        self.fpn = FeaturePyramidNetwork(
            channels, out_channels, extra_blocks=LastLevelP6P7(out_channels, out_channels)
        )
        self.out_channels = out_channels

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        feats = self.body(x)
        out: dict[str, Tensor] = self.fpn(OrderedDict((str(i), f) for i, f in enumerate(feats)))
        return out


class _NoTransform(GeneralizedRCNNTransform):
    """No resizing, no normalisation: the batch is already the model's input."""

    def forward(  # type: ignore[override]
        self, images: Any, targets: list[dict[str, Tensor]] | None = None
    ) -> tuple[ImageList, list[dict[str, Tensor]] | None]:
        batch = images if isinstance(images, Tensor) else torch.stack(list(images))
        sizes = [(int(batch.shape[-2]), int(batch.shape[-1]))] * int(batch.shape[0])
        return ImageList(batch, sizes), targets

    def postprocess(  # type: ignore[override]
        self, result: list[dict[str, Tensor]], image_shapes: Any, original_image_sizes: Any
    ) -> list[dict[str, Tensor]]:
        return result


class GeotlRetinaNet(RetinaNet):
    """RetinaNet whose training targets may carry ``ignore`` boxes (no loss there)."""

    def compute_loss(  # type: ignore[override]
        self,
        targets: list[dict[str, Tensor]],
        head_outputs: dict[str, Tensor],
        anchors: list[Tensor],
    ) -> dict[str, Tensor]:
        """Focal and box losses; anchors mostly inside an ignore box are left out of both."""
        matched = []
        for anchors_i, target in zip(anchors, targets, strict=True):
            if target["boxes"].numel() == 0:
                m = torch.full((anchors_i.size(0),), -1, dtype=torch.int64, device=anchors_i.device)
            else:
                m = self.proposal_matcher(box_iou(target["boxes"], anchors_i))
            ignore = target.get("ignore")
            if ignore is not None and ignore.numel():
                m = torch.where((m == -1) & (_max_ioa(anchors_i, ignore) >= IGNORE_IOA), -2, m)
            matched.append(m)
        out: dict[str, Tensor] = self.head.compute_loss(targets, head_outputs, anchors, matched)
        return out


def _max_ioa(anchors: Tensor, areas: Tensor) -> Tensor:
    """Per anchor: the largest share of its area inside any of ``areas``."""
    lt = torch.max(anchors[:, None, :2], areas[None, :, :2])
    rb = torch.min(anchors[:, None, 2:], areas[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=2)
    ioa: Tensor = (inter / box_area(anchors).clamp(min=1e-6)[:, None]).max(dim=1).values
    return ioa


def build_detector(spec: NetworkSpec) -> GeotlRetinaNet:
    """An untrained detector for ``spec`` (``arch = "retinanet"``)."""
    backbone = _Backbone(timm_backbone_name(spec.encoder), spec.in_channels, spec.fpn_channels)
    sizes = tuple((s, round(s * 2 ** (1 / 3)), round(s * 2 ** (2 / 3))) for s in spec.anchor_sizes)
    anchors = AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * len(sizes))
    head = RetinaNetHead(
        backbone.out_channels,
        anchors.num_anchors_per_location()[0],
        spec.num_classes,
        norm_layer=partial(nn.GroupNorm, 32),
    )
    net = GeotlRetinaNet(
        backbone,
        spec.num_classes,
        anchor_generator=anchors,
        head=head,
        score_thresh=SCORE_THRESH,
        nms_thresh=0.5,
        detections_per_img=DETECTIONS_PER_WINDOW,
        topk_candidates=TOPK_CANDIDATES,
    )
    net.transform = _NoTransform(32, 32, [0.0], [1.0])
    return net


def build_adapted_detector(
    base: LoadedBase,
    region_bands: list[str],
    classes: list[str],
    seed: int = 0,
    encoder: str | None = None,
) -> tuple[nn.Module, NetworkSpec, BandPlan | None]:
    """A detector for ``classes`` on the region's bands, initialised from ``base``.

    - pretrained bases (``pkg:efficientnet-lite0``, torchgeo ResNets): the backbone gets
      the base's weights, first convolution band-adapted by name; pyramid and heads new;
    - ``model:`` bases (a geotl detection model): everything reused, the classification
      head's outputs mapped by class name (new classes get fresh outputs);
    - ``none``: random initialisation (``encoder`` picks the architecture).

    Raises:
        BaseModelError: a ``model:`` base that is not a detector, or weights that do not fit.
        BandMismatchError: the bands cannot be mapped.
    """
    torch.manual_seed(seed)
    card = base.card
    if card is not None and card.task != "detection":
        raise BaseModelError(
            f"base {base.entry.id} is a {card.task} model, the region's task is detection: "
            "use a detection model, a pretrained backbone (pkg:efficientnet-lite0) or none"
        )
    if card is not None:
        enc = card.network.encoder
    elif base.entry.id == "none":
        enc = encoder or base.entry.encoder or "tu-tf_efficientnet_lite0"
    else:
        enc = base.entry.encoder or encoder or "tu-tf_efficientnet_lite0"
    spec = NetworkSpec(
        arch=DETECTOR_ARCH, encoder=enc, in_channels=len(region_bands), num_classes=len(classes) + 1
    )
    net = build_detector(spec)
    if base.entry.id == "none":
        return net, spec, None
    body = cast(nn.Module, cast(Any, net.backbone).body)
    conv = next(n for n, m in body.named_modules() if isinstance(m, nn.Conv2d)) + ".weight"
    if base.full_state is not None:  # model: base, a geotl detector
        state = {
            k.removeprefix("backbone.body."): v
            for k, v in base.full_state.items()
            if k.startswith("backbone.body.")
        }
    else:
        state = {k.removeprefix("model."): v for k, v in base.encoder_state.items()}
    if conv not in state:
        raise BaseModelError(f"weights of {base.entry.id} have no '{conv}' for a {enc} backbone")
    base_bands = list(base.entry.bands)
    if not base_bands:
        if state[conv].shape[1] != len(region_bands):
            raise BandMismatchError(
                f"the weights take {state[conv].shape[1]} bands, the region has {len(region_bands)} "
                f"({region_bands}) and the file names none: export weights for these bands"
            )
        base_bands = list(region_bands)
    state, plan = adapt_first_conv(state, region_bands, base_bands, seed=seed, key=conv)
    own = body.state_dict()
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or wrong:
        first = (missing or wrong)[0]
        raise BaseModelError(
            f"weights of {base.entry.id} do not fit a {enc} backbone: {len(missing)} missing, "
            f"{len(wrong)} of another shape (first: {first})"
        )
    body.load_state_dict({k: state[k] for k in own if k in state}, strict=False)
    if base.full_state is not None and base.classes is not None:
        _reuse_heads(net, base.full_state, base.classes, classes)
    return net, spec, plan


def _reuse_heads(net: nn.Module, full: dict[str, Tensor], old: list[str], new: list[str]) -> None:
    """Copy pyramid and heads; map the classification outputs by class name."""
    own = net.state_dict()
    cls_key = "head.classification_head.cls_logits."
    same = {
        k: v
        for k, v in full.items()
        if k in own and not k.startswith(("backbone.body.", cls_key)) and own[k].shape == v.shape
    }
    net.load_state_dict({**own, **same}, strict=True)
    old_names, new_names = ["background", *old], ["background", *new]
    k_old, k_new = len(old_names), len(new_names)
    params = dict(net.named_parameters())
    with torch.no_grad():
        for suffix in ("weight", "bias"):
            src, dst = full[cls_key + suffix], params[cls_key + suffix]
            n_anchors = dst.shape[0] // k_new
            src_v = src.reshape(n_anchors, k_old, *src.shape[1:])
            dst_v = dst.view(n_anchors, k_new, *dst.shape[1:])
            for j, name in enumerate(new_names):
                if name in old_names:
                    dst_v[:, j] = src_v[:, old_names.index(name)]
    log.info(
        "reused pyramid and heads of the base detector; classes kept %s, new %s",
        [c for c in new if c in old],
        [c for c in new if c not in old],
    )


class AnchorRows(nn.Module):
    """The detector up to every anchor's decoded box and class scores, as one tensor.

    ``(1, bands, tile, tile)`` normalised -> ``(1, anchors, 5 + classes)``, one row per
    anchor: ``cx, cy, w, h`` (window pixels), ``conf`` (the best object class's score) and
    ``p_0 .. p_K`` (sigmoid of each class logit; class 0 is the unused background logit).
    That is the YOLO v5/v7 layout QGIS's Deepness plugin reads, and what
    :func:`select_detections` turns into the same boxes as the PyTorch network. The
    anchors are fixed for the tile size, so they are constants here; :func:`level_anchors`
    says how many belong to each pyramid level (the per-level candidate limit needs it).

    Args:
        net: a detector (:func:`build_detector`).
        bands: its input bands.
        tile_px: the fixed window size.
    """

    def __init__(self, net: GeotlRetinaNet, bands: int, tile_px: int) -> None:
        super().__init__()
        self.net = net
        x = torch.zeros(1, bands, tile_px, tile_px)
        with torch.no_grad():
            feats = list(net.backbone(x).values())
            anchors = net.anchor_generator(ImageList(x, [(tile_px, tile_px)]), feats)[0]
        per_location = net.anchor_generator.num_anchors_per_location()[0]
        counts = [int(f.shape[-2] * f.shape[-1]) * per_location for f in feats]
        if counts != level_anchors(tile_px, per_location):  # the engine relies on the formula
            raise ValueError(f"anchors per level {counts} differ from level_anchors({tile_px})")
        widths = anchors[:, 2] - anchors[:, 0]
        heights = anchors[:, 3] - anchors[:, 1]
        # the anchors' sizes and centres, as torchvision's BoxCoder.decode_single takes them
        self.size: Tensor
        self.centre: Tensor
        self.register_buffer("size", torch.stack([widths, heights], dim=1))
        self.register_buffer("centre", anchors[:, :2] + 0.5 * self.size)

    def forward(self, x: Tensor) -> Tensor:
        """Rows ``cx, cy, w, h, conf, p_0..p_K`` of every anchor (see the class)."""
        net = self.net
        out = net.head(list(net.backbone(x).values()))
        codes = out["bbox_regression"][0]  # (anchors, 4)
        weights = torch.tensor(net.box_coder.weights, dtype=codes.dtype)
        codes = codes / weights
        # BoxCoder.decode_single's arithmetic, stopped at the centre and size
        centre = codes[:, :2] * self.size + self.centre
        size = torch.exp(codes[:, 2:].clamp(max=net.box_coder.bbox_xform_clip)) * self.size
        probs = torch.sigmoid(out["cls_logits"][0])
        conf = probs[:, 1:].max(dim=1, keepdim=True).values
        return torch.cat([centre, size, conf, probs], dim=1)[None]


def level_anchors(tile_px: int, per_location: int = 9) -> list[int]:
    """Anchors per pyramid level (P3..P7) of a detector on ``tile_px`` windows.

    P3..P5 are the backbone's strides 8, 16 and 32 (``tile_px`` is a multiple of 32); P6
    and P7 each halve the side, rounding up (3x3 convolutions of stride 2, padding 1).

    >>> level_anchors(256)
    [9216, 2304, 576, 144, 36]
    """
    sides = [tile_px // 8, tile_px // 16, tile_px // 32]
    sides += [-(-sides[-1] // 2)]
    sides += [-(-sides[-1] // 2)]
    return [side * side * per_location for side in sides]


def select_detections(
    rows: Tensor,
    level_anchors: list[int],
    tile_px: int,
    nms_iou: float,
    score_thresh: float = SCORE_THRESH,
) -> tuple[Tensor, Tensor, Tensor]:
    """RetinaNet's post-processing on :class:`AnchorRows` output of one window.

    The same steps as torchvision's ``RetinaNet.postprocess_detections``: per pyramid
    level, the (anchor, class) scores above ``score_thresh``, the best
    :data:`TOPK_CANDIDATES`; boxes clipped to the window; class-wise NMS at ``nms_iou``;
    the best :data:`DETECTIONS_PER_WINDOW`.

    Returns:
        Boxes ``(n, 4)`` x0 y0 x1 y1, scores ``(n,)`` and class ids ``(n,)``, best first.
    """
    from torchvision.ops import batched_nms, clip_boxes_to_image

    half = 0.5 * rows[:, 2:4]
    boxes = torch.cat([rows[:, :2] - half, rows[:, :2] + half], dim=1)
    probs = rows[:, 5:]
    classes = probs.shape[1]
    all_boxes, all_scores, all_labels = [], [], []
    start = 0
    for n in level_anchors:
        scores = probs[start : start + n].flatten()
        candidates = torch.where(scores > score_thresh)[0]
        top, order = scores[candidates].topk(min(TOPK_CANDIDATES, candidates.numel()))
        candidates = candidates[order]
        anchor = torch.div(candidates, classes, rounding_mode="floor") + start
        all_boxes.append(clip_boxes_to_image(boxes[anchor], (tile_px, tile_px)))
        all_scores.append(top)
        all_labels.append(candidates % classes)
        start += n
    b, s, lab = torch.cat(all_boxes), torch.cat(all_scores), torch.cat(all_labels)
    keep = batched_nms(b, s, lab, nms_iou)[:DETECTIONS_PER_WINDOW]
    return b[keep], s[keep], lab[keep]
