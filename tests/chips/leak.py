"""The no-leak check on a chips folder: no labelled pixel lies within the guard band.

For every pair of chips where one ranks lower (train < val < test), every labelled pixel
(mask != 255) of the lower chip must lie more than ``guard_px`` pixels (Chebyshev, pixel
centre to the other chip's footprint) away from the higher chip. Footprints are read from
the mask files (native CRS); chips in other CRSs are compared in the chip's CRS.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import rasterio
from pyproj import Transformer
from shapely.geometry import box
from shapely.ops import transform as shapely_transform

from geotl.chips import read_chip_index

RANK = {"train": 0, "val": 1, "test": 2}


def assert_leak_free(chips_dir: Path) -> int:
    """Raise AssertionError on a leak; return how many close cross-split pairs were checked."""
    index = read_chip_index(chips_dir)
    guard = int(json.loads((chips_dir / "chipset.json").read_text())["split"]["guard_px"])
    frame = index.frame.reset_index(drop=True)
    checked = 0
    masks: dict[int, tuple[np.ndarray, rasterio.Affine, object]] = {}

    def mask_of(i: int) -> tuple[np.ndarray, rasterio.Affine, object]:
        if i not in masks:
            with rasterio.open(chips_dir / frame.loc[i, "mask"]) as src:
                masks[i] = (src.read(1), src.transform, src.crs)
        return masks[i]

    geoms = list(frame.geometry)
    for i, gi in enumerate(geoms):
        for j, gj in enumerate(geoms):
            if RANK[frame.loc[j, "split"]] <= RANK[frame.loc[i, "split"]]:
                continue
            if gi.distance(gj) > 1e-3:  # degrees: far apart whatever the guard
                continue
            mask, t, crs = mask_of(i)
            _, tj, crs_j = mask_of(j)
            other = box(*rasterio.transform.array_bounds(*mask_of(j)[0].shape, tj))
            if crs_j != crs:
                other = shapely_transform(
                    Transformer.from_crs(crs_j, crs, always_xy=True).transform, other
                )
            rows, cols = np.nonzero(mask != 255)
            if not len(rows):
                continue
            xs, ys = rasterio.transform.xy(t, rows, cols)
            x0, y0, x1, y1 = other.bounds
            dx = np.maximum.reduce([x0 - np.asarray(xs), np.zeros(len(rows)), np.asarray(xs) - x1])
            dy = np.maximum.reduce([y0 - np.asarray(ys), np.zeros(len(rows)), np.asarray(ys) - y1])
            dist_px = np.maximum(dx, dy) / abs(t.a)
            checked += 1
            assert dist_px.min() > guard, (
                f"{frame.loc[i, 'chip_id']} ({frame.loc[i, 'split']}) has a labelled pixel "
                f"{dist_px.min():.2f} px from {frame.loc[j, 'chip_id']} ({frame.loc[j, 'split']}), "
                f"guard {guard} px"
            )
    return checked
