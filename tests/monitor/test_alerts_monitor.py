"""Alerts from real passes: the NAIP series, the tiny water model, reference layers, the CLI."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from alert_helpers import Receiver, add_alerts, write_reference
from click.testing import CliRunner
from monitor_helpers import deliver

from geotl.cli.main import cli
from geotl.config import load_region
from geotl.errors import ReferenceLayerError
from geotl.monitor import MonitorOptions, MonitorState, run_monitor

ALERTS = """
[monitor.alerts]
webhook = "{url}"
retry_base_s = 0.05
persistence = {{ passes = 1, of = 1 }}

[[monitor.alerts.rule]]
name = "water-new"
class = "water"
when = "new"

[[monitor.alerts.rule]]
name = "water-outside-permits"
class = "water"
when = "present"
outside = "permits.gpkg"
min_area_m2 = 500
persistence = {{ passes = 2, of = 3 }}
"""


def _fc(path: Path) -> dict:
    return json.loads(path.read_text())


def _alerts(rdir: Path) -> dict:
    with MonitorState(rdir / "state.sqlite", readonly=True) as state:
        return {a.id: a for a in state.alerts()}


def test_alerts_from_passes_delivery_ack_report(
    naip_region: Path, naip_small: list[Path], naip_model: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    rdir = out / "naip-nd"
    opts = MonitorOptions(out_dir=out, model_dir=naip_model)
    # three passes are processed before the region has alert rules
    deliver(naip_region, naip_small[:3])
    assert len(run_monitor(load_region(naip_region), opts).processed) == 3
    assert not (rdir / "alerts.geojson").exists()

    write_reference(naip_region.parent / "permits.gpkg", naip_small[0], [(0.0, 0.0, 0.5, 1.0)])
    receiver = Receiver(statuses=[503])
    try:
        add_alerts(naip_region, ALERTS.format(url=receiver.url))
        region = load_region(naip_region)
        # a run without new passes evaluates the passes done before (oldest first)
        assert run_monitor(region, opts).processed == []
        first = _alerts(rdir)
        assert first and {a.rule for a in first.values()} <= {"water-new", "water-outside-permits"}
        assert {a.fired_scene for a in first.values()} <= {s.stem for s in naip_small[1:3]}
        outside = [a for a in first.values() if a.rule == "water-outside-permits"]
        assert all(a.seen >= 2 and a.area_m2 >= 500 for a in outside)
        # delivered at once (the receiver's first 503 is retried within the run)
        assert {a.status for a in first.values()} == {"delivered"}
        assert len(receiver.requests) == len(first) + 1
        keys = [r["key"] for r in receiver.requests]
        assert sorted(set(keys)) == sorted(f"geotl:naip-nd:{i}" for i in first)

        # two more passes: new alerts only for new objects; known ones move their last pass
        deliver(naip_region, naip_small[3:5])
        assert len(run_monitor(region, opts).processed) == 2
        second = _alerts(rdir)
        assert set(first) <= set(second)
        assert all(second[i].created == first[i].created for i in first)  # stable ids
        sent = [r["key"] for r in receiver.requests]
        assert len(sent) == len(set(sent)) + 1  # each alert once (plus the one 503)
    finally:
        receiver.close()

    fc = _fc(rdir / "alerts.geojson")
    assert sorted(f["id"] for f in fc["features"]) == sorted(second)
    assert (rdir / "alerts.qml").read_text().count("<category ") == 3

    runner = CliRunner()
    some = sorted(second)[:2]
    result = runner.invoke(cli, ["monitor", "ack", str(naip_region), "--out", str(out), *some])
    assert result.exit_code == 0, result.output
    assert result.stdout.split() == some
    assert {_alerts(rdir)[i].status for i in some} == {"acknowledged"}
    assert len(_fc(rdir / "alerts.geojson")["features"]) == len(second) - 2

    # an unknown id: exit 2, one line naming it, nothing acknowledged
    rest = sorted(second)[2]
    result = runner.invoke(
        cli, ["monitor", "ack", str(naip_region), "--out", str(out), rest, "nope"]
    )
    assert result.exit_code == 2
    assert "unknown alert id(s) nope" in result.stderr and len(result.stderr.splitlines()) == 1
    assert _alerts(rdir)[rest].status == "delivered"

    result = runner.invoke(cli, ["monitor", "report", str(naip_region), "--out", str(out)])
    assert result.exit_code == 0, result.output
    page = Path(result.stdout.strip())
    assert page == rdir / "report" / "index.html" and page.exists()
    assert page.read_text().count('class="alert-row') == len(second)


def test_bad_reference_layers(
    naip_region: Path, naip_small: list[Path], naip_model: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    rule = """
