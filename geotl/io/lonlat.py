"""Geometries on the ellipsoid: longitude/latitude (RFC 7946) and geodesic areas.

What a detection's ``area_m2`` is and how its GeoJSON geometry is made, in one place: the
predicting process and the vectorising pool's workers (which measure their objects beside
the model, off the scene's serial tail) compute them alike, to the bit. Only pyproj and
shapely: a pool worker does not import geopandas.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import numpy as np
import shapely
from pyproj import CRS, Geod, Transformer
from shapely.geometry import box

__all__ = ["crs_wkt", "geodesic_areas_m2", "lonlat", "split_antimeridian", "wrap_longitudes"]

_GEOD = Geod(ellps="WGS84")


@lru_cache(maxsize=16)
def _to_lonlat(wkt: str) -> Transformer:
    return Transformer.from_crs(CRS.from_user_input(wkt), CRS.from_epsg(4326), always_xy=True)


def crs_wkt(crs: Any) -> str:
    """A CRS (rasterio's, pyproj's, a WKT or EPSG string) as the WKT :func:`lonlat` keys on.

    Give a pool worker this string: it reprojects exactly as the process that made it.
    """
    return str(CRS.from_user_input(crs).to_wkt())


def lonlat(geoms: np.ndarray, crs: Any) -> np.ndarray:
    """Geometries in ``crs`` (a CRS, or the WKT of :func:`crs_wkt`) as longitude/latitude.

    Reprojected as geopandas' ``to_crs(4326)`` does (x, y in; longitude, latitude out),
    then cut at the antimeridian (:func:`split_antimeridian`).
    """
    transformer = _to_lonlat(crs if isinstance(crs, str) else crs_wkt(crs))

    def to_lonlat(xy: np.ndarray) -> np.ndarray:
        return np.column_stack(transformer.transform(xy[:, 0], xy[:, 1]))

    return split_antimeridian(shapely.transform(np.asarray(geoms, dtype=object), to_lonlat))


def geodesic_areas_m2(geoms: np.ndarray) -> np.ndarray:
    """Geodesic area (m², WGS84 ellipsoid) of each (multi)polygon in lon/lat degrees.

    A part's area is its shell's less its holes', whatever way each ring winds: the
    vectoriser's rings are not oriented yet (GeoJSON orients them when it writes), and a
    hole wound like its shell would add its area, as pyproj's signed sum does (a field
    with a 3,000 m² hole came out 9 % too large). For oriented polygons this is the sum of
    pyproj's ``Geod.geometry_area_perimeter`` to the bit; rings come out of shapely as
    arrays instead of one ``.xy`` each.

    >>> from shapely.geometry import Polygon
    >>> sq = Polygon([(0, 0), (0.001, 0), (0.001, 0.001), (0, 0.001)])
    >>> abs(float(_GEOD.geometry_area_perimeter(sq)[0])) == float(geodesic_areas_m2(np.array([sq]))[0])
    True
    """
    parts, geom_of_part = shapely.get_parts(geoms, return_index=True)
    rings, part_of_ring = shapely.get_rings(parts, return_index=True)
    coords, ring_of_coord = shapely.get_coordinates(rings, return_index=True)
    ends = np.cumsum(np.bincount(ring_of_coord, minlength=len(rings)))
    part_area = np.zeros(len(parts), dtype=np.float64)
    start = 0
    for r, end in enumerate(ends.tolist()):
        ring_area, _ = _GEOD.polygon_area_perimeter(coords[start:end, 0], coords[start:end, 1])
        p = part_of_ring[r]
        shell = r == 0 or part_of_ring[r - 1] != p
        part_area[p] = abs(ring_area) if shell else part_area[p] - abs(ring_area)
        start = end
    # every geometry's parts summed in order (a polygon's one part: its area to the bit); a
    # collection's lines and points have no rings and add nothing
    areas = np.zeros(len(geoms), dtype=np.float64)
    np.add.at(areas, geom_of_part, part_area)
    return np.abs(areas)


def split_antimeridian(geoms: np.ndarray) -> np.ndarray:
    """Longitude/latitude polygons cut at the antimeridian, as RFC 7946 asks (3.1.9).

    An object of a scene across longitude 180 (Fiji, Chukotka, the Aleutians) comes out of
    the reprojection with longitudes near 180 and near -180 in one ring: a polygon around
    the world, which broke the GeoJSON writer (a GEOS traceback). Such a polygon (wider
    than 180 degrees) is unwrapped east of 180 and cut there into two parts, each within
    -180..180 (:func:`wrap_longitudes`, which also brings any geometry past 180 into
    range); every other geometry is kept as it is.

    >>> ring = [(179.9, 0), (-179.9, 0), (-179.9, 1), (179.9, 1)]
    >>> (cut,) = split_antimeridian(np.array([shapely.Polygon(ring)]))
    >>> cut.geom_type, [round(v, 1) for v in cut.bounds], round(cut.area, 2)
    ('MultiPolygon', [-180.0, 0.0, 180.0, 1.0], 0.2)
    """
    out = geoms.copy()
    bounds = shapely.bounds(geoms)
    with np.errstate(invalid="ignore"):  # empty geometries have NaN bounds: left alone
        wide = np.flatnonzero((bounds[:, 2] - bounds[:, 0]) > 180)
    for i in wide.tolist():
        out[i] = shapely.make_valid(
            shapely.transform(
                geoms[i],
                lambda xy: np.column_stack(
                    [np.where(xy[:, 0] < 0, xy[:, 0] + 360, xy[:, 0]), xy[:, 1]]
                ),
            )
        )
    # the unwrapped ones (and any past 180 already: a degree grid beyond it) cut at 180
    return wrap_longitudes(out)


def wrap_longitudes(geoms: np.ndarray) -> np.ndarray:
    """Geometries that reach past longitude 180 (or -180) brought within -180..180.

    A scene in a geographic CRS can run past 180: the Pacific in 0..360 longitudes, or a
    grid whose last columns cross the antimeridian. Its objects keep those longitudes
    through ``to_crs(4326)`` (nothing to reproject), so the GeoJSON held longitudes up to
    180.002 and polygons across 180 uncut, where RFC 7946 (3.1.9) asks for -180..180 and a
    cut. Each such geometry is cut at every antimeridian it crosses and each part moved by
    whole turns into range, so an object across 180 becomes a MultiPolygon of its two
    sides; geometries within range are returned as they are.

    >>> (cut,) = wrap_longitudes(np.array([box(179.5, 0, 180.5, 1)]))
    >>> cut.geom_type, [round(v, 1) for v in cut.bounds], round(cut.area, 2)
    ('MultiPolygon', [-180.0, 0.0, 180.0, 1.0], 1.0)
    >>> wrap_longitudes(np.array([box(190, 0, 191, 1)]))[0].bounds
    (-170.0, 0.0, -169.0, 1.0)
    """
    out = geoms.copy()
    bounds = shapely.bounds(geoms)
    with np.errstate(invalid="ignore"):  # empty geometries have NaN bounds: left alone
        outside = np.flatnonzero((bounds[:, 0] < -180) | (bounds[:, 2] > 180))
    for i in outside.tolist():
        west, south, east, north = bounds[i]
        dimension = shapely.get_dimensions(geoms[i])
        parts: list[Any] = []
        for turn in range(math.floor((west + 180) / 360), math.ceil((east - 180) / 360) + 1):
            shift = 360.0 * turn
            piece = shapely.intersection(
                geoms[i], box(shift - 180, south - 1, shift + 180, north + 1)
            )
            moved = shapely.transform(piece, lambda xy, s=shift: xy - [s, 0.0])
            # a part only touching the cut (a line along it) is no part of a polygon
            parts += [
                p
                for p in shapely.get_parts(moved)
                if not p.is_empty and shapely.get_dimensions(p) == dimension
            ]
        polygons = [p for p in parts if p.geom_type == "Polygon"]
        if len(polygons) == len(parts) > 1:
            out[i] = shapely.MultiPolygon(polygons)
        elif parts:
            out[i] = parts[0] if len(parts) == 1 else shapely.GeometryCollection(parts)
    return out
