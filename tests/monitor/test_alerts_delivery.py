"""Webhook delivery against a real HTTP server on 127.0.0.1: retries, 4xx, a kill mid-send."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from alert_helpers import Receiver, fake_monitor_state

from geotl.monitor.alerts import DeliveryPolicy, deliver_due
from geotl.monitor.state import MonitorState


@pytest.fixture
def state_dir(tmp_path: Path, naip_small: list[Path]) -> tuple[Path, list[str]]:
    rdir = tmp_path / "out" / "naip-nd"
    ids = fake_monitor_state(rdir, naip_small[:2], [1, 1])
    return rdir, ids


def _deliveries(rdir: Path, alert_id: str) -> list[dict]:
    with MonitorState(rdir / "state.sqlite", readonly=True) as state:
        return state.deliveries(alert_id)


def test_fails_then_succeeds_with_backoff_recorded(state_dir: tuple[Path, list[str]]) -> None:
    rdir, ids = state_dir
    receiver = Receiver(statuses=[503, 500, 502])  # every alert's first attempts fail
    try:
        policy = DeliveryPolicy(receiver.url, timeout_s=5, retry_base_s=0.05, wait_s=10)
        with MonitorState(rdir / "state.sqlite") as state:
            report = deliver_due(state, "naip-nd", policy)
            alerts = {a.id: a for a in state.alerts()}
    finally:
        receiver.close()
    assert sorted(report.delivered) == sorted(ids) and not report.failed and not report.retrying
    assert all(a.status == "delivered" and a.delivered is not None for a in alerts.values())
    outcomes = [d["outcome"] for i in ids for d in _deliveries(rdir, i)]
    assert outcomes.count("retry") == 3 and outcomes.count("delivered") == 2
    first = _deliveries(rdir, ids[0])
    assert first[0]["http_status"] == 503 and first[0]["error"] == "HTTP 503"
    assert first[0]["started"] < first[1]["started"]  # backoff: attempts one after another
    # the body: the alert as a GeoJSON Feature plus region and pass; one key per alert
    body = receiver.requests[-1]["body"]
    assert body["type"] == "Feature" and body["geometry"]["type"] == "Polygon"
    assert (
        body["region"] == "naip-nd" and body["pass"]["scene"] == body["properties"]["fired_scene"]
    )
    keys = {r["key"] for r in receiver.requests}
    assert keys == {f"geotl:naip-nd:{i}" for i in ids}
    assert all(r["body"]["idempotency_key"] == r["key"] for r in receiver.requests)


def test_4xx_marks_failed_without_retrying(state_dir: tuple[Path, list[str]]) -> None:
    rdir, ids = state_dir
    receiver = Receiver(statuses=[404, 404])
    try:
        policy = DeliveryPolicy(receiver.url, retry_base_s=0.01, wait_s=5)
        with MonitorState(rdir / "state.sqlite") as state:
            report = deliver_due(state, "naip-nd", policy)
            again = deliver_due(state, "naip-nd", policy)
            alerts = state.alerts()
    finally:
        receiver.close()
    assert sorted(report.failed) == sorted(ids) and again.attempts == 0
    assert len(receiver.requests) == 2
    assert all(a.status == "failed" and a.http_status == 404 for a in alerts)
    assert all(a.last_error == "HTTP 404" for a in alerts)


def test_a_redirecting_webhook_is_not_delivered(state_dir: tuple[Path, list[str]]) -> None:
    """An http:// hook that moved (301): urllib sent the POST on as a bodyless GET, whose 200
    marked every alert delivered while the receiver got none of them."""
    rdir, ids = state_dir
    receiver = Receiver(redirect=True)
    try:
        policy = DeliveryPolicy(receiver.url, retry_base_s=0.01, wait_s=5)
        with MonitorState(rdir / "state.sqlite") as state:
            report = deliver_due(state, "naip-nd", policy)
            alerts = state.alerts()
    finally:
        receiver.close()
    assert receiver.gets == [] and not report.delivered
    assert sorted(report.failed) == sorted(ids) and len(receiver.requests) == 2  # no retries
    moved = receiver.url.replace("/hook", "/moved")
    assert all(a.status == "failed" and a.http_status == 301 for a in alerts)
    assert all(f"redirects to {moved}" in (a.last_error or "") for a in alerts)


def test_a_webhook_with_credentials_sends_them_as_basic_auth(
    state_dir: tuple[Path, list[str]],
) -> None:
    # https://user:password@host/hook: urllib looked up "user:password@host" as the host
    # name, every attempt failed as a network error and was retried until it gave up
    rdir, ids = state_dir
    receiver = Receiver()
    try:
        url = receiver.url.replace("http://", "http://geotl:s3cr%40t@")
        policy = DeliveryPolicy(url, retry_base_s=0.01, wait_s=5)
        with MonitorState(rdir / "state.sqlite") as state:
            report = deliver_due(state, "naip-nd", policy)
    finally:
        receiver.close()
    assert sorted(report.delivered) == sorted(ids)
    assert [r["auth"] for r in receiver.requests] == ["Basic Z2VvdGw6czNjckB0"] * 2  # geotl:s3cr@t
    attempts = _deliveries(rdir, ids[0])
    assert attempts[0]["url"] == receiver.url  # the state keeps no password


def test_failed_alerts_are_sent_again_once_the_receiver_is_fixed(
    state_dir: tuple[Path, list[str]],
) -> None:
    """``geotl monitor --retry-failed``: alerts that failed for good are not lost."""
    rdir, ids = state_dir
    receiver = Receiver(statuses=[404, 404])  # a wrong path, fixed on the receiver's side
    try:
        policy = DeliveryPolicy(receiver.url, retry_base_s=0.01, wait_s=5)
        with MonitorState(rdir / "state.sqlite") as state:
            assert sorted(deliver_due(state, "naip-nd", policy).failed) == sorted(ids)
            assert state.reopen_failed_alerts() == 2
            report = deliver_due(state, "naip-nd", policy)
            alerts = state.alerts()
    finally:
        receiver.close()
    assert sorted(report.delivered) == sorted(ids)
    assert all(a.status == "delivered" for a in alerts)


def test_unreachable_receiver_waits_for_a_later_run(state_dir: tuple[Path, list[str]]) -> None:
    rdir, ids = state_dir
    receiver = Receiver()
    url = receiver.url
    receiver.close()  # nothing listens there now: connection refused
    policy = DeliveryPolicy(url, retry_base_s=3600, wait_s=1)
    with MonitorState(rdir / "state.sqlite") as state:
        report = deliver_due(state, "naip-nd", policy)
        alerts = state.alerts()
    assert sorted(report.retrying) == sorted(ids) and not report.delivered
    assert all(a.status == "open" and a.attempts == 1 and a.next_attempt for a in alerts)
    assert all(
        "Connection" in (a.last_error or "") or "refused" in (a.last_error or "") for a in alerts
    )


def test_a_receiver_that_never_answers_does_not_hold_the_run(
    tmp_path: Path, naip_small: list[Path]
) -> None:
    # a host that accepts connections and never answers: each alert waited timeout_s in
    # turn, so 100 open alerts held a cron run (and the region's lock) for 100 x 10 s
    rdir = tmp_path / "out" / "naip-nd"
    ids = fake_monitor_state(rdir, naip_small[:2], [3, 3])
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # the kernel completes connections nobody ever accepts
    host, port = silent.getsockname()
    policy = DeliveryPolicy(f"http://{host}:{port}/hook", timeout_s=0.5, wait_s=0)
    try:
        started = time.monotonic()
        with MonitorState(rdir / "state.sqlite") as state:
            report = deliver_due(state, "naip-nd", policy)
            alerts = state.alerts()
        elapsed = time.monotonic() - started
    finally:
        silent.close()
    assert report.attempts == 1 and elapsed < 2.5  # not 6 x 0.5 s
    assert sorted(a.attempts for a in alerts) == [0] * (len(ids) - 1) + [1]
    assert all(a.status == "open" for a in alerts)  # the others wait for the next round


def test_killed_between_sending_and_recording_is_sent_again(
    state_dir: tuple[Path, list[str]], tmp_path: Path
) -> None:
    rdir, ids = state_dir
    pid_file = tmp_path / "pid"
    receiver = Receiver(kill_pid_on_first=lambda: int(pid_file.read_text()))
    script = textwrap.dedent(
        f"""
        import os, sys
        from pathlib import Path
        Path({str(pid_file)!r}).write_text(str(os.getpid()))
        from geotl.monitor.alerts import DeliveryPolicy, deliver_due
        from geotl.monitor.state import MonitorState
        with MonitorState(Path({str(rdir / "state.sqlite")!r})) as state:
            deliver_due(state, "naip-nd", DeliveryPolicy({receiver.url!r}, wait_s=0))
        """
    )
    try:
        proc = subprocess.run([sys.executable, "-c", script], timeout=120, capture_output=True)
        assert proc.returncode == -9, proc.stderr.decode()[-2000:]
        first_key = receiver.requests[0]["key"]
        # the attempt was recorded as started, its outcome never: the alert is still open
        with MonitorState(rdir / "state.sqlite", readonly=True) as state:
            killed = next(a for a in state.alerts() if f"geotl:naip-nd:{a.id}" == first_key)
            assert killed.status == "open"
            assert [d["outcome"] for d in state.deliveries(killed.id)] == ["sending"]
        # the next run sends it again with the same idempotency key
        with MonitorState(rdir / "state.sqlite") as state:
            report = deliver_due(state, "naip-nd", DeliveryPolicy(receiver.url, wait_s=0))
    finally:
        receiver.close()
    assert sorted(report.delivered) == sorted(ids)
    assert [r["key"] for r in receiver.requests].count(first_key) == 2
    assert [d["outcome"] for d in _deliveries(rdir, killed.id)] == ["sending", "delivered"]


def test_undelivered_alerts_make_the_run_exit_1() -> None:
    from geotl.monitor.runner import RunSummary

    assert RunSummary(region="r", model_id="m").exit_code == 0
    assert RunSummary(region="r", model_id="m", undelivered=["a1"]).exit_code == 1  # cron sees it


def test_status_counts_alerts_and_says_how_to_resend_failed_ones(
    tmp_path: Path, naip_small: list[Path], naip_region: Path
) -> None:
    # a run whose alerts could not be delivered exits 1; status said nothing of alerts
    from geotl.config import load_region
    from geotl.monitor import format_status, monitor_status

    out = tmp_path / "out"
    ids = fake_monitor_state(out / "naip-nd", naip_small[:2], [1, 2])
    assert len(ids) == 3
    receiver = Receiver(statuses=[404])
    try:
        policy = DeliveryPolicy(receiver.url, retry_base_s=0.01, wait_s=5)
        with MonitorState(out / "naip-nd" / "state.sqlite") as state:
            report = deliver_due(state, "naip-nd", policy)
            state.acknowledge_alerts(report.delivered[:1], state.alerts()[0].created)
    finally:
        receiver.close()
    status = monitor_status(load_region(naip_region), out)
    assert status.alerts == {"acknowledged": 1, "delivered": 1, "failed": 1}
    assert status.to_dict()["alerts"] == status.alerts
    text = format_status(status)
    assert "alerts: 3 (acknowledged 1, delivered 1, failed 1)" in text
    assert "1 alert(s) could not be delivered" in text and "--retry-failed" in text


def test_status_says_which_alerts_wait_for_a_retry(
    tmp_path: Path, naip_small: list[Path], naip_region: Path
) -> None:
    # a receiver that is down: the alerts stay open with a retry due, the run exits 0, and
    # status said only "open 2", as for alerts never sent (no webhook)
    from geotl.config import load_region
    from geotl.monitor import format_status, monitor_status

    out = tmp_path / "out"
    fake_monitor_state(out / "naip-nd", naip_small[:2], [1, 1])
    receiver = Receiver()
    url = receiver.url
    receiver.close()  # connection refused
    with MonitorState(out / "naip-nd" / "state.sqlite") as state:
        deliver_due(state, "naip-nd", DeliveryPolicy(url, retry_base_s=3600, wait_s=1))
    status = monitor_status(load_region(naip_region), out)
    assert status.alerts == {"open": 2} and status.alerts_retrying == 2
    assert status.alert_next_attempt is not None
    retrying = status.to_dict()["alerts_retrying"]
    assert retrying["count"] == 2 and "refused" in retrying["last_error"]
    text = format_status(status)
    assert "2 open alert(s) not delivered yet (URLError" in text and "next run" in text


def test_status_counts_every_alert_waiting_and_every_rule(
    tmp_path: Path, naip_small: list[Path], naip_region: Path
) -> None:
    # a webhook that never answers: the run tries one alert (each attempt costs the
    # timeout) and the others wait untried; status said "1 open alert(s) not delivered yet"
    # for 5 waiting, and nothing of a rule that never fired
    from alert_helpers import add_alerts

    from geotl.config import load_region
    from geotl.monitor import format_status, monitor_status

    out = tmp_path / "out"
    ids = fake_monitor_state(out / "naip-nd", naip_small[:2], [2, 3])
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    host, port = silent.getsockname()
    try:
        policy = DeliveryPolicy(f"http://{host}:{port}/hook", timeout_s=0.3, wait_s=0)
        with MonitorState(out / "naip-nd" / "state.sqlite") as state:
            report = deliver_due(state, "naip-nd", policy)
    finally:
        silent.close()
    assert report.open == len(ids) == 5 and len(report.unanswered) == 1
    add_alerts(
        naip_region,
        "[monitor.alerts]\n"
        '[[monitor.alerts.rule]]\nname = "water-new"\nclass = "water"\nwhen = "new"\n'
        '[[monitor.alerts.rule]]\nname = "water-gone"\nclass = "water"\nwhen = "gone"\n',
    )
    status = monitor_status(load_region(naip_region), out)
    assert status.alerts_by_rule == {"water-new": 5, "water-gone": 0}
    assert status.to_dict()["alerts_by_rule"] == status.alerts_by_rule
    text = format_status(status)
    assert "5 open alert(s) not delivered yet (TimeoutError" in text
    assert "4 not tried yet" in text
    assert "by rule: water-new 5, water-gone 0 (none in 2 pass(es) yet: water-gone)" in text
