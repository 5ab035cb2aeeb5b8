"""Scene sources: where a monitored region's new passes come from.

Two sources exist:

* :class:`FolderSource` globs GeoTIFFs (``[monitor] paths``). A pass's acquisition time
  comes from ``datetime_regex`` on the file name, else the file's TIFF ``DateTime`` tag,
  else its modification time (logged as such).
* :class:`StacSource` searches a STAC API with pystac-client: by the region's AOI (the
  footprint of its imagery, or ``[monitor] aoi``), since the last processed pass, in one
  collection, up to ``max_cloud`` percent cloud cover. Assets are mapped to bands with
  ``[monitor] assets`` and read remotely by window: each scene becomes a small VRT whose
  bands point at ``/vsicurl/`` URLs, so only the byte ranges that prediction reads are fetched.

A source only discovers scenes; the state database decides which ones are new.
"""

from __future__ import annotations

import json
import logging
import os
import re
import stat
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol

import rasterio
import shapely
from rasterio.errors import RasterioError
from rasterio.warp import transform_geom
from shapely.geometry import box, mapping, shape
from shapely.geometry.base import BaseGeometry

from geotl.config import Region
from geotl.errors import ConfigError, GeotlRuntimeError, SceneError
from geotl.io.atomic import atomic_write_bytes

__all__ = [
    "AcquiredFrom",
    "FolderSource",
    "Scene",
    "SceneSource",
    "StacSource",
    "make_source",
    "parse_datetime_text",
    "region_aoi",
    "remote_gdal_env",
    "safe_scene_name",
]

log = logging.getLogger(__name__)

AcquiredFrom = Literal["regex", "tiff-tag", "mtime", "stac"]

#: GDAL settings for reading remote assets by HTTP range requests (no directory listing,
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


@dataclass(frozen=True)
class Scene:
    """One pass a source found.

    Attributes:
        key: unique within the region: the absolute file path, or ``stac:<collection>/<id>``.
        name: short name used in output file names (file stem or STAC item id).
        acquired: acquisition time (UTC).
        acquired_from: where ``acquired`` came from: regex, tiff-tag, mtime or stac.
        uri: the file path or the STAC item's URL.
        fingerprint: changes when the file or item changes (size + mtime, item ``updated``).
        footprint_wkt: the pass's footprint in EPSG:4326 when the source knows it.
        assets: band name -> ``href`` or ``href#band`` (STAC sources).
        cloud_cover: ``eo:cloud_cover`` in percent, when known.
    """

    key: str
    name: str
    acquired: datetime
    acquired_from: AcquiredFrom
    uri: str
    fingerprint: str
    footprint_wkt: str | None = None
    assets: dict[str, str] = field(default_factory=dict)
    cloud_cover: float | None = None

    @property
    def is_remote(self) -> bool:
        """True when the scene is read over HTTP (STAC assets)."""
        return bool(self.assets)


class SceneSource(Protocol):
    """What the runner needs from a source."""

    kind: str

    def discover(self, known: Mapping[str, str], since: datetime | None) -> list[Scene]:
        """Scenes that are not in ``known`` (key -> fingerprint) or whose fingerprint changed.

        ``since`` is the acquisition time of the last processed pass (sources that search a
        catalogue use it to ask only for newer items; folder sources ignore it).
        """
        ...

    def band_names(self) -> list[str]:
        """The bands of a materialised scene, in order."""
        ...


def make_source(region: Region) -> FolderSource | StacSource:
    """Build the source that ``[monitor] source`` names.

    Raises:
        ConfigError: the region has no ``[monitor]`` table.
    """
    if region.monitor is None:
        raise ConfigError(
            "no [monitor] table: add one with source = 'folder' and paths = ['incoming/*.tif']",
            region.path,
        )
    if region.monitor.source == "stac":
        return StacSource(region)
    return FolderSource(region)


# --- time stamps ---------------------------------------------------------------------------

_DIGIT_FORMATS = {
    4: "%Y",
    6: "%Y%m",
    8: "%Y%m%d",
    10: "%Y%m%d%H",
    12: "%Y%m%d%H%M",
    14: "%Y%m%d%H%M%S",
}


