"""Pass-to-pass change detection: which objects are new, which are gone.

Two passes are compared only where both saw the ground (the intersection of their
footprints): an object outside the other pass's footprint is neither new nor gone, it was
simply not seen. Objects are matched by overlap, not by identical outlines: a current and a
previous object of the same class are the same object when their intersection covers at
least ``min_overlap`` of the smaller one. That survives the one- or two-pixel shifts that
co-registration and vectorisation produce between passes, and keeps a field split in two
(or two merged) from showing up as new and gone. Matching is many-to-many.

Which objects take part, and what counts as a change (:class:`ChangeCriteria`):

* the compared ground is the intersection of both footprints, each first shrunk by an edge
  margin (near a scene's edge the model saw padding, not ground); an object takes part when
  ``min_inside`` of it lies in that ground, and when it is at least ``min_area_m2`` (an
  object near predict's minimum area can fall under it in the other pass and vanish:
  not a change on the ground);
* an object that takes part is new (or gone) only when it matches *no* object of the other
  pass, whether that object takes part or not: the same crown just inside the compared
  ground in one pass and just outside it in the other is not a change.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio
import shapely
from rasterio.enums import MaskFlags
from rasterio.errors import NodataShadowWarning, RasterioError
from rasterio.features import shapes
from rasterio.warp import transform_geom
from shapely.geometry import box, mapping, shape
from shapely.geometry.base import BaseGeometry

if TYPE_CHECKING:
    from geotl.models.artefact import ModelCard
    from geotl.predict import PredictOptions

__all__ = [
    "CHANGE_COLUMNS",
    "ChangeCriteria",
    "ChangeSet",
    "OverlapPairs",
    "detect_changes",
    "empty_features",
    "metric_crs",
    "overlap_pairs",
    "scene_footprint",
    "share_inside",
    "total_area_m2",
]

log = logging.getLogger(__name__)

FEATURE_COLUMNS = ["id", "class", "score", "area_m2", "scene", "acquired", "model"]
#: ``scene`` / ``acquired`` are the object's own pass (the previous one for ``gone``);
#: ``pass_*`` the pass whose changes these are, ``previous_*`` the pass it was compared with
CHANGE_COLUMNS = [
    *FEATURE_COLUMNS,
    "change",
    "pass_scene",
    "previous_scene",
    "matched_ids",
    "pass_acquired",
    "previous_acquired",
]


@dataclass(frozen=True)
class OverlapPairs:
    """Intersecting pairs between two arrays of geometries (see :func:`overlap_pairs`).

    Attributes:
        left: index into the first array, one per pair.
        right: index into the second array.
        intersection_m2: area of each pair's intersection (in the geometries' units).
        overlap: intersection / area of the smaller of the two (0 when that is empty).
    """

    left: np.ndarray
    right: np.ndarray
    intersection_m2: np.ndarray
    overlap: np.ndarray


def overlap_pairs(left: np.ndarray, right: np.ndarray) -> OverlapPairs:
    """Every intersecting (left, right) pair with its overlap share, found with an STRtree.

    This is how two objects are matched: they are the same object when ``overlap`` reaches
    a threshold (``min_overlap``). Geometries should be valid and in a metric CRS.

    >>> from shapely.geometry import box
    >>> p = overlap_pairs(np.array([box(0, 0, 2, 2)]), np.array([box(1, 0, 2, 1), box(5, 5, 6, 6)]))
    >>> p.left.tolist(), p.right.tolist(), p.overlap.tolist()
    ([0], [0], [1.0])
    """
    empty = np.zeros(0, dtype=np.intp)
    if len(left) == 0 or len(right) == 0:
        return OverlapPairs(empty, empty, np.zeros(0), np.zeros(0))
    tree = shapely.STRtree(right)
    li, ri = tree.query(left, predicate="intersects")
    a = left[li]
    b = right[ri]
    inter = shapely.area(shapely.intersection(a, b))
    smaller = np.minimum(shapely.area(a), shapely.area(b))
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(smaller > 0, inter / smaller, 0.0)
    return OverlapPairs(li, ri, np.asarray(inter, dtype=float), np.asarray(frac, dtype=float))


@dataclass(frozen=True)
class ChangeCriteria:
    """Which objects two passes compare, and when two objects are the same object.

    Attributes:
        min_overlap: intersection / smaller area above which two objects of the same class
            are the same object.
        min_inside: share of an object's area that must lie in the compared ground for the
            object to take part.
        edge_margin_m: each footprint shrinks by this much before the compared ground is
            taken: near a scene's edge the model saw padding instead of ground, so objects
            there differ between passes that start elsewhere without any change on the
            ground.
        min_area_m2: smaller objects take no part (they still match the other pass's).
    """

    min_overlap: float = 0.5
    min_inside: float = 0.5
    edge_margin_m: float = 0.0
    min_area_m2: float = 0.0

    @classmethod
    def for_model(
        cls,
        predict: PredictOptions,
        card: ModelCard,
        *,
        edge_margin_m: float | None = None,
        min_area_m2: float | None = None,
    ) -> ChangeCriteria:
        """The monitor's criteria for a model's passes (``None``: the default).

        The edge margin defaults to half the window overlap
        (:meth:`geotl.predict.PredictOptions.edge_margin_m`): the band along a scene's edge
        where no neighbour window overlaps, so the model saw padded pixels. The minimum
        area defaults to twice predict's (the region's ``[predict] min_area_m2``, else the
        card's): a one-pixel change of an outline moves a small object's area by about its
        perimeter times the pixel size, so an object under twice the cut-off can fall below
        it in the other pass and vanish (BENCHMARKS.md, "Pass to pass, third look").

        Args:
            predict: the :class:`~geotl.predict.PredictOptions` the passes are predicted with.
            card: the model card.
            edge_margin_m: the region's ``[monitor] edge_margin_m``.
            min_area_m2: the region's ``[monitor] change_min_area_m2``.
        """
        if edge_margin_m is None:
            edge_margin_m = float(predict.edge_margin_m(card))
        if min_area_m2 is None:
            min_area_m2 = 2.0 * predict.min_area_for(card)
        return cls(edge_margin_m=edge_margin_m, min_area_m2=min_area_m2)


@dataclass
class ChangeSet:
    """What changed between a previous and a current pass.

    Attributes:
        frame: ``new`` features (from the current pass) and ``gone`` ones (from the previous
            pass), EPSG:4326, with columns :data:`CHANGE_COLUMNS`.
        new: how many current objects have no match in the previous pass.
        gone: how many previous objects have no match in the current pass.
        matches: current id -> ids of the previous objects it matched.
        common_area_m2: area both passes cover (less the edge margin).
        compared: objects of both passes that took part (inside the common area, less the
            edge margin, and at least the criteria's minimum area).
        new_area_m2: the new objects' ``area_m2`` summed (what an analyst asks first: how
            much was cleared since the last pass, not how many patches).
        gone_area_m2: the gone objects' ``area_m2`` summed.
    """

    frame: gpd.GeoDataFrame
    new: int
    gone: int
    matches: dict[str, list[str]] = field(default_factory=dict)
    common_area_m2: float = 0.0
    compared: int = 0
    new_area_m2: float = 0.0
    gone_area_m2: float = 0.0


def total_area_m2(frame: gpd.GeoDataFrame) -> float:
    """The features' ``area_m2`` summed (geodesic, as predict measured each object).

    The sum of the attribute, not the area of the features' union: it equals what a GIS
    sums over the file's ``area_m2`` column (boxes of ``detection`` may overlap: their
    overlap is counted once per box there too).

    >>> total_area_m2(gpd.GeoDataFrame({"area_m2": [1.5, None, 2.25]}, geometry=[None] * 3))
    3.75
    """
    if frame.empty or "area_m2" not in frame.columns:
        return 0.0
    return float(pd.to_numeric(frame["area_m2"], errors="coerce").fillna(0.0).sum())


def empty_features(columns: list[str] | None = None) -> gpd.GeoDataFrame:
    """An empty feature frame in EPSG:4326 with the given columns."""
    cols = columns or FEATURE_COLUMNS
    return gpd.GeoDataFrame(
        {c: pd.Series(dtype="object") for c in cols}, geometry=[], crs="EPSG:4326"
    )


def scene_footprint(path: Path, max_size_px: int = 256) -> BaseGeometry:
    """The area of a scene holding valid data, in EPSG:4326.

    The first band's mask is read decimated (at most ``max_size_px`` on a side) and
    polygonised; a scene without nodata gives its bounding box. Falls back to the bounding
    box when the mask cannot be read.
    """
    with rasterio.open(path) as ds:
        bbox = shape(transform_geom(ds.crs, "EPSG:4326", mapping(box(*ds.bounds))))
        if MaskFlags.all_valid in ds.mask_flag_enums[0]:
            return bbox
        scale = max(ds.width, ds.height) / max_size_px
        out_w = max(1, round(ds.width / max(scale, 1.0)))
        out_h = max(1, round(ds.height / max(scale, 1.0)))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NodataShadowWarning)  # nodata wins: fine here
                mask = ds.read_masks(1, out_shape=(out_h, out_w))
        except RasterioError as exc:
            log.debug("%s: mask not readable (%s); footprint = bounds", path, exc)
            return bbox
        if mask.all():
            return bbox
        transform = ds.transform @ ds.transform.scale(ds.width / out_w, ds.height / out_h)
        valid = (mask > 0).astype(np.uint8)
        parts = [
            shape(g)
            for g, v in shapes(valid, mask=valid.astype(bool), transform=transform)
            if v == 1
        ]
        if not parts:
            return shapely.Polygon()
        local = shapely.union_all(parts)
        return shapely.make_valid(shape(transform_geom(ds.crs, "EPSG:4326", mapping(local))))


def metric_crs(area: BaseGeometry) -> str:
    """The UTM zone (EPSG code) around an EPSG:4326 geometry: where areas are in m².

    >>> from shapely.geometry import Point
    >>> metric_crs(Point(-99.2, 47.0))
    'EPSG:32614'
    """
    lon, lat = area.representative_point().coords[0]
    zone = int((lon + 180) // 6) % 60 + 1
    return f"EPSG:{32600 + zone if lat >= 0 else 32700 + zone}"


def share_inside(frame: gpd.GeoDataFrame, area: BaseGeometry) -> np.ndarray:
    """Share of each feature's area that lies inside ``area`` (same CRS; 0 for empty ones)."""
    if frame.empty:
        return np.zeros(0)
    geoms = frame.geometry.values
    total = shapely.area(geoms)
    inter = shapely.area(shapely.intersection(geoms, area))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(np.where(total > 0, inter / total, 0.0), dtype=float)


