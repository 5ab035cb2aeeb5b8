"""Tiles across a UTM zone boundary, from the real Flanders Sentinel-2 composite.

Several tests need a second tile of the same ground in the next zone's CRS, as Sentinel-2
delivers them at a zone boundary: a window of the composite warped into that CRS.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from rasterio.warp import Resampling, calculate_default_transform, reproject
from rasterio.windows import Window

FLANDERS = "s2-fields-flanders"
SCENE = "BEFL-TEST-s2_2023-05-01_2023-07-01_B08-B04-B03_min_byte.tif"


def warped_window(src: Path, window: Window, crs: str, out: Path) -> Path:
    """Write ``window`` of ``src`` warped into ``crs`` (10 m, bilinear, nodata 0) to ``out``."""
    with rasterio.open(src) as ds:
        pixels, tf_in = ds.read(window=window), ds.window_transform(window)
        bounds = rasterio.windows.bounds(window, ds.transform)
        tf, w, h = calculate_default_transform(
            ds.crs, crs, int(window.width), int(window.height), *bounds, resolution=10.0
        )
        warped = np.zeros((ds.count, h, w), dtype=ds.dtypes[0])
        reproject(
            pixels,
            warped,
            src_transform=tf_in,
            src_crs=ds.crs,
            dst_transform=tf,
            dst_crs=crs,
            resampling=Resampling.bilinear,
            dst_nodata=0,
        )
        profile = {**ds.profile, "crs": crs, "transform": tf, "width": w, "height": h, "nodata": 0}
    for k in ("blockxsize", "blockysize", "tiled"):
        profile.pop(k, None)
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(warped)
    return out
