"""What a ``gone`` alert says as "last seen" when a larger object took the object in."""

from __future__ import annotations

from pathlib import Path

from shapely.geometry import box
from test_alerts_engine import MODEL, _record_passes, _region
from test_alerts_rules import X0, Y0, _config, _newest_first, _pass

from geotl.monitor.alerts import AlertEngine, evaluate_rules
from geotl.monitor.state import MonitorState

POND = box(X0 + 200, Y0 + 200, X0 + 220, Y0 + 220)  # 400 m2 at a lake's edge
LAKE = box(X0 + 110, Y0 + 110, X0 + 230, Y0 + 230)  # takes the pond in (all of it)
SHRUNK = box(X0 + 110, Y0 + 110, X0 + 208, Y0 + 230)  # the lake drawn back: 40 % of the pond


def test_gone_is_last_seen_where_a_larger_object_still_held_it() -> None:
    # NAIP ponds, 2 of 3: a 575 m2 "pond" split off a lake in 2010 alerted "gone" in 2020
    # with last_scene 2010, though the lake covered it in every pass up to 2019
    passes = [_pass(0, {"pond": POND}), _pass(1, {"lake": LAKE}), _pass(2, {"lake": SHRUNK})]
    [cand] = evaluate_rules(_config(when="gone"), _newest_first(passes), {})
    assert (cand.object_id, cand.scene) == ("pond", "p0")  # the pass its outline comes from
    assert (cand.last_scene, cand.last_acquired) == ("p1", passes[1].acquired)


def test_the_alert_says_the_pass_that_last_saw_the_object(tmp_path: Path) -> None:
    region = _region(
        tmp_path / "region", '[[monitor.alerts.rule]]\nclass = "clearing"\nwhen = "gone"'
    )
    rdir = tmp_path / "out" / "eng"
    _record_passes(rdir, [{"pond": POND}, {"lake": LAKE}, {"lake": SHRUNK}])
    with MonitorState(rdir / "state.sqlite") as state:
        AlertEngine(region, state, rdir, None).evaluate_pending(MODEL)
        [alert] = state.alerts()
    assert (alert.object_id, alert.fired_scene, alert.last_scene) == ("pond", "p2", "p1")
