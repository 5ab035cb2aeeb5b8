"""latest.geojson's ``area_m2`` of an object grown across a newer pass's edge.

Found driving ``geotl monitor`` on the Sentinel-2 fields reprojected to EPSG:4326: a field
the newer pass cut short kept the older pass's part beyond the newer footprint as a second
polygon, and its ``area_m2`` was 16,090 m2 for 18,483 m2 of ground (pyproj's signed sum took
the second part, wound the other way, off the first).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import shapely
from shapely.geometry import box

from geotl.io.geojson import write_geojson
from geotl.io.lonlat import geodesic_areas_m2
from geotl.monitor.outputs import latest_frame, read_pass_file
from geotl.monitor.state import PassRecord


def _record(name: str, day: int, footprint: shapely.Geometry) -> PassRecord:
    when = datetime(2023, 6, day, tzinfo=UTC)
    return PassRecord(
        key=name,
        name=name,
        source="folder",
        uri=f"incoming/{name}.tif",
        acquired=when,
        acquired_from="name",
        fingerprint=name,
        footprint_wkt=footprint.wkt,
        assets={},
        model_id="m",
        status="done",
        attempts=1,
        error=None,
        next_attempt=None,
        started=when,
        finished=when,
        duration_s=1.0,
        pass_path=None,
        changes_path=None,
        detections=1,
        new=None,
        gone=None,
        previous_scene=None,
    )


def _write_pass(rdir: Path, name: str, day: int, field: shapely.Geometry) -> str:
    frame = gpd.GeoDataFrame(
        {
            "id": [f"{name}-1"],
            "class": ["field"],
            "score": [0.9],
            "area_m2": [round(float(geodesic_areas_m2(np.array([field], dtype=object))[0]), 2)],
            "scene": [f"{name}.tif"],
            "acquired": [f"2023-06-{day:02d}"],
            "model": ["m"],
        },
        geometry=[field],
        crs="EPSG:4326",
    )
    relative = f"passes/{name}.geojson"
    write_geojson(rdir / relative, frame)
    return relative


def test_latest_area_of_an_object_grown_by_a_disjoint_part_is_its_ground(tmp_path: Path) -> None:
    rdir = tmp_path / "s2-fields"
    (rdir / "passes").mkdir(parents=True)
    # the older pass saw an L-shaped field; the newer one, whose footprint ends at 4.012 E,
    # saw only its northern block, so the field's strip east of 4.012 E stays from the older
    older_field = shapely.union(box(4.0, 51.0, 4.01, 51.01), box(4.0, 51.0, 4.02, 51.001))
    newer_field = box(4.0, 51.0, 4.01, 51.01)
    older = _record("befl_20230601", 1, box(3.99, 50.99, 4.03, 51.02))
    newer = _record("befl_20230615", 15, box(3.99, 50.99, 4.012, 51.02))
    older = replace(older, pass_path=_write_pass(rdir, older.name, 1, older_field))
    newer = replace(newer, pass_path=_write_pass(rdir, newer.name, 15, newer_field))
    assert read_pass_file(rdir / newer.pass_path).geometry.iloc[0].exterior.is_ccw

    latest = latest_frame(rdir, [older, newer])

    assert len(latest) == 1 and latest["scene"].iloc[0] == "befl_20230615.tif"
    grown = latest.geometry.iloc[0]
    assert grown.geom_type == "MultiPolygon"  # the strip beyond the newer footprint is apart
    ground_m2 = float(latest.to_crs(latest.estimate_utm_crs()).area.iloc[0])
    assert float(latest["area_m2"].iloc[0]) == pytest.approx(ground_m2, rel=0.005)


def test_an_older_object_joined_by_a_sliver_stays_a_polygon(tmp_path: Path) -> None:
    """A newer pass covering part of an older one: the older crown's part outside it was two
    slivers, and their union with the newer crown was repaired into a polygon and a line, a
    GeometryCollection that ``latest.geojson``'s writer failed on (``KeyError: 'coordinates'``)
    after the passes were recorded done; the next run then never wrote it.

    ``data/fold_sliver.geojson``: the newer crown, the older one and the newer footprint, from
    a real run (the demo model on OSBS_029 and a 400 x 300 px crop of it, found by an
    upgrade drive in stop 48).
    """
    from geotl.monitor.outputs import _fold_into

    frame = gpd.read_file(Path(__file__).parent / "data" / "fold_sliver.geojson")
    kept = frame[frame.role == "kept"].drop(columns="role").reset_index(drop=True)
    older = frame[frame.role == "older"].drop(columns="role").reset_index(drop=True)
    covered = frame[frame.role == "covered"].geometry.iloc[0]
    assert _fold_into(kept, older, covered).empty  # the older crown is the newer one
    assert list(kept.geom_type) == ["Polygon"]
    write_geojson(tmp_path / "latest.geojson", kept)
    assert gpd.read_file(tmp_path / "latest.geojson").geometry.iloc[0].is_valid
