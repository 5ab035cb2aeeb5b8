"""RFC 7946 GeoJSON: EPSG:4326 lon/lat, right-hand winding, <= 7 decimals, no ``crs``.

Written atomically (temporary name, then rename), so a reader never sees half a file.

>>> import geopandas as gpd
>>> from shapely.geometry import box
>>> f = gpd.GeoDataFrame({"id": ["a"], "score": [0.5]}, geometry=[box(0, 0, 1, 1)], crs=4326)
>>> fc = feature_collection(f)
>>> fc["features"][0]["geometry"]["coordinates"][0][:2]
[[1.0, 0.0], [1.0, 1.0]]
>>> "crs" in fc, fc["features"][0]["id"]
(False, 'a')
"""

from __future__ import annotations

import itertools
import json
import math
from datetime import date, datetime
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import shapely
from shapely.geometry import mapping

from geotl.io.atomic import atomic_write_text
from geotl.io.lonlat import wrap_longitudes

__all__ = ["DECIMALS", "feature_collection", "write_geojson"]

DECIMALS = 7  # ~1 cm at the equator; RFC 7946 section 11.2 recommends no more than needed


def _value(value: Any) -> Any:
    """A JSON-safe property value (NaN/NaT -> null, numpy -> Python, dates -> ISO 8601)."""
    if value is None:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, datetime | date):
        return value.isoformat()
    if hasattr(value, "isoformat"):  # pandas Timestamp
        try:
            return value.isoformat()
        except ValueError:  # NaT
            return None
    if isinstance(value, str | int | bool):
        return value
    return str(value)


def _coords(obj: Any) -> Any:
    if isinstance(obj, tuple | list):
        if obj and isinstance(obj[0], int | float):
            return [float(v) for v in obj]
        return [_coords(o) for o in obj]
    return obj


_POLYGONAL = {3: "Polygon", 6: "MultiPolygon"}  # shapely's type ids


def _coordinates(geoms: np.ndarray) -> list[dict[str, Any]]:
    """Each geometry as a GeoJSON geometry object.

    Polygons and multipolygons (every object geotl writes) are unpacked for the whole
    array at once from GEOS's coordinate buffer, nested by its ring and part offsets
    (``shapely.to_ragged_array``); other types go through ``mapping``. The lists hold the
    same floats in the same order either way.
    """
    out: list[dict[str, Any]] = [{} for _ in range(len(geoms))]
    kinds = shapely.get_type_id(geoms)
    for kind, name in _POLYGONAL.items():
        at = np.flatnonzero(kinds == kind)
        if at.size == 0:
            continue
        _, coords, offsets = shapely.to_ragged_array(geoms[at])
        nested: list[Any] = coords.tolist()
        for off in offsets:  # rings of points, polygons of rings, multipolygons of polygons
            bounds = off.tolist()
            nested = [nested[a:b] for a, b in itertools.pairwise(bounds)]
        for i, c in zip(at.tolist(), nested, strict=True):
            out[i] = {"type": name, "coordinates": c}
    for i in np.flatnonzero(~np.isin(kinds, list(_POLYGONAL))).tolist():
        geometry = {**mapping(geoms[i])}
        geometry["coordinates"] = _coords(geometry["coordinates"])
        out[i] = geometry
    return out


def feature_collection(frame: gpd.GeoDataFrame) -> dict[str, Any]:
    """Build an RFC 7946 FeatureCollection from a GeoDataFrame in any CRS.

    Geometries are reprojected to EPSG:4326, brought within longitudes -180..180
    (:func:`wrap_longitudes`), rounded to :data:`DECIMALS` (valid ones stay valid),
    oriented counter-clockwise (exterior) / clockwise (holes), empty ones dropped.
    An ``id`` column becomes each feature's ``id`` member (and stays a property).
    """
    if frame.crs is None:
        raise ValueError("frame has no CRS: set one before writing GeoJSON")
    wgs = frame.to_crs(4326) if not frame.crs.equals("EPSG:4326") else frame
    geoms = wrap_longitudes(wgs.geometry.to_numpy())
    rounded = shapely.transform(geoms, lambda xy: np.round(xy, DECIMALS))
    # rounding each coordinate alone can make a narrow part of a polygon cross itself
    # (objects of centimetre imagery): those are snapped to the same grid by GEOS, valid
    broken = np.flatnonzero(~shapely.is_valid(rounded) & ~shapely.is_missing(rounded))
    if broken.size:
        snapped = shapely.set_precision(geoms[broken], 10.0**-DECIMALS)
        rounded[broken] = shapely.transform(snapped, lambda xy: np.round(xy, DECIMALS))
    geoms = rounded
    geoms = shapely.orient_polygons(geoms, exterior_cw=False)
    kept = np.flatnonzero(~(shapely.is_missing(geoms) | shapely.is_empty(geoms)))
    columns = {c: wgs[c].iloc[kept].tolist() for c in wgs.columns if c != wgs.geometry.name}
    features: list[dict[str, Any]] = []
    for k, geometry in enumerate(_coordinates(geoms[kept])):
        props = {c: _value(values[k]) for c, values in columns.items()}
        feature: dict[str, Any] = {"type": "Feature"}
        if "id" in props and props["id"] is not None:
            feature["id"] = props["id"]
        feature["geometry"] = geometry
        feature["properties"] = props
        features.append(feature)
    return {"type": "FeatureCollection", "features": features}


def write_geojson(path: str | Path, frame: gpd.GeoDataFrame) -> Path:
    """Write ``frame`` as an RFC 7946 GeoJSON file, atomically.

    Args:
        path: output file (its folder must exist).
        frame: features in any CRS; every non-geometry column becomes a property.

    Returns:
        The path written.
    """
    path = Path(path)
    text = json.dumps(feature_collection(frame), ensure_ascii=False, separators=(",", ":"))
    atomic_write_text(path, text + "\n")
    return path
