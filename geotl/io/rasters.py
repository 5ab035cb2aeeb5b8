"""Raster access: open scenes with clear errors, describe them, measure ground resolution.

Everything here reads by window; nothing loads a whole scene.

A band that GDAL reads as the *alpha* mask (drone orthomosaics, ``gdalwarp -dstalpha``,
RGBA exports: :func:`data_band_indexes`) is the file's mask of valid pixels, not a data
band: a scene's bands are its other bands, in file order, and GDAL's per-dataset mask (the
alpha band, or an internal mask) marks its pixels without data. A stack of bands of
different types (a VRT over single-band files) reads as one type (:func:`read_data`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import threading
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import ColorInterp, MaskFlags
from rasterio.errors import RasterioError, RasterioIOError
from rasterio.windows import Window

from geotl.errors import GeotlInputError, RasterError, error_text
from geotl.io.band_names import band_descriptions
from geotl.io.compression import lossy_codecs, not_said, say_compression
from geotl.io.nodata import valid_mask

__all__ = [
    "REMOTE_GDAL_OPTIONS",
    "SceneInfo",
    "check_georeferenced",
    "common_dtype",
    "data_band_indexes",
    "describe_grid",
    "gdal_write_errors",
    "ground_pixel_size_m",
    "ground_resolution_m",
    "is_subdataset",
    "mask_bands",
    "nodata_per_band",
    "nodata_vrt_options",
    "north_up",
    "open_raster",
    "other_units",
    "pixel_size_crs",
    "read_bands",
    "read_data",
    "read_failure",
    "read_normalised",
    "read_scene_info",
    "read_valid",
    "say_pages",
    "scene_band_sample",
    "scene_bounds",
    "scene_path",
    "split_subdataset",
    "unit_factor",
    "utm_epsg_at",
    "window_bounds",
    "window_corners",
    "with_nodata",
]


log = logging.getLogger(__name__)

# band means this many times above or below a reference are other units (unit_factor)
UNITS_FACTOR = 10.0
_SAMPLE_GRID, _SAMPLE_PX = 3, 256  # scene_band_sample: 3 x 3 windows of up to 256 px


@dataclass(frozen=True)
class SceneInfo:
    """What geotl needs to know about a scene before reading pixels."""

    path: Path
    crs: CRS
    transform: Affine
    width: int
    height: int
    count: int  # data bands (an alpha band is the mask, not one of them)
    dtype: str
    nodata: float | None
    resolution_m: float
    band_indexes: tuple[int, ...]  # the data bands' 1-based indexes in the file
    mask_bands: tuple[int, ...] = ()  # bands whose GDAL masks to read (:func:`mask_bands`)
    alpha_band: int | None = None  # the alpha band's 1-based index, if the file has one
    descriptions: tuple[str | None, ...] = ()  # the data bands' descriptions (names), if any
    # ground size east-west / north-south of a pixel (degree grids: cos(latitude)), which a
    # model trained on these pixels expects of every scene (geotl.predict.scene)
    pixel_aspect: float = 1.0
    # the lossy codecs its pixels went through (:func:`~geotl.io.compression.lossy_codecs`),
    # which a model card records of its training scenes
    lossy: tuple[str, ...] = ()

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in the scene's CRS (:func:`scene_bounds`)."""
        return scene_bounds(self.transform, self.width, self.height)


def window_corners(transform: Affine, window: Window) -> list[tuple[float, float]]:
    """A window's four corners in the scene's CRS, in ring order (rotated grids too).

    >>> window_corners(Affine(10, 0, 1000, 0, -10, 5000), Window(3, 2, 4, 4))[:2]
    [(1030.0, 4980.0), (1070.0, 4980.0)]
    """
    c0, r0 = window.col_off, window.row_off
    c1, r1 = c0 + window.width, r0 + window.height
    return [
        (float(x), float(y))
        for x, y in (transform @ (c, r) for c, r in ((c0, r0), (c1, r0), (c1, r1), (c0, r1)))
    ]


def window_bounds(transform: Affine, window: Window) -> tuple[float, float, float, float]:
    """(left, bottom, right, top) of a window in the scene's CRS.

    Unlike :func:`rasterio.windows.bounds`, which assumes a north-up grid, this takes the
    extremes of the four corners, so rotated and south-up grids give a true envelope.

    >>> window_bounds(Affine(10, 0, 1000, 0, -10, 5000), Window(3, 2, 4, 4))
    (1030.0, 4940.0, 1070.0, 4980.0)
    """
    xs, ys = zip(*window_corners(transform, window), strict=True)
    return (min(xs), min(ys), max(xs), max(ys))


def scene_bounds(transform: Affine, width: int, height: int) -> tuple[float, float, float, float]:
    """(left, bottom, right, top) of a grid in its CRS, left < right and bottom < top.

    All four corners count (:func:`window_bounds`): on a rotated grid two opposite corners
    leave out the other two, and a grid stored south-up or east-left has its first corner
    at the bottom or right (rasterio's ``bounds`` then give ``bottom > top``).

    >>> scene_bounds(Affine(1, 0, 0, 0, 1, 0), 4, 2)  # south-up
    (0.0, 0.0, 4.0, 2.0)
    >>> [round(v, 3) for v in scene_bounds(Affine.rotation(90), 4, 2)]
    [-2.0, 0.0, 0.0, 4.0]
    """
    return window_bounds(transform, Window(0, 0, width, height))