def parse_datetime_text(text: str) -> datetime:
    """Parse a date or time stamp as found in file names and TIFF tags; naive means UTC.

    >>> parse_datetime_text("20190904").isoformat()
    '2019-09-04T00:00:00+00:00'
    >>> parse_datetime_text("2020").isoformat()
    '2020-01-01T00:00:00+00:00'
    >>> parse_datetime_text("2021:05:04 10:30:00").isoformat()
    '2021-05-04T10:30:00+00:00'
    >>> parse_datetime_text("20210504T103000").isoformat()
    '2021-05-04T10:30:00+00:00'

    Raises:
        ValueError: the text is no date this function knows.
    """
    raw = text.strip()
    digits = raw.replace("T", "").replace("Z", "")
    if digits.isdigit() and len(digits) in _DIGIT_FORMATS:
        return datetime.strptime(digits, _DIGIT_FORMATS[len(digits)]).replace(tzinfo=UTC)
    tiff = re.fullmatch(r"(\d{4}):(\d{2}):(\d{2})[ T](\d{2}):(\d{2}):(\d{2})", raw)
    if tiff:
        y, mo, d, h, mi, s = (int(g) for g in tiff.groups())
        return datetime(y, mo, d, h, mi, s, tzinfo=UTC)
    value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def safe_scene_name(text: str) -> str:
    """A file-name-safe version of a scene name.

    >>> safe_scene_name("LC08 L2SP/044034")
    'LC08_L2SP_044034'
    """
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._")
    return cleaned[:120] or "scene"


# --- folder source -------------------------------------------------------------------------


class FolderSource:
    """GeoTIFFs matched by the ``[monitor] paths`` globs."""

    kind = "folder"

    def __init__(self, region: Region) -> None:
        self.region = region
        regex = region.monitor_datetime_regex
        self._regex = re.compile(regex) if regex else None

    def band_names(self) -> list[str]:
        """The region's ``[imagery] bands`` (monitored files share the imagery's bands)."""
        return list(self.region.imagery.bands)

    def discover(self, known: Mapping[str, str], since: datetime | None = None) -> list[Scene]:
        """Files that are new or changed since they were last seen.

        Known, unchanged files cost one ``stat`` each: their time stamps are not read again.
        """
        found: list[Scene] = []
        for path in self.region.monitor_paths():
            if path.name.startswith(".tmp-"):
                continue
            try:
                st = path.stat()
            except OSError:
                continue  # vanished between glob and stat (or a dangling link)
            if not stat.S_ISREG(st.st_mode):
                continue
            key = os.path.abspath(path)  # not resolved: two links to one file are two passes
            fingerprint = f"{st.st_size}:{st.st_mtime_ns}"
            if known.get(key) == fingerprint:
                continue
            acquired, origin = self.acquisition_time(path, st.st_mtime)
            found.append(
                Scene(
                    key=key,
                    name=safe_scene_name(path.stem),
                    acquired=acquired,
                    acquired_from=origin,
                    uri=str(path),
                    fingerprint=fingerprint,
                )
            )
        return found

    def acquisition_time(self, path: Path, mtime: float) -> tuple[datetime, AcquiredFrom]:
        """Acquisition time of a file: name regex, else TIFF DateTime tag, else mtime."""
        if self._regex is not None:
            match = self._regex.search(path.name)
            if match:
                try:
                    return parse_datetime_text(match.group(1)), "regex"
                except ValueError:
                    log.warning(
                        "%s: datetime_regex matched %r, which is not a date; trying the TIFF tag",
                        path,
                        match.group(1),
                    )
        tag = _tiff_datetime(path)
        if tag is not None:
            return tag, "tiff-tag"
        when = datetime.fromtimestamp(mtime, tz=UTC)
        log.warning(
            "%s: acquisition time taken from the file's modification time (%s): no datetime_regex "
            "match and no TIFF DateTime tag",
            path,
            when.isoformat(timespec="seconds"),
        )
        return when, "mtime"


def _tiff_datetime(path: Path) -> datetime | None:
    try:
        with rasterio.open(path) as ds:
            tags = ds.tags()
    except (RasterioError, OSError):
        return None  # unreadable: the scene fails (and is retried) when processed
    for name in ("TIFFTAG_DATETIME", "ACQUISITIONDATETIME", "DATETIME"):
        value = tags.get(name)
        if value:
            try:
                return parse_datetime_text(value)
            except ValueError:
                log.debug("%s: tag %s=%r is not a date", path, name, value)
    return None


# --- STAC source ---------------------------------------------------------------------------


