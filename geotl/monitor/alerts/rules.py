"""Alert rules: which objects of a pass matter, against reference layers and over time.

:func:`evaluate_rules` takes the current pass and the passes before it over the same area
(newest first) and returns, per rule, the objects that fire it. Everything is matched the
way pass-to-pass changes are (:func:`geotl.monitor.changes.overlap_pairs`): two objects of
the same class are the same object when their intersection covers ``min_overlap`` of the
smaller one; an object is seen by a pass when ``min_inside`` of it lies in the pass's
footprint. Work is vectorised with STRtrees, so 10,000 objects against 1,000 reference
polygons take well under a second.

Persistence counts looks, not files: the tiles of one acquisition (two Sentinel-2 tiles
across a UTM zone boundary, same sensing time) are one look at the ground, so
:func:`evaluate_rules` takes, per pass, the look it belongs to. A look saw the ground under
an object when the union of its tiles' footprints did, and saw the object when any of its
tiles did; counted per tile, one new acquisition over an overlap made "2 of 3" out of one
sighting and two disagreeing tiles of the acquisition before it.

A ``grown`` rule's candidates are the objects there now (persistent as ``present``), each
with its area in the passes of the persistence window: whether it grew needs the alerts
raised before (the state), so :class:`~geotl.monitor.alerts.engine.AlertEngine` decides.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from shapely.geometry.base import BaseGeometry

from geotl.config import AlertRule, AlertsConfig
from geotl.io.lonlat import geodesic_areas_m2
from geotl.monitor.alerts.persistence import persistent_change
from geotl.monitor.alerts.reference import ReferenceLayer
from geotl.monitor.changes import metric_crs, overlap_pairs

__all__ = ["Candidate", "PassView", "evaluate_rules", "object_areas"]


@dataclass(frozen=True)
class PassView:
    """One done pass as the rules see it.

    Attributes:
        key: the scene key in the state.
        scene: the scene name.
        acquired: acquisition time.
        footprint: where the pass saw the ground (EPSG:4326).
        features: its detections (EPSG:4326; predict's columns ``id``, ``class``, ``score``,
            ``area_m2``).
    """

    key: str
    scene: str
    acquired: datetime
    footprint: BaseGeometry
    features: gpd.GeoDataFrame
    _metric: dict[str, _PassMetric] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class Candidate:
    """An object that fires a rule in the current pass.

    Attributes:
        rule: the rule's name.
        class_name: the object's class.
        when: the rule's ``when``.
        geometry: the object (EPSG:4326); for ``gone``, as last seen.
        object_id: the object's feature id in the pass it comes from.
        scene: the last pass the object was there (the current one; ``gone``: an earlier one).
        acquired: when that pass was acquired.
        first_scene: the first pass of the persistence window where the object was there.
        first_acquired: when that pass was acquired.
        score: the object's score.
        area_m2: its area.
        reference_layer: the reference layer the rule tested (path as written), or None.
        reference_ids: ids of the reference features it intersects.
        seen: in how many of the last ``of`` passes that saw the ground the object was
            there (``gone``: missing).
        looked: how many such passes there were (at most ``of``).
        last_scene: the newest pass where the object was there, matched by overlap (``gone``:
            newer than ``scene`` when a later pass saw it as part of a larger object: a
            pond's edge the lake took in; None: ``scene``). What the alert says as "last
            seen": the pass the outline comes from said "gone since 2010" of an object
            seen in 2019.
        last_acquired: when that pass was acquired.
        areas_m2: the object's area in each of the last ``of`` passes that saw the ground
            under it, newest (this pass) first; None where it was not there. Set for
            ``grown`` rules: growth must persist like any change.
    """

    rule: str
    class_name: str
    when: str
    geometry: BaseGeometry
    object_id: str
    scene: str
    acquired: datetime
    first_scene: str
    first_acquired: datetime
    score: float | None
    area_m2: float
    reference_layer: str | None
    reference_ids: tuple[str, ...]
    seen: int
    looked: int
    last_scene: str | None = None
    last_acquired: datetime | None = None
    areas_m2: tuple[float | None, ...] = ()


@dataclass
class _PassMetric:
    view: PassView
    footprint: BaseGeometry
    frame: gpd.GeoDataFrame  # metric CRS, valid geometries


def _to_metric(view: PassView, crs: str) -> _PassMetric:
    """The pass in a metric CRS (cached on the view: a pass serves several evaluations)."""
    if crs not in view._metric:
        view._metric[crs] = _project(view, crs)
    return view._metric[crs]


def _project(view: PassView, crs: str) -> _PassMetric:
    fp = gpd.GeoSeries([view.footprint], crs="EPSG:4326").to_crs(crs).iloc[0]
    frame = view.features
    if frame.crs is None:
        frame = frame.set_crs("EPSG:4326")
    frame = frame.to_crs(crs) if len(frame) else frame.set_crs(crs, allow_override=True)
    if len(frame):
        frame = frame.set_geometry(shapely.make_valid(frame.geometry.values))
    return _PassMetric(view=view, footprint=shapely.make_valid(fp), frame=frame)


def _of_class(frame: gpd.GeoDataFrame, class_name: str) -> gpd.GeoDataFrame:
    if frame.empty or "class" not in frame.columns:
        return frame.iloc[0:0]
    return frame[frame["class"].astype(str).to_numpy() == class_name]


def _share_inside(geoms: np.ndarray, area: BaseGeometry) -> np.ndarray:
    """Share of each geometry's area inside ``area``; intersections only along its edge."""
    share = np.zeros(len(geoms))
    if area.is_empty or not len(geoms):
        return share
    shapely.prepare(area)
    inside = shapely.contains(area, geoms)
    share[inside] = 1.0
    edge = np.flatnonzero(~inside & shapely.intersects(area, geoms))
    if len(edge):
        total = shapely.area(geoms[edge])
        inter = shapely.area(shapely.intersection(geoms[edge], area))
        with np.errstate(divide="ignore", invalid="ignore"):
            share[edge] = np.where(total > 0, inter / total, 0.0)
    return share


def _present(geoms: np.ndarray, others: np.ndarray, min_overlap: float) -> np.ndarray:
    out = np.zeros(len(geoms), dtype=bool)
    pairs = overlap_pairs(geoms, others)
    out[pairs.left[pairs.overlap >= min_overlap]] = True
    return out


def _matched_areas(geoms: np.ndarray, others: gpd.GeoDataFrame, min_overlap: float) -> np.ndarray:
    """Each geometry's area in another pass: the largest object there it matches (NaN: none).

    The largest, because a clearing that grew may have merged with a neighbour it matches.
    """
    out = np.full(len(geoms), np.nan)
    if others.empty:
        return out
    pairs = overlap_pairs(geoms, np.asarray(others.geometry.values, dtype=object))
    hit = pairs.overlap >= min_overlap
    np.fmax.at(out, pairs.left[hit], object_areas(others)[pairs.right[hit]])
    return out


def _reference_test(
    rule: AlertRule, geoms: np.ndarray, layer: ReferenceLayer, crs: str
) -> tuple[np.ndarray, list[tuple[str, ...]]]:
    """Which candidates pass the rule's reference test, and the reference ids each touches."""
    refs = layer.in_crs(crs)
    pairs = overlap_pairs(geoms, refs)
    touched: list[list[str]] = [[] for _ in range(len(geoms))]
    for i, j in zip(pairs.left, pairs.right, strict=True):
        touched[int(i)].append(str(layer.ids[int(j)]))
    if rule.reference_key == "unmatched":
        matched = np.zeros(len(geoms), dtype=bool)
        matched[pairs.left[pairs.overlap >= rule.overlap]] = True
        keep = ~matched
    else:
        # share of each object inside the union of the reference polygons it touches
        inside = np.zeros(len(geoms), dtype=float)
        counts = np.bincount(pairs.left, minlength=len(geoms))
        single = counts[pairs.left] == 1
        if single.any():  # most objects touch one polygon: one vectorised intersection
            li, ri = pairs.left[single], pairs.right[single]
            area = shapely.area(geoms[li])
            inter = shapely.area(shapely.intersection(geoms[li], refs[ri]))
            with np.errstate(divide="ignore", invalid="ignore"):
                inside[li] = np.where(area > 0, inter / area, 0.0)
        for i in np.flatnonzero(counts > 1):
            union = shapely.union_all(refs[pairs.right[pairs.left == i]])
            area = shapely.area(geoms[i])
            if area > 0:
                inside[i] = shapely.area(shapely.intersection(geoms[i], union)) / area
        keep = inside >= rule.overlap if rule.reference_key == "inside" else inside < rule.overlap
    return keep, [tuple(t) for t in touched]


def _column(frame: gpd.GeoDataFrame, name: str) -> np.ndarray:
    if name in frame.columns:
        return np.asarray(frame[name].to_numpy(), dtype=object)
    return np.full(len(frame), None, dtype=object)


def object_areas(frame: gpd.GeoDataFrame) -> np.ndarray:
    """Each object's ``area_m2`` as predict wrote it (measured where a file lacks it).

    A file without ``area_m2`` (a pass written by hand, an older tool) is measured the way
    predict measures (geodesic m², :func:`geotl.io.lonlat.geodesic_areas_m2`), whatever
    the frame's CRS: pass files are EPSG:4326, where the planar area is in square degrees.
    A frame without a CRS is taken as EPSG:4326 (RFC 7946).
    """
    stored = pd.to_numeric(pd.Series(_column(frame, "area_m2")), errors="coerce").to_numpy()
    areas = np.array(stored, dtype=float)  # a copy: pandas' array may be read-only
    missing = ~np.isfinite(areas)
    if missing.any():
        geoms = gpd.GeoSeries(frame.geometry.values[missing], crs=frame.crs or "EPSG:4326")
        if not geoms.crs.equals("EPSG:4326"):
            geoms = geoms.to_crs("EPSG:4326")
        areas[missing] = geodesic_areas_m2(np.asarray(geoms.values, dtype=object))
    return areas


def _look_members(passes: int, looks: Sequence[int] | None) -> list[np.ndarray]:
    """The passes of each look, oldest look last (see :func:`evaluate_rules`)."""
    look_of = np.arange(passes) if looks is None else np.asarray(looks, dtype=int)
    members = [np.flatnonzero(look_of == n) for n in range(int(look_of.max()) + 1)]
    if len(look_of) != passes or any(not len(m) for m in members) or len(members[0]) != 1:
        raise ValueError(f"looks {list(look_of)}: one per pass, 0..n, the current pass alone")
    return members


def _per_look(values: np.ndarray, members: list[np.ndarray], reduce: np.ufunc) -> np.ndarray:
    """Per object and look (columns): ``reduce`` over the look's passes (``values``' columns)."""
    return np.stack([reduce.reduce(values[:, m], axis=1) for m in members], axis=1)


def evaluate_rules(
    config: AlertsConfig,
    passes: list[PassView],
    references: Mapping[str, ReferenceLayer],
    *,
    looks: Sequence[int] | None = None,
    min_overlap: float = 0.5,
    min_inside: float = 0.5,
) -> list[Candidate]:
    """The objects of the current pass (``passes[0]``) that fire each rule.

    Args:
        config: ``[monitor.alerts]``.
        passes: the current pass, then earlier passes over the same area, newest first
            (enough for persistence: about ``2 * of`` looks that saw the ground).
        references: the loaded reference layers, keyed by the path as the rules write it.
        looks: per pass, the look (acquisition) it belongs to: 0 for the current pass alone,
            then 1, 2, ... newest first, tiles of one acquisition sharing theirs (each with
            its objects the other tiles also saw dropped). None: each pass is a look.
        min_overlap: overlap share above which two objects of a class are the same object.
        min_inside: share of an object inside a look's footprint (its tiles' union) for that
            look to count as having seen the ground under it.

    Returns:
        One :class:`Candidate` per (rule, object), in rule order.

    Raises:
        ValueError: ``looks`` is not one look per pass numbered so.
    """
    if not passes or passes[0].footprint.is_empty:
        return []
    members = _look_members(len(passes), looks)
    crs = metric_crs(passes[0].footprint)
    metric = [_to_metric(p, crs) for p in passes]
    footprints = [
        metric[m[0]].footprint
        if len(m) == 1
        else shapely.make_valid(shapely.union_all([metric[p].footprint for p in m]))
        for m in members
    ]
    out: list[Candidate] = []
    for name, rule in zip(config.rule_names(), config.rule, strict=True):
        persistence = rule.persistence or config.persistence
        by_pass = [_of_class(m.frame, rule.class_name) for m in metric]
        if rule.when == "gone":
            frame, source = _gone_candidates(by_pass, metric, min_overlap, min_inside)
        else:
            frame, source = by_pass[0], np.zeros(len(by_pass[0]), dtype=int)
        if frame.empty:
            continue
        geoms = np.asarray(frame.geometry.values, dtype=object)
        areas = object_areas(frame)
        scores = pd.to_numeric(pd.Series(_column(frame, "score")), errors="coerce").to_numpy()
        keep = areas >= rule.min_area_m2
        if rule.min_score > 0:
            keep &= np.nan_to_num(scores, nan=0.0) >= rule.min_score
        touched: list[tuple[str, ...]] = [() for _ in range(len(frame))]
        if rule.reference_path is not None and keep.any():
            passed, touched = _reference_test(rule, geoms, references[rule.reference_path], crs)
            keep &= passed
        idx = np.flatnonzero(keep)
        if not len(idx):
            continue
        sub = geoms[idx]
        visible = np.stack([_share_inside(sub, fp) >= min_inside for fp in footprints], 1)
        in_pass = np.stack(
            [
                np.ones(len(sub), dtype=bool)  # the current pass's own objects: there
                if p == 0 and rule.when != "gone"
                else _present(sub, np.asarray(b.geometry.values, dtype=object), min_overlap)
                for p, b in enumerate(by_pass)
            ],
            axis=1,
        )
        present = _per_look(in_pass, members, np.logical_or)
        # the pass of each look that saw the object (its first tile that did; else its first)
        seen_in = [[int(m[np.argmax(in_pass[k, m])]) for m in members] for k in range(len(sub))]
        ids = _column(frame, "id")
        wgs = gpd.GeoSeries(sub, crs=crs).to_crs("EPSG:4326").values
        sizes = (
            _per_look(
                np.stack(
                    [
                        areas[idx] if p == 0 else _matched_areas(sub, b, min_overlap)
                        for p, b in enumerate(by_pass)
                    ],
                    axis=1,
                ),
                members,
                np.fmax,
            )
            if rule.when == "grown"
            else None
        )
        for k, i in enumerate(idx):
            looked = [n for n in range(len(members)) if visible[k, n]]
            seq = [bool(present[k, n]) for n in looked]
            # growth is decided against the alerts raised before (the engine): here, there now
            when = "present" if rule.when == "grown" else rule.when
            if not visible[k, 0] or not persistent_change(
                seq, when, persistence.passes, persistence.of
            ):
                continue
            window = seq[: persistence.of]
            hits = sum(window) if rule.when != "gone" else sum(not s for s in window)
            there = looked if rule.when == "gone" else looked[: persistence.of]
            first = max((n for n in there if present[k, n]), default=0)
            last = min((n for n in there if present[k, n]), default=None)
            view = metric[int(source[i])].view
            first_view = metric[seen_in[k][first]].view
            last_view = view if last is None else metric[seen_in[k][last]].view
            score = scores[i]
            out.append(
                Candidate(
                    rule=name,
                    class_name=rule.class_name,
                    when=rule.when,
                    geometry=wgs[k],
                    object_id=str(ids[i]) if ids[i] is not None else f"{view.scene}:{i}",
                    scene=view.scene,
                    acquired=view.acquired,
                    first_scene=first_view.scene,
                    first_acquired=first_view.acquired,
                    score=float(score) if np.isfinite(score) else None,
                    area_m2=float(areas[i]),
                    reference_layer=rule.reference_path,
                    reference_ids=touched[i],
                    seen=hits,
                    looked=len(window),
                    last_scene=last_view.scene,
                    last_acquired=last_view.acquired,
                    areas_m2=()
                    if sizes is None
                    else tuple(
                        float(sizes[k, n]) if np.isfinite(sizes[k, n]) else None
                        for n in looked[: persistence.of]
                    ),
                )
            )
    return out


def _gone_candidates(
    by_pass: list[gpd.GeoDataFrame],
    metric: list[_PassMetric],
    min_overlap: float,
    min_inside: float,
) -> tuple[gpd.GeoDataFrame, np.ndarray]:
    """Objects of earlier passes that the current pass saw the ground under but not them.

    Each object once, as last seen (newer passes first); returns the frame and, per row,
    the index of the pass it comes from.
    """
    current = np.asarray(by_pass[0].geometry.values, dtype=object)
    parts: list[gpd.GeoDataFrame] = []
    sources: list[np.ndarray] = []
    taken = np.zeros(0, dtype=object)
    for p in range(1, len(by_pass)):
        frame = by_pass[p]
        if frame.empty:
            continue
        geoms = np.asarray(frame.geometry.values, dtype=object)
        keep = _share_inside(geoms, metric[0].footprint) >= min_inside
        keep &= ~_present(geoms, current, min_overlap)
        if len(taken):
            keep &= ~_present(geoms, taken, min_overlap)
        if keep.any():
            parts.append(frame[keep])
            sources.append(np.full(int(keep.sum()), p, dtype=int))
            taken = np.concatenate([taken, geoms[keep]])
    if not parts:
        return by_pass[0].iloc[0:0], np.zeros(0, dtype=int)
    frame = gpd.GeoDataFrame(pd.concat(parts, ignore_index=True), crs=parts[0].crs)
    return frame, np.concatenate(sources)