#: GDAL settings for reading remote files by HTTP range requests (no directory listing,
#: no full download, bounded retries).
REMOTE_GDAL_OPTIONS: dict[str, str | int] = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.tiff,.TIF,.TIFF,.vrt",
    "GDAL_HTTP_MAX_RETRY": 2,
    "GDAL_HTTP_RETRY_DELAY": 1,
    "GDAL_HTTP_TIMEOUT": 30,
    "GDAL_HTTP_MULTIRANGE": "YES",
    "VSI_CACHE": "TRUE",
}


@contextlib.contextmanager
def remote_gdal_env() -> Iterator[None]:
    """GDAL settings for windowed reads of HTTP files (wrap remote reads in this)."""
    with rasterio.Env(**REMOTE_GDAL_OPTIONS):
        yield


class GdalPath(type(Path())):  # type: ignore[misc]
    """A GDAL virtual path (``/vsicurl/https://...``, ``/vsizip/a.zip/b.tif``) kept verbatim.

    pathlib would fold the ``//`` of a URL; GDAL needs it. The name and suffix are the
    path's as usual (``b.tif``).
    """

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        raw = args[0] if len(args) == 1 and isinstance(args[0], str) else None
        self._raw: str = raw if raw is not None else super().__str__()

    def __str__(self) -> str:
        return self._raw

    def __fspath__(self) -> str:
        return self._raw

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self._raw,))  # to Dask workers verbatim too


def is_virtual(path: str | Path) -> bool:
    """Whether GDAL, not the file system, finds ``path`` (``/vsi...``, ``https://...``).

    >>> is_virtual("/vsicurl/https://e.org/a.tif"), is_virtual("https://e.org/a.tif")
    (True, True)
    >>> is_virtual("scenes/a.tif")
    False
    """
    text = str(path)
    return text.startswith("/vsi") or "://" in text


#: GDAL's name for one raster inside a container file (``netCDF:"f.nc":var``,
#: ``HDF5:"f.h5"://group/var``, ``GTIFF_DIR:2:f.tif``, ``GPKG:f.gpkg:table``): the file
#: system does not know it, GDAL does. Two letters at least: ``C:`` is a Windows drive.
_SUBDATASET = re.compile(r"^[A-Za-z][A-Za-z0-9_]+:(?!//)")


def is_subdataset(path: str | Path) -> bool:
    """Whether ``path`` names a subdataset of a container (``netCDF:"f.nc":var``).

    >>> is_subdataset('netCDF:"scene.nc":Band1'), is_subdataset("GTIFF_DIR:2:mp.tif")
    (True, True)
    >>> is_subdataset("C:/scenes/a.tif"), is_subdataset("https://e.org/a.tif")
    (False, False)
    """
    return bool(_SUBDATASET.match(str(path)))


#: a subdataset's file: quoted (``netCDF:"f.nc":var``), after a page number
#: (``GTIFF_DIR:2:f.tif``), or before the table (``GPKG:f.gpkg:table``)
_SUBDATASET_FILE = (
    re.compile(r'^([A-Za-z][A-Za-z0-9_]+:")([^"]+)(".*)$'),
    re.compile(r"^(GTIFF_DIR:\d+:)(.+)()$"),
    re.compile(r"^(GPKG:)(.+)(:[^:/\\]+)$"),
)


def split_subdataset(text: str) -> tuple[str, str, str] | None:
    """A subdataset's name as (before, its file, after); None if its file is not found in it.

    >>> split_subdataset("GTIFF_DIR:2:/data/mp.tif")
    ('GTIFF_DIR:2:', '/data/mp.tif', '')
    >>> split_subdataset('netCDF:"/data/s.nc":Band1')
    ('netCDF:"', '/data/s.nc', '":Band1')
    >>> split_subdataset("GPKG:/data/a.gpkg:tiles"), split_subdataset("/data/a.tif")
    (('GPKG:', '/data/a.gpkg', ':tiles'), None)
    """
    for pattern in _SUBDATASET_FILE:
        found = pattern.match(text)
        if found:
            before, file, after = found.groups()
            return before, file, after
    return None


def scene_path(text: str) -> Path:
    """A scene argument as a path: GDAL virtual paths verbatim (:class:`GdalPath`).

    >>> str(scene_path("/vsicurl/https://e.org/s/a.tif")), scene_path("/vsicurl/https://e.org/s/a.tif").name
    ('/vsicurl/https://e.org/s/a.tif', 'a.tif')
    """
    if text.startswith(("http://", "https://")):
        text = f"/vsicurl/{text}"
    return GdalPath(text) if is_virtual(text) or is_subdataset(text) else Path(text)


