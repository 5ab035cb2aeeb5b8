"""SQLite state and the region lock."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from geotl.errors import ConfigError, GeotlInputError, GeotlRuntimeError, LockedError
from geotl.monitor.lock import RegionLock
from geotl.monitor.sources import Scene
from geotl.monitor.state import MonitorState

T0 = datetime(2020, 1, 1, tzinfo=UTC)


def _scene(i: int, fingerprint: str = "1:1") -> Scene:
    return Scene(
        key=f"/data/s{i}.tif",
        name=f"s{i}",
        acquired=T0 + timedelta(days=i),
        acquired_from="regex",
        uri=f"/data/s{i}.tif",
        fingerprint=fingerprint,
    )


def test_wal_and_scene_bookkeeping(tmp_path: Path) -> None:
    with MonitorState(tmp_path / "state.sqlite") as state:
        mode = state._db.execute("PRAGMA journal_mode").fetchone()[0]
        assert mode == "wal"
        assert state.record_scenes([_scene(1), _scene(2)], "folder", "m1", T0) == (2, 0)
        assert state.record_scenes([_scene(1), _scene(2)], "folder", "m1", T0) == (0, 0)
        assert state.known_fingerprints() == {"/data/s1.tif": "1:1", "/data/s2.tif": "1:1"}
        assert state.latest_acquired() == T0 + timedelta(days=2)
        due = state.due_jobs("m1", T0)
        assert [d.name for d in due] == ["s1", "s2"] and all(d.status == "pending" for d in due)


def test_a_scene_dated_in_the_future_does_not_move_the_search_window(tmp_path: Path) -> None:
    # a catalogue item dated 2099 by mistake: a STAC search from its date on would never
    # return another item, so the newest scene counts only up to now
    future = Scene(
        key="stac:c/future",
        name="future",
        acquired=datetime(2099, 1, 1, tzinfo=UTC),
        acquired_from="stac",
        uri="http://x/items/future",
        fingerprint="u",
    )
    with MonitorState(tmp_path / "state.sqlite") as state:
        state.record_scenes([_scene(1), future, _scene(2)], "stac", "m1", T0)
        assert state.latest_acquired() == T0 + timedelta(days=2)
        assert state.latest_acquired(now=T0 + timedelta(days=1)) == T0 + timedelta(days=1)


def test_status_transitions_backoff_and_recovery(tmp_path: Path) -> None:
    with MonitorState(tmp_path / "state.sqlite") as state:
        state.record_scenes([_scene(1), _scene(2)], "folder", "m1", T0)
        state.mark_running("/data/s1.tif", "m1", T0)
        state.mark_running("/data/s2.tif", "m1", T0)
        state.mark_failed(
            "/data/s2.tif", "m1", now=T0, error="boom", next_attempt=T0 + timedelta(hours=1)
        )
        # s1 was left running (a crash): recovered to pending, attempt kept
        assert state.recover_running() == 1
        job = state.job("/data/s1.tif", "m1")
        assert job is not None and job.status == "pending" and job.attempts == 1
        assert [d.name for d in state.due_jobs("m1", T0)] == ["s1"]
        assert [d.name for d in state.due_jobs("m1", T0 + timedelta(hours=2))] == ["s1", "s2"]
        assert [d.name for d in state.due_jobs("m1", T0, retry_failed=True)] == ["s1", "s2"]
        failed = state.job("/data/s2.tif", "m1")
        assert failed is not None and failed.error == "boom" and failed.attempts == 1
        # a changed file resets its job
        state.record_scenes([_scene(2, "2:2")], "folder", "m1", T0)
        again = state.job("/data/s2.tif", "m1")
        assert again is not None and again.status == "pending" and again.attempts == 0


def test_exactly_once_per_scene_and_model(tmp_path: Path) -> None:
    with MonitorState(tmp_path / "state.sqlite") as state:
        state.record_scenes([_scene(1)], "folder", "m1", T0)
        state.mark_running("/data/s1.tif", "m1", T0)
        state.mark_done(
            "/data/s1.tif",
            "m1",
            now=T0,
            duration_s=1.0,
            pass_path="p",
            changes_path="c",
            detections=3,
            new=None,
            gone=None,
            previous_scene=None,
            footprint_wkt="POLYGON ((0 0, 1 0, 1 1, 0 0))",
        )
        assert state.ensure_jobs("m1", reprocess=False) == 0
        assert state.ensure_jobs("m2", reprocess=False) == 0  # done by m1: not owed to m2
        assert state.due_jobs("m2", T0) == []
        assert state.ensure_jobs("m2", reprocess=True) == 1
        assert state.ensure_jobs("m2", reprocess=True) == 0
        assert [d.model_id for d in state.due_jobs("m2", T0)] == ["m2"]
        with pytest.raises(sqlite3.IntegrityError):
            state._db.execute(
                "INSERT INTO jobs (scene_key, model_id, status) VALUES ('/data/s1.tif', 'm1', 'pending')"
            )


def test_same_stem_in_two_folders_gets_distinct_names(tmp_path: Path) -> None:
    a = _scene(1)
    b = Scene(
        key="/other/s1.tif",
        name="s1",
        acquired=T0,
        acquired_from="mtime",
        uri="/other/s1.tif",
        fingerprint="x",
    )
    with MonitorState(tmp_path / "state.sqlite") as state:
        state.record_scenes([a, b], "folder", "m1", T0)
        names = sorted(r[0] for r in state._db.execute("SELECT name FROM scenes"))
    assert names[0] == "s1" and names[1].startswith("s1-") and len(names[1]) == 9


def test_readonly_state_while_a_writer_holds_it(tmp_path: Path) -> None:
    with MonitorState(tmp_path / "state.sqlite") as writer:
        writer.record_scenes([_scene(1)], "folder", "m1", T0)
        with MonitorState(tmp_path / "state.sqlite", readonly=True) as reader:
            assert reader.summary().by_status == {"pending": 1}


def test_a_damaged_state_fails_to_open_read_only_too(tmp_path: Path) -> None:
    # `monitor status` / `report` open the state read-only, which reads nothing until the
    # first query: a damaged file then crashed them with sqlite3's traceback
    db = tmp_path / "state.sqlite"
    db.write_bytes(b"garbage, not a database" * 10)
    with pytest.raises(GeotlRuntimeError, match=r"cannot be opened .*move it away"):
        MonitorState(db, readonly=True)
    with MonitorState(tmp_path / "good.sqlite") as writer:
        writer.set_meta("schema_version", "999")
    # a newer geotl's state is the user's input, not damage: one line, exit 2
    with pytest.raises(GeotlInputError, match="schema 999, written by a newer geotl"):
        MonitorState(tmp_path / "good.sqlite", readonly=True)


def test_a_read_only_out_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # --out on a read-only disk or share (simulated: the tests may run as root, which
    # ignores permissions): the run crashed with an OSError traceback and status told to
    # "restore the state from a backup" although nothing was wrong with it
    db = tmp_path / "state.sqlite"
    with MonitorState(db) as writer:
        writer.record_scenes([_scene(1)], "folder", "m1", T0)

    def read_only(*args: object, **kwargs: object) -> int:
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr("geotl.monitor.lock.os.open", read_only)
    with pytest.raises(ConfigError, match=r"Read-only file system.*writable --out") as info:
        RegionLock(tmp_path / "r", "r").acquire()
    assert info.value.exit_code == 2
    monkeypatch.undo()

    real_connect = sqlite3.connect

    def connect(target: str, *args: Any, **kwargs: Any) -> sqlite3.Connection:
        read_only_wal = "mode=ro" in str(target) and "immutable=1" not in str(target)
        if read_only_wal or "unwritable" in str(target):
            # what a WAL reader gets when its -shm file cannot be created, or any writer
            raise sqlite3.OperationalError("unable to open database file")
        connection: sqlite3.Connection = real_connect(target, *args, **kwargs)
        return connection

    monkeypatch.setattr("geotl.monitor.state.os.access", lambda path, mode: False)
    monkeypatch.setattr("geotl.monitor.state.sqlite3.connect", connect)
    with MonitorState(db, readonly=True) as reader:
        assert reader.summary().by_status == {"pending": 1}
    with pytest.raises(ConfigError, match="read-only; choose a writable --out"):
        MonitorState(tmp_path / "unwritable" / "state.sqlite")


def test_lock_is_exclusive_across_processes_and_freed_on_death(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from geotl.monitor.lock import RegionLock;"
            f"lock = RegionLock(Path({str(tmp_path)!r}), 'r'); lock.acquire(); print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"held"
        started = time.monotonic()
        with pytest.raises(LockedError, match=rf"already running on region 'r' \(pid {holder.pid}"):
            RegionLock(tmp_path, "r").acquire()
        assert time.monotonic() - started < 1
    finally:
        holder.kill()
        holder.wait()
    # the OS released the dead holder's lock
    with RegionLock(tmp_path, "r"), pytest.raises(LockedError):
        RegionLock(tmp_path, "r").acquire()


def test_a_remote_scene_keeps_its_bands_in_the_source_order(tmp_path: Path) -> None:
    # [monitor] assets red, green, blue, nir: stacked in that order, never alphabetically
    assets = {"red": "r.tif#1", "green": "g.tif#1", "blue": "b.tif#1", "nir": "n.tif#1"}
    scene = Scene(**{**_scene(1).__dict__, "assets": assets})
    with MonitorState(tmp_path / "state.sqlite") as state:
        state.record_scenes([scene], "stac", "m1", T0)
        (due,) = state.due_jobs("m1", T0)
        assert list(due.to_scene().assets) == ["red", "green", "blue", "nir"]
        state.update_scene(Scene(**{**scene.__dict__, "fingerprint": "2:2"}))
        (due,) = state.due_jobs("m1", T0)
        assert list(due.to_scene().assets) == ["red", "green", "blue", "nir"]