def _taking_part(
    frame: gpd.GeoDataFrame, common: BaseGeometry, min_inside: float, min_area_m2: float
) -> np.ndarray:
    """Indexes of the objects compared: enough of them inside ``common``, large enough."""
    keep = share_inside(frame, common) >= min_inside
    if min_area_m2 > 0 and not frame.empty:
        keep &= shapely.area(frame.geometry.values) >= min_area_m2
    return np.flatnonzero(keep)


def _inside_edges(footprint: BaseGeometry, margin_m: float) -> BaseGeometry:
    """A footprint (metric CRS) less the band ``margin_m`` wide along its outer edges.

    Holes (nodata inside the scene: saturated pixels, masked clouds) stay as they are and do
    not grow by the margin: windows are padded only at the scene's edges, and a scene with
    hundreds of nodata pixels would otherwise have almost nothing left to compare.

    >>> fp = box(0, 0, 100, 100).difference(box(50, 50, 51, 51))
    >>> round(_inside_edges(fp, 10).area)
    6399
    """
    parts = shapely.get_parts(shapely.get_parts(footprint))  # a collection may hold multis
    polygons = [g for g in parts if g.geom_type == "Polygon" and not g.is_empty]
    if not polygons:
        return shapely.Polygon()
    outer = shapely.union_all(shapely.polygons(shapely.get_exterior_ring(polygons)))
    return shapely.make_valid(shapely.intersection(outer.buffer(-margin_m), footprint))


