"""Guard bands: ignore pixels that keep the splits apart without dropping chips.

Every chip keeps its split. Where a chip lies within ``guard_px`` pixels of a chip of a
split that ranks above its own (train < val < test), the pixels of its mask within that
distance of the other chip become ignore (255): train gives way to val and test, val
gives way to test. So no labelled training pixel lies within ``guard_px`` pixels of a
val or test pixel, and no labelled val pixel within ``guard_px`` of a test pixel, while
the image pixels stay (context for the network). The band is a square buffer (Chebyshev
distance) around the other chip's footprint, in the chip's own CRS and pixels.

Designated areas (``[split] test_within`` / ``val_within``) are ground of their split
whether or not a chip of it covers them (a chip is test when its centre lies in a test
area, so the parts of an area under chips centred outside it belong to other splits'
chips): a chip gives way to the designated areas of the splits above its own just as it
does to their chips, band included.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import rasterio
import rasterio.features
import shapely
from affine import Affine
from pyproj import CRS, Transformer
from shapely.geometry.base import BaseGeometry
from shapely.ops import transform as shapely_transform

from geotl.chips.boxes import ChipBoxes
from geotl.chips.labels import IGNORE
from geotl.chips.split import SPLIT_RANK, guard_pairs

__all__ = ["GuardChip", "GuardReport", "apply_guard_bands", "band_mask", "guard_boxes"]


@dataclass(frozen=True)
class GuardChip:
    """What guard bands need to know of one chip."""

    mask_path: Path
    crs: CRS
    transform: Affine  # the chip's own transform
    width: int
    height: int
    resolution_m: float
    footprint_native: BaseGeometry  # in ``crs``
    # designated areas near the chip, by split (``test`` / ``val``), in ``crs``
    areas: Mapping[str, Sequence[BaseGeometry]] = field(default_factory=dict)


@dataclass
class GuardReport:
    """What the guard bands took: chips touched and labelled pixels turned to ignore."""

    guard_px: int
    chips: dict[str, int] = field(default_factory=dict)  # per split
    pixels: dict[str, int] = field(default_factory=dict)  # labelled pixels -> ignore, per split
    # of those, the pixels of objects (any class but background), per split
    object_pixels: dict[str, int] = field(default_factory=dict)

    def total_pixels(self) -> int:
        """Labelled pixels the bands took, all splits."""
        return sum(self.pixels.values())


def band_mask(
    chip: GuardChip, others: Sequence[BaseGeometry], guard_px: int
) -> npt.NDArray[np.bool_]:
    """Pixels of ``chip`` within ``guard_px`` pixels of any footprint in ``others``.

    ``others`` are in the chip's CRS. A pixel is in the band when any part of it comes
    within the distance (``all_touched``), so a pixel centre outside the band is more than
    ``guard_px`` pixels away from every pixel of the other chips.

    >>> from shapely.geometry import box
    >>> chip = GuardChip(Path("m.tif"), CRS.from_epsg(32617), Affine(1, 0, 0, 0, -1, 8), 8, 8, 1.0, box(0, 0, 8, 8))
    >>> band_mask(chip, [box(8, 0, 16, 8)], 2).sum(axis=0).tolist()
    [0, 0, 0, 0, 0, 0, 8, 8]
    """
    distance = guard_px * _pixel_size(chip.transform)
    grown = [
        shapely.buffer(g, distance, join_style="mitre", cap_style="square") if distance else g
        for g in others
    ]
    band: npt.NDArray[np.bool_] = rasterio.features.geometry_mask(
        grown,
        out_shape=(chip.height, chip.width),
        transform=chip.transform,
        invert=True,
        all_touched=True,
    )
    return band


def apply_guard_bands(
    chips: Sequence[GuardChip],
    footprints_common: Sequence[BaseGeometry],
    common_crs: str,
    splits: Sequence[str],
    guard_px: int,
    write_mask: Callable[[int, npt.NDArray[np.uint8], npt.NDArray[np.bool_]], None],
) -> tuple[GuardReport, dict[int, npt.NDArray[np.uint8]]]:
    """Turn the guard bands of every chip into ignore pixels of its mask.

    Args:
        chips: per chip, its mask file and native geometry.
        footprints_common: chip footprints in ``common_crs`` (to find neighbours).
        common_crs: the frame of ``footprints_common`` (EPSG:4326).
        splits: split per chip.
        guard_px: band width in pixels of the chip being banded.
        write_mask: rewrites chip ``i``'s mask from a ``(H, W)`` uint8 array (its band,
            ``(H, W)`` bool, comes along for the chip's other labels, e.g. boxes).

    Returns:
        The report and the new masks of the chips that changed (by chip index).
    """
    report = GuardReport(guard_px=guard_px)
    changed: dict[int, npt.NDArray[np.uint8]] = {}
    if not chips:
        return report, changed
    # neighbours within the widest band, found in the common frame (degrees: generous)
    max_m = max(guard_px * c.resolution_m for c in chips)
    pairs = guard_pairs(footprints_common, splits, _metres_to_degrees(max_m, footprints_common))
    transformers: dict[tuple[str, str], Transformer] = {}
    for i, chip in enumerate(chips):
        others = _areas_near(chip, splits[i], guard_px)
        for j in pairs.get(i, []):
            other = chips[j]
            if other.crs == chip.crs:
                others.append(other.footprint_native)
                continue
            key = (common_crs, chip.crs.to_wkt())
            if key not in transformers:
                transformers[key] = Transformer.from_crs(common_crs, chip.crs, always_xy=True)
            others.append(shapely_transform(transformers[key].transform, footprints_common[j]))
        if not others:
            continue
        band = band_mask(chip, others, guard_px)
        if not band.any():
            continue
        with rasterio.open(chip.mask_path) as src:
            mask = src.read(1)
        taken = band & (mask != IGNORE)
        if not taken.any():
            continue
        objects = int((taken & (mask > 0)).sum())  # IGNORE excluded by taken
        mask[band] = IGNORE
        write_mask(i, mask, band)
        changed[i] = mask
        s = splits[i]
        report.chips[s] = report.chips.get(s, 0) + 1
        report.pixels[s] = report.pixels.get(s, 0) + int(taken.sum())
        report.object_pixels[s] = report.object_pixels.get(s, 0) + objects
    return report, changed


def _areas_near(chip: GuardChip, split: str, guard_px: int) -> list[BaseGeometry]:
    """The designated areas of the splits above ``split`` within the chip's band."""
    above = [a for s, a in chip.areas.items() if SPLIT_RANK[s] > SPLIT_RANK[split]]
    if not above:
        return []
    reach = shapely.buffer(chip.footprint_native, (guard_px + 1) * _pixel_size(chip.transform))
    return [g for areas in above for g in areas if g.intersects(reach)]


