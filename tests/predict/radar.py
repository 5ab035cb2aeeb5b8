"""Sentinel-1-like VV/VH passes in dB derived from real ground, for the radar tests.

There is no SAR in ``../shared/data``: a pass is derived from the real NAIP tile of North
Dakota's prairie potholes (water dark at about -21 dB VV / -28 dB VH, land -15..-5 dB from
its vegetation, 4-look speckle, a NaN collar), 10 m in UTM 14N.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from rasterio.warp import Resampling, calculate_default_transform, reproject

NAIP = "naip-landsat-timeseries/naip"
BANDS = ["VV", "VH"]


def sentinel1_db(src: Path, out: Path, seed: int, flooded: bool = False) -> Path:
    """A VV/VH dB pass (float32, NaN nodata) from a NAIP tile; ``flooded``: all calm water."""
    with rasterio.open(src) as ds:
        transform, width, height = calculate_default_transform(
            ds.crs, "EPSG:32614", ds.width, ds.height, *ds.bounds, resolution=10
        )
        red_nir = np.zeros((2, height, width), np.float32)
        for i, band in enumerate((1, 4)):
            reproject(
                rasterio.band(ds, band),
                red_nir[i],
                dst_transform=transform,
                dst_crs="EPSG:32614",
                resampling=Resampling.average,
                src_nodata=0,
                dst_nodata=0,
            )
    red, nir = red_nir
    ndvi = np.clip((nir - red) / np.maximum(nir + red, 1), -0.2, 0.6)
    water = (nir < 46) | flooded
    vv = np.where(water, -21.0, -11.0 + 5 * ndvi + 3 * (nir / 255 - 0.4))
    vh = np.where(water, -28.0, vv - 7.5 + 2 * np.clip(ndvi, 0, 0.6))
    rng = np.random.default_rng(seed)
    power = 10 ** (np.stack([vv, vh]) / 10) * rng.gamma(4, 1 / 4, (2, height, width))
    values = (10 * np.log10(power)).astype(np.float32)
    values[:, (nir == 0) | (np.arange(width)[None, :] < 12)] = np.nan  # the swath's collar
    profile = {
        "driver": "GTiff",
        "dtype": "float32",
        "count": 2,
        "width": width,
        "height": height,
        "crs": "EPSG:32614",
        "transform": transform,
        "nodata": float("nan"),
    }
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(values)
        dst.descriptions = tuple(BANDS)
    return out
