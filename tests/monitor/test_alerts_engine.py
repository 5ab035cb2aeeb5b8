"""The alert engine on a monitor state built in code: passes recorded, rules evaluated, stored."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from rasterio.transform import from_origin
from shapely.geometry import box
from test_alerts_rules import clearings

from geotl.config import Region, load_region
from geotl.monitor.alerts import AlertEngine
from geotl.monitor.sources import Scene
from geotl.monitor.state import MonitorState

UTM = "EPSG:32614"
X0, Y0 = 480_000.0, 5_205_000.0
T0 = datetime(2020, 6, 1, tzinfo=UTC)
MODEL = "m1"


def _region(folder: Path, rules: str) -> Region:
    """A region over a 2 km square of 10 m pixels, with ``rules`` as its alert rules."""
    (folder / "incoming").mkdir(parents=True)
    with rasterio.open(
        folder / "scene.tif",
        "w",
        driver="GTiff",
        width=200,
        height=200,
        count=1,
        dtype="uint8",
        crs=UTM,
        transform=from_origin(X0, Y0 + 2000, 10, 10),
    ) as ds:
        ds.write(np.ones((1, 200, 200), dtype=np.uint8))
    path = folder / "r.toml"
    path.write_text(
        'name = "eng"\nclasses = ["clearing"]\n\n[imagery]\npaths = ["scene.tif"]\n'
        'bands = ["red"]\n\n[monitor]\nsource = "folder"\npaths = ["incoming/*.tif"]\n\n'
        f"[monitor.alerts]\npersistence = {{ passes = 1, of = 1 }}\n\n{rules.strip()}\n",
        encoding="utf-8",
    )
    return load_region(path)


def _record_passes(rdir: Path, passes: list[dict[str, shapely.Polygon]]) -> None:
    """Done passes ``p0``, ``p1``, ... over the region, 10 days apart, with these objects."""
    (rdir / "passes").mkdir(parents=True)
    footprint = gpd.GeoSeries([box(X0, Y0, X0 + 2000, Y0 + 2000)], crs=UTM).to_crs("EPSG:4326")
    fp_wkt = footprint.iloc[0].wkt
    scenes = [
        Scene(
            key=f"k{i}",
            name=f"p{i}",
            acquired=T0 + timedelta(days=10 * i),
            acquired_from="regex",
            uri=f"/nowhere/p{i}.tif",
            fingerprint=str(i),
            footprint_wkt=fp_wkt,
        )
        for i in range(len(passes))
    ]
    with MonitorState(rdir / "state.sqlite") as state:
        state.record_scenes(scenes, "folder", MODEL, T0)
        for scene, objects in zip(scenes, passes, strict=True):
            frame = clearings(objects)
            rel = f"passes/{scene.name}.geojson"
            frame.to_file(rdir / rel, driver="GeoJSON")
            state.mark_done(
                scene.key,
                MODEL,
                now=scene.acquired,
                duration_s=1.0,
                pass_path=rel,
                changes_path=None,
                detections=len(objects),
                new=None,
                gone=None,
                previous_scene=None,
                footprint_wkt=fp_wkt,
            )


def _b(x: float, y: float, size: float = 100.0) -> shapely.Polygon:
    return box(X0 + x, Y0 + y, X0 + x + size, Y0 + y + size)


def test_last_pass_moves_on_when_the_rule_fires_for_another_object(tmp_path: Path) -> None:
    region = _region(tmp_path / "region", '[[monitor.alerts.rule]]\nclass = "clearing"')
    rdir = tmp_path / "out" / "eng"
    a, b, c = _b(100, 100), _b(800, 800), _b(1500, 300)
    # a appears in p1 and stays; b appears in p2, c in p3: the rule fires in p1, p2 and p3
    _record_passes(rdir, [{}, {"a": a}, {"a2": a, "b": b}, {"a3": a, "b3": b, "c": c}])
    with MonitorState(rdir / "state.sqlite") as state:
        evaluated, new = AlertEngine(region, state, rdir, None).evaluate_pending(MODEL)
        alerts = {a.object_id: a for a in state.alerts()}
    assert evaluated == 4 and len(new) == 3
    assert sorted(alerts) == ["a", "b", "c"]
    # each object's alert follows it to the last pass that saw it (p3), although its rule
    # fired for another object in p2 and p3
    assert {k: (x.fired_scene, x.last_scene) for k, x in alerts.items()} == {
        "a": ("p1", "p3"),
        "b": ("p2", "p3"),
        "c": ("p3", "p3"),
    }


def test_ack_takes_ids_as_pasted(tmp_path: Path) -> None:
    # ids copied from a mail or a spreadsheet ("57E5FCA6623D," ) were unknown ids, exit 2
    import json

    from geotl.monitor.alerts.engine import acknowledge_alerts

    region = _region(tmp_path / "region", '[[monitor.alerts.rule]]\nclass = "clearing"')
    rdir = tmp_path / "out" / "eng"
    _record_passes(rdir, [{}, {"a": _b(100, 100), "b": _b(800, 800)}])
    with MonitorState(rdir / "state.sqlite") as state:
        _, new = AlertEngine(region, state, rdir, None).evaluate_pending(MODEL)
    assert len(new) == 2
    done = acknowledge_alerts(rdir, [f" {new[0].upper()},"], region)
    assert done == [new[0]]
    with MonitorState(rdir / "state.sqlite", readonly=True) as state:
        assert {a.id: a.status for a in state.alerts()} == {new[0]: "acknowledged", new[1]: "open"}
    features = json.loads((rdir / "alerts.geojson").read_text())["features"]
    assert [f["id"] for f in features] == [new[1]]


def test_alerts_show_the_area_when_last_seen_beside_the_area_when_raised(tmp_path: Path) -> None:
    """A pond raised at 1 ha that grew to 9 ha: alerts.geojson and the report said 1 ha."""
    import json

    from geotl.monitor.alerts.engine import acknowledge_alerts, write_alert_outputs
    from geotl.monitor.alerts.report import _table

    region = _region(
        tmp_path / "region",
        '[[monitor.alerts.rule]]\nname = "new"\nclass = "clearing"\n'
        '[[monitor.alerts.rule]]\nname = "present"\nclass = "clearing"\nwhen = "present"',
    )
    rdir = tmp_path / "out" / "eng"
    # grows from 100 m to 300 m a side (its first outline is inside: the same object)
    _record_passes(rdir, [{}, {"a": _b(100, 100)}, {"a2": _b(100, 100, 300.0)}])
    with MonitorState(rdir / "state.sqlite") as state:
        AlertEngine(region, state, rdir, None).evaluate_pending(MODEL)
        write_alert_outputs(state, rdir)
        alerts = {a.rule: a for a in state.alerts()}
    # "new" fired in p1 and saw it again in p2 without firing; "present" fired in both
    assert sorted(alerts) == ["new", "present"]
    for alert in alerts.values():
        assert (alert.fired_scene, alert.last_scene) == ("p1", "p2")
        assert alert.area_m2 == pytest.approx(1e4, rel=0.01)  # as raised: ids stay stable
        assert alert.last_area_m2 == pytest.approx(9e4, rel=0.01)
    features = json.loads((rdir / "alerts.geojson").read_text())["features"]
    for f in features:
        assert f["properties"]["area_m2"] == pytest.approx(1e4, rel=0.01)
        assert f["properties"]["last_area_m2"] == pytest.approx(9e4, rel=0.01)
    assert "90,0" in _table(list(alerts.values()), {})  # the report's "last seen m²"
    # acknowledged, it stays acknowledged as it grows (see the report: no re-raise)
    acknowledge_alerts(rdir, [alerts["new"].id], region)
    with MonitorState(rdir / "state.sqlite", readonly=True) as state:
        assert state.alert(alerts["new"].id).status == "acknowledged"  # type: ignore[union-attr]


def test_a_pass_done_again_without_the_object_withdraws_its_alert(tmp_path: Path) -> None:
    """The corrected pass no longer holds the object: its alert is withdrawn, not deleted.

    It leaves alerts.geojson, keeps its id and history in the state, and the receiver that
    got it is told once, under a key of its own; the alert still supported stays as it was.
    """
    import json

    from alert_helpers import Receiver

    from geotl.monitor.alerts.delivery import DeliveryPolicy, deliver_due
    from geotl.monitor.alerts.engine import write_alert_outputs

    region = _region(tmp_path / "region", '[[monitor.alerts.rule]]\nclass = "clearing"')
    rdir = tmp_path / "out" / "eng"
    a, b = _b(100, 100), _b(800, 800)
    _record_passes(rdir, [{}, {"a": a, "b": b}])
    receiver = Receiver()
    try:
        policy = DeliveryPolicy(receiver.url, retry_base_s=0.01)
        with MonitorState(rdir / "state.sqlite") as state:
            engine = AlertEngine(region, state, rdir, None)
            _, new = engine.evaluate_pending(MODEL)
            assert len(new) == 2
            assert len(deliver_due(state, "eng", policy).delivered) == 2
            ids = {x.object_id: x.id for x in state.alerts()}

            # p1 done again from a corrected file: only b is there
            frame = gpd.GeoDataFrame(
                {"id": ["b"], "class": ["clearing"], "score": [0.9], "area_m2": [b.area]},
                geometry=[b],
                crs=UTM,
            ).to_crs("EPSG:4326")
            frame.to_file(rdir / "passes" / "p1.geojson", driver="GeoJSON")
            fp = state.done_passes(MODEL)[1].footprint_wkt
            state.mark_done(
                "k1",
                MODEL,
                now=datetime.now(UTC),
                duration_s=1.0,
                pass_path="passes/p1.geojson",
                changes_path=None,
                detections=1,
                new=None,
                gone=None,
                previous_scene="p0",
                footprint_wkt=fp,
            )
            engine.forget_passes()
            evaluated, again = engine.evaluate_pending(MODEL)
            assert evaluated == 1 and again == []  # nothing fires twice
            write_alert_outputs(state, rdir)
            gone, kept = state.alert(ids["a"]), state.alert(ids["b"])
            assert gone is not None and kept is not None
            assert (gone.status, gone.withdrawn_scene, gone.withdrawal_notice) == (
                "withdrawn",
                "p1",
                "pending",
            )
            assert kept.status == "delivered" and kept.withdrawn is None
            features = json.loads((rdir / "alerts.geojson").read_text())["features"]
            assert [f["id"] for f in features] == [ids["b"]]

            sent = len(receiver.requests)
            report = deliver_due(state, "eng", policy)
            assert report.delivered == [ids["a"]] and not report.retrying
            told = receiver.requests[sent:]
            assert [r["key"] for r in told] == [f"geotl:eng:{ids['a']}:withdrawn"]
            assert told[0]["body"]["properties"]["status"] == "withdrawn"
            assert told[0]["body"]["properties"]["withdrawn_scene"] == "p1"
            assert state.alert(ids["a"]).withdrawal_notice == "sent"  # type: ignore[union-attr]
            # told once; evaluated again (rules edited, a run killed): nothing more
            assert deliver_due(state, "eng", policy).attempts == 0
            assert len(state.alerts()) == 2 and len(state.deliveries(ids["a"])) == 2
    finally:
        receiver.close()


#: the alerts table as geotl wrote it before alerts could be withdrawn or seen again
_EARLIER_ALERTS = """
CREATE TABLE alerts (
    id TEXT PRIMARY KEY, rule TEXT NOT NULL, class TEXT NOT NULL, change TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('open', 'delivered', 'acknowledged', 'failed')),
    geometry TEXT NOT NULL, object_id TEXT NOT NULL, score REAL, area_m2 REAL NOT NULL,
    model_id TEXT NOT NULL, fired_scene TEXT NOT NULL, fired_acquired TEXT NOT NULL,
    first_scene TEXT NOT NULL, first_acquired TEXT NOT NULL, last_scene TEXT NOT NULL,
    last_acquired TEXT NOT NULL, reference_layer TEXT, reference_ids TEXT NOT NULL DEFAULT '[]',
    seen INTEGER NOT NULL, looked INTEGER NOT NULL, created TEXT NOT NULL, updated TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, next_attempt TEXT, last_error TEXT,
    http_status INTEGER, delivered TEXT, acknowledged TEXT
)"""


def test_a_state_with_earlier_alerts_is_read_and_upgraded_in_place(tmp_path: Path) -> None:
    """Existing state.sqlite files: read as they are, upgraded by the next run, nothing lost."""
    import sqlite3

    from geotl.monitor.alerts.delivery import DeliveryPolicy, deliver_due

    region = _region(tmp_path / "region", '[[monitor.alerts.rule]]\nclass = "clearing"')
    rdir = tmp_path / "out" / "eng"
    _record_passes(rdir, [{}, {"a": _b(100, 100), "b": _b(800, 800)}])
    db_path = rdir / "state.sqlite"
    with MonitorState(db_path) as state:
        AlertEngine(region, state, rdir, None).evaluate_pending(MODEL)
        # one attempt each, recorded as an earlier geotl would (a refused connection)
        deliver_due(state, "eng", DeliveryPolicy("http://127.0.0.1:9/hook", retry_base_s=60))
        before = state.alerts()
        deliveries = {a.id: state.deliveries(a.id) for a in before}
    db = sqlite3.connect(db_path)
    columns = ", ".join(str(r[1]) for r in db.execute("PRAGMA table_info(alerts)"))
    kept = columns.split(", last_area_m2")[0]
    db.executescript(
        "PRAGMA foreign_keys=OFF; "
        + _EARLIER_ALERTS.replace("TABLE alerts", "TABLE earlier")
        + f"; INSERT INTO earlier SELECT {kept} FROM alerts; DROP TABLE alerts; "
        "ALTER TABLE earlier RENAME TO alerts;"
    )
    db.close()

    with MonitorState(db_path, readonly=True) as state:  # status, report: as they are
        assert [(a.id, a.status, a.last_area_m2) for a in state.alerts()] == [
            (a.id, a.status, None) for a in before
        ]
        assert [a.id for a in state.unsent_alerts()] == [a.id for a in before]  # status
    with MonitorState(db_path) as state:  # the next run: upgraded, rows and attempts kept
        assert [a.id for a in state.alerts()] == [a.id for a in before]
        assert {a.id: state.deliveries(a.id) for a in before} == deliveries
        state.record_alert_evaluation(
            "k1", MODEL, "x", now=datetime.now(UTC), new=[], sightings=[], withdrawn=[before[0].id]
        )
        assert state.alert(before[0].id).status == "withdrawn"  # type: ignore[union-attr]
        assert state._db.execute("PRAGMA foreign_key_check").fetchall() == []
        assert state._db.execute("PRAGMA foreign_keys").fetchone() == (1,)
    with MonitorState(db_path) as state:  # opened again: nothing done twice
        assert len(state.alerts()) == len(before)