@contextlib.contextmanager
def open_raster(path: str | Path) -> Iterator[rasterio.DatasetReader]:
    """Open a raster for reading, turning GDAL failures into one-line input errors.

    ``path`` may be a GDAL virtual path (:func:`scene_path`): GDAL says whether it exists.

    Raises:
        RasterError: the file is missing, not a raster, or corrupt.
    """
    path = path if isinstance(path, Path) else scene_path(path)
    if not is_virtual(path) and not is_subdataset(path) and not path.exists():
        if any(ch in path.name for ch in "*?["):
            # a quoted pattern (or one from a tool that runs geotl without a shell)
            raise RasterError(
                "no such file, and geotl does not expand patterns: give the files "
                "(leave the pattern unquoted for the shell to expand)",
                path,
            )
        raise RasterError("file not found: check the path", path)
    try:
        ds = rasterio.open(path)
    except RasterioIOError as exc:
        raise RasterError(_why_unreadable(path, exc), path) from exc
    if ds.count == 0:  # a container (NetCDF, HDF): without this, "raster has no CRS"
        inside = ds.subdatasets
        ds.close()
        raise RasterError(_which_subdataset(inside), path)
    try:
        yield ds
    finally:
        ds.close()


def say_pages(ds: Any, path: str | Path) -> None:
    """Warn, once per file in this process, that a multi-page TIFF is read as its page 1.

    GDAL reads a TIFF of several full pages (IFDs that are neither overviews nor masks:
    a stack written page by page by tifffile or ``gdal_translate -co APPEND_SUBDATASET``,
    dates or products one per page) as its first page and lists the others as
    subdatasets. Page 1 is most often the image meant (GDAL, QGIS and rasterio show it), so
    the file is read, not refused; but another page is silently never seen, so it is said,
    with the name that reads another (a page given as ``GTIFF_DIR:N:FILE`` is not warned),
    and how to extract it (a region's ``[imagery] paths`` take files only).
    """
    if ds.driver != "GTiff" or is_subdataset(path):
        return
    pages = [s for s in ds.subdatasets if str(s).startswith("GTIFF_DIR:")]
    if len(pages) < 2 or not not_said("pages", path):
        return
    log.warning(
        "%s: a multi-page TIFF of %d pages: page 1 is read; to read another, give it as the "
        "scene in quotes ('GTIFF_DIR:2:%s'; gdalinfo FILE lists the pages) or extract it "
        "(gdal_translate 'GTIFF_DIR:2:%s' page2.tif)",
        path,
        len(pages),
        path,
        path,
    )


def _which_subdataset(inside: Sequence[str]) -> str:
    """What to give instead of a file that holds rasters (subdatasets) but no bands itself.

    >>> _which_subdataset(["GTIFF_DIR:1:s.tif", "GTIFF_DIR:2:s.tif"])
    "holds no bands itself but 2 subdatasets: give one of them as the scene, in quotes ('GTIFF_DIR:1:s.tif'; gdalinfo FILE lists them)"
    """
    if not inside:
        return "holds no raster bands: give a raster file (GeoTIFF)"
    return (
        f"holds no bands itself but {len(inside)} subdatasets: give one of them as the scene, "
        f"in quotes ('{inside[0]}'; gdalinfo FILE lists them)"
    )


def _why_unreadable(path: Path, exc: Exception) -> str:
    """What to do with a path GDAL refused: a folder or an archive is named as such.

    Only once GDAL has refused it: GDAL opens some folders (an ArcInfo grid) itself.
    """
    if not is_virtual(path) and path.is_dir():
        return "is a folder, not a raster: give its scenes (DIR/*.tif)"
    if not is_virtual(path) and zipfile.is_zipfile(path):
        # a downloaded archive: GDAL reads the raster in it without unpacking
        with zipfile.ZipFile(path) as zf:
            inside = [n for n in zf.namelist() if n.lower().endswith((".tif", ".tiff", ".vrt"))]
        more = f" ({len(inside)} rasters in it)" if len(inside) > 1 else ""
        name = inside[0] if inside else "NAME.tif"
        return (
            f"is a zip archive, not a raster: give the raster in it as /vsizip/{path}/{name}{more}"
        )
    if is_subdataset(path):  # GDAL's own reason says whether the file or the name is wrong
        return (
            f"cannot be read as a raster ({error_text(exc)}): check the file and the "
            "subdataset's name (gdalinfo FILE lists them)"
        )
    reason = error_text(exc)
    if is_virtual(path) and _NO_RANGES in reason:
        # python -m http.server and some proxies send whole files only; GDAL reads by parts
        return (
            f"cannot be read remotely ({reason}): the server does not answer HTTP range "
            "requests; download the file and give the local copy, or serve it from a server "
            "that does (nginx, Apache, object storage)"
        )
    if is_virtual(path) and any(s in reason for s in _UNREACHABLE):
        return f"cannot be read remotely ({reason}): check the URL, the network and credentials"
    return f"cannot be read as a raster ({reason}): replace the file with a valid GeoTIFF"


#: GDAL's words for a server that sends whole files only (no ``Accept-Ranges``)
_NO_RANGES = "Range downloading not supported"


class _NodataView:
    """An open dataset seen with another nodata value; everything else is the dataset's."""

    def __init__(self, ds: Any, nodata: float) -> None:
        self._ds = ds
        self.nodata = nodata
        self.nodatavals = (nodata,) * ds.count

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ds, name)