[monitor.alerts]
[[monitor.alerts.rule]]
class = "water"
outside = "{name}"
"""
    runner = CliRunner()
    base = naip_region.read_text()
    cases = {
        # coordinates in the scene's metres but no CRS at all (a shapefile without .prj)
        "nocrs.shp": (None, "has no CRS"),
        # the scene's metres declared as degrees (the commonest CRS mistake)
        "wrongcrs.geojson": ("EPSG:4326", "does not overlap the region"),
    }
    for name, (crs, message) in cases.items():
        path = naip_region.parent / name
        write_reference(path, naip_small[0], [(0.1, 0.1, 0.4, 0.4)], crs=crs)
        naip_region.write_text(base)
        add_alerts(naip_region, rule.format(name=path.name))
        with pytest.raises(ReferenceLayerError, match=message):
            run_monitor(load_region(naip_region), MonitorOptions(out_dir=out, model_dir=naip_model))
        result = runner.invoke(
            cli,
            ["monitor", str(naip_region), "--out", str(out), "--model", str(naip_model)],
        )
        assert result.exit_code == 2, result.output
        assert len(result.stderr.splitlines()) == 1 and path.name in result.stderr
        assert message in result.stderr


def test_a_run_with_undelivered_alerts_is_recorded_as_failed(
    naip_region: Path, naip_small: list[Path], naip_model: Path, tmp_path: Path
) -> None:
    # the run exits 1 (cron / systemd see a failure) and status must not say "ok"
    from monitor_helpers import deliver

    from geotl.monitor import format_status, monitor_status

    out = tmp_path / "out"
    receiver = Receiver(statuses=[404] * 100)  # a wrong path: every alert fails for good
    try:
        add_alerts(
            naip_region,
            f'\n[monitor.alerts]\nwebhook = "{receiver.url}"\npersistence = {{ passes = 1, of = 1 }}\n'
            '[[monitor.alerts.rule]]\nclass = "water"\nwhen = "present"\n',
        )
        deliver(naip_region, naip_small[:1])
        region = load_region(naip_region)
        summary = run_monitor(region, MonitorOptions(out_dir=out, model_dir=naip_model))
    finally:
        receiver.close()
    assert summary.undelivered and not summary.failed and summary.exit_code == 1
    status = monitor_status(region, out)
    assert status.last_run_outcome == "failed"
    assert "could not be delivered" in format_status(status)
    # why, where an operator reading status after the cron mail looks (last_run.error)
    assert status.last_run_error is not None
    assert f"{len(summary.undelivered)} alert(s) could not be delivered (HTTP 404)" in (
        status.last_run_error
    )
    assert status.to_dict()["last_run"]["error"] == status.last_run_error


def test_a_rule_for_a_class_the_model_does_not_predict_is_refused(
    naip_region: Path, naip_model: Path, tmp_path: Path
) -> None:
    """A "lake" rule with a "water" model could never fire; the monitor ran with exit 0."""
    text = naip_region.read_text()
    assert 'classes = ["water"]' in text
    naip_region.write_text(text.replace('classes = ["water"]', 'classes = ["lake"]'))
    add_alerts(naip_region, '\n[monitor.alerts]\n[[monitor.alerts.rule]]\nclass = "lake"\n')
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli, ["monitor", str(naip_region), "--out", str(out), "--model", str(naip_model), "--once"]
    )
    assert result.exit_code == 2, result.output
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert "'lake'" in result.stderr and "water" in result.stderr
    assert str(naip_region) in result.stderr
    assert not (out / "naip-nd" / "state.sqlite").exists()


def test_a_pass_replaced_by_a_corrected_file_is_evaluated_again(
    naip_region: Path, naip_small: list[Path], naip_model: Path, tmp_path: Path
) -> None:
    """A pass re-sent corrected (same name) is evaluated again: its new lakes fire.

    The provider first delivers 2010's file with 2009's pixels (one pixel differs: not a
    byte copy), so nothing is new; the corrected file has 2010's lakes.
    """
    import numpy as np
    import rasterio
    from monitor_helpers import copy_in

    out = tmp_path / "out"
    add_alerts(
        naip_region,
        "\n[monitor.alerts]\npersistence = { passes = 1, of = 1 }\n"
        '[[monitor.alerts.rule]]\nname = "lake-new"\nclass = "water"\nwhen = "new"\n'
        "min_area_m2 = 1\n",
    )
    region = load_region(naip_region)
    opts = MonitorOptions(out_dir=out, model_dir=naip_model)
    deliver(naip_region, naip_small[:1])
    second = copy_in(naip_region, naip_small[0], naip_small[1].name)
    with rasterio.open(second, "r+") as ds:
        ds.write(np.full((4, 1, 1), 99, dtype="uint8"), window=((0, 1), (0, 1)))
    assert len(run_monitor(region, opts).processed) == 2
    assert _alerts(out / "naip-nd") == {}  # the same lakes twice

    copy_in(naip_region, naip_small[1])  # the corrected file
    os.utime(second, ns=(second.stat().st_atime_ns, second.stat().st_mtime_ns + 10**9))
    assert len(run_monitor(region, opts).processed) == 1

    after = _alerts(out / "naip-nd")
    assert after, "the corrected pass's new lakes raised no alert"
    assert {a.fired_scene for a in after.values()} == {second.stem}


def test_a_webhook_that_does_not_answer_makes_the_run_exit_1(
    naip_region: Path, naip_small: list[Path], naip_model: Path, tmp_path: Path
) -> None:
    """Retried later, but this run could not deliver: cron must see it now, not hours later."""
    from geotl.monitor import format_status, monitor_status

    out = tmp_path / "out"
    receiver = Receiver(statuses=[503] * 100)  # down for the whole test
    try:
        add_alerts(
            naip_region,
            f'\n[monitor.alerts]\nwebhook = "{receiver.url}"\nretry_base_s = 3600\n'
            "persistence = { passes = 1, of = 1 }\n"
            '[[monitor.alerts.rule]]\nclass = "water"\nwhen = "present"\n',
        )
        deliver(naip_region, naip_small[:1])
        region = load_region(naip_region)
        opts = MonitorOptions(out_dir=out, model_dir=naip_model)
        first = run_monitor(region, opts)
        assert first.unanswered and not first.undelivered and first.exit_code == 1
        assert set(first.unanswered) == set(_alerts(out / "naip-nd"))
        status = monitor_status(region, out)
        assert status.last_run_outcome == "failed"
        # the reason cron's exit 1 had: how many, the webhook's answer, when tried again
        assert status.last_run_error is not None
        assert f"{len(first.unanswered)} alert(s) not delivered (HTTP 503); next try at " in (
            status.last_run_error
        )
        assert f"failed: {status.last_run_error}" in format_status(status)
        tried = len(receiver.requests)
        # the next run has nothing due (backoff of an hour): nothing tried, nothing to report
        second = run_monitor(region, opts)
        assert len(receiver.requests) == tried
        assert not second.unanswered and second.exit_code == 0
        status = monitor_status(region, out)
        assert status.last_run_outcome == "ok" and status.last_run_error is None
    finally:
        receiver.close()


def test_a_stop_during_the_webhook_backoff_ends_the_wait_at_once(
    naip_region: Path, naip_small: list[Path], naip_model: Path, tmp_path: Path
) -> None:
    """SIGTERM (``systemctl stop``) while the run waits to retry a 5xx webhook.

    The wait slept on (30 s here, up to a minute) and then sent the alerts once more after
    the stop; the run now stops at once, and says how many alerts still wait.
    """
    import threading
    import time

    out = tmp_path / "out"
    receiver = Receiver(statuses=[503] * 100)
    stop = threading.Event()
    stopped_at: list[float] = []

    def stop_while_waiting() -> None:
        while not receiver.requests:
            time.sleep(0.02)
        time.sleep(2.0)  # the first round is over: the run sleeps until its retry
        stopped_at.append(time.monotonic())
        stop.set()

    try:
        add_alerts(
            naip_region,
            f'\n[monitor.alerts]\nwebhook = "{receiver.url}"\nretry_base_s = 30\n'
            "persistence = { passes = 1, of = 1 }\n"
            '[[monitor.alerts.rule]]\nclass = "water"\nwhen = "present"\n',
        )
        deliver(naip_region, naip_small[:1])
        opts = MonitorOptions(out_dir=out, model_dir=naip_model)
        stopper = threading.Thread(target=stop_while_waiting, daemon=True)
        stopper.start()
        summary = run_monitor(load_region(naip_region), opts, stop=stop)
        ended_at = time.monotonic()
        stopper.join()
    finally:
        receiver.close()
    alerts = _alerts(out / "naip-nd")
    assert alerts and len(receiver.requests) == len(alerts)  # nothing sent after the stop
    assert ended_at - stopped_at[0] < 2 and summary.exit_code == 1
    assert summary.open_alerts == len(alerts) == len(summary.unanswered)
