"""Real client: QGIS opens the monitor's alerts.geojson with its style (alerts.qml)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "monitor"))
from alert_helpers import fake_monitor_state
from test_qgis_opens_outputs import _MISSING, SYSTEM_PYTHON, _qgis_env

from geotl.monitor.alerts import write_alert_outputs
from geotl.monitor.state import MonitorState

pytestmark = [pytest.mark.qgis, pytest.mark.skipif(_MISSING is not None, reason=_MISSING or "")]


def test_qgis_opens_alerts_with_their_style(tmp_path: Path, shared_data: Path) -> None:
    scenes = sorted((shared_data / "naip-landsat-timeseries" / "naip").glob("m_*.tif"))[:2]
    rdir = tmp_path / "naip-nd"
    ids = fake_monitor_state(rdir, scenes, [2, 1])
    with MonitorState(rdir / "state.sqlite") as state:
        state.acknowledge_alerts([ids[0]], state.alerts()[0].created)
        path = write_alert_outputs(state, rdir)
    assert len(json.loads(path.read_text())["features"]) == 2
    res = subprocess.run(
        [SYSTEM_PYTHON, str(Path(__file__).parent / "check_alerts.py"), str(path), "2"],
        env=_qgis_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
    assert lines, f"no report from QGIS (exit {res.returncode}): {res.stderr[-2000:]}"
    report = json.loads(lines[-1])
    assert report["ok"] and res.returncode == 0, report