def with_nodata(ds: Any, nodata: float | None) -> Any:
    """``ds``, its nodata value replaced by ``nodata`` (a region's ``[imagery] nodata``).

    A region names the nodata value its files lack (or state wrongly); chipping uses it
    (:mod:`geotl.chips.scenes`), and prediction reads scenes through this view so that it
    leaves out the same pixels. None: the file's own.
    """
    return ds if nodata is None else _NodataView(ds, nodata)


def nodata_vrt_options(nodata: float | None) -> dict[str, Any]:
    """``WarpedVRT`` keywords that give it ``nodata`` as the source's and its own value."""
    return {} if nodata is None else {"src_nodata": nodata, "nodata": nodata}


SCALE_TOLERANCE = 0.01
"""A projection whose scale at the scene differs from 1 by more is measured on the ground."""


def ground_resolution_m(crs: CRS, transform: Affine, width: int, height: int) -> float:
    """Mean pixel size in metres on the ground, at the scene centre.

    The mean of :func:`ground_pixel_size_m`'s two sides: one figure for the resolution
    checks of chipping, training and prediction.

    >>> from affine import Affine
    >>> from rasterio.crs import CRS
    >>> round(ground_resolution_m(CRS.from_epsg(32617), Affine(0.1, 0, 0, 0, -0.1, 0), 10, 10), 3)
    0.1
    >>> y = 3_470_000.0  # about 29.7 degrees north
    >>> round(ground_resolution_m(CRS.from_epsg(3857), Affine(0.1153, 0, 0, 0, -0.1153, y), 10, 10), 4)
    0.1001
    """
    size_x, size_y = ground_pixel_size_m(crs, transform, width, height)
    return float((size_x + size_y) / 2)


def ground_pixel_size_m(
    crs: CRS, transform: Affine, width: int, height: int
) -> tuple[float, float]:
    """Ground size in metres of a pixel along its row (x) and its column (y), at the centre.

    Geographic CRSs are measured in degrees of latitude and longitude there, so a square
    pixel in degrees is narrower east-west than north-south by the cosine of the latitude
    (what an area meant to be square on the ground must be sized by). A projected CRS's
    grid metres are ground metres where its scale is within :data:`SCALE_TOLERANCE` of 1
    (UTM, state planes, national grids); elsewhere (Web Mercator: 1.15 at 30 degrees of
    latitude) the grid is divided by the projection's scale at the centre.

    >>> from affine import Affine
    >>> from rasterio.crs import CRS
    >>> x, y = ground_pixel_size_m(CRS.from_epsg(4326), Affine(1e-4, 0, 10, 0, -1e-4, 50.1), 2000, 2000)
    >>> round(x, 2), round(y, 2), round(x / y, 3)  # cos(50 degrees) = 0.643
    (7.16, 11.12, 0.644)
    """
    px_x, px_y = pixel_size_crs(transform)
    if crs.is_geographic:
        _, lat = transform @ (width / 2, height / 2)
        m_per_deg_lat = 111_132.954 - 559.822 * math.cos(2 * math.radians(lat))
        m_per_deg_lon = 111_412.84 * math.cos(math.radians(lat))
        return float(px_x * m_per_deg_lon), float(px_y * m_per_deg_lat)
    factor = crs.linear_units_factor[1] if crs.is_projected else 1.0
    if crs.is_projected:
        k_x, k_y = _point_scales(crs, transform @ (width / 2, height / 2))
        if max(abs(k_x - 1), abs(k_y - 1)) > SCALE_TOLERANCE:
            px_x, px_y = px_x / k_x, px_y / k_y
    return float(px_x * factor), float(px_y * factor)


def pixel_size_crs(transform: Affine) -> tuple[float, float]:
    """A pixel's sides along its row and its column in the CRS's units (rotated grids too).

    >>> [round(v, 9) for v in pixel_size_crs(Affine.rotation(30) @ Affine(0.3, 0, 0, 0, -0.2, 0))]
    [0.3, 0.2]
    """
    return math.hypot(transform.a, transform.d), math.hypot(transform.b, transform.e)


def describe_grid(crs: CRS, transform: Affine, width: int, height: int) -> str:
    """What a scene's grid is, for messages about its pixels' ground shape ("" if unremarkable).

    >>> from affine import Affine
    >>> from rasterio.crs import CRS
    >>> describe_grid(CRS.from_epsg(4326), Affine(1e-4, 0, 2.8, 0, -1e-4, 51.0), 10, 10)
    'a degree grid at 51 N'
    >>> describe_grid(CRS.from_epsg(32631), Affine(10, 0, 0, 0, -10, 0), 10, 10)
    ''
    """
    if not crs.is_geographic:
        return ""
    _, lat = transform @ (width / 2, height / 2)
    return f"a degree grid at {abs(lat):.0f} {'N' if lat >= 0 else 'S'}"


