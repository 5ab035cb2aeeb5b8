"""A region's monitor folder: pass files, how they are read back, and the derived outputs.

Layout of ``<out>/<region name>/``: ``passes/<stem>.geojson`` (a pass's detections),
``changes/<stem>.geojson`` (what is new or gone since the previous pass over the same area),
``history.csv`` and ``latest.geojson``, rebuilt from the state after every run that
processed a scene; ``<stem>`` is :func:`pass_stem`.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from shapely.geometry.base import BaseGeometry

from geotl.config import Region
from geotl.errors import SceneError
from geotl.io.atomic import atomic_write_text
from geotl.io.geojson import write_geojson
from geotl.io.lonlat import geodesic_areas_m2
from geotl.monitor.changes import ChangeCriteria, empty_features, metric_crs, overlap_pairs
from geotl.monitor.sequence import footprint_of
from geotl.monitor.state import MonitorState, PassRecord
from geotl.predict.vectorise import polygonal_part

__all__ = [
    "HISTORY_COLUMNS",
    "counted",
    "format_ha",
    "latest_frame",
    "pass_file",
    "pass_stem",
    "read_pass",
    "read_pass_file",
    "rebuild_outputs",
    "region_dir",
]

HISTORY_COLUMNS = [
    "acquired",
    "scene",
    "detections",
    "new",
    "gone",
    "duration_s",
    "processed",
    "previous_scene",
    "model",
    "pass_file",
    "changes_file",
    # appended (other tools read the columns above by position): m² summed over the
    # features' area_m2; empty where not known (no previous pass; a pass of an earlier
    # geotl whose files did not tell)
    "detected_area_m2",
    "new_area_m2",
    "gone_area_m2",
    # appended: how many distinct warnings were said while the pass was processed (its
    # scene's units or offset, lossy compression, guessed bands or nodata; 0: none, or a
    # pass of a geotl that did not record them) and the first one, so a suspect pass shows
    "warnings",
    "first_warning",
]


def format_ha(area_m2: float) -> str:
    """An area for people to read, in hectares (what forest and land analysts count in).

    >>> format_ha(2_874_512.3), format_ha(52_340.0), format_ha(431.0), format_ha(0.0)
    ('287.5 ha', '5.23 ha', '0.0431 ha', '0 ha')
    """
    ha = area_m2 / 10_000.0
    return f"{ha:,.1f} ha" if ha >= 10 else f"{ha:.3g} ha"


def counted(count: int | None, area_m2: float | None, what: str) -> str:
    """``"15 new (287.5 ha)"``: a count of objects with their area (when known).

    >>> counted(15, 2_874_512.3, "new"), counted(3, None, "gone"), counted(None, None, "new")
    ('15 new (287.5 ha)', '3 gone', '- new')
    """
    text = f"{'-' if count is None else count} {what}"
    return text if area_m2 is None or count is None else f"{text} ({format_ha(area_m2)})"


def region_dir(region: Region, out_dir: Path) -> Path:
    """``out_dir/<region name>``: where a region's monitor outputs and state live."""
    return Path(out_dir) / region.name


def pass_stem(acquired: datetime, scene: str) -> str:
    """File stem of a pass's outputs: ``<acquired>_<scene>``, sortable by time.

    >>> pass_stem(datetime(2019, 9, 4, tzinfo=UTC), "m_4709963_se_14_1_20190904")
    '20190904T000000Z_m_4709963_se_14_1_20190904'
    """
    return f"{acquired.astimezone(UTC).strftime('%Y%m%dT%H%M%SZ')}_{scene}"


def pass_file(folder: Literal["passes", "changes"], acquired: datetime, scene: str) -> str:
    """A pass's detections or changes file, relative to the region folder.

    >>> pass_file("changes", datetime(2019, 9, 4, tzinfo=UTC), "m_1")
    'changes/20190904T000000Z_m_1.geojson'
    """
    return f"{folder}/{pass_stem(acquired, scene)}.geojson"


def read_pass_file(path: Path) -> gpd.GeoDataFrame:
    """A pass's detections as written (EPSG:4326, ids as text).

    Raises:
        SceneError: the file is missing (an earlier pass's output was deleted).
    """
    if not path.exists():
        raise SceneError(
            "pass file is missing and its pass could not be predicted again: restore the "
            "file, or the pass's scene, and run again",
            path,
        )
    frame = gpd.read_file(path)
    if frame.crs is None:
        frame = frame.set_crs("EPSG:4326")
    if "id" in frame.columns:
        frame["id"] = frame["id"].astype(str)
    return frame


def read_pass(rdir: Path, rec: PassRecord) -> gpd.GeoDataFrame:
    """The detections of a recorded pass (empty when it has no pass file)."""
    if rec.pass_path is None:
        return empty_features()
    return read_pass_file(rdir / rec.pass_path)


