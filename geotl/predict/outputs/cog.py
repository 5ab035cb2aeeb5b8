"""``probabilities``: the blended class probabilities as a Cloud-Optimised GeoTIFF.

Unlike the other formats this one is not written from the detections: the stream writes
the probabilities window by window into a temporary GeoTIFF while it predicts, and
:func:`write_cog` turns that file into a COG (rio-cogeo, deflate, 512 px tiles).
:func:`write_probabilities_qml` writes the QGIS style beside it (else QGIS shows the first
three bands as an RGB composite).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import rasterio
from affine import Affine

from geotl.io.atomic import atomic_path, atomic_write_text
from geotl.io.rasters import gdal_write_errors
from geotl.predict.outputs.style import probabilities_qml_style

__all__ = ["GDAL_CACHE_BYTES", "open_probabilities", "write_cog", "write_probabilities_qml"]

GDAL_CACHE_BYTES = 64 * 2**20
"""GDAL's block cache while predicting and converting: enough for a row of 512 px tiles.

GDAL's default is 5 % of the machine's memory, which the COG conversion fills on a large
scene (1.7 GB of 2.5 GB peak on a 6,000 px one, BENCHMARKS.md); capped, the conversion
takes as long and the peak no longer grows with the scene.
"""


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
    # the conversion reads the whole scene once and builds overviews: GDAL's default cache
    # would keep it all, growing the peak memory with the scene
    with (
        atomic_path(dst) as tmp,
        rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES),
        gdal_write_errors(dst.parent),  # a full disk: an error, not a COG missing tiles
    ):
        cog_translate(
            str(src), str(tmp), profile, quiet=True, use_cog_driver=False, in_memory=False
        )


def write_probabilities_qml(cog: Path, qml: Path) -> Path:
    """Write the QGIS style for the probabilities in ``cog``, named by its band descriptions.

    QGIS loads ``NAME.qml`` beside ``NAME.tif`` as the layer's style: the first class in
    pseudocolour, 0 to 1.
    """
    with rasterio.open(cog) as ds:
        names = [d or f"band {i}" for i, d in enumerate(ds.descriptions, start=1)]
    atomic_write_text(qml, probabilities_qml_style(names))
    return qml
