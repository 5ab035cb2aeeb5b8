"""Alert rules on passes built in code: reference tests, area, persistence, cloud gaps, gone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import geopandas as gpd
import pytest
import shapely
from shapely.geometry import box

from geotl.config import AlertsConfig
from geotl.errors import ReferenceLayerError
from geotl.monitor.alerts import PassView, evaluate_rules, persistent_change
from geotl.monitor.alerts.reference import read_reference_layer

UTM = "EPSG:32614"  # North Dakota, where the NAIP series lies
X0, Y0 = 480_000.0, 5_205_000.0


def clearings(objects: dict[str, shapely.Polygon]) -> gpd.GeoDataFrame:
    """A pass's detections as predict writes them: clearings by id, in EPSG:4326."""
    return gpd.GeoDataFrame(
        {
            "id": list(objects),
            "class": ["clearing"] * len(objects),
            "score": [0.9] * len(objects),
            "area_m2": [g.area for g in objects.values()],
        },
        geometry=list(objects.values()),
        crs=UTM,
    ).to_crs("EPSG:4326")


T0 = datetime(2020, 6, 1, tzinfo=UTC)


def _b(x: float, y: float, size: float = 50.0) -> shapely.Polygon:
    return box(X0 + x, Y0 + y, X0 + x + size, Y0 + y + size)


def _to_wgs(geom: shapely.Geometry) -> shapely.Geometry:
    return gpd.GeoSeries([geom], crs=UTM).to_crs("EPSG:4326").iloc[0]


def _pass(
    i: int, objects: dict[str, shapely.Polygon], footprint: shapely.Geometry | None = None
) -> PassView:
    frame = clearings(objects)
    fp = footprint if footprint is not None else box(X0 - 100, Y0 - 100, X0 + 2000, Y0 + 2000)
    return PassView(
        key=f"k{i}",
        scene=f"p{i}",
        acquired=T0 + timedelta(days=10 * i),
        footprint=_to_wgs(fp),
        features=frame,
    )


def _config(**rule: object) -> AlertsConfig:
    persistence = rule.pop("persistence", {"passes": 1, "of": 1})
    return AlertsConfig.model_validate(
        {"persistence": persistence, "rule": [{"class": "clearing", **rule}]}
    )


def _newest_first(passes: list[PassView]) -> list[PassView]:
    return list(reversed(passes))


@pytest.fixture
def permits(tmp_path: Path) -> Path:
    path = tmp_path / "permits.gpkg"
    gpd.GeoDataFrame(
        {"permit": ["P1", "P2"], "id": ["P1", "P2"]},
        geometry=[box(X0, Y0, X0 + 400, Y0 + 400), box(X0 + 1000, Y0, X0 + 1400, Y0 + 400)],
        crs=UTM,
    ).to_file(path)
    return path


def test_inside_outside_unmatched(permits: Path, tmp_path: Path) -> None:
    objects = {
        "in": _b(100, 100),  # inside P1
        "out": _b(600, 100),  # outside both
        "edge": box(X0 + 380, Y0 + 100, X0 + 480, Y0 + 150),  # 20 % inside P1
    }
    layer = read_reference_layer(permits, "rule.outside", None)
    current = _pass(0, objects)
    previous = _pass(-1, {})

    def fired(**rule: object) -> dict[str, tuple[str, ...]]:
        key = next(k for k in ("inside", "outside", "unmatched") if k in rule)
        cands = evaluate_rules(
            _config(when="present", **rule), [current, previous], {str(rule[key]): layer}
        )
        return {c.object_id: c.reference_ids for c in cands}

    assert fired(outside="permits.gpkg") == {"out": (), "edge": ("P1",)}
    assert fired(inside="permits.gpkg") == {"in": ("P1",)}
    # an existing map: an object matches a map feature when they overlap by half the smaller
    buildings = tmp_path / "map.geojson"
    gpd.GeoDataFrame(
        {"id": ["b1"]}, geometry=[box(X0 + 90, Y0 + 90, X0 + 145, Y0 + 145)], crs=UTM
    ).to_file(buildings)
    layer = read_reference_layer(buildings, "rule.unmatched", None)
    assert set(fired(unmatched="map.geojson")) == {"out", "edge"}
    # a layer without an id column: the feature ids QGIS shows (a GeoPackage's fid from 1)
    bare = tmp_path / "bare.gpkg"
    gpd.GeoDataFrame(geometry=[box(X0, Y0, X0 + 400, Y0 + 400)], crs=UTM).to_file(bare)
    layer = read_reference_layer(bare, "rule.inside", None)
    assert fired(inside="bare.gpkg") == {"in": ("1",)}