def guard_boxes(boxes: ChipBoxes, band: npt.NDArray[np.bool_]) -> ChipBoxes:
    """Object boxes that reach into the band become ignore boxes (no loss there).

    >>> b = ChipBoxes(np.array([[0, 0, 2, 2], [5, 5, 8, 8]], np.float32), np.array([1, 1]),
    ...     np.array([7, 9]), np.zeros((0, 4), np.float32), np.zeros(0, np.int64))
    >>> band = np.zeros((8, 8), bool); band[:, 6:] = True
    >>> guard_boxes(b, band).ignore_ids.tolist()
    [9]
    """
    if not len(boxes.boxes):
        return boxes
    hit = np.array(
        [
            band[int(y0) : int(np.ceil(y1)), int(x0) : int(np.ceil(x1))].any()
            for x0, y0, x1, y1 in boxes.boxes
        ],
        dtype=bool,
    )
    if not hit.any():
        return boxes
    return ChipBoxes(
        boxes=boxes.boxes[~hit],
        classes=boxes.classes[~hit],
        object_ids=boxes.object_ids[~hit],
        ignore=np.concatenate([boxes.ignore, boxes.boxes[hit]]).astype(np.float32),
        ignore_ids=np.concatenate([boxes.ignore_ids, boxes.object_ids[hit]]).astype(np.int64),
    )


def _pixel_size(transform: Affine) -> float:
    return float(max(abs(transform.a), abs(transform.e), abs(transform.b), abs(transform.d)))


def _metres_to_degrees(metres: float, footprints: Sequence[BaseGeometry]) -> float:
    """A distance in degrees at least ``metres`` anywhere among the footprints."""
    ymax = max(abs(g.bounds[1]) for g in footprints)
    ymax = max(ymax, max(abs(g.bounds[3]) for g in footprints))
    cos = max(float(np.cos(np.radians(min(ymax, 89.0)))), 1e-3)
    return 1.5 * metres / (111_320.0 * cos) + 1e-9
