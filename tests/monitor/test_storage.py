"""A full or read-only disk under ``--out``: one line, exit code 2, the state intact."""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from monitor_helpers import deliver, peru_folder_region

import geotl.monitor.lock as lock_module
import geotl.monitor.passes as passes_module
from geotl.cli.main import cli
from geotl.errors import ConfigError
from geotl.monitor import MonitorState, RegionLock
from geotl.monitor.storage import storage_error


def _real_sqlite_full(tmp_path: Path) -> sqlite3.Error:
    """SQLite's own "database or disk is full", from a database capped at a few pages."""
    db = sqlite3.connect(tmp_path / "capped.sqlite")
    db.execute("CREATE TABLE t (b BLOB)")
    db.execute("PRAGMA max_page_count = 3")
    try:
        db.execute("INSERT INTO t VALUES (zeroblob(100000))")
    except sqlite3.Error as exc:
        return exc
    finally:
        db.close()
    raise AssertionError("the capped database took the row")


def test_storage_errors_are_recognised_from_real_failures(tmp_path: Path) -> None:
    out = tmp_path / "out" / "r"
    full = storage_error(_real_sqlite_full(tmp_path), out)
    assert isinstance(full, ConfigError) and full.exit_code == 2
    assert str(full).startswith(f"{out}: the disk is full (database or disk is full)")
    with pytest.raises(OSError) as dev_full, open("/dev/full", "wb", buffering=0) as f:
        f.write(b"x")
    assert "free space" in str(storage_error(dev_full.value, out))
    # a scene this user cannot read is the scene's failure, not the output folder's
    denied = OSError(errno.EACCES, "Permission denied", str(tmp_path / "scenes" / "a.tif"))
    assert storage_error(denied, out) is None
    inside = OSError(errno.EACCES, "Permission denied", str(out / "passes" / "a.geojson"))
    assert "cannot be written" in str(storage_error(inside, out))


def test_lock_on_a_full_disk_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_space(fd: int, data: bytes, offset: int) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(lock_module.os, "pwrite", no_space)
    lock = RegionLock(tmp_path / "r", "r")
    with pytest.raises(ConfigError, match="the disk is full"):
        lock.acquire()
    monkeypatch.undo()
    lock.acquire()  # the failed attempt left the lock free
    lock.release()


@pytest.mark.slow
def test_disk_full_mid_run_stops_without_failing_the_pass(
    tmp_path: Path, peru_scenes: list[Path], peru_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disk fills up while a pass is written: exit 2 in one line, the pass not failed.

    Recording it failed would put it on a retry backoff (and run on into every other pass,
    each failing alike); the next run, once there is room, must redo it at once.
    """
    region_file = peru_folder_region(tmp_path / "region", peru_scenes[:1])
    out = tmp_path / "out"
    args = ["monitor", str(region_file), "--model", str(peru_model), "--out", str(out), "--once"]
    deliver(region_file, peru_scenes[:1])
    assert CliRunner().invoke(cli, args).exit_code == 0  # last week's run
    deliver(region_file, peru_scenes[:3])
    real_write = passes_module.write_geojson

    def fills_up(path: Path, *a: Any, **k: Any) -> Any:
        if "1990" in Path(path).name:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_write(path, *a, **k)

    monkeypatch.setattr(passes_module, "write_geojson", fills_up)
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("geotl: error")]
    assert len(errors) == 1 and "the disk is full (No space left on device)" in errors[0]
    assert "Traceback" not in result.stderr
    rdir = out / "peru"
    with MonitorState(rdir / "state.sqlite", readonly=True) as state:
        summary = state.summary()
        assert summary.failed == [] and "failed" not in summary.by_status
    assert not list(rdir.rglob(".tmp-*"))

    monkeypatch.undo()
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    with MonitorState(rdir / "state.sqlite", readonly=True) as state:
        assert state.summary().by_status == {"done": 3}
    assert sorted(p.name for p in (rdir / "passes").iterdir()) == [
        "19850101T000000Z_1985.geojson",
        "19900101T000000Z_1990.geojson",
        "19950101T000000Z_1995.geojson",
    ]
