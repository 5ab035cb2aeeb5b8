"""Label rasterisation: polygons of one chip -> a uint8 mask.

Mask values: 0 background, ``i`` for ``classes[i - 1]``, 255 ignore (scene nodata, or
outside the areas where labelling is complete).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import shapely
from affine import Affine
from rasterio.features import rasterize
from shapely.geometry.base import BaseGeometry

__all__ = ["IGNORE", "class_pixel_counts", "geojson_shapes", "rasterize_chip"]

IGNORE = 255


def rasterize_chip(
    shapes: Sequence[tuple[BaseGeometry | dict[str, Any], int]],
    transform: Affine,
    height: int,
    width: int,
    ignore: npt.NDArray[np.bool_] | None = None,
    complete: Sequence[BaseGeometry] | None = None,
) -> npt.NDArray[np.uint8]:
    """Burn class ids into a chip's mask.

    Pixels whose centre lies in a polygon take its class id (``all_touched=False``); where
    polygons of different classes overlap, the higher class id wins.

    Args:
        shapes: (polygon, class id >= 1) pairs in the chip's CRS (a polygon may also be a
            GeoJSON-like mapping, e.g. from :func:`geojson_shapes`).
        transform: the chip's affine transform.
        height: mask height in pixels.
        width: mask width in pixels.
        ignore: pixels to mark 255 (e.g. scene nodata).
        complete: when given, pixels outside these polygons are 255 (labels are only
            exhaustive inside them); an empty sequence makes the whole chip 255.

    >>> from shapely.geometry import box
    >>> from affine import Affine
    >>> m = rasterize_chip([(box(0, -2, 2, 0), 1)], Affine(1, 0, 0, 0, -1, 0), 4, 4)
    >>> m.tolist()
    [[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    """
    mask = np.zeros((height, width), dtype=np.uint8)
    if shapes:
        ordered = [(_geojson(g), v) for g, v in sorted(shapes, key=lambda s: s[1])]
        rasterize(
            ordered,
            out=mask,
            transform=transform,
            all_touched=False,
            dtype="uint8",
        )
    if complete is not None:
        inside = np.zeros((height, width), dtype=np.uint8)
        if complete:
            rasterize(
                [(_geojson(g), 1) for g in complete],
                out=inside,
                transform=transform,
                all_touched=False,
                dtype="uint8",
            )
        mask[inside == 0] = IGNORE
    if ignore is not None:
        mask[ignore] = IGNORE
    return mask


def geojson_shapes(geoms: npt.NDArray[np.object_]) -> list[Any]:
    """GeoJSON-like mappings of many geometries at once, for :func:`rasterize_chip`.

    Polygons without holes (most labels) are converted in one vectorised pass, several
    times faster than shapely's ``__geo_interface__``; other geometries one by one.

    >>> from shapely.geometry import box
    >>> geojson_shapes(np.array([box(0, 0, 1, 1)], dtype=object))[0]["coordinates"][0][:2]
    [[1.0, 0.0], [1.0, 1.0]]
    """
    out: list[Any] = [None] * len(geoms)
    simple = (shapely.get_type_id(geoms) == 3) & (shapely.get_num_interior_rings(geoms) == 0)
    idx = np.flatnonzero(simple)
    if len(idx):
        coords, which = shapely.get_coordinates(
            shapely.get_exterior_ring(geoms[idx]), return_index=True
        )
        bounds = np.searchsorted(which, np.arange(len(idx) + 1))
        for k, i in enumerate(idx.tolist()):
            ring = coords[bounds[k] : bounds[k + 1]].tolist()
            out[i] = {"type": "Polygon", "coordinates": [ring]}
    for i in np.flatnonzero(~simple).tolist():
        out[i] = _geojson(geoms[i])
    return out


def _geojson(geom: Any) -> Any:
    """GeoJSON-like mapping of a (multi)polygon for rasterio, ~3x faster than shapely's.

    Mappings and other geometry types are returned as they are (rasterio reads their geo
    interface).
    """
    if not isinstance(geom, BaseGeometry):
        return geom
    if geom.geom_type == "Polygon":
        return {"type": "Polygon", "coordinates": _rings(geom)}
    if geom.geom_type == "MultiPolygon":
        return {"type": "MultiPolygon", "coordinates": [_rings(p) for p in geom.geoms]}
    return geom


def _rings(polygon: Any) -> list[list[list[float]]]:
    rings = [polygon.exterior, *polygon.interiors]
    return [shapely.get_coordinates(r).tolist() for r in rings]


def class_pixel_counts(mask: npt.NDArray[np.uint8], n_classes: int) -> list[int]:
    """Pixel counts ``[background, class 1, ..., class n, ignore]``.

    >>> import numpy as np
    >>> class_pixel_counts(np.array([[0, 1], [255, 1]], dtype=np.uint8), 1)
    [1, 2, 1]
    """
    if n_classes <= 8:  # a few comparisons beat bincount's cast of the mask to int64
        values = [*range(n_classes + 1), IGNORE]
        return [int(np.count_nonzero(mask == v)) for v in values]
    counts = np.bincount(mask.ravel(), minlength=256)
    return [int(c) for c in counts[: n_classes + 1]] + [int(counts[IGNORE])]
