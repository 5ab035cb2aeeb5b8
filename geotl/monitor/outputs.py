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
import pandas as pd
import shapely
from shapely.geometry.base import BaseGeometry

from geotl.config import Region
from geotl.errors import SceneError
from geotl.io.atomic import atomic_write_text
from geotl.io.geojson import write_geojson
from geotl.monitor.changes import empty_features
from geotl.monitor.sequence import footprint_of
from geotl.monitor.state import MonitorState, PassRecord

__all__ = [
    "HISTORY_COLUMNS",
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
]


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
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(HISTORY_COLUMNS)
    for rec in passes:
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
            ]
        )
    atomic_write_text(rdir / "history.csv", buf.getvalue())
    write_geojson(rdir / "latest.geojson", latest_frame(rdir, passes))


def latest_frame(rdir: Path, passes: list[PassRecord]) -> gpd.GeoDataFrame:
    """Newest pass wins where passes overlap; older passes fill what newer ones did not see."""
    if not passes:
        return empty_features()
    footprints = [footprint_of(p) for p in passes]
    everything = shapely.union_all(footprints)
    covered: BaseGeometry = shapely.Polygon()
    parts: list[gpd.GeoDataFrame] = []
    for rec, fp in zip(reversed(passes), reversed(footprints), strict=True):
        frame = read_pass(rdir, rec)
        if not frame.empty:
            if not covered.is_empty:
                points = frame.geometry.representative_point()
                frame = frame[~points.within(covered).to_numpy()]
            parts.append(frame)
        covered = shapely.union(covered, fp)
        if covered.covers(everything):
            break
    parts = [p for p in parts if not p.empty]
    if not parts:
        return empty_features()
    return gpd.GeoDataFrame(
        pd.concat(parts, ignore_index=True), geometry="geometry", crs="EPSG:4326"
    )
