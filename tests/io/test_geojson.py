"""RFC 7946 writer: EPSG:4326, right-hand rule, <= 7 decimals, no crs member, atomic."""

from __future__ import annotations

import doctest
import json
import re
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from shapely.geometry import MultiPolygon, Polygon

import geotl.io.geojson as gj
from geotl.io.geojson import write_geojson


def test_doctests() -> None:
    assert doctest.testmod(gj).failed == 0


def _frame() -> gpd.GeoDataFrame:
    # clockwise exterior and counter-clockwise hole: both must be flipped
    shell = [(404_000, 3_285_000), (404_000, 3_285_010), (404_010, 3_285_010), (404_010, 3_285_000)]
    hole = [(404_002, 3_285_002), (404_004, 3_285_002), (404_004, 3_285_004), (404_002, 3_285_004)]
    poly = Polygon(shell, [hole])
    assert not poly.exterior.is_ccw
    multi = MultiPolygon(
        [Polygon([(404_020, 3_285_000), (404_020, 3_285_003), (404_023, 3_285_000)])]
    )
    return gpd.GeoDataFrame(
        {
            "id": ["a", "b"],
            "score": [np.float32(0.75), float("nan")],
            "area_m2": [96.0, 4.5],
            "acquired": [None, "2021-06-03"],
            "n": [np.int64(3), np.int64(4)],
        },
        geometry=[poly, multi],
        crs=32617,
    )


def test_rfc7946(tmp_path: Path) -> None:
    out = write_geojson(tmp_path / "o.geojson", _frame())
    text = out.read_text()
    fc = json.loads(text)
    assert "crs" not in fc and fc["type"] == "FeatureCollection"
    for number in re.findall(r"-?\d+\.\d+", text):
        assert len(number.split(".")[1]) <= 7
    f0, f1 = fc["features"]
    assert f0["id"] == "a" and f0["properties"]["id"] == "a"
    assert f0["properties"]["score"] == pytest.approx(0.75)
    assert f1["properties"]["score"] is None and f1["properties"]["acquired"] == "2021-06-03"
    assert f1["properties"]["n"] == 4
    geom = shapely.geometry.shape(f0["geometry"])
    assert geom.exterior.is_ccw and not geom.interiors[0].is_ccw  # right-hand rule
    lon, lat = geom.exterior.coords[0]
    assert -82 < lon < -81 and 29 < lat < 30  # lon/lat order
    assert f1["geometry"]["type"] == "MultiPolygon"
    assert shapely.geometry.shape(f1["geometry"]).geoms[0].exterior.is_ccw


def test_empty_and_atomic(tmp_path: Path) -> None:
    empty = gpd.GeoDataFrame({"id": []}, geometry=gpd.GeoSeries([], crs=4326), crs=4326)
    out = write_geojson(tmp_path / "e.geojson", empty)
    assert json.loads(out.read_text()) == {"type": "FeatureCollection", "features": []}
    assert [p.name for p in tmp_path.iterdir()] == ["e.geojson"]


def test_needs_crs(tmp_path: Path) -> None:
    frame = gpd.GeoDataFrame({"id": ["a"]}, geometry=[Polygon([(0, 0), (1, 0), (1, 1)])])
    with pytest.raises(ValueError, match="CRS"):
        write_geojson(tmp_path / "x.geojson", frame)
    assert not (tmp_path / "x.geojson").exists()


def test_coordinates_are_shapelys_for_every_geometry_type() -> None:
    # polygons and multipolygons come from GEOS's buffer by offsets; the rest via mapping:
    # the same nested lists of floats as shapely's own GeoJSON mapping, feature by feature
    from shapely.geometry import LineString, Point, box, mapping

    holed = Polygon(
        [(0, 0), (10, 0), (10, 10), (0, 10)],
        [[(2, 2), (3, 2), (3, 3), (2, 3)], [(5, 5), (6, 5), (6, 6), (5, 6)]],
    )
    multi = MultiPolygon([box(20, 20, 21, 21), holed])
    geoms = [
        holed,
        Point(1.5, 2.25),
        multi,
        box(0.1234567, 0.1, 0.2, 0.3),
        LineString([(0, 0), (1, 1)]),
    ]
    frame = gpd.GeoDataFrame({"k": range(len(geoms))}, geometry=geoms, crs=4326)
    got = [f["geometry"] for f in gj.feature_collection(frame)["features"]]
    oriented = shapely.orient_polygons(np.array(geoms, dtype=object), exterior_cw=False)
    want = [json.loads(json.dumps(mapping(g))) for g in oriented]
    assert [g["type"] for g in got] == ["Polygon", "Point", "MultiPolygon", "Polygon", "LineString"]
    assert got == want
    assert all(isinstance(v, float) for v in got[2]["coordinates"][1][2][0])


