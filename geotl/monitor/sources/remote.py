"""Remote reads: GDAL settings for HTTP range requests, and a VRT stacking a scene's assets.

A remote scene (STAC assets) becomes a small VRT whose bands point at ``/vsicurl/`` URLs, so
only the byte ranges that prediction reads are fetched. An asset's scale and offset from the
catalogue (STAC ``raster:bands``) travel with its band in the scene's asset spec
(:func:`asset_spec`), and the VRT applies them when the pass needs them to be in the model's
units (:mod:`geotl.monitor.sources.scaling`).
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.errors import RasterioError

from geotl.errors import BandMismatchError, SceneError, error_text
from geotl.io.atomic import atomic_write_bytes
from geotl.io.rasters import REMOTE_GDAL_OPTIONS, remote_gdal_env
from geotl.models.artefact import ModelCard
from geotl.monitor.sources.scaling import Reading, Scaling, choose_reading, reading_factors
from geotl.monitor.sources.scene import Scene

__all__ = [
    "REMOTE_GDAL_OPTIONS",
    "ItemError",
    "asset_spec",
    "parse_asset_spec",
    "remote_gdal_env",
    "write_scene_vrt",
]

log = logging.getLogger(__name__)

_NO_SCALING: Scaling = (1.0, 0.0)


def asset_spec(href: str, index: int, scaling: Scaling | None = None) -> str:
    """A band of a scene: ``href#index``, and ``#scale,offset`` when the catalogue gives them.

    Kept as text so the state database stores it as it stores every asset.

    >>> asset_spec("https://x/B4.tif", 1), asset_spec("https://x/B4.tif", 1, (2.75e-05, -0.2))
    ('https://x/B4.tif#1', 'https://x/B4.tif#1#2.75e-05,-0.2')
    """
    spec = f"{href}#{index}"
    if scaling is not None and scaling != _NO_SCALING:
        spec += f"#{scaling[0]!r},{scaling[1]!r}"
    return spec


def parse_asset_spec(spec: str) -> tuple[str, int, Scaling]:
    """``href``, band index and ``(scale, offset)`` of :func:`asset_spec`'s text.

    >>> parse_asset_spec("https://x/B4.tif#1#2.75e-05,-0.2")
    ('https://x/B4.tif', 1, (2.75e-05, -0.2))
    >>> parse_asset_spec("https://x/all.tif#3")
    ('https://x/all.tif', 3, (1.0, 0.0))
    """
    scaling = _NO_SCALING
    head, sep, last = spec.rpartition("#")
    if sep and "," in last:
        scale_text, _, offset_text = last.partition(",")
        try:
            scaling = (float(scale_text), float(offset_text))
            spec = head
        except ValueError:
            pass  # a "#" of the href itself
    href, _, index_text = spec.rpartition("#")
    if not index_text.isdigit():
        return spec, 1, scaling
    return href, int(index_text), scaling


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


def write_scene_vrt(scene: Scene, vrt_path: Path, card: ModelCard | None = None) -> Path:
    """Stack a remote scene's assets, band by band, into a VRT that predict reads by window.

    The VRT takes its grid from the first band's asset; other assets must share its CRS and
    extent (a coarser band, e.g. 20 m beside 10 m, is resampled through the VRT). When the
    catalogue gives the assets a scale and offset and ``card`` is the model's, the VRT reads
    the bands the way that puts them in the model's units
    (:func:`~geotl.monitor.sources.scaling.choose_reading`, judged on a sample of the pass).

    Raises:
        ItemError: an asset is missing from the item, lacks the band, or is on another grid.
        SceneError: an asset cannot be read (unreachable, not a raster).
    """
    if not scene.assets:
        raise ItemError("scene has no assets to stack", scene.uri)
    grids: dict[str, tuple[Any, Any, int, int, str, float | None]] = {}
    sources: list[tuple[str, int, Scaling]] = []
    with remote_gdal_env():
        for band, spec in scene.assets.items():
            if spec.startswith("missing:"):
                raise ItemError(
                    f"item has no asset '{spec[8:]}' for band '{band}': fix [monitor] assets",
                    scene.uri,
                )
            href, index, scaling = parse_asset_spec(spec)
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
            sources.append((href, index, scaling))
        ref_crs, ref_transform, width, height, _, _ = grids[sources[0][0]]
        for href, _, _ in sources:
            crs, transform, w, h, _, _ = grids[href]
            if crs != ref_crs:
                raise ItemError(
                    f"asset {href} is in {crs}, other bands in {ref_crs}: cannot stack", scene.uri
                )
            left, top = transform.c, transform.f
            right, bottom = transform @ (w, h)
            if not _same_extent((left, top, right, bottom), ref_transform, width, height):
                raise ItemError(
                    f"asset {href} covers another extent than the first band", scene.uri
                )
        vrt_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(vrt_path, _vrt_xml(grids, sources, None))
        if card is not None and any(scaling != _NO_SCALING for _, _, scaling in sources):
            reading = _reading_for(vrt_path, scene, card, [s for _, _, s in sources])
            if reading is not None:
                atomic_write_bytes(vrt_path, _vrt_xml(grids, sources, reading))
    return vrt_path


def _reading_for(
    vrt_path: Path, scene: Scene, card: ModelCard, scaling: Sequence[Scaling]
) -> Reading | None:
    """How the raw VRT's bands must be read for ``card``'s model (None: as they are)."""
    from geotl.predict.radiometry import sample_scene
    from geotl.predict.scene import map_bands

    bands = list(scene.assets)
    try:
        indexes = map_bands(bands, len(bands), card.bands, vrt_path, say=False)
    except BandMismatchError:
        return None  # prediction refuses the pass and says why
    try:
        with rasterio.open(vrt_path) as ds:
            sample = sample_scene(ds, indexes)
    except (RasterioError, OSError) as exc:
        raise SceneError(f"assets cannot be read ({error_text(exc, 160)})", scene.uri) from exc
    if sample is None:
        return None  # no valid pixel sampled: nothing to judge (nor to predict)
    ordered = [scaling[i - 1] for i in indexes]
    reading = choose_reading(sample[0], card.normalisation, ordered)
    given = "; ".join(f"{a:.4g} and {b:.4g}" for a, b in sorted(set(ordered)))
    if reading == "scaled":
        log.info(
            "%s: bands read through the catalogue's scale and offset (%s): the model was "
            "trained on such values, the assets hold raw numbers",
            scene.name,
            given,
        )
    elif reading == "offset":
        log.info(
            "%s: the catalogue's offset (%s) added in raw numbers: the model was trained on "
            "numbers without it",
            scene.name,
            given,
        )
    else:
        log.debug("%s: read as published (the catalogue gives %s)", scene.name, given)
    return reading


def _vrt_xml(
    grids: dict[str, tuple[Any, Any, int, int, str, float | None]],
    sources: Sequence[tuple[str, int, Scaling]],
    reading: Reading | None,
) -> bytes:
    """The VRT stacking ``sources`` on the first one's grid, read as ``reading`` says."""
    ref_crs, ref_transform, width, height, _, nodata = grids[sources[0][0]]
    # one type that holds every band (a uint8 asset beside uint16 ones must not cut them);
    # values read through a scale or an offset are fractions or go below zero
    dtype = (
        "float32"
        if reading is not None
        else str(np.result_type(*(grids[href][4] for href, _, _ in sources)))
    )
    if nodata is not None and reading is not None:
        ratio, offset = reading_factors(reading, sources[0][2])
        # where the raw nodata lands (the map is one to one), as float32 holds it exactly
        nodata = float(np.float32(nodata * ratio + offset))
    root = ET.Element("VRTDataset", rasterXSize=str(width), rasterYSize=str(height))
    ET.SubElement(root, "SRS").text = ref_crs.to_wkt()
    ET.SubElement(root, "GeoTransform").text = ", ".join(repr(v) for v in ref_transform.to_gdal())
    for i, (href, index, scaling) in enumerate(sources, start=1):
        _, _, w, h, _, band_nodata = grids[href]
        factors = reading_factors(reading, scaling)
        vrt_band = ET.SubElement(root, "VRTRasterBand", dataType=_gdal_type(dtype), band=str(i))
        if nodata is not None:
            ET.SubElement(vrt_band, "NoDataValue").text = repr(float(nodata))
        complex_source = band_nodata is not None or factors != _NO_SCALING
        src = ET.SubElement(vrt_band, "ComplexSource" if complex_source else "SimpleSource")
        ET.SubElement(src, "SourceFilename", relativeToVRT="0").text = _vsi(href)
        ET.SubElement(src, "SourceBand").text = str(index)
        ET.SubElement(src, "SrcRect", xOff="0", yOff="0", xSize=str(w), ySize=str(h))
        ET.SubElement(src, "DstRect", xOff="0", yOff="0", xSize=str(width), ySize=str(height))
        if factors != _NO_SCALING:
            ET.SubElement(src, "ScaleOffset").text = repr(factors[1])
            ET.SubElement(src, "ScaleRatio").text = repr(factors[0])
        if band_nodata is not None:
            # nodata pixels are not scaled: they keep the band's NoDataValue
            ET.SubElement(src, "NODATA").text = repr(float(band_nodata))
    return ET.tostring(root)


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