def _as_features(frame: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    out = frame.copy()
    for col in FEATURE_COLUMNS:
        if col not in out.columns:
            out[col] = None
    out["id"] = out["id"].astype(str)
    return out


def detect_changes(
    current: gpd.GeoDataFrame,
    previous: gpd.GeoDataFrame,
    current_footprint: BaseGeometry,
    previous_footprint: BaseGeometry,
    *,
    current_scene: str,
    previous_scene: str,
    criteria: ChangeCriteria | None = None,
    current_acquired: str | None = None,
    previous_acquired: str | None = None,
) -> ChangeSet:
    """Compare two passes' detections inside the area both cover.

    Args:
        current: this pass's features (EPSG:4326, predict's columns).
        previous: the previous pass's features over the same area.
        current_footprint: valid-data footprint of this pass (EPSG:4326).
        previous_footprint: valid-data footprint of the previous pass (EPSG:4326).
        current_scene: name of this pass's scene (recorded on every change feature).
        previous_scene: name of the previous pass's scene.
        criteria: which objects take part and when two are the same (default: every
            object at least half inside the common footprint, no edge margin, no minimum
            area; the monitor uses :meth:`ChangeCriteria.for_model`).
        current_acquired: this pass's acquisition time (ISO 8601), recorded on every change
            feature as ``pass_acquired``: a ``gone`` feature's own ``acquired`` is the
            previous pass's, so without it a changes layer cannot be filtered by pass date.
        previous_acquired: the previous pass's (``previous_acquired``).

    Returns:
        The :class:`ChangeSet`.
    """
    rule = criteria or ChangeCriteria()
    current = _as_features(current)
    previous = _as_features(previous)
    common = shapely.make_valid(shapely.intersection(current_footprint, previous_footprint))
    if common.is_empty or common.area == 0:
        return ChangeSet(frame=empty_features(CHANGE_COLUMNS), new=0, gone=0)
    metric = metric_crs(common)
    if rule.edge_margin_m > 0:
        both = gpd.GeoSeries([current_footprint, previous_footprint], crs="EPSG:4326")
        inner = [_inside_edges(fp, rule.edge_margin_m) for fp in both.to_crs(metric).values]
        common_m = shapely.make_valid(shapely.intersection(inner[0], inner[1]))
        if common_m.is_empty or common_m.area == 0:
            return ChangeSet(frame=empty_features(CHANGE_COLUMNS), new=0, gone=0)
    else:
        common_m = gpd.GeoSeries([common], crs="EPSG:4326").to_crs(metric).iloc[0]
    cur_m = current.to_crs(metric) if not current.empty else current
    prev_m = previous.to_crs(metric) if not previous.empty else previous
    cur_m = (
        cur_m.set_geometry(shapely.make_valid(cur_m.geometry.values)) if not cur_m.empty else cur_m
    )
    prev_m = (
        prev_m.set_geometry(shapely.make_valid(prev_m.geometry.values))
        if not prev_m.empty
        else prev_m
    )
    cur_in = _taking_part(cur_m, common_m, rule.min_inside, rule.min_area_m2)
    prev_in = _taking_part(prev_m, common_m, rule.min_inside, rule.min_area_m2)

    # every object that takes part is matched against *all* objects of the other pass, not
    # only against those that take part too: an object just inside the compared ground is
    # the same object as its partner just outside it (a large crown across the edge band,
    # a small one inside a large one), not a change
    matched_cur = np.zeros(len(cur_m), dtype=bool)
    matched_prev = np.zeros(len(prev_m), dtype=bool)
    overlaps_cur: dict[int, list[str]] = {}
    overlaps_prev: dict[int, list[str]] = {}
    matches: dict[str, list[str]] = {}
    if len(cur_in) or len(prev_in):
        pairs = overlap_pairs(cur_m.geometry.values, prev_m.geometry.values)
        ci, pi = pairs.left, pairs.right
        takes_part = np.isin(ci, cur_in) | np.isin(pi, prev_in)
        same_class = cur_m["class"].to_numpy()[ci] == prev_m["class"].to_numpy()[pi]
        is_match = (pairs.overlap >= rule.min_overlap) & same_class
        cur_ids = cur_m["id"].to_numpy()
        prev_ids = prev_m["id"].to_numpy()
        for k in np.flatnonzero(takes_part):
            c, p = int(ci[k]), int(pi[k])
            if is_match[k]:
                matched_cur[c] = True
                matched_prev[p] = True
                matches.setdefault(str(cur_ids[c]), []).append(str(prev_ids[p]))
            elif pairs.intersection_m2[k] > 0:
                overlaps_cur.setdefault(c, []).append(str(prev_ids[p]))
                overlaps_prev.setdefault(p, []).append(str(cur_ids[c]))

    new_idx = [i for i in cur_in if not matched_cur[i]]
    gone_idx = [i for i in prev_in if not matched_prev[i]]
    new_frame = current.iloc[new_idx][[*FEATURE_COLUMNS, "geometry"]].copy()
    new_frame["change"] = "new"
    new_frame["matched_ids"] = [",".join(overlaps_cur.get(int(i), [])) for i in new_idx]
    gone_frame = previous.iloc[gone_idx][[*FEATURE_COLUMNS, "geometry"]].copy()
    gone_frame["change"] = "gone"
    gone_frame["matched_ids"] = [",".join(overlaps_prev.get(int(i), [])) for i in gone_idx]
    frame = pd.concat([new_frame, gone_frame], ignore_index=True)
    frame["pass_scene"] = current_scene
    frame["previous_scene"] = previous_scene
    frame["pass_acquired"] = current_acquired
    frame["previous_acquired"] = previous_acquired
    out = gpd.GeoDataFrame(
        frame[[*CHANGE_COLUMNS, "geometry"]], geometry="geometry", crs="EPSG:4326"
    )
    return ChangeSet(
        frame=out,
        new=len(new_idx),
        gone=len(gone_idx),
        matches=matches,
        common_area_m2=float(common_m.area),
        compared=len(cur_in) + len(prev_in),
        new_area_m2=total_area_m2(new_frame),
        gone_area_m2=total_area_m2(gone_frame),
    )