def test_an_empty_reference_layer_is_a_state_not_an_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """No permits issued yet: everything is outside, nothing inside, everything unmatched."""
    objects = {"a": _b(100, 100), "b": _b(600, 100)}
    current, previous = _pass(0, objects), _pass(-1, {})
    empty = tmp_path / "permits.gpkg"
    gpd.GeoDataFrame({"id": []}, geometry=[], crs=UTM).to_file(empty)
    with caplog.at_level("WARNING"):
        layer = read_reference_layer(empty, "rule.outside", box(-100, 40, -90, 50))
    assert len(layer.geoms) == 0 and "has no polygons" in caplog.text

    def fired(key: str) -> set[str]:
        cands = evaluate_rules(
            _config(when="present", **{key: "permits.gpkg"}),
            [current, previous],
            {"permits.gpkg": layer},
        )
        return {c.object_id for c in cands}

    assert fired("outside") == {"a", "b"}
    assert fired("inside") == set()
    assert fired("unmatched") == {"a", "b"}
    # lines only are still a wrong layer, not an empty one
    lines = tmp_path / "roads.gpkg"
    gpd.GeoDataFrame(
        {"id": ["r"]}, geometry=[shapely.LineString([(X0, Y0), (X0 + 9, Y0)])], crs=UTM
    ).to_file(lines)
    with pytest.raises(ReferenceLayerError, match="has no polygons"):
        read_reference_layer(lines, "rule.outside", None)


def test_min_area_and_score() -> None:
    current = _pass(0, {"big": _b(0, 0, 100), "small": _b(500, 0, 10)})
    cands = evaluate_rules(_config(when="present", min_area_m2=500), [current], {})
    assert [c.object_id for c in cands] == ["big"]
    assert cands[0].area_m2 == pytest.approx(10_000)
    assert evaluate_rules(_config(when="present", min_score=0.95), [current], {}) == []


def test_new_with_and_without_persistence() -> None:
    # "real" appears in p1 and stays; "blip" is a one-pass artefact in p1; "old" is always there
    old, real, blip = _b(0, 0), _b(300, 0), _b(600, 0)
    passes = [
        _pass(0, {"old": old}),
        _pass(1, {"old": old, "real": real, "blip": blip}),
        _pass(2, {"old": old, "real": real}),
        _pass(3, {"old": old, "real": real}),
    ]
    instant = _config(when="new")
    persistent = _config(when="new", persistence={"passes": 2, "of": 3})

    def ids(config: AlertsConfig, upto: int) -> set[str]:
        return {c.object_id for c in evaluate_rules(config, _newest_first(passes[: upto + 1]), {})}

    assert ids(instant, 0) == set()  # the first pass: nothing is new
    assert ids(instant, 1) == {"real", "blip"}
    assert ids(persistent, 1) == set()  # seen once: not yet
    assert ids(persistent, 2) == {"real"}  # seen twice: alert; the blip never alerts
    cand = evaluate_rules(persistent, _newest_first(passes[:3]), {})[0]
    assert (cand.first_scene, cand.scene, cand.seen, cand.looked) == ("p1", "p2", 2, 3)
    assert ids(persistent, 3) == {"real"}  # still within the window: the same alert again


def test_cloud_gap_is_not_an_absence() -> None:
    # p2 does not see the ground under the object (outside its footprint: a cloud mask)
    obj = _b(1500, 1500)
    cloud_free = box(X0 - 100, Y0 - 100, X0 + 1000, Y0 + 1000)
    passes = [
        _pass(0, {"o": obj}),
        _pass(1, {"o": obj}),
        _pass(2, {}, footprint=cloud_free),
        _pass(3, {"o": obj}),
    ]
    # without the footprint the object would look new again in p3 (absent in p2)
    assert evaluate_rules(_config(when="new"), _newest_first(passes), {}) == []
    # and a pass that does not see the object evaluates nothing for it
    assert evaluate_rules(_config(when="gone"), _newest_first(passes[:3]), {}) == []


def test_gone_with_persistence() -> None:
    obj = _b(0, 0)
    shifted = _b(5, 5)  # a small grid shift: still the same object
    passes = [
        _pass(0, {"a": obj}),
        _pass(1, {"a": shifted}),
        _pass(2, {"a": obj}),
        _pass(3, {}),
        _pass(4, {}),
    ]
    instant, persistent = (
        _config(when="gone"),
        _config(when="gone", persistence={"passes": 2, "of": 3}),
    )
    assert evaluate_rules(instant, _newest_first(passes[:3]), {}) == []
    assert [c.scene for c in evaluate_rules(instant, _newest_first(passes[:4]), {})] == ["p2"]
    assert evaluate_rules(persistent, _newest_first(passes[:4]), {}) == []
    [cand] = evaluate_rules(persistent, _newest_first(passes), {})
    assert (cand.object_id, cand.scene, cand.seen) == ("a", "p2", 2)


@pytest.mark.parametrize(
    ("seen", "when", "k", "n", "expected"),
    [
        ([True, False], "new", 1, 1, True),
        ([True, True], "new", 1, 1, False),
        ([True, True, True, False, False, False], "new", 2, 3, True),
        ([True, True, True, True, False], "new", 2, 3, False),  # appeared too long ago
        ([False, True, True], "present", 2, 3, False),  # not there now
        ([False, False, True, True, True], "gone", 2, 3, True),
        ([False, True, True, True], "gone", 2, 3, False),  # missed once only
        ([], "present", 1, 1, False),
    ],
)
def test_persistent_change(seen: list[bool], when: str, k: int, n: int, expected: bool) -> None:
    assert persistent_change(seen, when, k, n) is expected  # type: ignore[arg-type]
