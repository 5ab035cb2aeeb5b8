"""Instance targets: where objects meet, derived from the label polygons (pure arithmetic).

For ``task = "instances"`` the network learns, beside the class of each pixel, two more
maps that say where one object ends and the next begins:

* **border**: object pixels within ``border_px`` of their object's edge (next to
  background or to another object);
* **contact**: pixels (object or background) within ``contact_px`` of two or more
  different objects: the narrow zone where touching neighbours would merge.

Prediction seeds one object per interior core (foreground, not border, not contact) and
grows the seeds over the foreground with a watershed
(:mod:`geotl.predict.objects.instances`).

>>> inst = np.zeros((5, 8), dtype=np.int32)
>>> inst[1:4, 1:4] = 1
>>> inst[1:4, 4:7] = 2
>>> border, contact = instance_targets(inst, border_px=1, contact_px=1)
>>> border.astype(int).tolist()[2]
[0, 1, 0, 1, 1, 0, 1, 0]
>>> contact.astype(int).tolist()[2]
[0, 0, 0, 1, 1, 0, 0, 0]
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from affine import Affine
from rasterio.features import rasterize
from scipy import ndimage

from geotl.chips.labels import IGNORE

if TYPE_CHECKING:
    from geotl.config import Region

__all__ = [
    "BORDER_PX",
    "CONTACT_PX",
    "chip_instance_targets",
    "instance_targets",
    "rasterize_instances",
]

BORDER_PX = 1
CONTACT_PX = 2


def _disk(radius: int) -> npt.NDArray[np.bool_]:
    r = np.arange(-radius, radius + 1)
    return np.asarray((r[:, None] ** 2 + r[None, :] ** 2) <= radius * radius)


def instance_targets(
    instances: npt.NDArray[np.integer[Any]],
    border_px: int = BORDER_PX,
    contact_px: int = CONTACT_PX,
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """Border and contact maps of an instance-id raster (0 background, ids >= 1).

    Args:
        instances: ``(H, W)`` object ids; touching objects have different ids.
        border_px: border width inside each object.
        contact_px: how near two objects a pixel must be to count as contact.

    Returns:
        ``(border, contact)``, boolean ``(H, W)`` each.
    """
    inst = np.asarray(instances)
    big = 2**40  # above any id; exact as the float cval ndimage takes
    as64 = inst.astype(np.int64)
    fg = inst > 0
    fp = _disk(max(border_px, 1))
    hi = ndimage.maximum_filter(as64, footprint=fp, mode="nearest")
    lo = ndimage.minimum_filter(as64, footprint=fp, mode="nearest")
    border = fg & (hi != lo)
    fc = _disk(max(contact_px, 1))
    hi_c = ndimage.maximum_filter(as64, footprint=fc, mode="constant", cval=0)
    lo_c = ndimage.minimum_filter(np.where(fg, as64, big), footprint=fc, mode="constant", cval=big)
    contact = (lo_c != big) & (hi_c != lo_c)
    return border, contact


def rasterize_instances(
    geometries: Sequence[Any], transform: Affine, height: int, width: int
) -> npt.NDArray[np.int32]:
    """Burn polygons as ids ``1..n`` (in the given order; later ones win where they overlap).

    Pixel centres decide, as for the class masks (:func:`geotl.chips.labels.rasterize_chip`).

    >>> from shapely.geometry import box
    >>> rasterize_instances([box(0, -2, 2, 0), box(2, -2, 4, 0)], Affine(1, 0, 0, 0, -1, 0), 2, 4).tolist()
    [[1, 1, 2, 2], [1, 1, 2, 2]]
    """
    out = np.zeros((height, width), dtype=np.int32)
    shapes = [(g, i) for i, g in enumerate(geometries, start=1) if g is not None and not g.is_empty]
    if shapes:
        rasterize(shapes, out=out, transform=transform, all_touched=False, dtype="int32")
    return out


def chip_instance_targets(
    region: Region, chips_dir: Path, chip_ids: list[str], masks: npt.NDArray[np.uint8]
) -> npt.NDArray[np.uint8]:
    """Border and contact targets of chips, from the region's label polygons.

    Each chip's labels are burnt as separate objects (in label file order) and turned into
    :func:`instance_targets`; pixels the class mask ignores (255) are ignored here too.

    Args:
        region: the region whose ``[labels]`` the chips were cut from.
        chips_dir: the chips folder (its index gives each chip's file).
        chip_ids: the chips, in the order of ``masks``.
        masks: ``(N, H, W)`` class masks (255 ignore).

    Returns:
        ``(N, 2, H, W)`` uint8: 1/0 border, 1/0 contact, 255 ignore.
    """
    import rasterio
    from shapely.geometry import box

    from geotl.chips.index import read_chip_index
    from geotl.io.vectors import chip_areas, label_key, read_labels

    out = np.zeros((len(chip_ids), 2, *masks.shape[1:]), dtype=np.uint8)
    if not chip_ids:
        return out
    frame = read_chip_index(chips_dir).frame.set_index("chip_id")
    labels_by_crs: dict[tuple[str, float | None], Any] = {}
    within = chip_areas(frame.loc[chip_ids])  # not the rest of a national layer
    for i, chip_id in enumerate(chip_ids):
        with rasterio.open(chips_dir / str(frame.loc[chip_id, "image"])) as src:
            transform, crs, bounds, (h, w) = src.transform, src.crs, src.bounds, src.shape
        key = label_key(crs, bounds)
        if key not in labels_by_crs:
            labels_by_crs[key] = read_labels(region, crs, key[1], within=within).sort_values(
                "label_id"
            )
        labels = labels_by_crs[key]
        near = labels.iloc[sorted(labels.sindex.query(box(*bounds), predicate="intersects"))]
        inst = rasterize_instances(list(near.geometry), transform, h, w)
        border, contact = instance_targets(inst)
        out[i, 0], out[i, 1] = border, contact
        out[i, :, masks[i] == IGNORE] = IGNORE
    return out
