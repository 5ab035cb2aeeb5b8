"""``probabilities``: the blended class probabilities as a Cloud-Optimised GeoTIFF.

Unlike the other formats this one is not written from the detections: the stream writes
the probabilities window by window into a temporary GeoTIFF while it predicts, and
:func:`write_cog` turns that file into a COG (rio-cogeo, deflate, 512 px tiles).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import rasterio
from affine import Affine

from geotl.io.atomic import atomic_path

__all__ = ["open_probabilities", "write_cog"]


def open_probabilities(
    path: Path, width: int, height: int, crs: Any, transform: Affine, names: list[str]
) -> Any:
    """Open the GeoTIFF the stream writes probabilities into (tiled float32, nodata -1).

    One band per name (the classes, then any maps of the task's own), described by the
    name; :func:`write_cog` converts it.
    """
    ds = rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=width,
        height=height,
        count=len(names),
        dtype="float32",
        crs=crs,
        transform=transform,
        nodata=-1.0,
        tiled=True,
        blockxsize=512,
        blockysize=512,
        compress="deflate",
        predictor=3,
        BIGTIFF="IF_SAFER",
    )
    for i, name in enumerate(names, start=1):
        ds.set_band_description(i, name)
    return ds


def write_cog(src: Path, dst: Path) -> None:
    """Copy the GeoTIFF ``src`` to ``dst`` as a COG (atomically)."""
    from rio_cogeo.cogeo import cog_translate
    from rio_cogeo.profiles import cog_profiles

    profile = cog_profiles.get("deflate")
    profile.update(blockxsize=512, blockysize=512)
    with atomic_path(dst) as tmp:
        cog_translate(
            str(src), str(tmp), profile, quiet=True, use_cog_driver=False, in_memory=False
        )
