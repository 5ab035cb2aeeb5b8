"""Growth alerts on the real NAIP series: ponds raised and acknowledged, raised again as they grow.

The prairie potholes of the North Dakota series swell and merge in wet years (2014: a lake
of over 100 ha took in ponds raised at 0.1-2 ha in 2010). A team that acknowledged those
ponds heard nothing more before ``when = "grown"``.
"""

from __future__ import annotations

import json
from pathlib import Path

from alert_helpers import Receiver, add_alerts
from monitor_helpers import deliver
from shapely.geometry import shape

from geotl.config import load_region
from geotl.monitor import MonitorOptions, MonitorState, run_monitor
from geotl.monitor.alerts import alert_id
from geotl.monitor.alerts.engine import acknowledge_alerts

ALERTS = """
[monitor.alerts]
webhook = "{url}"
retry_base_s = 0.05
persistence = {{ passes = 1, of = 1 }}

[[monitor.alerts.rule]]
name = "water-new"
class = "water"
when = "new"
min_area_m2 = 500

[[monitor.alerts.rule]]
name = "water-grown"
class = "water"
when = "grown"
grown_by = 1.5
min_growth_m2 = 500
"""


def test_acknowledged_ponds_that_grow_raise_growth_alerts(
    naip_region: Path, naip_small: list[Path], naip_model: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    rdir = out / "naip-nd"
    receiver = Receiver()
    try:
        add_alerts(naip_region, ALERTS.format(url=receiver.url))
        region = load_region(naip_region)
        opts = MonitorOptions(out_dir=out, model_dir=naip_model)
        deliver(naip_region, naip_small[:3])  # 2009, 2010, 2012
        run_monitor(region, opts)
        with MonitorState(rdir / "state.sqlite", readonly=True) as state:
            raised = {a.id: a for a in state.alerts()}
        assert raised and {a.rule for a in raised.values()} == {"water-new"}
        acknowledge_alerts(rdir, sorted(raised), region)  # the team has seen them all

        deliver(naip_region, naip_small[3:])  # 2014 .. 2020
        run_monitor(region, opts)
        with MonitorState(rdir / "state.sqlite", readonly=True) as state:
            alerts = {a.id: a for a in state.alerts()}
            grown = [a for a in alerts.values() if a.rule == "water-grown"]
            # nothing is raised twice: a second run without passes adds nothing
            assert grown
            run_monitor(region, opts)
            assert {a.id for a in state.alerts()} == set(alerts)
    finally:
        receiver.close()

    from_acknowledged = [a for a in grown if a.grown_from in raised]
    assert from_acknowledged  # the wet year: acknowledged ponds grew and were raised again
    for a in grown:
        original = alerts[a.grown_from]  # type: ignore[index]
        assert original.rule == "water-new" and original.fired_acquired < a.fired_acquired
        assert a.change == "grown" and a.status == "delivered"
        # grown over its area when last raised (the original's or the previous growth's)
        assert a.grown_from_area_m2 is not None
        assert a.area_m2 >= 1.5 * a.grown_from_area_m2
        assert a.area_m2 - a.grown_from_area_m2 >= 500
        assert shape(a.geometry).intersects(shape(original.geometry))
        # its own id, built as any alert's, and its own idempotency key
        assert a.id == alert_id("naip-nd", "water-grown", a.fired_scene, a.object_id)
        assert a.id != original.id
    assert len({a.id for a in grown}) == len(grown)

    # the webhook got each growth alert once, under its own key, with the link
    bodies = {r["key"]: r["body"] for r in receiver.requests}
    assert len(bodies) == len(receiver.requests)
    for a in grown:
        body = bodies[f"geotl:naip-nd:{a.id}"]
        assert body["properties"]["change"] == "grown"
        assert body["properties"]["grown_from"] == a.grown_from
        assert body["properties"]["grown_from_area_m2"] == round(a.grown_from_area_m2 or 0, 2)
    # alerts.geojson shows them (the acknowledged originals are gone from it)
    features = json.loads((rdir / "alerts.geojson").read_text())["features"]
    shown = {f["id"]: f["properties"] for f in features}
    assert {a.id for a in grown} <= set(shown) and not set(raised) & set(shown)
    assert all(shown[a.id]["grown_from"] == a.grown_from for a in grown)