def test_properties_are_each_cells_value_for_every_dtype() -> None:
    # columns are read whole, not cell by cell: the same values as each cell, for dtypes
    # whose array form differs from their cells (datetime64[ns] as integers, Int64 as floats)
    when = pd.to_datetime(["2026-01-01T10:00:00", None, "2026-03-01T00:00:00"]).as_unit("ns")
    frame = gpd.GeoDataFrame(
        {
            "when": when,
            "when_utc": when.tz_localize("UTC"),
            "count": pd.array([1, None, 3], dtype="Int64"),
            "flag": [True, False, True],
            "kind": pd.Categorical(["a", "b", "a"]),
            "score": [0.5, np.nan, np.inf],
        },
        geometry=[shapely.box(0, 0, 1, 1), shapely.box(1, 1, 2, 2), shapely.Polygon()],
        crs=4326,
    )
    got = [f["properties"] for f in gj.feature_collection(frame)["features"]]
    want = [
        {c: gj._value(frame[c].iat[i]) for c in frame.columns if c != "geometry"} for i in (0, 1)
    ]
    assert got == want
    assert got[0]["when"] == "2026-01-01T10:00:00" and got[1]["count"] is not None


def test_rounding_keeps_polygons_valid(tmp_path: Path) -> None:
    # a slot 0.06e-7 degrees wide (a gap under a centimetre, as between two crowns of
    # drone imagery): rounding its two sides alone to 7 decimals makes them one line
    e = 1e-7
    a, b = 10 + 1.52 * e, 10 + 1.58 * e
    ring = [(10, 50), (10 + 4 * e, 50), (10 + 4 * e, 50 + 3 * e), (b, 50 + 3 * e)]
    ring += [(b, 50 + e), (a, 50 + e), (a, 50 + 3 * e), (10, 50 + 3 * e)]
    slot = Polygon(ring)
    assert slot.is_valid
    frame = gpd.GeoDataFrame({"id": ["slot"]}, geometry=[slot], crs=4326)
    text = write_geojson(tmp_path / "o.geojson", frame).read_text()
    (feature,) = json.loads(text)["features"]
    geom = shapely.geometry.shape(feature["geometry"])
    assert geom.is_valid and geom.area == pytest.approx(slot.area, rel=0.1)
    assert geom.exterior.is_ccw
    for number in re.findall(r"-?\d+\.\d+", text):
        assert len(number.split(".")[1]) <= 7


def test_longitudes_past_180_are_cut_and_wrapped() -> None:
    # a geographic frame past 180 (0..360 longitudes) was written as it was: longitudes
    # beyond 180, an object across 180 in one ring; RFC 7946 (3.1.9) asks for a cut
    across = Polygon(
        [(179.5, 0), (180.5, 0), (180.5, 1), (179.5, 1)],
        [[(179.9, 0.4), (180.1, 0.4), (180.1, 0.6), (179.9, 0.6)]],
    )
    frame = gpd.GeoDataFrame(
        {"id": ["across", "east", "inside"]},
        geometry=[across, shapely.box(190, 0, 191, 1), shapely.box(10, 0, 11, 1)],
        crs=4326,
    )
    features = {f["id"]: f["geometry"] for f in gj.feature_collection(frame)["features"]}
    cut = shapely.geometry.shape(features["across"])
    assert cut.geom_type == "MultiPolygon" and cut.is_valid
    assert cut.bounds == (-180.0, 0.0, 180.0, 1.0)
    assert cut.area == pytest.approx(across.area)  # the hole is cut with it, nothing lost
    assert shapely.geometry.shape(features["east"]).bounds == (-170.0, 0.0, -169.0, 1.0)
    assert features["inside"]["coordinates"][0][0] == [11.0, 0.0]  # within range: as it was
