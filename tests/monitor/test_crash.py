"""Crash safety, the region lock and graceful stops, with real ``geotl monitor`` processes."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from monitor_helpers import deliver

from geotl.cli.main import cli
from geotl.config import load_region
from geotl.monitor import (
    MonitorOptions,
    MonitorState,
    RegionLock,
    format_status,
    monitor_status,
    watch_region,
)

pytestmark = pytest.mark.slow

MAIN = "import sys; from geotl.cli.main import main; sys.argv[0] = 'geotl'; main()"


def _geotl(*args: str, prelude: str = "") -> subprocess.Popen[bytes]:
    code = textwrap.dedent(prelude) + "\n" + MAIN
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"},
    )


def _wait_for(predicate, timeout_s: float, proc: subprocess.Popen[bytes] | None = None) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(
                f"process ended early ({proc.returncode}): {proc.stderr.read().decode()[-3000:]}"
            )  # type: ignore[union-attr]
        time.sleep(0.02)
    raise AssertionError("timed out")


def _check_complete(rdir: Path, scenes: list[Path]) -> None:
    """Every scene exactly once: state, pass files, history, latest; nothing half-written."""
    with MonitorState(rdir / "state.sqlite", readonly=True) as state:
        done = state.done_passes()
        summary = state.summary()
    assert sorted(p.name for p in done) == sorted(s.stem for s in scenes)
    assert summary.by_status == {"done": len(scenes)} and not summary.pending
    assert not list(rdir.rglob(".tmp-*"))
    passes = sorted((rdir / "passes").glob("*.geojson"))
    assert len(passes) == len(scenes)
    with open(rdir / "history.csv", newline="") as fh:
        history = list(csv.DictReader(fh))
    assert [h["scene"] for h in history] == [s.stem for s in scenes]
    for rec, path in zip(done, passes, strict=True):
        fc = json.loads(path.read_text())  # complete, parseable files only
        assert len(fc["features"]) == rec.detections
        ids = [f["id"] for f in fc["features"]]
        assert len(ids) == len(set(ids))
    for path in (rdir / "changes").glob("*.geojson"):
        json.loads(path.read_text())
    latest = json.loads((rdir / "latest.geojson").read_text())
    ids = [f["id"] for f in latest["features"]]
    assert len(ids) == len(set(ids))
    assert {f["properties"]["scene"] for f in latest["features"]} <= {
        scenes[-1].name,
        scenes[-1].stem,
    }


def test_sigkill_mid_pass_then_rerun_finishes_cleanly(
    naip_region: Path, naip_small: list[Path], naip_model: Path, tmp_path: Path
) -> None:
    deliver(naip_region, naip_small)
    out = tmp_path / "out"
    rdir = out / "naip-nd"
    args = ["monitor", str(naip_region), "--model", str(naip_model), "--out", str(out), "--once"]
    proc = _geotl(*args)
    try:
        _wait_for(lambda: len(list((rdir / "passes").glob("*.geojson"))) >= 2, 240, proc)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    with MonitorState(rdir / "state.sqlite", readonly=True) as state:
        assert len(state.done_passes()) < 10  # really killed mid-series
    status = _geotl("monitor", "status", str(naip_region), "--out", str(out))
    said, _ = status.communicate(timeout=120)
    # nothing runs now: the killed run's pass is said to be interrupted, not running
    assert b"running" not in said and b"interrupted 1" in said, said.decode()
    rerun = _geotl(*args)
    _, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err.decode()[-3000:]
    _check_complete(rdir, naip_small)


def test_sigkill_between_writing_and_recording_a_pass(
    naip_region: Path, naip_small: list[Path], naip_model: Path, tmp_path: Path
) -> None:
    """The most delicate moment: pass + changes files written, the job not yet recorded."""
    deliver(naip_region, naip_small)
    out = tmp_path / "out"
    rdir = out / "naip-nd"
    args = ["monitor", str(naip_region), "--model", str(naip_model), "--out", str(out), "--once"]
    prelude = """
    import os, signal
    from geotl.monitor.state import MonitorState
    _done = MonitorState.mark_done
    _calls = []
    def mark_done(self, *a, **k):
        _calls.append(1)
        if len(_calls) == 4:
            os.kill(os.getpid(), signal.SIGKILL)
        return _done(self, *a, **k)
    MonitorState.mark_done = mark_done
    """
    proc = _geotl(*args, prelude=prelude)
    proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL
    assert len(list((rdir / "passes").glob("*.geojson"))) == 4  # written, 3 recorded
    rerun = _geotl(*args)
    _, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err.decode()[-3000:]
    assert "left running by an interrupted monitor" in err.decode()
    _check_complete(rdir, naip_small)


def test_second_monitor_exits_at_once_and_sigterm_stops_gracefully(
    naip_region: Path, naip_scenes: list[Path], naip_model: Path, tmp_path: Path
) -> None:
    deliver(naip_region, naip_scenes)
    out = tmp_path / "out"
    rdir = out / "naip-nd"
    proc = _geotl(
        "monitor", str(naip_region), "--model", str(naip_model), "--out", str(out), "--every", "6h"
    )
    try:
        _wait_for(
            lambda: (rdir / "passes").is_dir() and any((rdir / "passes").glob("*.geojson")),
            240,
            proc,
        )
        # a second monitor on the same region: exit 2 at once, with a clear message
        started = time.monotonic()
        result = CliRunner().invoke(
            cli,
            ["monitor", str(naip_region), "--model", str(naip_model), "--out", str(out), "--once"],
        )
        assert time.monotonic() - started < 10
        assert result.exit_code == 2, result.output
        assert "already running on region 'naip-nd'" in result.output
        assert f"pid {proc.pid}" in result.output
        # status works while the monitor runs and names it
        status = CliRunner().invoke(cli, ["monitor", "status", str(naip_region), "--out", str(out)])
        assert status.exit_code == 0 and f"running now: pid {proc.pid}" in status.output
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # stopped by SIGTERM, after finishing the scene and releasing the lock: 128 + 15
    assert proc.returncode == 143, err.decode()[-3000:]
    assert "SIGTERM: finishing the current scene" in err.decode()
    status = CliRunner().invoke(cli, ["monitor", "status", str(naip_region), "--out", str(out)])
    assert "next run due: none: the --every loop stopped at" in status.output
    assert "running now" not in status.output
    with MonitorState(rdir / "state.sqlite", readonly=True) as state:
        summary = state.summary()
        done = len(state.done_passes())
    assert "running" not in summary.by_status  # the current scene was finished, not left half-done
    assert 1 <= done < 10
    assert len(list((rdir / "passes").glob("*.geojson"))) == done
    assert not list(rdir.rglob(".tmp-*"))
    # the lock is free again
    with RegionLock(rdir, "naip-nd"):
        pass


def test_every_loops_until_stopped_and_logs_one_line_per_pass(
    naip_region: Path,
    naip_small: list[Path],
    naip_model: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    region = load_region(naip_region)
    deliver(naip_region, naip_small[:2])
    stop = threading.Event()
    rounds: list[int] = []

    def on_round(_monitor: object) -> None:
        pass

    def feeder() -> None:
        # a new pass arrives after the first round; stop after the second
        _wait_for(lambda: "run 1:" in caplog.text, 120)
        deliver(naip_region, naip_small[2:3])
        _wait_for(lambda: "run 2:" in caplog.text, 120)
        stop.set()
        rounds.append(1)

    thread = threading.Thread(target=feeder)
    import logging

    with caplog.at_level(logging.INFO, logger="geotl"):
        thread.start()
        summary = watch_region(
            region,
            MonitorOptions(out_dir=tmp_path / "out", model_dir=naip_model),
            0.3,
            stop=stop,
            on_monitor=on_round,
        )
        thread.join()
    assert rounds == [1]
    assert summary.rounds >= 2 and [p.scene for p in summary.processed] == [
        s.stem for s in naip_small[:3]
    ]
    pass_lines = [r for r in caplog.records if r.getMessage().startswith("pass ")]
    assert len(pass_lines) == 3
    assert "first pass over this area" in pass_lines[0].getMessage()
    assert "new" in pass_lines[1].getMessage() and "gone" in pass_lines[1].getMessage()


def test_status_announces_no_next_run_once_the_every_loop_stopped(
    naip_region: Path, naip_small: list[Path], naip_model: Path, tmp_path: Path
) -> None:
    region = load_region(naip_region)
    deliver(naip_region, naip_small[:1])
    out = tmp_path / "out"
    stop = threading.Event()
    seen: list[str] = []

    def stop_after_the_first_run() -> None:
        _wait_for(lambda: (out / "naip-nd" / "history.csv").exists(), 120)
        status = monitor_status(region, out)  # while the loop sleeps: a next run is due
        seen.append(format_status(status))
        stop.set()

    thread = threading.Thread(target=stop_after_the_first_run)
    thread.start()
    watch_region(region, MonitorOptions(out_dir=out, model_dir=naip_model), 3600.0, stop=stop)
    thread.join()
    assert "next run due: 2" in seen[0] and "running now: pid" in seen[0]
    status = monitor_status(region, out)
    assert status.next_run_due is None and status.loop_stopped is not None
    assert status.last_run_finished is not None and status.loop_stopped >= status.last_run_finished
    text = format_status(status)
    assert "next run due: none: the --every loop stopped at" in text
    assert status.to_dict()["next_run_due"] is None
