"""``source = "stac"``: items of one collection of a STAC API, searched with pystac-client.

Keys (:class:`StacOptions`): ``url``, ``collection``, ``assets`` (band -> asset key, or
``key:band`` for a band of a multi-band asset), ``max_cloud`` (percent; items that do not
state ``eo:cloud_cover`` are kept) and ``republished`` (an item that publishes a done pass
again: ``"skip"`` or ``"replace"``, :mod:`geotl.monitor.republished`).
The search covers the region's AOI (the footprint of its imagery, or ``[monitor] aoi``), from
a few days before the newest scene seen (or the oldest one failed for good, whose item may
have been fixed), in one collection, up to ``max_cloud`` percent cloud cover. Assets are mapped to bands with ``[monitor] assets`` and read remotely by window (see
:mod:`geotl.monitor.sources.remote`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import Any

import rasterio
import shapely
from pydantic import Field
from rasterio.errors import RasterioError
from rasterio.warp import transform_geom
from shapely.geometry import box, mapping, shape
from shapely.geometry.base import BaseGeometry

from geotl.bands import band_key, is_known_band
from geotl.config import Region
from geotl.errors import ConfigError, GeotlRuntimeError, error_text
from geotl.monitor.areas import far_from_region
from geotl.monitor.sources.base import RepublishedOptions, SceneSource
from geotl.monitor.sources.remote import asset_spec
from geotl.monitor.sources.scene import Scene, parse_datetime_text, safe_scene_name

__all__ = ["STAC_LOOKBACK", "STAC_TIMEOUT_S", "StacOptions", "StacSource", "region_aoi"]

log = logging.getLogger(__name__)

#: Items acquired up to this long before the newest seen scene are searched again, so that a
#: catalogue that publishes an item late still gets it processed (known items are skipped);
#: the default of ``[monitor] lookback_days``.
STAC_LOOKBACK = timedelta(days=3)

#: (connect, read) timeout of each request to the STAC API, in seconds: an API that accepts
#: the connection and never answers fails the run (``--every`` retries) instead of hanging it
STAC_TIMEOUT_S = (10.0, 60.0)


def region_aoi(region: Region) -> BaseGeometry:
    """The area a region watches, in EPSG:4326.

    ``[monitor] aoi`` (any OGR vector, all features united) when given, else the union of
    the footprints (bounding boxes) of the region's ``[imagery]`` scenes. An aoi that does
    not meet that footprint (usually a wrong CRS) is warned about, once per file.

    Raises:
        ConfigError: the AOI file cannot be read or is empty.
    """
    if region.monitor is None or not region.monitor.aoi:
        return _imagery_footprint(region)
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
    geoms_4326 = frame.to_crs("EPSG:4326").geometry.values
    if aoi_path not in _AOI_CHECKED:
        _AOI_CHECKED.add(aoi_path)
        try:
            footprint = _imagery_footprint(region)
        except ConfigError as exc:
            log.debug("aoi not checked against the imagery: %s", exc)
        else:
            far = None
            if not footprint.is_empty:
                far = far_from_region(footprint, geoms_4326, frame.geometry.values, frame.crs)
            if far is not None:
                log.warning(
                    "%s: monitor.aoi does not overlap the region's imagery (%s): fix the "
                    "file's CRS or draw the aoi over the region",
                    aoi_path,
                    far,
                )
    return shapely.union_all(geoms_4326)


#: aoi files already checked against their region's imagery (warned about once a process)
_AOI_CHECKED: set[Path] = set()


def _imagery_footprint(region: Region) -> BaseGeometry:
    """The union of the bounding boxes of the region's ``[imagery]`` scenes (EPSG:4326).

    Raises:
        ConfigError: a scene cannot be read.
    """
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


def _stac_io() -> Any:
    """pystac-client's HTTP client: connection errors retried, a read that timed out not.

    pystac-client retries every failure of a GET five times: after a read timeout that is
    six times :data:`STAC_TIMEOUT_S` before the run fails.
    """
    from pystac_client.stac_api_io import StacApiIO
    from urllib3 import Retry

    return StacApiIO(max_retries=Retry(total=5, read=0, backoff_factor=0.5))


def _split_asset(spec: str) -> tuple[str, int]:
    """``"image:2"`` -> ("image", 2); ``"B04"`` -> ("B04", 1)."""
    key, sep, band = spec.rpartition(":")
    if sep and band.isdigit() and key:
        return key, int(band)
    return spec, 1


def _asset_band_name(asset: Any, index: int) -> str | None:
    """The band name an item gives its asset's band ``index`` (1-based), or None.

    STAC 1.0's ``eo:bands`` (``common_name``, else ``name``) or STAC 1.1's ``bands``
    (``eo:common_name``, else ``name``); a name outside geotl's vocabulary says nothing.

    >>> _asset_band_name({"eo:bands": [{"name": "SR_B4", "common_name": "red"}]}, 1)
    'red'
    >>> _asset_band_name({"bands": [{"name": "B08"}]}, 1), _asset_band_name({}, 1)
    ('B08', None)
    """
    if not isinstance(asset, dict):
        return None
    listed = asset.get("eo:bands") or asset.get("bands")
    if (
        not isinstance(listed, list)
        or len(listed) < index
        or not isinstance(listed[index - 1], dict)
    ):
        return None
    entry = listed[index - 1]
    for field in ("common_name", "eo:common_name", "name"):
        name = entry.get(field)
        if isinstance(name, str) and is_known_band(name):
            return name
    return None


def _asset_scaling(asset: Any, index: int) -> tuple[float, float] | None:
    """The scale and offset an item gives its asset's band ``index`` (1-based), or None.

    STAC 1.0's raster extension (``raster:bands``: ``scale``, ``offset``) or STAC 1.1's
    ``bands`` (``raster:scale``, ``raster:offset``; ``scale``, ``offset`` as some catalogues
    write them). A band that states neither has none.

    >>> _asset_scaling({"raster:bands": [{"scale": 2.75e-05, "offset": -0.2}]}, 1)
    (2.75e-05, -0.2)
    >>> _asset_scaling({"bands": [{"raster:offset": -0.1, "raster:scale": 0.0001}]}, 1)
    (0.0001, -0.1)
    >>> _asset_scaling({"raster:bands": [{"nodata": 0}]}, 1), _asset_scaling({}, 1)
    (None, None)
    """
    if not isinstance(asset, dict):
        return None
    for field in ("raster:bands", "bands"):
        listed = asset.get(field)
        if not isinstance(listed, list) or len(listed) < index:
            continue
        entry = listed[index - 1]
        if not isinstance(entry, dict):
            continue
        scale = entry.get("raster:scale", entry.get("scale"))
        offset = entry.get("raster:offset", entry.get("offset"))
        if scale is None and offset is None:
            continue
        try:
            return float(1.0 if scale is None else scale), float(offset or 0.0)
        except (TypeError, ValueError):
            log.debug("asset band %d states scale %r, offset %r: ignored", index, scale, offset)
    return None


def _same_band(band: str, name: str) -> bool:
    """Whether ``[monitor] assets``' ``band`` and an item's ``name`` are one band."""
    keys = {band_key(band), band_key(name)}
    return len(keys) == 1 or keys == {"nir", "nir08"}


def _cloud_filter(max_cloud: float) -> dict[str, Any]:
    """CQL2 search arguments: cloud cover up to ``max_cloud``, or not stated."""
    cloud = {"property": "eo:cloud_cover"}
    return {
        "filter": {
            "op": "or",
            "args": [
                {"op": "<=", "args": [cloud, max_cloud]},
                {"op": "isNull", "args": [cloud]},
            ],
        },
        "filter_lang": "cql2-json",
    }


class StacOptions(RepublishedOptions):
    """``source = "stac"``'s keys in ``[monitor]``.

    Attributes:
        url: the STAC API's root (its landing page).
        collection: the id of the collection to watch.
        assets: band -> asset key, or ``key:band`` for a band of a multi-band asset.
        max_cloud: skip items whose ``eo:cloud_cover`` exceeds this (percent); an item that
            does not state its cloud cover is kept (and logged), not silently dropped.
        lookback_days: how far before the newest item seen each search starts, so that an
            item the catalogue publishes late is still found (known items are skipped, so a
            longer look back costs search time only).
    """

    url: str
    collection: str
    assets: dict[str, str] = Field(min_length=1)  # band -> asset key (or "key:band")
    max_cloud: float | None = Field(default=None, ge=0, le=100)
    lookback_days: float = Field(default=STAC_LOOKBACK.days, ge=0)


class StacSource(SceneSource):
    """Items of one collection of a STAC API, searched with pystac-client."""

    kind = "stac"
    Options = StacOptions
    options: StacOptions

    def __init__(self, region: Region) -> None:
        super().__init__(region)
        self._aoi: BaseGeometry | None = None
        self._collection_found = False

    def band_names(self) -> list[str]:
        """Band names in ``[monitor] assets`` order."""
        return list(self.options.assets)

    @property
    def aoi(self) -> BaseGeometry:
        """The region's AOI in EPSG:4326 (computed once)."""
        if self._aoi is None:
            self._aoi = region_aoi(self.region)
        return self._aoi

    def discover(self, known: Mapping[str, str], since: datetime | None) -> list[Scene]:
        """Items of the collection over the AOI acquired at or after ``since`` less the look back.

        Raises:
            ConfigError: the search found nothing and the API has no such collection, or
                no item it found has an asset key of ``[monitor] assets``.
            GeotlRuntimeError: the API cannot be reached or answers with an error.
        """
        from pystac_client import Client
        from pystac_client.conformance import ConformanceClasses
        from pystac_client.exceptions import APIError

        search_kwargs: dict[str, Any] = {
            "collections": [self.options.collection],
            "intersects": mapping(self.aoi),
            "max_items": None,
            "limit": 500,
        }
        if since is not None:
            since -= timedelta(days=self.options.lookback_days)
            search_kwargs["datetime"] = (
                f"{since.astimezone(UTC).isoformat().replace('+00:00', 'Z')}/.."
            )
        try:
            client = Client.open(self.options.url, stac_io=_stac_io(), timeout=STAC_TIMEOUT_S)
            if self.options.max_cloud is not None and client.conforms_to(ConformanceClasses.FILTER):
                search_kwargs.update(_cloud_filter(self.options.max_cloud))
            # else every item comes and the cloudy ones are dropped here: the query extension
            # would also drop the items that do not state their cloud cover
            items = list(client.search(**search_kwargs).items_as_dicts())
        except (APIError, OSError, ValueError) as exc:
            raise GeotlRuntimeError(
                f"STAC search failed ({error_text(exc)}): check that [monitor] url is the "
                "API's root (its landing page) and that the API is up",
                self.options.url,
            ) from exc
        if not items:
            self._check_collection(client)
        else:
            self._check_assets(items)
            self._check_asset_bands(items)
        scenes: list[Scene] = []
        for item in items:
            scene = self._scene_from_item(item)
            if scene is None:
                continue
            if known.get(scene.key) == scene.fingerprint:
                continue
            if self.options.max_cloud is not None and scene.cloud_cover is None:
                log.info("STAC item %s states no eo:cloud_cover: kept (max_cloud)", scene.name)
            scenes.append(scene)
        log.debug(
            "STAC search of %s since %s: %d items, %d new",
            self.options.url,
            since,
            len(items),
            len(scenes),
        )
        return scenes

    def _check_collection(self, client: Any) -> None:
        """Raise when ``[monitor] collection`` is not on the API (asked after an empty search).

        A mistyped collection returns no items, like a quiet collection; only an empty search
        pays for this request, and a collection found once is not asked for again.

        Raises:
            ConfigError: the API answers that it has no such collection.
        """
        from pystac_client.exceptions import APIError

        if self._collection_found:
            return
        collection = self.options.collection
        try:
            found = client.get_collection(collection) is not None
            others = [] if found else [c.id for c in islice(client.get_collections(), 11)]
        except (APIError, OSError, ValueError) as exc:
            log.debug("cannot check collection %s on %s (%s)", collection, self.options.url, exc)
            return  # the search itself worked: do not fail the run on this check
        if found:
            self._collection_found = True
            return
        listed = ", ".join(others[:10]) + (", ..." if len(others) > 10 else "")
        raise ConfigError(
            f"[monitor] collection '{collection}' is not a collection of {self.options.url} "
            f"(it has: {listed or 'none'}): fix [monitor] collection",
            self.region.path,
        )

    def _check_assets(self, items: list[dict[str, Any]]) -> None:
        """Raise when an asset key of ``[monitor] assets`` is on none of the items found.

        One item without an asset waits for a new version of it (its pass fails alone); a
        key that no item of the search has is a mistyped key, which would fail every pass.

        Raises:
            ConfigError: names the keys and the asset keys the items have.
        """
        have = {str(key) for item in items for key in item.get("assets") or {}}
        keys = dict.fromkeys(_split_asset(spec)[0] for spec in self.options.assets.values())
        missing = [key for key in keys if key not in have]
        if not missing:
            return
        listed = ", ".join(sorted(have)[:20]) + (", ..." if len(have) > 20 else "")
        raise ConfigError(
            f"[monitor] assets: no item of collection '{self.options.collection}' "
            f"({len(items)} found) has an asset {' or '.join(repr(k) for k in missing)} "
            f"(they have: {listed or 'none'}): fix [monitor] assets",
            self.region.path,
        )

    def _check_asset_bands(self, items: list[dict[str, Any]]) -> None:
        """Raise when ``[monitor] assets`` maps a band to an asset that says it is another.

        Per-band assets are stacked in ``[monitor] assets`` order under its band names, and
        prediction matches them to the model by those names: a swapped pair (``red =
        "nir08"``) gives a scene whose bands read as others and polygons that are wrong with
        nothing else showing it. Items that name their assets' bands (``eo:bands`` in STAC
        1.0, ``bands`` in 1.1, as Planetary Computer and Earth Search publish them) are
        checked against the mapping; a band is wrong when every item that names it says
        another band. ``nir`` and ``nir08`` pass for each other (a region may call
        Landsat's near infrared ``nir``).

        Raises:
            ConfigError: names the band, its asset and what the items call it.
        """
        for band, spec in self.options.assets.items():
            key, index = _split_asset(spec)
            said = {
                name
                for item in items
                if (name := _asset_band_name((item.get("assets") or {}).get(key), index))
            }
            if said and not any(_same_band(band, name) for name in said):
                right = sorted(
                    {
                        other
                        for item in items
                        for other, asset in (item.get("assets") or {}).items()
                        if (name := _asset_band_name(asset, 1)) and _same_band(band, name)
                    }
                )
                fix = f'{band} = "{right[0]}"' if len(right) == 1 else "each band its own asset"
                raise ConfigError(
                    f"[monitor] assets: band '{band}' is asset '{spec}', which the items of "
                    f"'{self.options.collection}' call {' or '.join(sorted(said))}: a band "
                    f"stacked as another gives wrong polygons; map {fix}",
                    self.region.path,
                )

    def refresh(self, scene: Scene) -> Scene | None:
        """Fetch ``scene``'s item again (a retry sees fixed assets); None when unreachable."""
        import urllib.error
        import urllib.request

        if not scene.is_remote:
            return None
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
        if (
            self.options.max_cloud is not None
            and cloud is not None
            and float(cloud) > self.options.max_cloud
        ):
            return None  # the server ignored the query extension; filter here too
        when_text = props.get("datetime") or props.get("start_datetime")
        if not when_text:
            log.warning("STAC item %s has no datetime: skipped", item_id)
            return None
        item_assets = item.get("assets") or {}
        band_hrefs: dict[str, str] = {}
        band_specs: dict[str, str] = {}
        for band, spec in self.options.assets.items():
            asset_key, band_index = _split_asset(spec)
            asset = item_assets.get(asset_key)
            href = asset.get("href") if isinstance(asset, dict) else None
            band_hrefs[band] = asset_spec(href, band_index) if href else f"missing:{asset_key}"
            band_specs[band] = (
                asset_spec(href, band_index, _asset_scaling(asset, band_index))
                if href
                else band_hrefs[band]
            )
        self_link = next(
            (link["href"] for link in item.get("links", []) if link.get("rel") == "self"),
            f"{self.options.url.rstrip('/')}/collections/{self.options.collection}/items/{item_id}",
        )
        geometry = item.get("geometry")
        footprint = shape(geometry).wkt if geometry else None
        acquired = parse_datetime_text(str(when_text))
        if acquired > datetime.now(UTC) + timedelta(days=1):
            log.warning(
                "STAC item %s is dated %s, in the future: processed, but later searches start "
                "from the newest item dated before now (fix the item's datetime)",
                item_id,
                acquired.isoformat(),
            )
        updated = props.get("updated") or props.get("created") or ""
        # the hrefs alone: a state written before scale and offset were kept knows its items
        fingerprint = f"{updated}|{json.dumps(band_hrefs, sort_keys=True)}"
        return Scene(
            key=f"stac:{self.options.collection}/{item_id}",
            name=safe_scene_name(item_id),
            acquired=acquired,
            acquired_from="stac",
            uri=self_link,
            fingerprint=fingerprint,
            footprint_wkt=footprint,
            assets=band_specs,
            cloud_cover=float(cloud) if cloud is not None else None,
        )
