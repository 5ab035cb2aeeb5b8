"""``when = "grown"``: an object raised once is raised again, as its own alert, as it grows."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import geopandas as gpd
import pytest
from shapely.geometry import box
from test_alerts_engine import MODEL, UTM, X0, Y0, _b, _record_passes, _region
from test_alerts_rules import clearings

from geotl.config import AlertsConfig
from geotl.errors import ConfigError
from geotl.monitor.alerts import AlertEngine, alert_id
from geotl.monitor.alerts.engine import acknowledge_alerts, rules_hash, write_alert_outputs
from geotl.monitor.alerts.report import _table
from geotl.monitor.alerts.rules import object_areas
from geotl.monitor.state import MonitorState

RULES = """
[[monitor.alerts.rule]]
name = "clearing-new"
class = "clearing"

[[monitor.alerts.rule]]
name = "clearing-grown"
class = "clearing"
when = "grown"
grown_by = 2.0
{extra}
"""


def _evaluate(region_dir: Path, rules: str, passes: list[dict]) -> tuple[Path, list]:
    region = _region(region_dir / "region", rules)
    rdir = region_dir / "out" / "eng"
    _record_passes(rdir, passes)
    with MonitorState(rdir / "state.sqlite") as state:
        AlertEngine(region, state, rdir, None).evaluate_pending(MODEL)
        return rdir, state.alerts()


def test_a_clearing_that_keeps_growing_is_raised_again_each_time_it_doubles(
    tmp_path: Path,
) -> None:
    """1 ha raised and acknowledged, 2.25 ha, 10.2 ha, 10.2 ha: two growth alerts, then none."""
    region = _region(tmp_path / "region", RULES.format(extra=""))
    rdir = tmp_path / "out" / "eng"
    # each outline holds the one before (the same object, matched by overlap)
    _record_passes(rdir, [{}, {"a": _b(100, 100)}])
    with MonitorState(rdir / "state.sqlite") as state:
        _, [first] = AlertEngine(region, state, rdir, None).evaluate_pending(MODEL)
    acknowledge_alerts(rdir, [first], region)
    with MonitorState(rdir / "state.sqlite") as state:
        for i, size in ((2, 150.0), (3, 320.0), (4, 320.0)):
            _record_more(state, rdir, i, {f"a{i}": _b(100, 100, size)})
        engine = AlertEngine(region, state, rdir, None)
        evaluated, new = engine.evaluate_pending(MODEL)
        write_alert_outputs(state, rdir)
        alerts = {a.id: a for a in state.alerts()}
        assert evaluated == 3 and len(new) == 2
        grew = [alerts[i] for i in new]
        assert [(a.fired_scene, a.change, a.grown_from) for a in grew] == [
            ("p2", "grown", first),
            ("p3", "grown", first),  # linked to the alert the team acknowledged
        ]
        # each from the area when last raised: 1 ha, then the first growth alert's 2.25 ha
        assert [a.grown_from_area_m2 for a in grew] == pytest.approx([1e4, 2.25e4], rel=0.01)
        assert [a.area_m2 for a in grew] == pytest.approx([2.25e4, 10.24e4], rel=0.01)
        assert [a.id for a in grew] == [
            alert_id("eng", "clearing-grown", f"p{i}", f"a{i}") for i in (2, 3)
        ]
        assert alerts[first].status == "acknowledged"  # and stays so
        # evaluated again (a run killed before its marks): the same alerts, nothing more
        state._db.execute("DELETE FROM alert_evaluations")
        assert engine.evaluate_pending(MODEL) == (5, [])
        assert {a.id: a.status for a in state.alerts()} == {a.id: a.status for a in alerts.values()}
        assert all(a.withdrawn is None for a in state.alerts())
    features = json.loads((rdir / "alerts.geojson").read_text())["features"]
    assert {f["id"]: f["properties"]["grown_from"] for f in features} == {a.id: first for a in grew}
    assert f'alerts/{first}.geojson">{first}</a>, 10,000 m²' in _table(grew, {})


def _record_more(state: MonitorState, rdir: Path, i: int, objects: dict) -> None:
    """Pass ``p<i>`` (10 days after ``p<i-1>``) recorded as done with these objects."""
    from datetime import timedelta

    from test_alerts_engine import T0

    from geotl.monitor.sources import Scene

    fp = state.done_passes(MODEL)[0].footprint_wkt
    scene = Scene(
        key=f"k{i}",
        name=f"p{i}",
        acquired=T0 + timedelta(days=10 * i),
        acquired_from="regex",
        uri=f"/nowhere/p{i}.tif",
        fingerprint=str(i),
        footprint_wkt=fp,
    )
    state.record_scenes([scene], "folder", MODEL, T0)
    frame = clearings(objects)
    frame.to_file(rdir / f"passes/p{i}.geojson", driver="GeoJSON")
    state.mark_done(
        scene.key,
        MODEL,
        now=scene.acquired,
        duration_s=1.0,
        pass_path=f"passes/p{i}.geojson",
        changes_path=None,
        detections=len(objects),
        new=None,
        gone=None,
        previous_scene=None,
        footprint_wkt=fp,
    )


def test_growth_must_persist_like_any_change(tmp_path: Path) -> None:
    """2 of 3: one pass where the clearing merged with a field does not raise it again."""
    rules = RULES.format(extra="persistence = { passes = 2, of = 3 }")
    small, big = _b(100, 100), _b(100, 100, 400.0)
    _, alerts = _evaluate(tmp_path / "once", rules, [{}, {"a": small}, {"b": big}, {"c": small}])
    assert [a.rule for a in alerts] == ["clearing-new"]
    _, alerts = _evaluate(tmp_path / "twice", rules, [{}, {"a": small}, {"b": big}, {"c": big}])
    assert [(a.rule, a.fired_scene, a.seen, a.looked) for a in alerts] == [
        ("clearing-new", "p1", 1, 1),
        ("clearing-grown", "p3", 2, 3),
    ]


def test_min_growth_m2_alone_and_with_grown_by(tmp_path: Path) -> None:
    # 1 ha to 1.6 ha: 6,000 m2 more, 1.6 times
    passes = [{}, {"a": _b(100, 100)}, {"b": _b(100, 100, 126.5)}]
    alone = RULES.replace("grown_by = 2.0", "min_growth_m2 = 5000")
    assert [a.rule for a in _evaluate(tmp_path / "a", alone.format(extra=""), passes)[1]] == [
        "clearing-new",
        "clearing-grown",
    ]
    both = RULES.format(extra="min_growth_m2 = 5000")  # both must hold: 1.6 < 2
    assert [a.rule for a in _evaluate(tmp_path / "b", both, passes)[1]] == ["clearing-new"]


def test_an_object_never_raised_does_not_grow(tmp_path: Path) -> None:
    # a 'new' rule with min_area_m2 above the object: nothing to grow from
    rules = RULES.format(extra="").replace(
        'class = "clearing"\n\n', 'class = "clearing"\nmin_area_m2 = 1e6\n\n', 1
    )
    _, alerts = _evaluate(tmp_path, rules, [{}, {"a": _b(100, 100)}, {"b": _b(100, 100, 400.0)}])
    assert alerts == []


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ('[[monitor.alerts.rule]]\nclass = "clearing"\nwhen = "grown"', "needs grown_by"),
        (
            '[[monitor.alerts.rule]]\nclass = "clearing"\ngrown_by = 2.0',
            'only apply to when = "grown"',
        ),
        ('[[monitor.alerts.rule]]\nclass = "clearing"\nwhen = "grown"\ngrown_by = 1.0', "grown_by"),
        (
            '[[monitor.alerts.rule]]\nclass = "clearing"\nwhen = "gone"\n'
            '[[monitor.alerts.rule]]\nclass = "clearing"\nwhen = "grown"\ngrown_by = 2.0',
            "no rule does: add one",
        ),
    ],
)
def test_growth_rules_that_cannot_work_are_refused(
    tmp_path: Path, rules: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        _region(tmp_path, rules)
    assert "r.toml" in str(err.value)


def test_rules_without_growth_keep_their_hash() -> None:
    """Rules of a region file written before ``grown`` existed: passes not evaluated again."""
    config = AlertsConfig.model_validate(
        {
            "persistence": {"passes": 2, "of": 3},
            "rule": [
                {"class": "water", "when": "new", "min_area_m2": 500},
                {"name": "w", "class": "water", "when": "present"},
            ],
        }
    )
    assert rules_hash(config) == "4df523e17730"  # as geotl computed it before


def test_areas_of_a_pass_file_without_area_m2_are_m2() -> None:
    """Measured in square degrees (1e-6 for a hectare) where a pass file lacked area_m2."""
    square = gpd.GeoSeries([box(X0, Y0, X0 + 100, Y0 + 100)], crs=UTM).to_crs("EPSG:4326")
    frame = gpd.GeoDataFrame(
        {"id": ["a", "b"], "area_m2": [None, 5.0]}, geometry=[square.iloc[0]] * 2
    )
    assert object_areas(frame.set_crs("EPSG:4326")) == pytest.approx([1e4, 5.0], rel=2e-3)
    assert object_areas(frame) == pytest.approx([1e4, 5.0], rel=2e-3)  # no CRS: RFC 7946
    assert object_areas(frame.drop(columns="area_m2").set_crs("EPSG:4326").to_crs(UTM))[
        0
    ] == pytest.approx(1e4, rel=2e-3)


def test_a_state_of_the_previous_geotl_opens_and_gains_the_growth_columns(
    tmp_path: Path,
) -> None:
    rdir, before = _evaluate(
        tmp_path, '[[monitor.alerts.rule]]\nclass = "clearing"', [{}, {"a": _b(100, 100)}]
    )
    db_path = rdir / "state.sqlite"
    db = sqlite3.connect(db_path)  # the alerts table as the previous geotl left it
    db.execute("ALTER TABLE alerts DROP COLUMN grown_from_area_m2")
    db.execute("ALTER TABLE alerts DROP COLUMN grown_from")
    db.commit()
    db.close()
    with MonitorState(db_path, readonly=True) as state:  # status, report: as it is
        assert [(a.id, a.grown_from) for a in state.alerts()] == [(before[0].id, None)]
        assert [a.id for a in state.unsent_alerts()] == [before[0].id]
    with MonitorState(db_path) as state:  # the next run adds the columns, rows kept
        assert state.alerts() == before
    columns = [r[1] for r in sqlite3.connect(db_path).execute("PRAGMA table_info(alerts)")]
    assert columns[-2:] == ["grown_from", "grown_from_area_m2"]
