"""Change detection between passes: overlap matching, common area, robustness to shifts."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from monitor_helpers import write_region
from rasterio.transform import from_origin
from shapely import affinity
from shapely.geometry import Polygon, box

from geotl.config import load_region
from geotl.errors import ConfigError
from geotl.monitor.changes import (
    CHANGE_COLUMNS,
    ChangeCriteria,
    ChangeSet,
    detect_changes,
    scene_footprint,
)
from geotl.monitor.runner import change_criteria
from geotl.predict import PredictOptions

# ~1 km squares near 47 N (degrees); objects are ~50-100 m fields
DEG = 0.00001  # ~1 m


def _frame(rows: list[tuple[str, str, Polygon]], scene: str) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {
            "id": [r[0] for r in rows],
            "class": [r[1] for r in rows],
            "score": [0.9] * len(rows),
            "area_m2": [1.0] * len(rows),
            "scene": [scene] * len(rows),
            "acquired": ["2020-01-01"] * len(rows),
            "model": ["m"] * len(rows),
        },
        geometry=[r[2] for r in rows],
        crs="EPSG:4326",
    )


def _square(x_m: float, y_m: float, size_m: float) -> Polygon:
    x0, y0 = -99.2 + x_m * DEG, 47.0 + y_m * DEG
    return box(x0, y0, x0 + size_m * DEG, y0 + size_m * DEG)


AREA = box(-99.2, 47.0, -99.2 + 1000 * DEG, 47.0 + 1000 * DEG)


def test_shifted_outlines_match_and_real_changes_are_found() -> None:
    previous = _frame(
        [
            ("a", "water", _square(100, 100, 80)),
            ("b", "water", _square(400, 400, 60)),
            ("c", "water", _square(700, 100, 50)),
        ],
        "p",
    )
    shifted = affinity.translate(_square(100, 100, 80), 3 * DEG, -2 * DEG)  # 2-3 px shift
    wobbly = _square(400, 400, 60).buffer(2 * DEG)  # outline drawn a little larger
    current = _frame(
        [("a2", "water", shifted), ("b2", "water", wobbly), ("d2", "water", _square(800, 800, 40))],
        "c",
    )
    result = detect_changes(current, previous, AREA, AREA, current_scene="c", previous_scene="p")
    assert (result.new, result.gone) == (1, 1)
    kinds = dict(zip(result.frame["id"], result.frame["change"], strict=True))
    assert kinds == {"d2": "new", "c": "gone"}
    assert result.matches == {"a2": ["a"], "b2": ["b"]}
    assert list(result.frame.columns) == [*CHANGE_COLUMNS, "geometry"]
    assert set(result.frame["pass_scene"]) == {"c"} and set(result.frame["previous_scene"]) == {"p"}
    assert result.common_area_m2 == pytest.approx(1000 * 1000 * 0.76 * 1.11, rel=0.1)


def test_only_the_area_both_passes_cover_is_compared() -> None:
    left = box(-99.2, 47.0, -99.2 + 600 * DEG, 47.0 + 1000 * DEG)
    right = box(-99.2 + 400 * DEG, 47.0, -99.2 + 1000 * DEG, 47.0 + 1000 * DEG)
    previous = _frame(
        [("p-west", "water", _square(50, 50, 40)), ("p-mid", "water", _square(450, 500, 40))], "p"
    )
    current = _frame(
        [("c-east", "water", _square(900, 50, 40)), ("c-mid", "water", _square(500, 300, 40))], "c"
    )
    result = detect_changes(current, previous, right, left, current_scene="c", previous_scene="p")
    # p-west lies outside what the current pass saw, c-east outside the previous: not changes
    assert sorted(zip(result.frame["id"], result.frame["change"], strict=True)) == [
        ("c-mid", "new"),
        ("p-mid", "gone"),
    ]


def test_objects_in_the_edge_margin_take_no_part() -> None:
    # the current pass starts 300 m further east; near its west edge the model saw padding
    previous_fp = AREA
    current_fp = box(-99.2 + 300 * DEG, 47.0, -99.2 + 1300 * DEG, 47.0 + 1000 * DEG)
    previous = _frame([("p-mid", "water", _square(600, 500, 40))], "p")
    current = _frame(
        [
            ("c-edge", "water", _square(305, 500, 20)),  # 5-25 m from the current west edge
            ("c-mid", "water", _square(600, 500, 40)),
        ],
        "c",
    )

    def compare(margin_m: float) -> ChangeSet:
        return detect_changes(
            current,
            previous,
            current_fp,
            previous_fp,
            current_scene="c",
            previous_scene="p",
            criteria=ChangeCriteria(edge_margin_m=margin_m),
        )

    plain = compare(0.0)
    assert (plain.new, plain.gone, plain.compared) == (1, 0, 3)
    inner = compare(30.0)
    assert (inner.new, inner.gone, inner.compared) == (0, 0, 2)
    assert inner.matches == {"c-mid": ["p-mid"]}
    assert inner.common_area_m2 < plain.common_area_m2
    # a margin wider than the common ground leaves nothing to compare
    none = compare(600.0)
    assert (none.new, none.gone, none.compared) == (0, 0, 0)


# HARV's ground (UTM 18N, metres): a 40 m plot and a second pass cropped 5.3 m further east
HARV = "EPSG:32618"
X0, Y0 = 731_600.0, 4_713_300.0


def _utm_frame(rows: list[tuple[str, Polygon]], scene: str) -> gpd.GeoDataFrame:
    frame = _frame([(i, "tree", g) for i, g in rows], scene).set_crs(HARV, allow_override=True)
    return frame.to_crs("EPSG:4326")


def _utm(geom: Polygon) -> Polygon:
    out: Polygon = gpd.GeoSeries([geom], crs=HARV).to_crs("EPSG:4326").iloc[0]
    return out


def test_an_object_cut_by_the_edge_band_is_not_a_change() -> None:
    # a crown across the inner edge of the band (6.4 m): 78 % of it inside the compared
    # ground in the first pass; the second pass starts 5.3 m further east and sees a part of
    # it, 39 % inside. A rule that matches only objects that both take part reported the
    # first pass's crown gone (HARV's big crowns, BENCHMARKS.md).
    first_fp = _utm(box(X0, Y0, X0 + 40, Y0 + 40))
    second_fp = _utm(box(X0 + 5.3, Y0, X0 + 40, Y0 + 40))
    crown = box(X0 + 9.7, Y0 + 15, X0 + 18.7, Y0 + 24)  # 9 m; band ends at x0 + 5.3 + 6.4
    cut = crown.intersection(box(X0 + 5.3, Y0, X0 + 13, Y0 + 40))  # a part of it, in the band
    inner = box(X0 + 20, Y0 + 15, X0 + 30, Y0 + 25)
    first = _utm_frame([("crown", crown), ("inner", inner)], "a")
    second = _utm_frame([("crown-cut", cut), ("inner-2", inner.buffer(0.1))], "b")
    rule = ChangeCriteria(edge_margin_m=6.4)
    result = detect_changes(
        second, first, second_fp, first_fp, current_scene="b", previous_scene="a", criteria=rule
    )
    assert (result.new, result.gone, result.compared) == (0, 0, 3)
    assert result.matches == {"crown-cut": ["crown"], "inner-2": ["inner"]}
    # the same passes the other way round: the cut crown takes no part, the whole one matches
    back = detect_changes(
        first, second, first_fp, second_fp, current_scene="a", previous_scene="b", criteria=rule
    )
    assert (back.new, back.gone, back.compared) == (0, 0, 3)
    # a crown really gone inside the compared ground still is
    felled = detect_changes(
        second.iloc[:1],
        first,
        second_fp,
        first_fp,
        current_scene="b",
        previous_scene="a",
        criteria=rule,
    )
    assert list(zip(felled.frame["id"], felled.frame["change"], strict=True)) == [("inner", "gone")]


def test_objects_under_the_minimum_area_are_not_changes() -> None:
    fp = _utm(box(X0, Y0, X0 + 40, Y0 + 40))
    speck = box(X0 + 10, Y0 + 10, X0 + 10.8, Y0 + 10.8)  # 0.64 m2: near predict's 0.5 cut-off
    crown = box(X0 + 20, Y0 + 20, X0 + 22, Y0 + 22)  # 4 m2
    first = _utm_frame([("speck", speck), ("crown", crown)], "a")
    second = _utm_frame([], "b")
    plain = detect_changes(second, first, fp, fp, current_scene="b", previous_scene="a")
    assert (plain.gone, plain.compared) == (2, 2)
    rule = ChangeCriteria(min_area_m2=1.0)
    floor = detect_changes(
        second, first, fp, fp, current_scene="b", previous_scene="a", criteria=rule
    )
    assert (floor.gone, floor.compared) == (1, 1) and list(floor.frame["id"]) == ["crown"]
    # a small object still matches a larger one of the other pass (a crown split off)
    split = _utm_frame([("part", box(X0 + 20, Y0 + 20, X0 + 20.7, Y0 + 20.7))], "b")
    kept = detect_changes(
        split,
        _utm_frame([("crown", crown)], "a"),
        fp,
        fp,
        current_scene="b",
        previous_scene="a",
        criteria=rule,
    )
    assert (kept.new, kept.gone, kept.compared) == (0, 0, 1)


def test_the_monitor_criteria_follow_the_model_and_the_region(tmp_path: Path) -> None:
    # what the criteria read of a model card: 0.1 m pixels, 128 px chips, 0.5 m2 objects
    card = SimpleNamespace(
        resolution_m=0.1,
        min_area_m2=0.5,
        chip_size_px=128,
        network=SimpleNamespace(round_up_px=lambda px: px),
    )
    rule = ChangeCriteria.for_model(PredictOptions(), card)
    # windows 256 px, overlap 64 px: half the overlap at 0.1 m; twice predict's 0.5 m2
    assert (rule.edge_margin_m, rule.min_area_m2) == pytest.approx((3.2, 1.0))

    scene = tmp_path / "s.tif"
    scene.write_bytes(b"")  # the region only globs it
    monitor = 'source = "folder"\npaths = ["incoming/*.tif"]'
    region = load_region(
        write_region(tmp_path, "r", [scene], ["red"], ["tree"], monitor, min_area_m2=2.0)
    )
    rule = change_criteria(region, SimpleNamespace(card=card))  # type: ignore[arg-type]
    assert (rule.edge_margin_m, rule.min_area_m2) == pytest.approx((3.2, 4.0))
    # a region without [predict] keys predicts and compares with the card's, not 0 m2
    bare = load_region(
        write_region(tmp_path, "r", [scene], ["red"], ["tree"], monitor, min_area_m2=None)
    )
    assert PredictOptions.from_region(bare).min_area_for(card) == 0.5
    rule = change_criteria(bare, SimpleNamespace(card=card))  # type: ignore[arg-type]
    assert rule.min_area_m2 == pytest.approx(1.0)
    keys = monitor + "\nedge_margin_m = 0\nchange_min_area_m2 = 10"
    region = load_region(write_region(tmp_path, "r", [scene], ["red"], ["tree"], keys))
    rule = change_criteria(region, SimpleNamespace(card=card))  # type: ignore[arg-type]
    assert (rule.edge_margin_m, rule.min_area_m2) == (0, 10)
    bad = write_region(tmp_path, "r", [scene], ["red"], ["tree"], monitor + "\nedge_margin_m = -1")
    with pytest.raises(ConfigError, match="edge_margin_m"):
        load_region(bad)


def test_split_objects_and_class_changes() -> None:
    field = _square(100, 100, 100)
    halves = [
        _square(100, 100, 100).intersection(box(-99.2, 46, -99.2 + 150 * DEG, 48)),
        _square(150, 100, 50),
    ]
    previous = _frame([("f", "field", field), ("w", "water", _square(500, 500, 60))], "p")
    current = _frame(
        [
            ("h1", "field", halves[0]),
            ("h2", "field", halves[1]),
            ("w2", "clearing", _square(500, 500, 60)),
        ],
        "c",
    )
    result = detect_changes(current, previous, AREA, AREA, current_scene="c", previous_scene="p")
    # the split field matches (many-to-many); water -> clearing is gone + new, linked by ids
    rows = {r.id: r for r in result.frame.itertuples()}
    assert set(rows) == {"w", "w2"}
    assert rows["w"].change == "gone" and rows["w"].matched_ids == "w2"
    assert rows["w2"].change == "new" and rows["w2"].matched_ids == "w"
    assert sorted(result.matches) == ["h1", "h2"]


def test_no_overlap_and_empty_passes() -> None:
    empty = _frame([], "c")
    far = box(10, 10, 11, 11)
    result = detect_changes(empty, empty, AREA, far, current_scene="c", previous_scene="p")
    assert (result.new, result.gone) == (0, 0) and result.frame.empty
    only_new = detect_changes(
        _frame([("n", "water", _square(10, 10, 30))], "c"),
        empty,
        AREA,
        AREA,
        current_scene="c",
        previous_scene="p",
    )
    assert (only_new.new, only_new.gone) == (1, 0)


def test_scene_footprint_follows_valid_data(tmp_path) -> None:  # type: ignore[no-untyped-def]
    data = np.zeros((1, 200, 200), dtype=np.uint8)
    data[:, :, :100] = 7  # only the western half holds data
    path = tmp_path / "half.tif"
    profile = {
        "driver": "GTiff",
        "width": 200,
        "height": 200,
        "count": 1,
        "dtype": "uint8",
        "crs": "EPSG:32614",
        "transform": from_origin(500000, 5200000, 10, 10),
        "nodata": 0,
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    fp = scene_footprint(path)
    full = gpd.GeoSeries([box(500000, 5198000, 502000, 5200000)], crs=32614).to_crs(4326).iloc[0]
    assert fp.area == pytest.approx(full.area / 2, rel=0.05)
    profile["nodata"] = None
    with rasterio.open(tmp_path / "full.tif", "w", **profile) as dst:
        dst.write(data)
    assert scene_footprint(tmp_path / "full.tif").area == pytest.approx(full.area, rel=0.01)


def test_nodata_pixels_inside_a_scene_do_not_eat_the_compared_ground(tmp_path: Path) -> None:
    # NEON RGB plots declare nodata = 255, so every saturated pixel is a hole in the
    # footprint; the edge margin (3.2 m) grew around each of them and left almost nothing
    # to compare: a real pass with 18 crowns felled reported 0 gone (OSBS_029)
    rng = np.random.default_rng(0)
    data = np.full((1, 400, 400), 90, dtype=np.uint8)
    rows, cols = rng.integers(0, 400, 300), rng.integers(0, 400, 300)
    data[0, rows, cols] = 255  # 300 scattered "saturated" pixels
    path = tmp_path / "speckled.tif"
    profile = {
        "driver": "GTiff",
        "width": 400,
        "height": 400,
        "count": 1,
        "dtype": "uint8",
        "crs": HARV,
        "transform": from_origin(X0, Y0 + 40, 0.1, 0.1),
        "nodata": 255,
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    fp = scene_footprint(path)
    crowns = [box(X0 + x, Y0 + 18, X0 + x + 3, Y0 + 21) for x in (8, 14, 20, 26)]
    first = _utm_frame([(f"c{i}", g) for i, g in enumerate(crowns)], "a")
    second = _utm_frame([("c0-b", crowns[0]), ("c1-b", crowns[1])], "b")
    rule = ChangeCriteria(edge_margin_m=3.2, min_area_m2=1.0)
    result = detect_changes(
        second, first, fp, fp, current_scene="b", previous_scene="a", criteria=rule
    )
    assert (result.new, result.gone, result.compared) == (0, 2, 6)
    assert sorted(result.frame["id"]) == ["c2", "c3"]
    # the margin still applies along the scene's outer edges: (40 - 2 * 3.2)^2 m2, less holes
    assert result.common_area_m2 == pytest.approx(33.6**2, rel=0.02)