def rebuild_outputs(state: MonitorState, rdir: Path) -> None:
    """Rewrite ``history.csv`` and ``latest.geojson`` from the state (atomically)."""
    passes = state.latest_passes()
    heard = state.pass_warnings()
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(HISTORY_COLUMNS)
    for rec in passes:
        said = heard.get((rec.key, rec.model_id))
        writer.writerow(
            [
                rec.acquired.isoformat(),
                rec.name,
                rec.detections,
                "" if rec.new is None else rec.new,
                "" if rec.gone is None else rec.gone,
                "" if rec.duration_s is None else f"{rec.duration_s:.3f}",
                rec.finished.isoformat(timespec="seconds") if rec.finished else "",
                rec.previous_scene or "",
                rec.model_id,
                rec.pass_path or "",
                rec.changes_path or "",
                *(
                    "" if v is None else f"{v:.2f}"
                    for v in (rec.detected_area_m2, rec.new_area_m2, rec.gone_area_m2)
                ),
                said.count if said else 0,
                said.lines[0] if said else "",
            ]
        )
    atomic_write_text(rdir / "history.csv", buf.getvalue())
    write_geojson(rdir / "latest.geojson", latest_frame(rdir, passes))


def latest_frame(rdir: Path, passes: list[PassRecord]) -> gpd.GeoDataFrame:
    """Newest pass wins where passes overlap; older passes fill what newer ones did not see.

    An object that crosses the edge of a newer pass's footprint is in both: its part in
    the newer pass, whole in the older one. It is one feature, the newer one, grown by the
    older object's part outside the newer footprint (its ``area_m2`` measured again), never
    two overlapping features.
    """
    if not passes:
        return empty_features()
    footprints = [footprint_of(p) for p in passes]
    everything = shapely.union_all(footprints)
    covered: BaseGeometry = shapely.Polygon()
    kept: gpd.GeoDataFrame | None = None
    for rec, fp in zip(reversed(passes), reversed(footprints), strict=True):
        frame = read_pass(rdir, rec)
        if not frame.empty:
            if kept is None or covered.is_empty:
                kept = frame if kept is None else _concat([kept, frame])
            else:
                frame = _fold_into(kept, frame, covered)
                points = frame.geometry.representative_point()
                kept = _concat([kept, frame[~points.within(covered).to_numpy()]])
        covered = shapely.union(covered, fp)
        if covered.covers(everything):
            break
    if kept is None or kept.empty:
        return empty_features()
    return kept


def _concat(frames: list[gpd.GeoDataFrame]) -> gpd.GeoDataFrame:
    frames = [f for f in frames if not f.empty]
    if not frames:
        return empty_features()
    return gpd.GeoDataFrame(
        pd.concat(frames, ignore_index=True), geometry="geometry", crs="EPSG:4326"
    )


def _fold_into(
    kept: gpd.GeoDataFrame, older: gpd.GeoDataFrame, covered: BaseGeometry
) -> gpd.GeoDataFrame:
    """``older``'s objects less those a kept (newer) object is the same object as.

    Such an older object crossed the edge of the newer footprints: its part outside them
    joins the kept object (``kept`` is changed in place).
    """
    if older.empty or kept.empty:
        return older
    metric = metric_crs(shapely.union_all(kept.geometry.values))
    new_m = shapely.make_valid(kept.to_crs(metric).geometry.values)
    old_m = shapely.make_valid(older.to_crs(metric).geometry.values)
    pairs = overlap_pairs(new_m, old_m)
    same_class = (
        kept["class"].astype(str).to_numpy()[pairs.left]
        == older["class"].astype(str).to_numpy()[pairs.right]
        if "class" in kept.columns and "class" in older.columns
        else np.ones(len(pairs.left), dtype=bool)
    )
    match = (pairs.overlap >= ChangeCriteria.min_overlap) & same_class
    folded: set[int] = set()
    # an older object joins the newer one it shares most ground with
    for k in sorted(np.flatnonzero(match), key=lambda k: -float(pairs.intersection_m2[k])):
        n, o = int(pairs.left[k]), int(pairs.right[k])
        if o in folded:
            continue
        folded.add(o)
        outside = shapely.difference(older.geometry.iloc[o], covered)
        if outside.is_empty or outside.area == 0:
            continue
        # an outside sliver touching the kept object along a line unions into a collection
        grown = polygonal_part(shapely.make_valid(shapely.union(kept.geometry.iloc[n], outside)))
        kept.loc[kept.index[n], "geometry"] = grown
        if "area_m2" in kept.columns:
            # make_valid's parts wind either way: pyproj's signed sum took one part of a
            # MultiPolygon off the others (16,090 m2 for 18,483); predict's area does not
            area = float(geodesic_areas_m2(np.array([grown], dtype=object))[0])
            kept.loc[kept.index[n], "area_m2"] = round(area, 2)
    if not folded:
        return older
    return older.drop(index=older.index[sorted(folded)])
