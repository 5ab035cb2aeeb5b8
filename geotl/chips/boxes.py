"""Object boxes of a chip: label envelopes in chip pixels, and the chip-edge rule.

Detection trains on boxes, not masks. Each label's box is the envelope of its polygon in
the scene's pixel grid (a rectangle stays that rectangle). A chip stores, per object that
touches it:

- the box clipped to the chip, when at least :data:`MIN_VISIBLE_FRACTION` of the object's
  box area lies inside the chip (the detector should find what is mostly visible);
- otherwise the clipped part as an *ignore* box: a sliver of a crown cut by the chip edge
  is neither an object to find nor background to learn, so no loss is taken there.

Boxes narrower or shorter than :data:`MIN_BOX_PX` pixels at the chip resolution cannot be
learnt by a detector whose finest feature map has a stride of 8 px: they are dropped (and
counted) before any chip is cut.

All arithmetic here is pure numpy; the chip pipeline calls it once per chip.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import shapely
from affine import Affine

__all__ = [
    "MIN_BOX_PX",
    "MIN_VISIBLE_FRACTION",
    "ChipBoxes",
    "chip_boxes",
    "flat_boxes",
    "index_boxes",
    "pixel_boxes",
    "small_boxes",
    "unflat_boxes",
    "unseen_boxes",
]

MIN_VISIBLE_FRACTION = 0.5
MIN_BOX_PX = 2.0


@dataclass  # not frozen: Lightning copies batches field by field
class ChipBoxes:
    """The boxes of one chip, in chip pixel coordinates ``(x0, y0, x1, y1)``.

    Attributes:
        boxes: ``(n, 4)`` float32, objects to detect (clipped to the chip).
        classes: ``(n,)`` class ids (1-based, as in the masks).
        object_ids: ``(n,)`` label ids of the boxes' objects.
        ignore: ``(m, 4)`` float32, areas where no loss is taken (objects mostly outside).
        ignore_ids: ``(m,)`` label ids of the ignored objects.
    """

    boxes: npt.NDArray[np.float32]
    classes: npt.NDArray[np.int64]
    object_ids: npt.NDArray[np.int64]
    ignore: npt.NDArray[np.float32]
    ignore_ids: npt.NDArray[np.int64]


def pixel_boxes(geoms: npt.NDArray[np.object_], transform: Affine) -> npt.NDArray[np.float64]:
    """Envelopes of polygons in the pixel grid of ``transform``: ``(n, 4)`` col/row bounds.

    >>> from shapely.geometry import box
    >>> t = Affine(0.5, 0, 100, 0, -0.5, 200)
    >>> pixel_boxes(np.array([box(101, 195, 103, 199)], dtype=object), t).tolist()
    [[2.0, 2.0, 6.0, 10.0]]
    """
    if len(geoms) == 0:
        return np.zeros((0, 4), dtype=np.float64)
    inv = ~transform

    def to_px(xy: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        x, y = xy[:, 0], xy[:, 1]
        return np.stack([inv.a * x + inv.b * y + inv.c, inv.d * x + inv.e * y + inv.f], axis=1)

    return np.asarray(shapely.bounds(shapely.transform(geoms, to_px)), dtype=np.float64)


def unseen_boxes(px_boxes: npt.NDArray[np.float64], chip_px: int) -> npt.NDArray[np.bool_]:
    """Boxes no chip of ``chip_px`` shows at :data:`MIN_VISIBLE_FRACTION` or more.

    Such an object (a building larger than the chip) is an ignore box in every chip: a
    detector never learns it.

    >>> unseen_boxes(np.array([[0, 0, 200, 10], [0, 0, 100, 60]]), 64).tolist()
    [True, False]
    """
    w = px_boxes[:, 2] - px_boxes[:, 0]
    h = px_boxes[:, 3] - px_boxes[:, 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        best = np.minimum(w, chip_px) * np.minimum(h, chip_px) / (w * h)
    return np.asarray((w * h > 0) & (best < MIN_VISIBLE_FRACTION))


def small_boxes(px_boxes: npt.NDArray[np.float64]) -> npt.NDArray[np.bool_]:
    """Boxes narrower or shorter than :data:`MIN_BOX_PX` pixels.

    >>> small_boxes(np.array([[0, 0, 1.5, 10], [0, 0, 2, 2]])).tolist()
    [True, False]
    """
    w = px_boxes[:, 2] - px_boxes[:, 0]
    h = px_boxes[:, 3] - px_boxes[:, 1]
    return np.asarray((w < MIN_BOX_PX) | (h < MIN_BOX_PX))


def chip_boxes(
    px_boxes: npt.NDArray[np.float64],
    classes: npt.NDArray[np.int64],
    object_ids: npt.NDArray[np.int64],
    row_off: int,
    col_off: int,
    height: int,
    width: int,
) -> ChipBoxes:
    """Apply the chip-edge rule to the scene-pixel boxes of the objects touching a chip.

    Args:
        px_boxes: ``(n, 4)`` boxes in scene pixels (from :func:`pixel_boxes`).
        classes: ``(n,)`` class ids.
        object_ids: ``(n,)`` label ids.
        row_off: the chip's first row in the scene.
        col_off: the chip's first column in the scene.
        height: chip height in pixels.
        width: chip width in pixels.

    >>> b = np.array([[-4.0, 0, 6, 10], [-8, 0, 2, 10], [20, 20, 30, 30]])
    >>> cb = chip_boxes(b, np.array([1, 1, 1]), np.array([7, 8, 9]), 0, 0, 16, 16)
    >>> cb.boxes.tolist(), cb.object_ids.tolist(), cb.ignore.tolist(), cb.ignore_ids.tolist()
    ([[0.0, 0.0, 6.0, 10.0]], [7], [[0.0, 0.0, 2.0, 10.0]], [8])
    """
    b = np.asarray(px_boxes, dtype=np.float64).reshape(-1, 4) - [col_off, row_off, col_off, row_off]
    clipped = np.column_stack(
        [
            np.clip(b[:, 0], 0, width),
            np.clip(b[:, 1], 0, height),
            np.clip(b[:, 2], 0, width),
            np.clip(b[:, 3], 0, height),
        ]
    )
    full = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    inside = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
    present = inside > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        fraction = np.where(full > 0, inside / full, 0.0)
    keep = present & (fraction >= MIN_VISIBLE_FRACTION)
    ignore = present & ~keep
    cls = np.asarray(classes, dtype=np.int64)
    ids = np.asarray(object_ids, dtype=np.int64)
    return ChipBoxes(
        boxes=clipped[keep].astype(np.float32),
        classes=cls[keep],
        object_ids=ids[keep],
        ignore=clipped[ignore].astype(np.float32),
        ignore_ids=ids[ignore],
    )


def flat_boxes(boxes: npt.NDArray[np.floating]) -> list[float]:
    """``(n, 4)`` boxes as the flat list stored in the chip index (2 decimals).

    >>> flat_boxes(np.array([[0, 1, 2.125, 3]]))
    [0.0, 1.0, 2.12, 3.0]
    """
    return [round(float(v), 2) for v in np.asarray(boxes).ravel()]


def unflat_boxes(values: object) -> npt.NDArray[np.float32]:
    """A chip index's flat box list back to ``(n, 4)`` float32.

    >>> unflat_boxes([0, 1, 2, 3]).tolist()
    [[0.0, 1.0, 2.0, 3.0]]
    """
    arr = np.asarray(values if values is not None else [], dtype=np.float32)
    return arr.reshape(-1, 4)


def index_boxes(
    rows: Any,
    chip_classes: list[str],
    classes: list[str],
    sampled: set[int] | None = None,
) -> list[ChipBoxes]:
    """The boxes of chip index rows, classes mapped by name onto ``classes``.

    Args:
        rows: chip index rows (a DataFrame, in the order wanted).
        chip_classes: the chips' classes (``chipset.json``), for the stored class ids.
        classes: the model's classes; boxes of other classes become ignore boxes.
        sampled: under a label budget, the object ids training may use: boxes of the
            others become ignore boxes (neither object nor background).
    """
    remap = np.array(
        [0, *[classes.index(c) + 1 if c in classes else 0 for c in chip_classes]], dtype=np.int64
    )
    out = []
    for boxes, cls, ids, ignore in zip(
        rows["boxes"],
        rows["box_classes"],
        rows["box_object_ids"],
        rows["ignore_boxes"],
        strict=True,
    ):
        b = unflat_boxes(boxes)
        c = remap[np.asarray(cls, dtype=np.int64)] if len(b) else np.zeros(0, np.int64)
        i = np.asarray(ids, dtype=np.int64).reshape(-1)
        use = c > 0
        if sampled is not None:
            use &= np.isin(i, np.fromiter(sampled, dtype=np.int64, count=len(sampled)))
        out.append(
            ChipBoxes(
                boxes=b[use],
                classes=c[use],
                object_ids=i[use],
                ignore=np.concatenate([unflat_boxes(ignore), b[~use]]),
                ignore_ids=np.zeros(0, np.int64),
            )
        )
    return out
