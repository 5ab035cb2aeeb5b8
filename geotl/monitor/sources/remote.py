"""Remote reads: GDAL settings for HTTP range requests, and a VRT stacking a scene's assets.

A remote scene (STAC assets) becomes a small VRT whose bands point at ``/vsicurl/`` URLs, so
only the byte ranges that prediction reads are fetched.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.errors import RasterioError

from geotl.errors import SceneError, error_text
from geotl.io.atomic import atomic_write_bytes
from geotl.io.rasters import REMOTE_GDAL_OPTIONS, remote_gdal_env
from geotl.monitor.sources.scene import Scene

__all__ = ["REMOTE_GDAL_OPTIONS", "ItemError", "remote_gdal_env", "write_scene_vrt"]


class ItemError(SceneError):
    """A STAC item's assets cannot make a scene.

    An asset is missing or lacks the band, or the assets lie in other CRSs or extents.
    Unlike an unreachable asset this does not heal by waiting: the pass fails without
    automatic retries until the item changes (a new fingerprint puts it back to pending).
    """


def _vsi(href: str) -> str:
    if href.startswith(("http://", "https://")):
        return f"/vsicurl/{href}"
    if href.startswith("s3://"):
        return f"/vsis3/{href[5:]}"
    if href.startswith("file://"):
        return href[7:]
    return href


def write_scene_vrt(scene: Scene, vrt_path: Path) -> Path:
    """Stack a remote scene's assets, band by band, into a VRT that predict reads by window.

    The VRT takes its grid from the first band's asset; other assets must share its CRS and
    extent (a coarser band, e.g. 20 m beside 10 m, is resampled through the VRT).

    Raises:
        ItemError: an asset is missing from the item, lacks the band, or is on another grid.
        SceneError: an asset cannot be read (unreachable, not a raster).
    """
    if not scene.assets:
        raise ItemError("scene has no assets to stack", scene.uri)
    grids: dict[str, tuple[Any, Any, int, int, str, float | None]] = {}
    sources: list[tuple[str, int]] = []
    with remote_gdal_env():
        for band, spec in scene.assets.items():
            href, _, index_text = spec.rpartition("#")
            if spec.startswith("missing:"):
                raise ItemError(
                    f"item has no asset '{spec[8:]}' for band '{band}': fix [monitor] assets",
                    scene.uri,
                )
            index = int(index_text) if index_text.isdigit() else 1
            if href not in grids:
                try:
                    with rasterio.open(_vsi(href)) as ds:
                        if index > ds.count:
                            raise ItemError(
                                f"asset {href} has {ds.count} band(s), [monitor] assets asks for band {index}",
                                scene.uri,
                            )
                        grids[href] = (
                            ds.crs,
                            ds.transform,
                            ds.width,
                            ds.height,
                            ds.dtypes[0],
                            ds.nodata,
                        )
                except (RasterioError, OSError) as exc:
                    raise SceneError(
                        f"asset {href} for band '{band}' cannot be read ({error_text(exc, 160)})",
                        scene.uri,
                    ) from exc
            sources.append((href, index))
    ref_crs, ref_transform, width, height, _, nodata = grids[sources[0][0]]
    # one type that holds every band (a uint8 asset beside uint16 ones must not cut them)
    dtype = str(np.result_type(*(grids[href][4] for href, _ in sources)))
    root = ET.Element("VRTDataset", rasterXSize=str(width), rasterYSize=str(height))
    ET.SubElement(root, "SRS").text = ref_crs.to_wkt()
    ET.SubElement(root, "GeoTransform").text = ", ".join(repr(v) for v in ref_transform.to_gdal())
    for i, (href, index) in enumerate(sources, start=1):
        crs, transform, w, h, _, band_nodata = grids[href]
        if crs != ref_crs:
            raise ItemError(
                f"asset {href} is in {crs}, other bands in {ref_crs}: cannot stack", scene.uri
            )
        left, top = transform.c, transform.f
        right, bottom = transform @ (w, h)
        if not _same_extent((left, top, right, bottom), ref_transform, width, height):
            raise ItemError(f"asset {href} covers another extent than the first band", scene.uri)
        vrt_band = ET.SubElement(root, "VRTRasterBand", dataType=_gdal_type(dtype), band=str(i))
        if nodata is not None:
            ET.SubElement(vrt_band, "NoDataValue").text = repr(float(nodata))
        src = ET.SubElement(
            vrt_band, "ComplexSource" if band_nodata is not None else "SimpleSource"
        )
        ET.SubElement(src, "SourceFilename", relativeToVRT="0").text = _vsi(href)
        ET.SubElement(src, "SourceBand").text = str(index)
        ET.SubElement(src, "SrcRect", xOff="0", yOff="0", xSize=str(w), ySize=str(h))
        ET.SubElement(src, "DstRect", xOff="0", yOff="0", xSize=str(width), ySize=str(height))
        if band_nodata is not None:
            ET.SubElement(src, "NODATA").text = repr(float(band_nodata))
    vrt_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(vrt_path, ET.tostring(root))
    return vrt_path


def _same_extent(
    ltrb: tuple[float, float, float, float], ref: Any, width: int, height: int
) -> bool:
    left, top, right, bottom = ltrb
    ref_right, ref_bottom = ref @ (width, height)
    tol = max(abs(ref.a), abs(ref.e))
    return bool(
        abs(left - ref.c) <= tol
        and abs(top - ref.f) <= tol
        and abs(right - ref_right) <= tol
        and abs(bottom - ref_bottom) <= tol
    )


_GDAL_TYPES = {
    "uint8": "Byte",
    "int8": "Int8",
    "uint16": "UInt16",
    "int16": "Int16",
    "uint32": "UInt32",
    "int32": "Int32",
    "float32": "Float32",
    "float64": "Float64",
}


def _gdal_type(dtype: str) -> str:
    return _GDAL_TYPES.get(dtype, "Float32")
