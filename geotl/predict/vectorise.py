"""Class maps and probabilities to polygons: pure functions, no IO.

A class map is a 2-D ``uint8`` array: ``0`` background, ``i`` = ``classes[i - 1]``, and
:data:`NODATA_CLASS` (255) for pixels without data (never vectorised). Each 4-connected
region of one class becomes one polygon, in the CRS of the affine transform; its holes are
kept, except those under the pixel floor of objects (``min_pixels``), which it covers.

The result for one object does not depend on the window it was computed in: polygons are
traced in global pixel coordinates, put in a canonical form (:func:`shapely.normalize`)
before the topology-preserving simplification, and only then mapped through the affine
transform. That is what makes windowed vectorisation equal whole-scene vectorisation
(see :func:`vectorise_window` and ``geotl.predict.stream``).

>>> import numpy as np
>>> from affine import Affine
>>> cm = np.zeros((4, 5), dtype=np.uint8)
>>> cm[1:3, 1:4] = 1
>>> objs = vectorise(cm, Affine(10, 0, 500, 0, -10, 1000), simplify_px=0)
>>> len(objs), objs[0].class_index, objs[0].pixel_count, objs[0].first_px
(1, 1, 6, (1, 1))
>>> objs[0].geometry.bounds
(510.0, 970.0, 540.0, 990.0)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import rasterio.features
import shapely
from affine import Affine
from rasterio.windows import Window
from scipy import ndimage
from shapely.geometry import MultiPolygon, Polygon, shape
from shapely.geometry.base import BaseGeometry
from skimage.segmentation import flood

from geotl.chips.labels import IGNORE

__all__ = [
    "FLOOD_SEEDS",
    "NODATA_CLASS",
    "CoreProgress",
    "EarlierRead",
    "VectorObject",
    "WindowExtractor",
    "class_map_from_foreground",
    "class_map_from_probabilities",
    "classes_present",
    "core_windows",
    "drop_small",
    "first_pixel",
    "flood_owned",
    "label_classes",
    "labels_starting_in",
    "min_pixels_for",
    "objects_by_windows",
    "objects_to_frame",
    "polygonal_part",
    "touches_cut_edge",
    "vectorise",
    "vectorise_by_windows",
    "vectorise_labels",
    "vectorise_owned",
    "vectorise_window",
    "whole_in",
]

NODATA_CLASS = IGNORE  # nodata pixels of a class map carry the chips' one ignore value
_CROSS = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=bool)
# how much wider each read of a core window is than the last when an owned object was cut:
# an object across the whole scene (a closed canopy) is then read in 3 windows, not 5, of a
# 2048 px scene; each read labels its whole window (BENCHMARKS.md, issue 10, stop 26)
HALO_GROWTH = 4
# a retry floods the objects an earlier read cut from their first pixels (each flood costs a
# pass over the window) instead of labelling the whole wider window; beyond this many it
# labels (BENCHMARKS.md, issue 10, stop 43)
FLOOD_SEEDS = 8


@dataclass(frozen=True)
class VectorObject:
    """One connected object of one class.

    Attributes:
        class_index: 1-based class index into the model's classes (0 is background).
        geometry: polygon or multipolygon (after repair) in the transform's CRS.
        score: mean probability of the class over the object's pixels (NaN without scores).
        pixel_count: number of pixels in the object.
        first_px: ``(row, col)`` of the object's first pixel in raster order, in the
            global grid (``row_off``/``col_off`` added): the object's identity and the
            ownership key at window seams.
        bbox_px: ``(row_min, col_min, row_max, col_max)`` (max exclusive), global grid.
        lonlat: the geometry in longitude/latitude (:func:`geotl.io.lonlat.lonlat`) and
        area_m2: its geodesic area (:func:`geotl.io.lonlat.geodesic_areas_m2`), where the
            process that vectorised it made them (a pool worker, beside the model).
    """

    class_index: int
    geometry: BaseGeometry
    score: float
    pixel_count: int
    first_px: tuple[int, int]
    bbox_px: tuple[int, int, int, int]
    lonlat: BaseGeometry | None = None
    area_m2: float | None = None


def class_map_from_probabilities(
    probabilities: np.ndarray, threshold: float = 0.5, valid: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Turn ``(C, H, W)`` class probabilities (background first) into a class map and score.

    A pixel takes the most probable foreground class when that probability reaches
    ``threshold``, else background. For two classes and ``threshold=0.5`` this is argmax.

    Args:
        probabilities: float array ``(C, H, W)``, ``C >= 2``, channel 0 = background.
        threshold: minimum foreground probability.
        valid: optional boolean ``(H, W)``; invalid pixels get :data:`NODATA_CLASS`.

    Returns:
        ``(class_map uint8 (H, W), score float32 (H, W))`` where score is the probability
        of the chosen foreground class (0 for background and nodata).

    >>> p = np.array([[[0.9, 0.2]], [[0.1, 0.8]]], dtype=np.float32)
    >>> cm, score = class_map_from_probabilities(p)
    >>> cm.tolist(), [round(float(v), 2) for v in score.ravel()]
    ([[0, 1]], [0.0, 0.8])
    """
    if probabilities.ndim != 3 or probabilities.shape[0] < 2:
        raise ValueError("probabilities must be (C, H, W) with C >= 2 (background first)")
    return class_map_from_foreground(probabilities[1:], threshold, valid)


