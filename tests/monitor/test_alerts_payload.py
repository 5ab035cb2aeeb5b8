"""The webhook body as a team acting on it reads it: where, what it rests on."""

from __future__ import annotations

from pathlib import Path

import pytest
from alert_helpers import Receiver, fake_monitor_state
from shapely.geometry import shape

from geotl.monitor.alerts import DeliveryPolicy, deliver_due
from geotl.monitor.state import MonitorState


def test_the_body_says_where_and_which_files_show_the_pass(
    tmp_path: Path, naip_small: list[Path]
) -> None:
    # the body had the polygon and the pass's name only: a receiver posting to a chat had
    # no corners for a map link, and the analyst had to find the pass's files by hand
    rdir = tmp_path / "out" / "naip-nd"
    ids = fake_monitor_state(rdir, naip_small[:2], [1, 1])
    receiver = Receiver()
    try:
        with MonitorState(rdir / "state.sqlite") as state:
            report = deliver_due(state, "naip-nd", DeliveryPolicy(receiver.url, wait_s=0))
    finally:
        receiver.close()
    assert sorted(report.delivered) == sorted(ids)
    for request in receiver.requests:
        body = request["body"]
        assert body["bbox"] == pytest.approx(shape(body["geometry"]).bounds, abs=1e-7)
        fired = body["pass"]
        assert fired["scene"] == body["properties"]["fired_scene"]
        assert fired["dir"] == str(rdir.resolve())
        assert (fired["detections"], fired["changes"]) == ("passes/x.geojson", None)
