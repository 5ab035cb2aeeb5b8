"""Who holds a region's lock, as ``monitor status`` and a second monitor tell it."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

from alert_helpers import fake_monitor_state

from geotl.config import load_region
from geotl.monitor import format_status, monitor_status
from geotl.monitor.lock import LOCK_FILE, RegionLock
from geotl.monitor.state import MonitorState


def test_a_killed_monitors_pid_alive_again_is_not_a_running_monitor(
    naip_region: Path, naip_small: list[Path], tmp_path: Path
) -> None:
    """SIGKILL leaves the lock file as it was; its pid may be alive again (reused, or pid 1
    of every container cron starts): status said a monitor was running that did not exist."""
    out = tmp_path / "out"
    rdir = out / "naip-nd"
    fake_monitor_state(rdir, naip_small[:1], [0])
    killed = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "since": "2026-01-01T00:00:00+00:00",
    }
    (rdir / LOCK_FILE).write_text(json.dumps(killed))  # nobody holds the lock
    region = load_region(naip_region)
    status = monitor_status(region, out)
    assert status.running_pid is None
    assert "running now" not in format_status(status)


def test_status_names_the_running_monitor_where_and_since_when(
    naip_region: Path, naip_small: list[Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    rdir = out / "naip-nd"
    region = load_region(naip_region)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time; from pathlib import Path; from geotl.monitor.lock import RegionLock;"
            f"RegionLock(Path({str(rdir)!r}), 'naip-nd').acquire(); print('held', flush=True);"
            "time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"held"
        # its first run is still loading the model: no state yet
        said = format_status(monitor_status(region, out))
        assert "never run" in said and f"running now: pid {holder.pid} on " in said
        fake_monitor_state(rdir, naip_small[:1], [0])
        with MonitorState(rdir / "state.sqlite") as state:
            state.start_run("m1", datetime.now(UTC), None)
        status = monitor_status(region, out)
        since = json.loads((rdir / LOCK_FILE).read_text())["since"]
        assert (status.running_pid, status.running_host, status.running_since) == (
            holder.pid,
            socket.gethostname(),
            since,
        )
        said = format_status(status)
        assert f"running now: pid {holder.pid} on {socket.gethostname()} since {since}" in said
        assert "finished -, running" in said  # not "unfinished": it is running
        assert status.to_dict()["running_since"] == since
    finally:
        holder.kill()
        holder.wait()
    said = format_status(monitor_status(region, out))
    assert "running now" not in said and "finished -, unfinished" in said


def test_a_monitor_starting_while_status_looks_at_the_lock_runs(tmp_path: Path) -> None:
    """Status asks the OS with a shared lock held for an instant; a monitor starting in that
    instant must not be refused as if another monitor ran."""
    lock = RegionLock(tmp_path, "r")
    lock.path.write_text("")
    fd = os.open(lock.path, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    timer = threading.Timer(0.05, lambda: fcntl.flock(fd, fcntl.LOCK_UN))
    timer.start()
    try:
        lock.acquire()
        assert lock.is_held() and json.loads(lock.path.read_text())["pid"] == os.getpid()
    finally:
        timer.join()
        os.close(fd)
        lock.release()
    assert lock.is_held() is False
