"""Migrating a monitor state in place: its earlier copy first, a full disk, a damaged version.

The migration from an earlier geotl's state with that geotl's own files is driven in
``tests/test_upgrade.py``; here the edges a real state cannot be made to hit on demand.
"""

from __future__ import annotations

import contextlib
import errno
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

import geotl.monitor.state as state_module
from geotl.errors import ConfigError, GeotlRuntimeError
from geotl.monitor.sources import Scene
from geotl.monitor.state import MonitorState, schema_copy

T0 = datetime(2020, 1, 1, tzinfo=UTC)


def _schema_1(db_path: Path) -> None:
    """A state with one pending pass, taken back to schema 1 (no pass areas)."""
    scene = Scene(
        key="/data/s1.tif",
        name="s1",
        acquired=T0,
        acquired_from="regex",
        uri="/data/s1.tif",
        fingerprint="1:1",
    )
    with MonitorState(db_path) as state:
        state.record_scenes([scene], "folder", "m1", T0)
    db = sqlite3.connect(db_path)
    for column in ("detected_area_m2", "new_area_m2", "gone_area_m2"):
        db.execute(f"ALTER TABLE jobs DROP COLUMN {column}")
    db.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    db.commit()
    db.close()


def _schema(db_path: Path) -> str:
    with contextlib.closing(sqlite3.connect(db_path)) as db:
        return str(db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0])


def test_the_copy_is_the_state_before_the_migration(tmp_path: Path) -> None:
    db = tmp_path / "state.sqlite"
    _schema_1(db)
    with MonitorState(db) as state:
        assert state.get_meta("schema_version") == "2"
    copy = schema_copy(db, 1)
    assert _schema(copy) == "1"
    with contextlib.closing(sqlite3.connect(copy)) as old:
        columns = {r[1] for r in old.execute("PRAGMA table_info(jobs)")}
        assert "detected_area_m2" not in columns
        assert old.execute("SELECT count(*) FROM jobs").fetchone() == (1,)
    # opened again: nothing to migrate, the copy stays the earlier geotl's
    before = copy.read_bytes()
    MonitorState(db).close()
    assert copy.read_bytes() == before


def test_a_full_disk_leaves_the_state_unmigrated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No room for the copy: one line, and the state still the earlier geotl's."""
    db = tmp_path / "state.sqlite"
    _schema_1(db)

    @contextlib.contextmanager
    def full(path: Path) -> Iterator[Path]:
        raise OSError(errno.ENOSPC, "No space left on device")
        yield path  # pragma: no cover

    monkeypatch.setattr(state_module, "atomic_path", full)
    with pytest.raises(ConfigError, match=r"the disk is full .*the next run completes this one"):
        MonitorState(db)
    assert _schema(db) == "1" and not schema_copy(db, 1).exists()


def test_a_schema_that_is_no_number_is_one_line(tmp_path: Path) -> None:
    db = tmp_path / "state.sqlite"
    MonitorState(db).close()
    with contextlib.closing(sqlite3.connect(db)) as raw:
        raw.execute("UPDATE meta SET value = 'two' WHERE key = 'schema_version'")
        raw.commit()
    for readonly in (True, False):
        with pytest.raises(GeotlRuntimeError, match=r"records schema 'two', not a number"):
            MonitorState(db, readonly=readonly)