def class_map_from_foreground(
    fg: np.ndarray, threshold: float = 0.5, valid: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`class_map_from_probabilities` of the foreground channels ``(classes, H, W)``.

    >>> cm, score = class_map_from_foreground(np.array([[[0.2, 0.8]]], dtype=np.float32))
    >>> cm.tolist()
    [[0, 1]]
    """
    if fg.shape[0] == 1:  # one class: no argmax to take
        best_p = fg[0].astype(np.float32)
        is_fg = best_p >= threshold
        class_map = is_fg.astype(np.uint8)
    else:
        best = np.argmax(fg, axis=0)
        best_p = np.take_along_axis(fg, best[None], axis=0)[0].astype(np.float32)
        is_fg = best_p >= threshold
        class_map = np.where(is_fg, best + 1, 0).astype(np.uint8)
    score = np.where(is_fg, best_p, 0.0).astype(np.float32)
    if valid is not None:
        class_map[~valid] = NODATA_CLASS
        score[~valid] = 0.0
    return class_map, score


def polygonal_part(geom: BaseGeometry) -> BaseGeometry:
    """Keep the polygonal parts of a (repaired) geometry.

    ``make_valid`` of a polygon, or of a union of polygons, can give a GeometryCollection
    with lines or points beside the polygons: an object is only its area.
    """
    if isinstance(geom, Polygon | MultiPolygon):
        return geom
    parts: list[Polygon] = []
    for g in getattr(geom, "geoms", []):
        if isinstance(g, Polygon):
            parts.append(g)
        elif isinstance(g, MultiPolygon):
            parts.extend(g.geoms)
    if not parts:
        return Polygon()
    return parts[0] if len(parts) == 1 else MultiPolygon(parts)


def _polygons_from_shapes(
    shapes: list[dict[str, Any]],
    min_hole_px: int = 1,
    nodes: np.ndarray | None = None,
    origin: tuple[int, int] = (0, 0),
) -> np.ndarray:
    """Traced polygons (GeoJSON-like, ``rasterio.features.shapes``) as shapely polygons.

    Built in one call for all their rings, not ring by ring in Python. Holes of fewer than
    ``min_hole_px`` pixels (a traced ring's area is its pixel count) are left out: the
    polygon covers them, as an object smaller than that is dropped. A hole around another
    object is at least that object's size, so it stays whenever the object does.

    The tracer puts a vertex where a ring turns only: where a neighbour's edge meets a
    straight side (a T-junction), the straight side has none, and the polygons are not a
    coverage whose shared edges can be simplified once. ``nodes`` (boolean
    ``(H + 1, W + 1)``, :func:`_node_corners`; pixel corner ``(row, col)`` at
    ``nodes[row - origin[0], col - origin[1]]``) are the pixel corners where three or more
    polygons (or background) meet: every ring through one gets a vertex there.

    >>> sq = {"type": "Polygon", "coordinates": [[(0, 0), (2, 0), (2, 2), (0, 2), (0, 0)]]}
    >>> _polygons_from_shapes([sq])[0].area
    4.0
    >>> pin = [(1, 1), (1, 2), (2, 2), (2, 1), (1, 1)]
    >>> holed = {"type": "Polygon", "coordinates": [[(0, 0), (3, 0), (3, 3), (0, 3), (0, 0)], pin]}
    >>> _polygons_from_shapes([holed])[0].area, _polygons_from_shapes([holed], 2)[0].area
    (8.0, 9.0)
    >>> labels = np.array([[1, 2], [1, 3]], dtype=np.int32)
    >>> rings = [g for g, _ in rasterio.features.shapes(labels, connectivity=4)]
    >>> bool(shapely.coverage_is_valid(_polygons_from_shapes(rings)))
    False
    >>> bool(shapely.coverage_is_valid(_polygons_from_shapes(rings, nodes=_node_corners(labels))))
    True
    """
    if any(g["type"] != "Polygon" for g in shapes):  # never from GDAL's polygonize; safe
        return np.array([shape(g) for g in shapes], dtype=object)
    rings = [np.asarray(ring, dtype=np.float64) for g in shapes for ring in g["coordinates"]]
    if not rings:
        return np.empty(0, dtype=object)
    polygon_of_ring = np.repeat(np.arange(len(shapes)), [len(g["coordinates"]) for g in shapes])
    ring_of_point = np.repeat(np.arange(len(rings)), [len(r) for r in rings])
    points = np.concatenate(rings)
    if min_hole_px > 1 and len(rings) > len(shapes):
        # the first ring of each polygon is its shell, the others its holes; a ring's
        # area by the shoelace formula over its closed run of points
        x, y = points[:, 0], points[:, 1]
        cross = np.r_[x[:-1] * y[1:] - x[1:] * y[:-1], 0.0]
        cross[np.r_[ring_of_point[1:] != ring_of_point[:-1], True]] = 0.0  # ring ends
        area = np.abs(np.bincount(ring_of_point, weights=cross, minlength=len(rings))) / 2
        keep = np.r_[True, polygon_of_ring[1:] != polygon_of_ring[:-1]] | (area >= min_hole_px)
        kept_point = keep[ring_of_point]
        polygon_of_ring = polygon_of_ring[keep]
        points = points[kept_point]
        ring_of_point = np.cumsum(keep)[ring_of_point[kept_point]] - 1
    if nodes is not None:
        points, ring_of_point = _with_nodes(points, ring_of_point, nodes, origin)
    built: np.ndarray = shapely.polygons(
        shapely.linearrings(points, indices=ring_of_point),
        indices=polygon_of_ring,
    )
    return built


def _node_corners(labels: np.ndarray) -> np.ndarray:
    """Pixel corners where three or more labels (0, background, counts) meet.

    ``(H + 1, W + 1)`` boolean: corner ``(r, c)`` is the top-left corner of pixel
    ``(r, c)``; outside the array is background. These are the only points where a ring
    goes straight and a neighbour's ring ends or turns (two labels meeting at a corner
    either both turn there or both go straight).

    >>> _node_corners(np.array([[1, 2], [1, 3]], dtype=np.int32)).astype(int).tolist()
    [[0, 1, 0], [0, 1, 1], [0, 1, 0]]
    """
    padded = np.pad(labels, 1)
    a, b = padded[:-1, :-1], padded[:-1, 1:]
    c, d = padded[1:, :-1], padded[1:, 1:]
    # a third distinct value among the four pixels around the corner
    distinct = (b != a).astype(np.uint8)
    distinct += (c != a) & (c != b)
    distinct += (d != a) & (d != b) & (d != c)
    nodes: np.ndarray = distinct >= 2
    return nodes


def _with_nodes(
    points: np.ndarray, ring_of_point: np.ndarray, nodes: np.ndarray, origin: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Rings (closed runs of ``points``) with a vertex at every node corner they pass.

    Traced rings run along pixel edges: each segment is split into unit steps, and a step
    is kept where it starts a segment or lies on a node (all in arrays, no Python loop).
    """
    same_ring = np.r_[ring_of_point[1:] == ring_of_point[:-1], False]
    step = np.zeros_like(points)
    step[:-1] = points[1:] - points[:-1]
    step[~same_ring] = 0.0
    length = np.abs(step).sum(axis=1).astype(np.int64)
    if not np.all((step[:, 0] == 0) | (step[:, 1] == 0)):  # never from the tracer: as it is
        return points, ring_of_point
    count = np.where(same_ring, length, 1)
    owner = np.repeat(np.arange(len(points)), count)
    t = np.arange(owner.size) - np.repeat(np.cumsum(count) - count, count)
    unit = np.sign(step)[owner]
    dense = points[owner] + t[:, None] * unit
    col = dense[:, 0].astype(np.int64) - origin[1]
    row = dense[:, 1].astype(np.int64) - origin[0]
    keep = (t == 0) | nodes[row, col]
    return dense[keep], ring_of_point[owner][keep]


def _finish_geometries(
    geoms_px: np.ndarray,
    simplify_px: float,
    transform: Affine,
    groups: np.ndarray | None = None,
) -> np.ndarray:
    """Repair, canonicalise, simplify (in pixels) and georeference polygons.

    ``groups`` (one id per polygon; default: each polygon its own) says which polygons are
    simplified together, as one coverage (:func:`_simplify_coverages`): touching polygons
    of one group keep their shared edges. Validity, canonical form and the affine
    transform run over the whole array at once.
    """
    geoms_px = geoms_px.copy()
    for i in np.flatnonzero(~shapely.is_valid(geoms_px)):
        geoms_px[i] = polygonal_part(shapely.make_valid(geoms_px[i]))
    geoms_px = shapely.normalize(geoms_px)
    if simplify_px > 0:
        simplified = _simplify_coverages(geoms_px, simplify_px, groups)
        took = ~shapely.is_empty(simplified)
        # the coverage simplifier can give a hole its shell's winding (an instance cluster
        # of touching fields): wound as normalize winds them again (shells clockwise in
        # pixels), each ring reversed only where it is wrong, so the rest are unchanged
        geoms_px[took] = shapely.orient_polygons(simplified[took], exterior_cw=True)
        for i in np.flatnonzero(took & ~shapely.is_valid(geoms_px)):
            geoms_px[i] = shapely.normalize(polygonal_part(shapely.make_valid(geoms_px[i])))
    t = transform

    def affine(xy: np.ndarray) -> np.ndarray:
        # shapely.affinity.affine_transform's arithmetic, over every polygon's points
        x, y = xy[:, 0], xy[:, 1]
        return np.stack([t.a * x + t.b * y + t.c, t.d * x + t.e * y + t.f], axis=1)

    out: np.ndarray = shapely.transform(geoms_px, affine)
    return out


def _simplify_coverages(
    geoms_px: np.ndarray, simplify_px: float, groups: np.ndarray | None
) -> np.ndarray:
    """Simplify each group of polygons (traced in pixels) as one coverage.

    GEOS's coverage simplifier (topology-preserving Visvalingam-Whyatt) simplifies each
    edge shared by two polygons once, so neighbours keep exactly the same boundary (no
    overlap, no gap), and keeps rings valid and holes inside like
    ``simplify(preserve_topology=True)``; it also stays linear on the huge many-holed
    polygons a noisy map gives (200k vertices: 0.9 s, not 20 s). The polygons of a group
    must be edge-matched (``nodes`` of :func:`_polygons_from_shapes`).

    The result for a polygon depends on its group only, never on polygons outside it: a
    group is whatever is read whole in one window (one polygon, or the touching objects of
    an instance model's cluster), so windows give the same polygons as the whole scene.

    >>> col, row = np.arange(8)[None, :], np.arange(8)[:, None]
    >>> labels = np.where(col >= 3 + row % 2, 2, 1).astype(np.int32)  # a zigzag between
    >>> rings = [g for g, _ in rasterio.features.shapes(labels, connectivity=4)]
    >>> geoms = _polygons_from_shapes(rings, nodes=_node_corners(labels))
    >>> alone = _simplify_coverages(geoms, 1.0, None)
    >>> together = _simplify_coverages(geoms, 1.0, np.array([1, 1]))
    >>> float(shapely.union_all(alone).area), float(shapely.union_all(together).area)
    (58.0, 64.0)
    >>> float(shapely.intersection(*together).area)  # and no overlap
    0.0
    """
    if groups is None or len(groups) == 0:
        groups = np.arange(len(geoms_px))
    out = np.empty(len(geoms_px), dtype=object)
    order = np.argsort(groups, kind="stable")  # members keep their order (by label)
    for members in np.split(order, np.flatnonzero(np.diff(groups[order])) + 1):
        out[members] = shapely.coverage_simplify(geoms_px[members], simplify_px)
    return out


def min_pixels_for(min_area_m2: float, pixel_area_m2: float) -> int:
    """Pixel count under which an object is dropped before tracing, for ``min_area_m2``.

    Half the pixels of the minimum area: a cheap filter before vectorising that keeps every
    object that could still reach the area once traced and simplified (the area test after
    vectorising decides).

    >>> min_pixels_for(2.0, 0.01), min_pixels_for(0.0, 0.01)
    (100, 1)
    """
    return max(1, int(min_area_m2 / pixel_area_m2 * 0.5))


def vectorise(
    class_map: np.ndarray,
    transform: Affine,
    *,
    scores: np.ndarray | None = None,
    simplify_px: float = 1.0,
    min_pixels: int = 1,
    row_off: int = 0,
    col_off: int = 0,
    nodata_class: int = NODATA_CLASS,
) -> list[VectorObject]:
    """Vectorise every object in a class map.

    Args:
        class_map: ``uint8 (H, W)``; 0 background, ``nodata_class`` no data.
        transform: affine transform of the *global* grid (pixel ``(col, row)`` of the
            global grid -> CRS coordinates); the array sits at ``(row_off, col_off)``.
        scores: optional ``float (H, W)`` probability of each pixel's class; the object's
            score is its mean.
        simplify_px: simplification tolerance in pixels, topology preserved (0: none).
        min_pixels: drop objects with fewer pixels.
        row_off: row of ``class_map[0, 0]`` in the global grid.
        col_off: column of ``class_map[0, 0]`` in the global grid.
        nodata_class: class value that is never vectorised.

    Returns:
        Objects sorted by first pixel (raster order), then class.
    """
    if class_map.ndim != 2:
        raise ValueError("class_map must be 2-D")
    if class_map.shape[0] == 0 or class_map.shape[1] == 0:
        return []
    labels, label_class = label_classes(class_map, nodata_class)
    return vectorise_labels(
        labels,
        label_class,
        transform,
        scores=scores,
        simplify_px=simplify_px,
        min_pixels=min_pixels,
        row_off=row_off,
        col_off=col_off,
    )


def classes_present(class_map: np.ndarray, nodata_class: int = NODATA_CLASS) -> list[int]:
    """The classes (not background or ``nodata_class``) of a uint8 class map, ascending.

    A comparison per class up to the largest present: a bincount cast the window to 64-bit
    integers first (12 % of the vectoriser's time on the demo scene's real maps).

    >>> classes_present(np.array([[0, 3, 255], [1, 3, 0]], dtype=np.uint8))
    [1, 3]
    """
    hi = int(np.max(class_map, where=class_map != nodata_class, initial=0))
    return [c for c in range(1, hi + 1) if (class_map == c).any()]


def label_classes(
    class_map: np.ndarray, nodata_class: int = NODATA_CLASS
) -> tuple[np.ndarray, list[int]]:
    """Label the 4-connected objects of each class: ``(labels int32 (H, W), label_class)``.

    ``label_class[i]`` is the class of label ``i`` (``label_class[0] = 0``, background).

    >>> labels, classes = label_classes(np.array([[1, 1, 0, 2], [0, 0, 0, 2]], dtype=np.uint8))
    >>> labels.tolist(), classes
    ([[1, 1, 0, 2], [0, 0, 0, 2]], [0, 1, 2])
    """
    label_class: list[int] = [0]
    next_label = 1
    classes = classes_present(class_map, nodata_class)
    if len(classes) == 1:  # one class: its labels are the labels
        labels, n = ndimage.label(class_map == classes[0], structure=_CROSS, output=np.int32)
        return labels, label_class + [classes[0]] * n
    labels = np.zeros(class_map.shape, dtype=np.int32)
    for cls_i in classes:
        lab, n = ndimage.label(class_map == cls_i, structure=_CROSS, output=np.int32)
        if n == 0:
            continue
        # classes are disjoint: add the shifted labels where this class is
        labels += np.where(lab > 0, lab + np.int32(next_label - 1), np.int32(0))
        label_class.extend([cls_i] * n)
        next_label += n
    return labels, label_class


def vectorise_labels(
    labels: np.ndarray,
    label_class: list[int],
    transform: Affine,
    *,
    scores: np.ndarray | None = None,
    simplify_px: float = 1.0,
    min_pixels: int = 1,
    row_off: int = 0,
    col_off: int = 0,
    only: np.ndarray | None = None,
    slices: list[tuple[slice, slice] | None] | None = None,
    groups: np.ndarray | None = None,
) -> list[VectorObject]:
    """Vectorise a label image: one object per label (each label a 4-connected region).

    Args:
        labels: ``int32 (H, W)``, 0 background, ``1..n`` objects.
        label_class: class index of each label (``label_class[0]`` is background).
        transform: see :func:`vectorise`.
        scores: see :func:`vectorise`.
        simplify_px: see :func:`vectorise`.
        min_pixels: see :func:`vectorise`.
        row_off: see :func:`vectorise`.
        col_off: see :func:`vectorise`.
        only: boolean per label: vectorise only these labels (default: all).
        slices: ``scipy.ndimage.find_objects(labels)`` when the caller has it (None for
            the labels that ``only`` leaves out is enough).
        groups: group of each label (``int``, one per entry of ``label_class``): the
            polygons of one group are simplified together as one coverage, so that those
            that touch keep their shared edges exactly (default: each label on its own).
            A group must be read whole wherever it is vectorised, or windows would not
            equal the whole scene.

    Returns:
        Objects sorted by first pixel (raster order), then class.
    """
    objects: list[VectorObject] = []
    n_labels = len(label_class) - 1
    if n_labels == 0 or labels.size == 0:
        return objects
    flat = labels.ravel()
    counts = np.bincount(flat, minlength=n_labels + 1)
    if scores is not None:
        sums = np.bincount(flat, weights=scores.astype(np.float64).ravel(), minlength=n_labels + 1)
    if slices is None:
        slices = ndimage.find_objects(labels)
    keep = counts >= max(min_pixels, 1)
    keep[0] = False
    if only is not None:
        keep &= only
    if not keep.any():
        return objects
    firsts = _first_pixels(labels, [s if keep[i] else None for i, s in enumerate(slices, 1)])
    px_transform = Affine.translation(col_off, row_off)
    # only the kept labels are traced (the others are masked out: same rings for the kept)
    kept = keep[labels]
    traced = list(
        rasterio.features.shapes(labels, mask=kept, connectivity=4, transform=px_transform)
    )
    nodes, group_of = None, None
    if groups is not None and simplify_px > 0:
        # the members of a group in label order, whatever order the tracer gave them in
        traced.sort(key=lambda t: int(t[1]))
        group_of = np.asarray(groups)[[int(v) for _, v in traced]]
        nodes = _node_corners(np.where(kept, labels, 0))
    geoms = _finish_geometries(
        _polygons_from_shapes(
            [g for g, _ in traced], min_hole_px=min_pixels, nodes=nodes, origin=(row_off, col_off)
        ),
        simplify_px,
        transform,
        group_of,
    )
    for geom, (_, value) in zip(geoms, traced, strict=True):
        lab_id = int(value)
        sl = slices[lab_id - 1]
        assert sl is not None
        r0, c0 = firsts[lab_id]
        if geom.is_empty:
            continue
        score = float(sums[lab_id] / counts[lab_id]) if scores is not None else float("nan")
        objects.append(
            VectorObject(
                class_index=label_class[lab_id],
                geometry=geom,
                score=score,
                pixel_count=int(counts[lab_id]),
                first_px=(r0 + row_off, c0 + col_off),
                bbox_px=(
                    sl[0].start + row_off,
                    sl[1].start + col_off,
                    sl[0].stop + row_off,
                    sl[1].stop + col_off,
                ),
            )
        )
    objects.sort(key=lambda o: (o.first_px, o.class_index))
    return objects


def vectorise_window(
    class_map: np.ndarray,
    transform: Affine,
    *,
    read_window: Window,
    core_window: Window,
    scene_shape: tuple[int, int],
    scores: np.ndarray | None = None,
    simplify_px: float = 1.0,
    min_pixels: int = 1,
    earlier: EarlierRead | None = None,
) -> tuple[list[VectorObject], list[tuple[int, int]]]:
    """Vectorise the objects a core window *owns*, from a read window with a halo.

    Ownership rule: an object belongs to the core window that holds its first pixel in
    raster order. An owned object that touches an edge of the read window that is not a
    scene edge may continue outside it: the caller must retry with a larger halo, and the
    objects that were whole are returned all the same; the retry passes what the earlier
    read left (``earlier``) and gets only the objects it did not have.

    Args:
        class_map: the class map of the read window.
        transform: affine transform of the global grid.
        read_window: where ``class_map`` lies in the scene.
        core_window: the part of the scene this call owns.
        scene_shape: ``(height, width)`` of the scene.
        scores: optional scores for the read window.
        simplify_px: see :func:`vectorise`.
        min_pixels: see :func:`vectorise`.
        earlier: the earlier read for this core, whose whole objects the caller has: they
            are left out (:class:`EarlierRead`).

    Returns:
        ``(owned objects, cut)``: ``cut`` holds the first pixels (global) of the owned
        objects that reached the halo's edge: they are left out, and the caller reads
        again with a larger halo; empty when every owned object was whole.

    >>> cm = np.zeros((6, 6), dtype=np.uint8); cm[2:4, 0:6] = 1
    >>> objs, cut = vectorise_window(cm[:, :4], Affine.identity(), read_window=Window(0, 0, 4, 6),
    ...     core_window=Window(0, 0, 2, 6), scene_shape=(6, 6), simplify_px=0)
    >>> cut
    [(2, 0)]
    >>> objs, cut = vectorise_window(cm, Affine.identity(), read_window=Window(0, 0, 6, 6),
    ...     core_window=Window(0, 0, 2, 6), scene_shape=(6, 6), simplify_px=0,
    ...     earlier=EarlierRead(Window(0, 0, 4, 6), ((2, 0),)))
    >>> cut, len(objs), objs[0].geometry.area
    ([], 1, 12.0)
    """
    if class_map.shape[0] == 0 or class_map.shape[1] == 0:
        return [], []
    cut: list[tuple[int, int]] = []
    core_local = Window(
        core_window.col_off - read_window.col_off,
        core_window.row_off - read_window.row_off,
        core_window.width,
        core_window.height,
    )
    if earlier is not None and earlier.floods:
        # only the objects the earlier read cut can be owned and new here
        found, cut = flood_owned(
            class_map, earlier.seeds, read_window, core_local, scene_shape, min_pixels
        )
        labels = np.zeros(class_map.shape, dtype=np.int32)
        label_class = [0]
        slices: list[tuple[slice, slice] | None] = []
        for lab, (box, mask) in enumerate(found, start=1):
            labels[box][mask] = lab
            label_class.append(int(class_map[box][0, np.argmax(mask[0])]))
            slices.append(box)
        owned_labels = list(range(1, len(found) + 1))
    else:
        labels, label_class = label_classes(class_map)
        # ownership and cuts from the labels alone: only owned objects are traced
        slices = drop_small(
            labels, ndimage.find_objects(labels), min_pixels, read_window, scene_shape
        )
        owned_labels = []
        done = None if earlier is None else earlier.window
        for lab in labels_starting_in(labels, slices, core_local):
            sl = slices[lab - 1]
            assert sl is not None
            if touches_cut_edge(sl, read_window, scene_shape):
                # may continue outside: read again with a larger halo
                cut.append(first_pixel(labels, lab, sl, read_window))
            elif not whole_in(done, sl, read_window, scene_shape):
                owned_labels.append(lab)
    owned = vectorise_owned(
        labels,
        label_class,
        slices,
        owned_labels,
        transform,
        scores=scores,
        simplify_px=simplify_px,
        min_pixels=min_pixels,
        row_off=read_window.row_off,
        col_off=read_window.col_off,
    )
    return owned, cut


def touches_cut_edge(
    sl: tuple[slice, slice], read_window: Window, scene_shape: tuple[int, int]
) -> bool:
    """Whether a box ``sl`` (local to ``read_window``) touches an edge that is not the scene's.

    An object that does may continue outside the read window.

    >>> touches_cut_edge((slice(0, 2), slice(1, 3)), Window(0, 5, 4, 4), (20, 20))
    True
    >>> touches_cut_edge((slice(1, 3), slice(0, 3)), Window(0, 5, 4, 4), (20, 20))
    False
    """
    top, left, bottom, right = _cut_sides(read_window, scene_shape)
    return bool(
        (top and sl[0].start == 0)
        or (left and sl[1].start == 0)
        or (bottom and sl[0].stop == read_window.height)
        or (right and sl[1].stop == read_window.width)
    )


def _cut_sides(read_window: Window, scene_shape: tuple[int, int]) -> tuple[bool, ...]:
    """Which edges of ``read_window`` (top, left, bottom, right) are not the scene's."""
    r_row, r_col = read_window.row_off, read_window.col_off
    return (
        r_row > 0,
        r_col > 0,
        r_row + read_window.height < scene_shape[0],
        r_col + read_window.width < scene_shape[1],
    )


def drop_small(
    labels: np.ndarray,
    slices: list[tuple[slice, slice] | None],
    min_pixels: int,
    read_window: Window | None = None,
    scene_shape: tuple[int, int] | None = None,
) -> list[tuple[slice, slice] | None]:
    """``slices`` with None for the labels of fewer than ``min_pixels`` pixels.

    One count over the array instead of a test per label: a noisy map has thousands of
    specks under the size limit in a window. A label on an edge of ``read_window`` that is
    not the scene's (:func:`touches_cut_edge`) may be larger outside it, so it is kept.

    >>> labels = np.array([[1, 0, 2, 2], [0, 3, 0, 2]], dtype=np.int32)
    >>> drop_small(labels, ndimage.find_objects(labels), 2)
    [None, (slice(0, 2, None), slice(2, 4, None)), None]
    >>> drop_small(labels, ndimage.find_objects(labels), 2, Window(4, 0, 4, 2), (2, 8))[0]
    (slice(0, 1, None), slice(0, 1, None))
    """
    if min_pixels <= 1 or not slices:
        return slices
    small = np.bincount(labels.ravel(), minlength=len(slices) + 1) < min_pixels
    if read_window is not None and scene_shape is not None:
        edges = (labels[0], labels[:, 0], labels[-1], labels[:, -1])
        for cut, edge in zip(_cut_sides(read_window, scene_shape), edges, strict=True):
            if cut:
                small[edge] = False
    return [None if tiny else sl for tiny, sl in zip(small[1:].tolist(), slices, strict=True)]


def whole_in(
    done: Window | None,
    sl: tuple[slice, slice],
    read_window: Window,
    scene_shape: tuple[int, int],
) -> bool:
    """Whether the object with box ``sl`` (local to ``read_window``) was whole in ``done``.

    ``done`` is an earlier, smaller read window around the same core. An object inside it
    that touches none of its edges that are not scene edges is the same object there (the
    same pixels, so the same split and polygon): that read already returned it.

    >>> whole_in(Window(0, 0, 4, 4), (slice(1, 3), slice(0, 3)), Window(0, 0, 8, 8), (8, 8))
    True
    >>> whole_in(Window(0, 0, 4, 4), (slice(1, 4), slice(0, 3)), Window(0, 0, 8, 8), (8, 8))
    False
    """
    if done is None:
        return False
    top, left = read_window.row_off + sl[0].start, read_window.col_off + sl[1].start
    bottom, right = read_window.row_off + sl[0].stop, read_window.col_off + sl[1].stop
    d_bottom, d_right = done.row_off + done.height, done.col_off + done.width
    return bool(
        (top > done.row_off or done.row_off == 0)
        and (left > done.col_off or done.col_off == 0)
        and (bottom < d_bottom or d_bottom == scene_shape[0])
        and (right < d_right or d_right == scene_shape[1])
    )


@dataclass(frozen=True)
class EarlierRead:
    """What an earlier read of a core window left for the next, wider one.

    Attributes:
        window: the earlier read window; the objects whole in it were returned
            (:func:`whole_in`).
        seeds: the first pixels ``(row, col)`` (global) of the owned objects it cut:
            pieces that may continue outside it. The owned objects the next read can add
            are the ones through these pixels (and no others: an owned object that is not
            whole in ``window`` has its first pixel there, on a piece that reaches an edge).
    """

    window: Window
    seeds: tuple[tuple[int, int], ...]

    @property
    def floods(self) -> bool:
        """Whether flooding from the seeds is cheaper than labelling the wider window."""
        return len(self.seeds) <= FLOOD_SEEDS


def first_pixel(
    labels: np.ndarray, lab: int, sl: tuple[slice, slice], read_window: Window
) -> tuple[int, int]:
    """The global ``(row, col)`` of label ``lab``'s first pixel; ``sl`` its box in ``labels``.

    >>> first_pixel(np.array([[0, 0, 1], [1, 1, 1]]), 1, (slice(0, 2), slice(0, 3)), Window(5, 2, 3, 2))
    (2, 7)
    """
    return read_window.row_off + sl[0].start, read_window.col_off + _first_column(labels, lab, sl)


def flood_owned(
    values: np.ndarray,
    seeds: Iterable[tuple[int, int]],
    read_window: Window,
    core: Window,
    scene_shape: tuple[int, int],
    min_pixels: int = 1,
) -> tuple[list[tuple[tuple[slice, slice], np.ndarray]], list[tuple[int, int]]]:
    """The owned objects through ``seeds`` in a read: ``([(box, mask in box)], cut)``.

    An object is a 4-connected region of one value of ``values`` (the read window's array;
    ``seeds`` are global pixels of objects, never of background). Each is flooded from its
    seed (scikit-image's flood fill: one pass over the window, not a labelling of it), and
    kept when ``core`` (in the array, as for :func:`labels_starting_in`) holds its first
    pixel, it has ``min_pixels`` pixels and it touches no edge of ``read_window`` that is
    not the scene's; owned objects that do are *cut*: their first pixels (global) come back
    in ``cut``. Objects in raster order of their first pixel, as
    :func:`scipy.ndimage.label` numbers them.

    >>> v = np.zeros((4, 6), dtype=np.uint8); v[1, 1:5] = 1; v[3, 0:2] = 2
    >>> found, cut = flood_owned(v, [(1, 3), (1, 1), (3, 0)], Window(0, 0, 6, 4),
    ...     Window(0, 0, 3, 3), (4, 6))
    >>> [(box, mask.sum()) for box, mask in found], cut
    ([((slice(1, 2, None), slice(1, 5, None)), np.int64(4))], [])
    >>> found, cut = flood_owned(v[:, :4], [(1, 1)], Window(0, 0, 4, 4), Window(0, 0, 3, 3), (4, 6))
    >>> found, cut
    ([], [(1, 1)])
    """
    r0, c0 = read_window.row_off, read_window.col_off
    found: list[tuple[tuple[int, int], tuple[slice, slice], np.ndarray]] = []
    cut: list[tuple[int, int]] = []
    seen: list[tuple[tuple[slice, slice], np.ndarray]] = []  # every object flooded
    for row, col in sorted(set(seeds)):
        r, c = row - r0, col - c0
        if any(
            b[0].start <= r < b[0].stop
            and b[1].start <= c < b[1].stop
            and m[r - b[0].start, c - b[1].start]
            for b, m in seen
        ):
            continue  # another seed of an object already flooded
        full = flood(values, (r, c), connectivity=1)
        rows = np.flatnonzero(full.any(axis=1))
        top, bottom = int(rows[0]), int(rows[-1]) + 1
        cols = np.flatnonzero(full[top:bottom].any(axis=0))
        box = (slice(top, bottom), slice(int(cols[0]), int(cols[-1]) + 1))
        mask = full[box].copy()
        seen.append((box, mask))
        first = (top, box[1].start + int(np.argmax(mask[0])))
        if not (
            core.row_off <= first[0] < core.row_off + core.height
            and core.col_off <= first[1] < core.col_off + core.width
        ):
            continue  # another core's
        if touches_cut_edge(box, read_window, scene_shape):
            cut.append((first[0] + r0, first[1] + c0))
        elif np.count_nonzero(mask) >= min_pixels:
            found.append((first, box, mask))
    found.sort(key=lambda f: f[0])
    return [(box, mask) for _, box, mask in found], sorted(cut)


def vectorise_owned(
    labels: np.ndarray,
    label_class: list[int],
    slices: list[tuple[slice, slice] | None],
    owned_labels: list[int],
    transform: Affine,
    *,
    scores: np.ndarray | None = None,
    simplify_px: float = 1.0,
    min_pixels: int = 1,
    row_off: int = 0,
    col_off: int = 0,
) -> list[VectorObject]:
    """:func:`vectorise_labels` of the ``owned_labels`` only, traced inside their box.

    A retried window's halo can be larger than its core: every owned pixel lies in the
    owned objects' bounding box, and the other labels are masked out of the tracing, so
    the owned objects are the same as from the whole array.

    Args:
        labels: see :func:`vectorise_labels`.
        label_class: see :func:`vectorise_labels`.
        slices: ``scipy.ndimage.find_objects(labels)``.
        owned_labels: the labels to vectorise.
        transform: see :func:`vectorise`.
        scores: see :func:`vectorise`.
        simplify_px: see :func:`vectorise`.
        min_pixels: see :func:`vectorise`.
        row_off: row of ``labels[0, 0]`` in the global grid.
        col_off: column of ``labels[0, 0]`` in the global grid.
    """
    if not owned_labels:
        return []
    only = np.zeros(len(label_class), dtype=bool)
    only[owned_labels] = True
    boxes = [b for b in (slices[lab - 1] for lab in owned_labels) if b is not None]
    top, left = min(b[0].start for b in boxes), min(b[1].start for b in boxes)
    bottom, right = max(b[0].stop for b in boxes), max(b[1].stop for b in boxes)
    crop = (slice(top, bottom), slice(left, right))
    return vectorise_labels(
        labels[crop],
        label_class,
        transform,
        scores=None if scores is None else scores[crop],
        simplify_px=simplify_px,
        min_pixels=min_pixels,
        row_off=row_off + top,
        col_off=col_off + left,
        only=only,
        slices=[
            (
                slice(sl[0].start - top, sl[0].stop - top),
                slice(sl[1].start - left, sl[1].stop - left),
            )
            if sl is not None and only[lab]
            else None
            for lab, sl in enumerate(slices, start=1)
        ],
    )


def _first_pixels(
    labels: np.ndarray, slices: list[tuple[slice, slice] | None]
) -> dict[int, tuple[int, int]]:
    """``label -> (row, col)`` of its first pixel in raster order (local to ``labels``).

    The leftmost pixel of the top row of the label's bounding box.
    """
    return {
        lab: (sl[0].start, _first_column(labels, lab, sl))
        for lab, sl in enumerate(slices, start=1)
        if sl is not None
    }


def _first_column(labels: np.ndarray, lab: int, sl: tuple[slice, slice]) -> int:
    """Column of ``lab``'s first pixel: the leftmost in the top row of its box ``sl``."""
    return int(sl[1].start) + int(np.argmax(labels[sl[0].start, sl[1]] == lab))


def labels_starting_in(
    labels: np.ndarray, slices: list[tuple[slice, slice] | None], core: Window
) -> list[int]:
    """The labels whose first pixel (raster order) lies in ``core`` (local to ``labels``).

    The bounding boxes decide it (a label's first pixel is in its box's top row); its
    column is looked up only for the boxes that straddle the core's left or right edge.

    >>> labels = np.array([[0, 1, 1], [2, 2, 1]], dtype=np.int32)
    >>> labels_starting_in(labels, ndimage.find_objects(labels), Window(0, 0, 2, 2))
    [1, 2]
    >>> labels_starting_in(labels, ndimage.find_objects(labels), Window(2, 0, 1, 2))
    []
    """
    row0, col0 = core.row_off, core.col_off
    row1, col1 = row0 + core.height, col0 + core.width
    out: list[int] = []
    for lab, sl in enumerate(slices, start=1):
        if sl is None or not row0 <= sl[0].start < row1:
            continue
        left, right = sl[1].start, sl[1].stop
        if left >= col1 or right <= col0:
            continue
        straddles = left < col0 or right > col1  # an edge: look up the first pixel's column
        if straddles and not col0 <= _first_column(labels, lab, sl) < col1:
            continue
        out.append(lab)
    return out


WindowReader = Callable[[int, int, int, int], tuple[np.ndarray, np.ndarray | None]]
"""``read(row_off, col_off, height, width) -> (class_map, scores or None)``."""


def vectorise_by_windows(
    read: WindowReader,
    scene_shape: tuple[int, int],
    transform: Affine,
    *,
    window_px: int = 1024,
    halo_px: int = 64,
    simplify_px: float = 1.0,
    min_pixels: int = 1,
) -> Iterator[VectorObject]:
    """Vectorise a scene window by window, seam-free, in memory bounded by the window.

    Each core window is read with a halo; an object belongs to the window holding its
    first pixel (raster order). When an owned object reaches the halo's edge, the window is
    read again with a halo :data:`HALO_GROWTH` times as wide, until every owned object is
    whole. The objects equal those of :func:`vectorise` on the whole scene.

    Args:
        read: reads ``(class_map, scores)`` of a window of the scene.
        scene_shape: ``(height, width)``.
        transform: the scene's affine transform.
        window_px: core window size.
        halo_px: initial halo around the core window.
        simplify_px: see :func:`vectorise`.
        min_pixels: see :func:`vectorise`.

    Yields:
        Objects, window by window (raster order inside each window).

    >>> cm = np.zeros((7, 9), dtype=np.uint8); cm[1:6, 2:8] = 1; cm[3, 4] = 0
    >>> tiled = list(vectorise_by_windows(lambda r, c, h, w: (cm[r:r+h, c:c+w], None),
    ...     cm.shape, Affine.identity(), window_px=3, halo_px=1, simplify_px=0))
    >>> [o.geometry.equals(w.geometry) for o, w in zip(tiled, vectorise(cm, Affine.identity(), simplify_px=0))]
    [True]
    """

    def extract(
        data: tuple[np.ndarray, np.ndarray | None],
        read_window: Window,
        core_window: Window,
        earlier: EarlierRead | None,
    ) -> tuple[list[VectorObject], list[tuple[int, int]]]:
        class_map, scores = data
        return vectorise_window(
            class_map,
            transform,
            read_window=read_window,
            core_window=core_window,
            scene_shape=scene_shape,
            scores=scores,
            simplify_px=simplify_px,
            min_pixels=min_pixels,
            earlier=earlier,
        )

    yield from objects_by_windows(read, extract, scene_shape, window_px=window_px, halo_px=halo_px)


WindowExtractor = Callable[
    [Any, Window, Window, EarlierRead | None], tuple[list[VectorObject], list[tuple[int, int]]]
]
"""``extract(data, read_window, core_window, earlier) -> (owned objects, cut)``.

The owned objects that are whole in ``read_window``, less those the previous call for this
core returned (``earlier``, None at the first: :class:`EarlierRead`); ``cut`` holds the
first pixels (global) of the owned objects that may continue outside ``read_window``,
empty when there are none.
"""


def core_windows(scene_shape: tuple[int, int], window_px: int) -> list[list[Window]]:
    """The core windows that tile a scene, row by row.

    Each row of cores is a *row strip*: strips own disjoint objects (ownership rule), so
    they can be vectorised independently and their objects concatenated in strip order.

    >>> [[(c.row_off, c.col_off) for c in row] for row in core_windows((5, 7), 4)]
    [[(0, 0), (0, 4)], [(4, 0), (4, 4)]]
    """
    scene_h, scene_w = scene_shape
    window_px = max(int(window_px), 1)
    return [
        [
            Window(c, r, min(window_px, scene_w - c), min(window_px, scene_h - r))
            for c in range(0, scene_w, window_px)
        ]
        for r in range(0, scene_h, window_px)
    ]


@dataclass
class CoreProgress:
    """How far the halo loop got with one core window, to carry into a later run.

    Attributes:
        owned: the core's objects found whole so far.
        earlier: the last read and the owned objects it cut (objects whole in it are not
            made again).
        halo_px: the halo of the next read.
    """

    owned: list[VectorObject] = field(default_factory=list)
    earlier: EarlierRead | None = None
    halo_px: int = 0


def objects_by_windows(
    read: Callable[[int, int, int, int], Any],
    extract: WindowExtractor,
    scene_shape: tuple[int, int],
    *,
    window_px: int = 1024,
    halo_px: int = 64,
    cores: Iterable[Window] | None = None,
    progress: CoreProgress | None = None,
    reach_px: int | None = None,
) -> Iterator[VectorObject]:
    """The halo loop shared by every task's object extractor.

    Core windows tile the scene; each is read with a halo and ``extract`` returns the
    objects the core owns that are whole, and the first pixels of those that were cut; when
    there are some, the window is read again with a halo :data:`HALO_GROWTH` times as wide,
    and only the objects that were cut are made again.

    Args:
        read: reads the data of a window ``(row_off, col_off, height, width)``.
        extract: turns a window's data into owned objects (see :data:`WindowExtractor`).
        scene_shape: ``(height, width)``.
        window_px: core window size.
        halo_px: initial halo around the core window.
        cores: only these core windows (of :func:`core_windows` with ``window_px``);
            default: all of them, in raster order.
        progress: the first core starts from it and it is kept up to date read by read,
            so that a caller whose ``read`` raised can run that core again from there.
        reach_px: the halo grows to this and stops there when ``extract`` cuts nothing
            at it (an instance model splits wider clusters by tiles); default: unbounded.

    Yields:
        Objects, window by window.
    """
    scene_h, scene_w = scene_shape
    if cores is None:
        cores = [c for row in core_windows(scene_shape, window_px) for c in row]
    for i, core in enumerate(cores):
        state = progress if i == 0 and progress is not None else CoreProgress()
        halo = max(int(halo_px), state.halo_px, 1)
        while True:
            state.halo_px = halo
            r0, c0 = max(core.row_off - halo, 0), max(core.col_off - halo, 0)
            r1 = min(core.row_off + core.height + halo, scene_h)
            c1 = min(core.col_off + core.width + halo, scene_w)
            read_window = Window(c0, r0, c1 - c0, r1 - r0)
            data = read(r0, c0, r1 - r0, c1 - c0)
            whole, cut = extract(data, read_window, core, state.earlier)
            state.owned.extend(whole)
            if not cut:
                break
            wider = halo * HALO_GROWTH
            if reach_px is not None and halo < reach_px:
                wider = min(wider, reach_px)
            state.earlier, halo = EarlierRead(read_window, tuple(cut)), wider
        # raster order inside the core, however many reads it took
        yield from sorted(state.owned, key=lambda o: (o.first_px, o.class_index))


def objects_to_frame(
    objects: list[VectorObject], crs: object, classes: list[str] | None = None
) -> object:
    """Objects as a GeoDataFrame (columns class, score, pixel_count, first_row, first_col).

    Args:
        objects: from :func:`vectorise`.
        crs: CRS of the transform the objects were georeferenced with.
        classes: class names (``classes[i - 1]`` for class index ``i``); indices when None.

    Returns:
        A ``geopandas.GeoDataFrame``.
    """
    import geopandas as gpd

    return gpd.GeoDataFrame(
        {
            "class": [
                classes[o.class_index - 1] if classes else str(o.class_index) for o in objects
            ],
            "score": [o.score for o in objects],
            "pixel_count": [o.pixel_count for o in objects],
            "first_row": [o.first_px[0] for o in objects],
            "first_col": [o.first_px[1] for o in objects],
        },
        geometry=[o.geometry for o in objects],
        crs=crs,
    )