def region_aoi(region: Region) -> BaseGeometry:
    """The area a region watches, in EPSG:4326.

    ``[monitor] aoi`` (any OGR vector, all features united) when given, else the union of
    the footprints (bounding boxes) of the region's ``[imagery]`` scenes.

    Raises:
        ConfigError: the AOI file cannot be read or is empty.
    """
    if region.monitor is not None and region.monitor.aoi:
        import geopandas as gpd

        aoi_path = region.resolve(region.monitor.aoi)
        try:
            frame = gpd.read_file(aoi_path)
        except Exception as exc:
            raise ConfigError(
                f"monitor.aoi cannot be read ({exc}); use GeoJSON or GPKG", aoi_path
            ) from exc
        if frame.empty or frame.crs is None:
            raise ConfigError(
                "monitor.aoi is empty or has no CRS: give it polygons with a CRS", aoi_path
            )
        return shapely.union_all(frame.to_crs("EPSG:4326").geometry.values)
    parts = []
    for path in region.scene_paths():
        try:
            with rasterio.open(path) as ds:
                geom = transform_geom(ds.crs, "EPSG:4326", mapping(box(*ds.bounds)))
        except (RasterioError, OSError) as exc:
            raise ConfigError(
                f"cannot read imagery footprint of {path} ({exc}); set [monitor] aoi instead",
                region.path,
            ) from exc
        parts.append(shape(geom))
    return shapely.union_all(parts)


def _split_asset(spec: str) -> tuple[str, int]:
    """``"image:2"`` -> ("image", 2); ``"B04"`` -> ("B04", 1)."""
    key, sep, band = spec.rpartition(":")
    if sep and band.isdigit() and key:
        return key, int(band)
    return spec, 1


class StacSource:
    """Items of one collection of a STAC API, searched with pystac-client."""

    kind = "stac"

    def __init__(self, region: Region) -> None:
        monitor = region.monitor
        if monitor is None or not monitor.url or not monitor.collection or not monitor.assets:
            raise ConfigError("source = 'stac' needs url, collection and assets", region.path)
        self.region = region
        self.url = monitor.url
        self.collection = monitor.collection
        self.max_cloud = monitor.max_cloud
        self.assets = dict(monitor.assets)
        self._aoi: BaseGeometry | None = None

    def band_names(self) -> list[str]:
        """Band names in ``[monitor] assets`` order."""
        return list(self.assets)

    @property
    def aoi(self) -> BaseGeometry:
        """The region's AOI in EPSG:4326 (computed once)."""
        if self._aoi is None:
            self._aoi = region_aoi(self.region)
        return self._aoi

    def discover(self, known: Mapping[str, str], since: datetime | None) -> list[Scene]:
        """Items of the collection over the AOI acquired at or after ``since``.

        Raises:
            GeotlRuntimeError: the API cannot be reached or answers with an error.
        """
        from pystac_client import Client
        from pystac_client.exceptions import APIError

        search_kwargs: dict[str, Any] = {
            "collections": [self.collection],
            "intersects": mapping(self.aoi),
            "max_items": None,
            "limit": 500,
        }
        if since is not None:
            search_kwargs["datetime"] = (
                f"{since.astimezone(UTC).isoformat().replace('+00:00', 'Z')}/.."
            )
        if self.max_cloud is not None:
            search_kwargs["query"] = {"eo:cloud_cover": {"lte": self.max_cloud}}
        try:
            client = Client.open(self.url)
            items = list(client.search(**search_kwargs).items_as_dicts())
        except (APIError, OSError, ValueError) as exc:
            raise GeotlRuntimeError(
                f"STAC search failed ({str(exc).splitlines()[0][:200]}): check [monitor] url and that "
                "the API is up",
                self.url,
            ) from exc
        scenes: list[Scene] = []
        for item in items:
            scene = self._scene_from_item(item)
            if scene is None:
                continue
            if known.get(scene.key) == scene.fingerprint:
                continue
            scenes.append(scene)
        log.debug(
            "STAC search of %s since %s: %d items, %d new", self.url, since, len(items), len(scenes)
        )
        return scenes

    def refresh(self, scene: Scene) -> Scene | None:
        """Fetch ``scene``'s item again (a retry sees fixed assets); None when unreachable."""
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(scene.uri, timeout=30) as resp:
                item = json.loads(resp.read())
        except (urllib.error.URLError, OSError, ValueError) as exc:
            log.debug("cannot refresh %s (%s)", scene.uri, exc)
            return None
        return self._scene_from_item(item) if isinstance(item, dict) else None

    def _scene_from_item(self, item: dict[str, Any]) -> Scene | None:
        item_id = str(item["id"])
        props = item.get("properties") or {}
        cloud = props.get("eo:cloud_cover")
        if self.max_cloud is not None and cloud is not None and float(cloud) > self.max_cloud:
            return None  # the server ignored the query extension; filter here too
        when_text = props.get("datetime") or props.get("start_datetime")
        if not when_text:
            log.warning("STAC item %s has no datetime: skipped", item_id)
            return None
        item_assets = item.get("assets") or {}
        band_hrefs: dict[str, str] = {}
        for band, spec in self.assets.items():
            asset_key, band_index = _split_asset(spec)
            asset = item_assets.get(asset_key)
            href = asset.get("href") if isinstance(asset, dict) else None
            band_hrefs[band] = f"{href}#{band_index}" if href else f"missing:{asset_key}"
        self_link = next(
            (link["href"] for link in item.get("links", []) if link.get("rel") == "self"),
            f"{self.url.rstrip('/')}/collections/{self.collection}/items/{item_id}",
        )
        geometry = item.get("geometry")
        footprint = shape(geometry).wkt if geometry else None
        updated = props.get("updated") or props.get("created") or ""
        fingerprint = f"{updated}|{json.dumps(band_hrefs, sort_keys=True)}"
        return Scene(
            key=f"stac:{self.collection}/{item_id}",
            name=safe_scene_name(item_id),
            acquired=parse_datetime_text(str(when_text)),
            acquired_from="stac",
            uri=self_link,
            fingerprint=fingerprint,
            footprint_wkt=footprint,
            assets=band_hrefs,
            cloud_cover=float(cloud) if cloud is not None else None,
        )


