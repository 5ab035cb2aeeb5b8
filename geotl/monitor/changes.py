"""Pass-to-pass change detection: which objects are new, which are gone.

Two passes are compared only where both saw the ground (the intersection of their
footprints): an object outside the other pass's footprint is neither new nor gone, it was
simply not seen. Objects are matched by overlap, not by identical outlines: a current and a
previous object of the same class are the same object when their intersection covers at
least ``min_overlap`` of the smaller one. That survives the one- or two-pixel shifts that
co-registration and vectorisation produce between passes, and keeps a field split in two
(or two merged) from showing up as new and gone. Matching is many-to-many.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path

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

__all__ = [
    "CHANGE_COLUMNS",
    "ChangeSet",
    "detect_changes",
    "empty_features",
    "scene_footprint",
]

log = logging.getLogger(__name__)

FEATURE_COLUMNS = ["id", "class", "score", "area_m2", "scene", "acquired", "model"]
CHANGE_COLUMNS = [*FEATURE_COLUMNS, "change", "pass_scene", "previous_scene", "matched_ids"]


@dataclass
class ChangeSet:
    """What changed between a previous and a current pass.

    Attributes:
        frame: ``new`` features (from the current pass) and ``gone`` ones (from the previous
            pass), EPSG:4326, with columns :data:`CHANGE_COLUMNS`.
        new: how many current objects have no match in the previous pass.
        gone: how many previous objects have no match in the current pass.
        matches: current id -> ids of the previous objects it matched.
        common_area_m2: area both passes cover.
    """

    frame: gpd.GeoDataFrame
    new: int
    gone: int
    matches: dict[str, list[str]] = field(default_factory=dict)
    common_area_m2: float = 0.0


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


def _metric_crs(area: BaseGeometry) -> str:
    lon, lat = area.representative_point().coords[0]
    zone = int((lon + 180) // 6) % 60 + 1
    return f"EPSG:{32600 + zone if lat >= 0 else 32700 + zone}"


def _inside(frame: gpd.GeoDataFrame, common: BaseGeometry, min_inside: float) -> np.ndarray:
    if frame.empty:
        return np.zeros(0, dtype=bool)
    geoms = frame.geometry.values
    area = shapely.area(geoms)
    inter = shapely.area(shapely.intersection(geoms, common))
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(area > 0, inter / area, 0.0)
    return np.asarray(frac >= min_inside)


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
    min_overlap: float = 0.5,
    min_inside: float = 0.5,
) -> ChangeSet:
    """Compare two passes' detections inside the area both cover.

    Args:
        current: this pass's features (EPSG:4326, predict's columns).
        previous: the previous pass's features over the same area.
        current_footprint: valid-data footprint of this pass (EPSG:4326).
        previous_footprint: valid-data footprint of the previous pass (EPSG:4326).
        current_scene: name of this pass's scene (recorded on every change feature).
        previous_scene: name of the previous pass's scene.
        min_overlap: intersection / smaller area above which two objects of the same class
            are the same object.
        min_inside: share of an object's area that must lie in the common area for the
            object to take part in the comparison.

    Returns:
        The :class:`ChangeSet`.
    """
    current = _as_features(current)
    previous = _as_features(previous)
    common = shapely.make_valid(shapely.intersection(current_footprint, previous_footprint))
    if common.is_empty or common.area == 0:
        return ChangeSet(frame=empty_features(CHANGE_COLUMNS), new=0, gone=0)
    metric = _metric_crs(common)
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
    cur_in = np.flatnonzero(_inside(cur_m, common_m, min_inside))
    prev_in = np.flatnonzero(_inside(prev_m, common_m, min_inside))

    matched_cur = np.zeros(len(cur_m), dtype=bool)
    matched_prev = np.zeros(len(prev_m), dtype=bool)
    overlaps_cur: dict[int, list[str]] = {}
    overlaps_prev: dict[int, list[str]] = {}
    matches: dict[str, list[str]] = {}
    if len(cur_in) and len(prev_in):
        prev_geoms = prev_m.geometry.values[prev_in]
        tree = shapely.STRtree(prev_geoms)
        cur_geoms = cur_m.geometry.values[cur_in]
        pairs = tree.query(cur_geoms, predicate="intersects")
        if pairs.size:
            ci = cur_in[pairs[0]]
            pi = prev_in[pairs[1]]
            a = cur_m.geometry.values[ci]
            b = prev_m.geometry.values[pi]
            inter = shapely.area(shapely.intersection(a, b))
            smaller = np.minimum(shapely.area(a), shapely.area(b))
            with np.errstate(divide="ignore", invalid="ignore"):
                frac = np.where(smaller > 0, inter / smaller, 0.0)
            same_class = cur_m["class"].to_numpy()[ci] == prev_m["class"].to_numpy()[pi]
            is_match = (frac >= min_overlap) & same_class
            cur_ids = cur_m["id"].to_numpy()
            prev_ids = prev_m["id"].to_numpy()
            for k, (c, p) in enumerate(zip(ci, pi, strict=True)):
                if is_match[k]:
                    matched_cur[c] = True
                    matched_prev[p] = True
                    matches.setdefault(str(cur_ids[c]), []).append(str(prev_ids[p]))
                elif inter[k] > 0:
                    overlaps_cur.setdefault(int(c), []).append(str(prev_ids[p]))
                    overlaps_prev.setdefault(int(p), []).append(str(cur_ids[c]))

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
    out = gpd.GeoDataFrame(
        frame[[*CHANGE_COLUMNS, "geometry"]], geometry="geometry", crs="EPSG:4326"
    )
    return ChangeSet(
        frame=out,
        new=len(new_idx),
        gone=len(gone_idx),
        matches=matches,
        common_area_m2=float(common_m.area),
    )
