"""The monitor's stderr as an operator reads it in a cron log: every line stamped, few lines.

``geotl monitor`` runs as a real process with stderr to a file (not a terminal), over the
Peru Landsat series, whose 4-band TIFFs make libtiff warn on every pass.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from alert_helpers import Receiver, fake_monitor_state
from monitor_helpers import peru_folder_region

from geotl.monitor.alerts import DeliveryPolicy, deliver_due
from geotl.monitor.state import MonitorState

STAMPED = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ (DEBUG|INFO|WARNING|ERROR) \S+: ")


def _args(model: Path, out: Path) -> list[str]:
    return ["--model", str(model), "--out", str(out), "--once"]


def _monitor(region_file: Path, model: Path, out: Path, log_file: Path) -> str:
    """``geotl monitor --once`` with stderr appended to ``log_file`` (as cron does)."""
    with log_file.open("ab") as err:
        subprocess.run(
            [sys.executable, "-m", "geotl", "monitor", str(region_file), *_args(model, out)],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env={**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""},
            timeout=300,
            check=False,
        )
    return log_file.read_text(encoding="utf-8")


def test_cron_log_lines_are_all_stamped_and_a_completed_copy_is_read_again(
    tmp_path: Path, peru_scenes: list[Path], peru_model: Path
) -> None:
    region = peru_folder_region(tmp_path / "region", peru_scenes[:1], min_area_m2=0.0)
    incoming = region.parent / "incoming"
    incoming.mkdir()
    shutil.copyfile(peru_scenes[0], incoming / peru_scenes[0].name)
    half = incoming / peru_scenes[1].name  # still being copied when cron starts the run
    half.write_bytes(peru_scenes[1].read_bytes()[:300_000])
    log_file = tmp_path / "cron.log"
    first = _monitor(region, peru_model, tmp_path / "out", log_file)
    assert "pass 1985-01-01" in first and "pass 1990 failed" in first
    shutil.copyfile(peru_scenes[1], half)  # the copy completes
    text = _monitor(region, peru_model, tmp_path / "out", log_file)
    lines = [line for line in text.splitlines() if line.strip()]
    # GDAL printed "Warning 1: TIFFReadDirectory..." itself, unstamped, once per pass
    assert not [line for line in lines if not STAMPED.match(line)], text
    # the harmless libtiff warning is gone (-vv shows it); the half file's error is kept
    assert "ExtraSamples" not in text
    assert re.search(r"WARNING geotl\.monitor\.passes: pass 1990 failed", text), text
    # the redone scene had failed, not been processed: the line fits both
    assert "changed since they were processed" not in text
    assert "1 scene file(s) changed since they were last read: processing them again" in text
    assert "pass 1990-01-01" in text


def _deliver_to(
    tmp_path: Path,
    scenes: list[Path],
    alerts: list[int],
    status: int,
    caplog: pytest.LogCaptureFixture,
    level: int,
    **policy: float,
) -> tuple[list[str], Any, int]:
    """Deliver a fake state's alerts to a receiver answering ``status`` to each.

    Returns the alert ids, the delivery report and how many requests the receiver got.
    """
    rdir = tmp_path / "out" / "naip-nd"
    ids = fake_monitor_state(rdir, scenes[:2], alerts)
    receiver = Receiver(statuses=[status] * len(ids))
    try:
        with (
            caplog.at_level(level, logger="geotl.monitor"),
            MonitorState(rdir / "state.sqlite") as state,
        ):
            report = deliver_due(
                state, "naip-nd", DeliveryPolicy(receiver.url, timeout_s=5, wait_s=0, **policy)
            )
    finally:
        receiver.close()
    return ids, report, len(receiver.requests)


def test_a_failing_webhook_logs_one_line_per_round_not_per_alert(
    tmp_path: Path, naip_small: list[Path], caplog: pytest.LogCaptureFixture
) -> None:
    ids, report, requests = _deliver_to(
        tmp_path, naip_small, [3, 3], 500, caplog, logging.DEBUG, retry_base_s=60
    )
    assert sorted(report.unanswered) == sorted(ids) and requests == len(ids)
    shown = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(shown) == 1, [r.getMessage() for r in shown]
    assert re.fullmatch(
        r"6 alert\(s\) not delivered \(HTTP 500\): next try at \S+ \(.+, \.\.\.\)",
        shown[0].getMessage(),
    )
    detail = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert all(any(i in m and "attempt 1 failed" in m for m in detail) for i in ids)


def test_a_webhook_that_refuses_every_alert_says_so_once(
    tmp_path: Path, naip_small: list[Path], caplog: pytest.LogCaptureFixture
) -> None:
    ids, report, _ = _deliver_to(tmp_path, naip_small, [2, 2], 404, caplog, logging.INFO)
    assert sorted(report.failed) == sorted(ids)
    [line] = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert line.startswith("4 alert(s) could not be delivered (HTTP 404): fix the webhook")