@contextmanager
def remote_gdal_env() -> Iterator[None]:
    """GDAL settings for windowed reads of HTTP assets (wrap remote reads in this)."""
    with rasterio.Env(**REMOTE_GDAL_OPTIONS):
        yield


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
        SceneError: an asset is missing from the item, unreachable, or on another grid.
    """
    if not scene.assets:
        raise SceneError("scene has no assets to stack", scene.uri)
    grids: dict[str, tuple[Any, Any, int, int, str, float | None]] = {}
    sources: list[tuple[str, int]] = []
    with remote_gdal_env():
        for band, spec in scene.assets.items():
            href, _, index_text = spec.rpartition("#")
            if spec.startswith("missing:"):
                raise SceneError(
                    f"item has no asset '{spec[8:]}' for band '{band}': fix [monitor] assets",
                    scene.uri,
                )
            index = int(index_text) if index_text.isdigit() else 1
            if href not in grids:
                try:
                    with rasterio.open(_vsi(href)) as ds:
                        if index > ds.count:
                            raise SceneError(
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
                        f"asset {href} for band '{band}' cannot be read ({str(exc).splitlines()[0][:160]})",
                        scene.uri,
                    ) from exc
            sources.append((href, index))
    ref_crs, ref_transform, width, height, dtype, nodata = grids[sources[0][0]]
    root = ET.Element("VRTDataset", rasterXSize=str(width), rasterYSize=str(height))
    ET.SubElement(root, "SRS").text = ref_crs.to_wkt()
    ET.SubElement(root, "GeoTransform").text = ", ".join(repr(v) for v in ref_transform.to_gdal())
    for i, (href, index) in enumerate(sources, start=1):
        crs, transform, w, h, band_dtype, band_nodata = grids[href]
        if crs != ref_crs:
            raise SceneError(
                f"asset {href} is in {crs}, other bands in {ref_crs}: cannot stack", scene.uri
            )
        left, top = transform.c, transform.f
        right, bottom = transform @ (w, h)
        if not _same_extent((left, top, right, bottom), ref_transform, width, height):
            raise SceneError(f"asset {href} covers another extent than the first band", scene.uri)
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
        del band_dtype
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


def local_scene_path(scene: Scene, work_dir: Path) -> Path:
    """A path predict can open for ``scene``: the file itself, or a VRT over remote assets."""
    if not scene.is_remote:
        return Path(scene.uri)
    return write_scene_vrt(scene, work_dir / f"{scene.name}.vrt")
