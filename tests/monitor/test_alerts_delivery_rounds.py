"""Webhook delivery over several retry rounds of one run: what the log says, what is tried.

Driven against a real HTTP server (and a socket that never answers) on 127.0.0.1, as a team
whose webhook is down for an afternoon sees it in its cron log.
"""

from __future__ import annotations

import logging
import re
import socket
from datetime import datetime
from pathlib import Path

import pytest
from alert_helpers import Receiver, fake_monitor_state

from geotl.monitor.alerts import DeliveryPolicy, deliver_due
from geotl.monitor.state import AlertRecord, MonitorState

LOGGER = "geotl.monitor.alerts.delivery"


def _counts(caplog: pytest.LogCaptureFixture, pattern: str) -> list[int]:
    return [
        int(m.group(1))
        for r in caplog.records
        if r.name == LOGGER and (m := re.match(pattern, r.getMessage()))
    ]


def test_retries_due_apart_are_one_line_per_outcome(
    tmp_path: Path, naip_small: list[Path], caplog: pytest.LogCaptureFixture
) -> None:
    # each alert's backoff starts when its own attempt ended, so retries fall due
    # milliseconds apart and were tried (and logged) in rounds of one: a webhook down for
    # one run wrote a "1 alert(s) not delivered" warning per alert per retry
    rdir = tmp_path / "out" / "naip-nd"
    ids = fake_monitor_state(rdir, naip_small[:2], [3, 3])
    receiver = Receiver(statuses=[500] * (2 * len(ids)))  # two failed attempts each
    caplog.set_level(logging.INFO, logger=LOGGER)
    try:
        policy = DeliveryPolicy(receiver.url, timeout_s=5, retry_base_s=0.2, wait_s=10)
        with MonitorState(rdir / "state.sqlite") as state:
            report = deliver_due(state, "naip-nd", policy)
    finally:
        receiver.close()
    assert sorted(report.delivered) == sorted(ids) and report.attempts == 3 * len(ids)
    failed = _counts(caplog, r"(\d+) alert\(s\) not delivered \(HTTP 500\)")
    assert failed and all(n == len(ids) for n in failed), failed  # never 1 by 1, never twice
    assert _counts(caplog, r"(\d+) alert\(s\) delivered") == [len(ids)]


def test_a_hanging_receiver_is_probed_by_one_alert(tmp_path: Path, naip_small: list[Path]) -> None:
    # a webhook that accepts and never answers, with a run allowed to wait for retries:
    # every other due alert was tried in turn (timeout_s each) until wait_s ran out
    rdir = tmp_path / "out" / "naip-nd"
    ids = fake_monitor_state(rdir, naip_small[:2], [3, 3])
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # the kernel completes connections nobody ever accepts
    host, port = silent.getsockname()
    policy = DeliveryPolicy(
        f"http://{host}:{port}/hook", timeout_s=0.4, retry_base_s=0.2, wait_s=1.5
    )
    try:
        with MonitorState(rdir / "state.sqlite") as state:
            report = deliver_due(state, "naip-nd", policy)
            alerts = state.alerts()
    finally:
        silent.close()
    tried = [a for a in alerts if a.attempts]
    assert len(tried) == 1 and tried[0].attempts >= 2  # one alert retried, the others wait
    assert report.unanswered == [tried[0].id]
    assert sorted(report.retrying) == [tried[0].id]
    assert all(a.status == "open" for a in alerts) and len(alerts) == len(ids)


def test_status_says_why_alerts_could_not_be_delivered(
    tmp_path: Path, naip_small: list[Path], naip_region: Path
) -> None:
    # a hook that moved (301) or was deleted (410): status said "2 alert(s) could not be
    # delivered: fix the webhook", and the fix (which URL) was only in the state's tables
    from geotl.config import load_region
    from geotl.monitor import format_status, monitor_status

    out = tmp_path / "out"
    fake_monitor_state(out / "naip-nd", naip_small[:2], [1, 1])
    receiver = Receiver(redirect=True)
    try:
        with MonitorState(out / "naip-nd" / "state.sqlite") as state:
            deliver_due(state, "naip-nd", DeliveryPolicy(receiver.url, wait_s=0))
    finally:
        receiver.close()
    status = monitor_status(load_region(naip_region), out)
    assert status.alerts == {"failed": 2}
    failed = status.to_dict()["alerts_failed"]
    assert failed["count"] == 2 and failed["last_error"].startswith("HTTP 301")
    text = format_status(status)
    assert "2 alert(s) could not be delivered (HTTP 301: the webhook redirects to http" in text
    assert "/moved; set the webhook to the URL it redirects to)" in text


def test_a_refused_webhook_tries_every_alert_from_one_reading_of_the_due_ones(
    tmp_path: Path, naip_small: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # nothing listens on the port: each attempt is refused at once. The due alerts were read
    # again after each refusal, so a run with 2,000 open alerts did O(n^2) work and held the
    # lock for all of wait_s (60 s) having tried 813 of them
    rdir = tmp_path / "out" / "naip-nd"
    ids = fake_monitor_state(rdir, naip_small[:2], [12, 12])
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    host, port = closed.getsockname()
    closed.close()
    readings: list[int] = []
    policy = DeliveryPolicy(f"http://{host}:{port}/hook", timeout_s=5, retry_base_s=3600)
    with MonitorState(rdir / "state.sqlite") as state:
        due_alerts = state.due_alerts

        def counted(now: datetime) -> list[AlertRecord]:
            found = due_alerts(now)
            readings.append(len(found))
            return found

        monkeypatch.setattr(state, "due_alerts", counted)
        report = deliver_due(state, "naip-nd", policy)
        alerts = state.alerts()
    assert readings == [len(ids)]
    assert report.attempts == len(ids) and sorted(report.unanswered) == sorted(ids)
    assert all(a.attempts == 1 and a.status == "open" and a.last_error for a in alerts)