def utm_epsg_at(crs: CRS, transform: Affine, width: int, height: int) -> int | None:
    """The EPSG code of the UTM zone at a grid's centre (WGS 84), for a fix to suggest.

    >>> from affine import Affine
    >>> from rasterio.crs import CRS
    >>> utm_epsg_at(CRS.from_epsg(4326), Affine(1e-4, 0, 3.2, 0, -1e-4, 51.0), 10, 10)
    32631
    >>> utm_epsg_at(CRS.from_epsg(4326), Affine(1e-4, 0, -70.5, 0, -1e-4, -12.0), 10, 10)
    32719
    """
    import pyproj

    x, y = transform @ (width / 2, height / 2)
    try:
        if crs.is_geographic:
            lon, lat = x, y
        else:
            proj_crs = pyproj.CRS.from_wkt(crs.to_wkt())
            to_wgs = pyproj.Transformer.from_crs(proj_crs, 4326, always_xy=True)
            lon, lat = to_wgs.transform(x, y)
    except (pyproj.exceptions.CRSError, pyproj.exceptions.ProjError):
        return None
    if not (math.isfinite(lon) and math.isfinite(lat)) or not -80 <= lat <= 84:
        return None  # UTM stops at 84 N / 80 S: no zone to suggest near the poles
    zone = min(int((lon + 180) // 6) + 1, 60)
    return (32600 if lat >= 0 else 32700) + zone


def _point_scales(crs: CRS, xy: tuple[float, float]) -> tuple[float, float]:
    """The projection's scale along the parallel and the meridian at ``xy`` (1 if unknown)."""
    import pyproj

    try:
        proj_crs = pyproj.CRS.from_wkt(crs.to_wkt())
        lon, lat = pyproj.Transformer.from_crs(proj_crs, 4326, always_xy=True).transform(*xy)
        f = pyproj.Proj(proj_crs).get_factors(lon, lat)
        k_x, k_y = float(f.parallel_scale), float(f.meridional_scale)
    except (pyproj.exceptions.CRSError, pyproj.exceptions.ProjError):
        return 1.0, 1.0
    if not (math.isfinite(k_x) and math.isfinite(k_y)) or k_x <= 0 or k_y <= 0:
        return 1.0, 1.0
    return k_x, k_y


def north_up(transform: Affine, width: int, height: int) -> Affine | None:
    """The north-up transform of a grid stored south-up or east-left, else None.

    rioxarray writes ascending-y data south-up (a positive pixel height); reading such a
    scene through this transform (a WarpedVRT, nearest: an exact flip) shows the model
    the ground as every north-up scene does. None when the grid is north-up already, or
    rotated (left as it is).

    >>> north_up(Affine(0.1, 0, 400.0, 0, 0.1, 3000.0), 100, 50)
    Affine(0.1, 0.0, 400.0,
           0.0, -0.1, 3005.0)
    >>> north_up(Affine(0.1, 0, 400.0, 0, -0.1, 3000.0), 100, 50) is None
    True
    """
    if transform.b or transform.d or (transform.a > 0 and transform.e < 0):
        return None
    left = min(transform.c, transform.c + transform.a * width)
    top = max(transform.f, transform.f + transform.e * height)
    return Affine(abs(transform.a), 0.0, left, 0.0, -abs(transform.e), top)


def check_georeferenced(ds: Any, path: str | Path) -> None:
    """Refuse a raster that is not on a map grid of the Earth, in one line.

    A TIFF that lost its geotransform (a plain image, an export without world file) still
    opens: rasterio returns the identity matrix, so its ground resolution came out as one
    degree (59,730 m) and predict asked for ``--resample``, which cannot help. A raw,
    unorthorectified product (GCPs or RPCs, no geotransform) has no CRS of its own either:
    assigning one (the no-CRS fix) cannot help it, orthorectifying does. A local
    (engineering) CRS has no place on the Earth: its feet were taken for metres, and the
    GeoJSON's longitudes and latitudes failed with a traceback.

    Raises:
        RasterError: no CRS, only GCPs or RPCs, a local CRS, or an identity transform.
    """
    gcps, gcp_crs = ds.gcps
    if ds.transform == Affine.identity() and (gcps or ds.rpcs is not None):
        raise RasterError(_unorthorectified(ds, gcps, gcp_crs), path)
    if ds.crs is None:
        raise RasterError(
            "raster has no CRS: assign one (e.g. gdal_edit.py -a_srs EPSG:32633 FILE)", path
        )
    if not (ds.crs.is_projected or ds.crs.is_geographic):
        raise RasterError(
            f"its CRS ({_crs_name(ds.crs)}) is a local grid with no place on the Earth, so "
            "its pixel size and the output's longitudes and latitudes are unknown: assign "
            "the map CRS it was surveyed in (gdal_edit.py -a_srs EPSG:CODE FILE)",
            path,
        )
    if ds.transform == Affine.identity():
        raise RasterError(
            "raster has no geotransform: georeference it (gdal_edit.py -a_ullr ULX ULY LRX "
            "LRY FILE; a file with GCPs: gdalwarp FILE OUT.tif)",
            path,
        )


def _unorthorectified(ds: Any, gcps: Sequence[Any], gcp_crs: CRS | None) -> str:
    """The refusal of a scene placed by GCPs or RPCs only, with the gdalwarp that fixes it."""
    utm = None
    if gcps and gcp_crs is not None and len(gcps) >= 3:
        with contextlib.suppress(Exception):  # collinear GCPs: no zone to suggest
            transform = rasterio.transform.from_gcps(gcps)
            utm = utm_epsg_at(gcp_crs, transform, ds.width, ds.height)
    elif not gcps:  # RPCs are centred on their offsets (longitude, latitude)
        lon_lat = Affine.translation(ds.rpcs.long_off, ds.rpcs.lat_off)
        utm = utm_epsg_at(CRS.from_epsg(4326), lon_lat, 0, 0)
    t_srs = f"EPSG:{utm}" if utm else "EPSG:CODE"
    if gcps:
        what, warp = f"{len(gcps)} ground control points", f"gdalwarp -t_srs {t_srs}"
        more = "; -tps for many GCPs over rough ground"
    else:
        what, warp = "RPCs", f"gdalwarp -rpc -t_srs {t_srs}"
        more = "; -to RPC_DEM=DEM.tif over relief"
    return (
        f"placed only by {what}, with no geotransform (a raw, unorthorectified product): "
        f"orthorectify it onto a map grid first ({warp} FILE OUT.tif{more})"
    )


def _crs_name(crs: CRS) -> str:
    """A CRS's name as GDAL reads it (its WKT's first quoted string)."""
    match = re.search(r'"([^"]*)"', crs.to_wkt())
    return match.group(1) if match and match.group(1) else "unnamed"


def read_scene_info(path: str | Path, bands_expected: int | None = None) -> SceneInfo:
    """Describe a scene (CRS, grid, bands, nodata, ground resolution).

    ``bands_expected``: how many data bands the region lists (see :func:`data_band_indexes`).

    Raises:
        RasterError: unreadable file, or a raster without a CRS or georeferencing.
    """
    path = Path(path)
    with open_raster(path) as ds:
        check_georeferenced(ds, path)
        say_compression(ds, path, lossy=False)  # tiles it cannot decode; lossy: predict's
        say_pages(ds, path)
        bands = data_band_indexes(ds, bands_expected)
        if not bands:
            raise RasterError(
                "its only band is an alpha band (a mask): use the imagery itself", path
            )
        try:
            size_x, size_y = ground_pixel_size_m(ds.crs, ds.transform, ds.width, ds.height)
        except RasterioError as exc:
            raise RasterError(f"unsupported CRS ({error_text(exc)})", path) from exc
        described = band_descriptions(ds)
        return SceneInfo(
            path=path,
            crs=ds.crs,
            transform=ds.transform,
            width=ds.width,
            height=ds.height,
            count=len(bands),
            dtype=common_dtype(ds, bands),
            nodata=ds.nodata,
            resolution_m=float((size_x + size_y) / 2),  # as ground_resolution_m
            band_indexes=tuple(bands),
            mask_bands=mask_bands(ds, bands),
            alpha_band=next((i for i in range(1, ds.count + 1) if i not in bands), None),
            descriptions=tuple(described[i - 1] for i in bands),
            pixel_aspect=size_x / size_y,
            lossy=tuple(lossy_codecs(ds)),
        )


def data_band_indexes(ds: rasterio.io.DatasetReader, expected: int | None = None) -> list[int]:
    """The 1-based indexes of the bands that hold data: every band but an alpha band.

    A band is the alpha band when GDAL masks the others with it: tagged alpha, in a file
    without a nodata value. GDAL also tags the fourth band of any 4-band byte GeoTIFF
    alpha by default (a NAIP tile's near infrared), so when the bands expected (the
    region's, or the model's) are as many as the file's, every band holds data.
    """
    every = list(range(1, ds.count + 1))
    if MaskFlags.alpha not in ds.mask_flag_enums[0] or expected == ds.count:
        return every
    return [i for i, ci in enumerate(ds.colorinterp, 1) if ci != ColorInterp.alpha]


def mask_bands(ds: rasterio.io.DatasetReader, bands: list[int]) -> tuple[int, ...]:
    """The bands whose GDAL masks chips must read beside the nodata value (none: ``()``).

    One band when an alpha band or an internal mask marks the valid pixels of every band;
    every band when the bands have nodata values of their own (a stack of files).
    """
    if len(bands) < ds.count:  # the alpha band is the mask
        return (bands[0],)
    if MaskFlags.per_dataset in ds.mask_flag_enums[bands[0] - 1] and (
        MaskFlags.alpha not in ds.mask_flag_enums[bands[0] - 1]
    ):  # an internal mask (an alpha band the region lists as data is not one)
        return (bands[0],)
    if nodata_per_band(ds, bands):
        return tuple(bands)
    return ()


def nodata_per_band(ds: Any, bands: Sequence[int]) -> bool:
    """The bands have nodata values of their own (a stack of files, ``gdalbuildvrt -separate``).

    Their GDAL masks then say where each band has a value, and a pixel that any band lacks
    has no data (:func:`geotl.io.nodata.nodata_mask`'s ``per_band``).
    """
    return len({str(ds.nodatavals[i - 1]) for i in bands}) > 1


def common_dtype(src: Any, indexes: Sequence[int]) -> str:
    """The one dtype that holds every one of these bands (a stack may mix them).

    A stack of float32 reflectance and an int16 band reads as float32.
    """
    return str(np.result_type(*(src.dtypes[i - 1] for i in indexes)))


def read_data(src: Any, indexes: Sequence[int], **kwargs: Any) -> np.ndarray:
    """``src.read(indexes, **kwargs)`` as one array, whatever the bands' dtypes.

    rasterio reads bands of one dtype at a time: a stack that mixes them is read dtype by
    dtype into :func:`common_dtype`.
    """
    indexes = list(indexes)
    dtypes = [src.dtypes[i - 1] for i in indexes]
    if len(set(dtypes)) == 1:
        return np.asarray(src.read(indexes, **kwargs))
    parts = {}
    for dt in dict.fromkeys(dtypes):
        group = [i for i, d in zip(indexes, dtypes, strict=True) if d == dt]
        if "out_shape" in kwargs:  # (bands, h, w): the group's bands
            kwargs["out_shape"] = (len(group), *kwargs["out_shape"][1:])
        parts[dt] = np.asarray(src.read(group, **kwargs))
    out = np.empty(
        (len(indexes), *next(iter(parts.values())).shape[1:]), common_dtype(src, indexes)
    )
    for dt, part in parts.items():
        out[[k for k, d in enumerate(dtypes) if d == dt]] = part
    return out


def read_bands(
    ds: rasterio.io.DatasetReader,
    band_indexes: tuple[int, ...],
    mask_bands: tuple[int, ...],
    window: Window,
    out_shape: tuple[int, int] | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """A window's data bands ``(bands, h, w)``, and GDAL's masks (0 = no data) or None.

    ``band_indexes`` and ``mask_bands``: the scene's :class:`SceneInfo` fields;
    ``out_shape``: ``(h, w)`` to read the window at (a picture's), else its own size.
    """
    size = {} if out_shape is None else {"out_shape": (len(band_indexes), *out_shape)}
    data = read_data(ds, band_indexes, window=window, **size)
    masks = None
    if mask_bands:
        size = {} if out_shape is None else {"out_shape": (len(mask_bands), *out_shape)}
        masks = ds.read_masks(list(mask_bands), window=window, **size)
    return data, masks


def read_valid(
    ds: Any,
    band_indexes: Sequence[int],
    mask_bands: Sequence[int],
    window: Window,
    nodata: float | None = None,
    out_shape: tuple[int, int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """A window's data bands ``(bands, h, w)`` and its pixels with data ``(h, w)``.

    The one rule of :mod:`geotl.io.nodata` as chips apply it: the nodata value (``nodata``,
    default the dataset's), and GDAL's masks only of ``mask_bands`` (:func:`mask_bands` of
    the scene's data bands: an alpha band, an internal mask, nodata values per band).
    Reading every band's mask of a file whose only mask is its nodata value costs a second
    read and says nothing more. ``out_shape``: ``(h, w)`` to read at (a downsampled
    picture: quicklooks, thumbnails), by the same rule.
    """
    data, masks = read_bands(ds, tuple(band_indexes), tuple(mask_bands), window, out_shape)
    valid = valid_mask(data, ds.nodata if nodata is None else nodata, masks, len(mask_bands) > 1)
    return data, valid


def read_normalised(
    ds: Any,
    band_indexes: Sequence[int],
    mask_bands: Sequence[int],
    window: Window,
    normalise: Callable[[np.ndarray], np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    """A window as a model sees it: normalised, 0 where :func:`read_valid` finds no data.

    Returns the float32 ``(bands, h, w)`` input and the ``(h, w)`` pixels with data.
    """
    data, valid = read_valid(ds, band_indexes, mask_bands, window)
    norm = normalise(data)
    if not valid.all():
        norm[:, ~valid] = 0.0
    return norm, valid


def read_failure(exc: BaseException, path: str | Path) -> RasterError:
    """A failed read of a raster as a one-line input error, with GDAL's own reason.

    rasterio's "Read failed. See previous exception" is followed to the GDAL error it
    chains (``TIFFReadEncodedStrip() failed``, ...).
    """
    cause: BaseException = exc
    while cause.__cause__ is not None and "previous exception" in str(cause):
        cause = cause.__cause__
    reason = error_text(cause)
    if any(s in reason for s in _MISSING):
        fix = "a file it reads from is missing (a VRT's source, an archive member): check that path"
    elif any(s in reason for s in _UNREACHABLE):
        fix = "the remote file could not be fetched: check the URL, the network and credentials"
    else:
        fix = (
            "the file is damaged or cut short; copy it again (or wait until a copy in progress "
            "is whole)"
        )
    return RasterError(f"read failed ({reason}): {fix}", path)


#: GDAL's words for a file that is not there, and for a remote one it could not fetch
_MISSING = ("does not exist in the file system", "No such file or directory")
_UNREACHABLE = ("HTTP response code", "Could not resolve host", "timed out", "Connection")


@dataclass(frozen=True)
class BandSample:
    """Per-band mean and standard deviation of a scene's valid pixels, from a sample."""

    mean: list[float]
    std: list[float]
    count: int  # valid pixels sampled


def scene_band_sample(
    ds: Any,
    indexes: Sequence[int],
    mask_bands: Sequence[int] = (),
    nodata: float | None = None,
) -> BandSample | None:
    """Per-band mean and std of the valid pixels in a 3 x 3 grid of small windows.

    The windows run from corner to corner of the scene: cheap at any scene size (nine reads
    of at most 256 px, at most 590,000 pixels a band); None when they hold no data.
    ``nodata``: the value that marks no data (default: the file's).
    """
    h, w = min(_SAMPLE_PX, ds.height), min(_SAMPLE_PX, ds.width)
    total = np.zeros(len(indexes))
    squares = np.zeros(len(indexes))
    count = 0
    for i in range(_SAMPLE_GRID):
        for j in range(_SAMPLE_GRID):
            row = (ds.height - h) * i // (_SAMPLE_GRID - 1)
            col = (ds.width - w) * j // (_SAMPLE_GRID - 1)
            data, valid = read_valid(ds, indexes, mask_bands, Window(col, row, w, h), nodata)
            x = data[:, valid].astype(np.float64)
            total += x.sum(axis=1)
            squares += np.einsum("ij,ij->i", x, x)
            count += x.shape[1]
    if not count:
        return None
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean**2, 0.0))
    return BandSample(mean=mean.tolist(), std=std.tolist(), count=count)


def unit_factor(means: Sequence[float], reference: Sequence[float]) -> float | None:
    """How many times ``means`` are ``reference``, when the two look to be other units.

    Other units (8- vs 16-bit, digital numbers vs reflectance, reflectance x 10000 vs 0-1
    floats): in most bands the ratio is over :data:`UNITS_FACTOR` or under its inverse.
    Bands with a reference mean of zero or below (radar in dB) are not judged. Returns the
    median of those ratios, else None.

    >>> round(unit_factor([4000.0, 3900.0, 4100.0], [100.0, 98.0, 101.0]))
    40
    >>> unit_factor([150.0, 20.0, 101.0], [100.0, 98.0, 101.0]) is None  # brighter, darker
    True
    """
    pairs = [(s, m) for s, m in zip(means, reference, strict=True) if m > 0]
    off = [s / m for s, m in pairs if s > 0 and not 1 / UNITS_FACTOR <= s / m <= UNITS_FACTOR]
    if not pairs or 2 * len(off) <= len(pairs):
        return None
    return float(np.median(off))


def other_units(means: Sequence[float], reference: Sequence[float]) -> str | None:
    """What sets ``means`` apart from ``reference`` when they look to be other units, else None.

    :func:`unit_factor`, said: ``band means [...] are about 40x [...]``.

    >>> other_units([0.12, 0.1], [1200.0, 1000.0])
    'band means [0.12, 0.1] are about 1/10,000 of [1200, 1000]'
    >>> other_units([150.0, 20.0, 101.0], [100.0, 98.0, 101.0]) is None
    True
    """
    factor = unit_factor(means, reference)
    if factor is None:
        return None
    size = f"{factor:,.0f}x" if factor >= 1 else f"1/{1 / factor:,.0f} of"

    def listed(values: Sequence[float]) -> str:
        return "[" + ", ".join(f"{v:.4g}" for v in values) + "]"

    return f"band means {listed(means)} are about {size} {listed(reference)}"


@contextlib.contextmanager
def gdal_write_errors(path: Path) -> Iterator[None]:
    """Raise the errors GDAL meets writing ``path`` in this thread, which rasterio only logs.

    GDAL writes a tile when its block cache is full or the file is closed, and rasterio
    raises for neither: a full disk (or a file-size limit) left a GeoTIFF with missing tiles
    behind a run that exited 0. Wrap the writes and the close (a write that fails at once
    raises ``RasterioIOError``, said the same way). rasterio logs GDAL's failures at INFO
    on ``rasterio._env`` (and only inside an ``Env``, per thread); this thread's are
    collected there, ahead of any other filter (geotl's says a repeated message once, and
    each tile's failure reads alike), and records below the logger's level before are kept
    from its handlers as they were. One thread at a time: the level is the logger's.

    Raises:
        GeotlInputError: GDAL failed while writing; names the file and the fix.
    """
    said: list[str] = []
    me = threading.get_ident()
    logger = logging.getLogger("rasterio._env")
    shown = logger.getEffectiveLevel()

    class _Failures(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            if record.thread == me:
                if record.msg == _GDAL_FAILURE and isinstance(record.args, tuple):
                    said.append(str(record.args[1]))  # GDAL's own words
                elif record.levelno >= logging.ERROR:
                    said.append(record.getMessage())
            return record.levelno >= shown

    failures = _Failures()
    logger.filters.insert(0, failures)
    level = logger.level
    logger.setLevel(min(shown, logging.INFO))
    try:
        with rasterio.Env():
            yield
    except RasterioIOError as exc:  # a write GDAL did at once (a whole tile) fails here
        said.append(str(exc.__cause__ or exc))
    finally:
        logger.setLevel(level)
        logger.removeFilter(failures)
    if said:
        raise GeotlInputError(
            f"could not be written ({said[0]}): free space on its disk (or set TMPDIR to "
            "a larger one for scratch files) and run again",
            path,
        )


_GDAL_FAILURE = "GDAL signalled an error: err_no=%r, msg=%r"
"""How rasterio logs a GDAL failure (``CE_Failure``), at INFO."""
