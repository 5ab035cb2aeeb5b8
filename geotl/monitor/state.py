"""Monitor state: one SQLite database (WAL) per region.

The database is the single source of truth about what happened: every scene seen, and for
each (scene, model) a job with its status (pending / running / done / failed), attempts,
error, when to retry, and the outputs written. ``history.csv`` and ``latest.geojson`` are
rebuilt from it, so a crash between writing an output and recording it can never duplicate
a row or a feature: the rerun redoes the scene and overwrites the same files.

Only one monitor writes a region at a time (:class:`geotl.monitor.lock.RegionLock`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from geotl.errors import GeotlRuntimeError
from geotl.monitor.sources.scene import Scene

__all__ = [
    "DB_FILE",
    "JobStatus",
    "MonitorState",
    "PassRecord",
    "RunRecord",
    "StateSummary",
    "format_ts",
    "parse_ts",
]

DB_FILE = "state.sqlite"
SCHEMA_VERSION = 1

JobStatus = Literal["pending", "running", "done", "failed"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS scenes (
    key TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    source TEXT NOT NULL,
    uri TEXT NOT NULL,
    acquired TEXT NOT NULL,
    acquired_from TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    footprint TEXT,
    assets TEXT NOT NULL DEFAULT '{}',
    cloud_cover REAL,
    first_seen TEXT NOT NULL,
    last_seen TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS scenes_acquired ON scenes (acquired);
CREATE TABLE IF NOT EXISTS jobs (
    scene_key TEXT NOT NULL REFERENCES scenes (key),
    model_id TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'running', 'done', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    next_attempt TEXT,
    started TEXT,
    finished TEXT,
    duration_s REAL,
    pass_path TEXT,
    changes_path TEXT,
    detections INTEGER,
    new INTEGER,
    gone INTEGER,
    previous_scene TEXT,
    PRIMARY KEY (scene_key, model_id)
);
CREATE INDEX IF NOT EXISTS jobs_model_status ON jobs (model_id, status);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    started TEXT NOT NULL,
    finished TEXT,
    model_id TEXT NOT NULL,
    pid INTEGER NOT NULL,
    every_s REAL,
    processed INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    outcome TEXT
);
"""


def format_ts(value: datetime) -> str:
    """A UTC time stamp that sorts as text: ``2020-08-31T00:00:00.000000+00:00``."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def parse_ts(text: str) -> datetime:
    """Inverse of :func:`format_ts`."""
    return datetime.fromisoformat(text)


@dataclass(frozen=True)
class PassRecord:
    """One (scene, model) job as stored, with its scene's fields."""

    key: str
    name: str
    source: str
    uri: str
    acquired: datetime
    acquired_from: str
    fingerprint: str
    footprint_wkt: str | None
    assets: dict[str, str]
    model_id: str
    status: JobStatus
    attempts: int
    error: str | None
    next_attempt: datetime | None
    started: datetime | None
    finished: datetime | None
    duration_s: float | None
    pass_path: str | None
    changes_path: str | None
    detections: int | None
    new: int | None
    gone: int | None
    previous_scene: str | None

    def to_scene(self) -> Scene:
        """The scene this job processes."""
        return Scene(
            key=self.key,
            name=self.name,
            acquired=self.acquired,
            acquired_from=self.acquired_from,  # type: ignore[arg-type]
            uri=self.uri,
            fingerprint=self.fingerprint,
            footprint_wkt=self.footprint_wkt,
            assets=dict(self.assets),
        )


@dataclass(frozen=True)
class RunRecord:
    """One monitor run (``--once``, or one round of ``--every``)."""

    started: datetime
    finished: datetime | None
    model_id: str
    pid: int
    every_s: float | None
    processed: int
    failed: int
    outcome: str | None


@dataclass(frozen=True)
class StateSummary:
    """Counts for ``geotl monitor status``."""

    scenes: int
    by_status: dict[str, int]
    latest_done: PassRecord | None
    failed: list[PassRecord]
    pending: list[PassRecord]
    last_run: RunRecord | None
    models: list[str]


_JOB_COLUMNS = (
    "s.key, s.name, s.source, s.uri, s.acquired, s.acquired_from, s.fingerprint, s.footprint, "
    "s.assets, j.model_id, j.status, j.attempts, j.error, j.next_attempt, j.started, j.finished, "
    "j.duration_s, j.pass_path, j.changes_path, j.detections, j.new, j.gone, j.previous_scene"
)


def _opt_ts(text: str | None) -> datetime | None:
    return parse_ts(text) if text else None


def _record(row: sqlite3.Row) -> PassRecord:
    return PassRecord(
        key=row[0],
        name=row[1],
        source=row[2],
        uri=row[3],
        acquired=parse_ts(row[4]),
        acquired_from=row[5],
        fingerprint=row[6],
        footprint_wkt=row[7],
        assets=json.loads(row[8] or "{}"),
        model_id=row[9],
        status=row[10],
        attempts=int(row[11]),
        error=row[12],
        next_attempt=_opt_ts(row[13]),
        started=_opt_ts(row[14]),
        finished=_opt_ts(row[15]),
        duration_s=row[16],
        pass_path=row[17],
        changes_path=row[18],
        detections=row[19],
        new=row[20],
        gone=row[21],
        previous_scene=row[22],
    )


class MonitorState:
    """The SQLite state of one monitored region.

    Writers must hold the region's :class:`RegionLock`; readers (``status``) need not: WAL
    lets them read while a monitor writes.
    """

    def __init__(self, db_path: Path, readonly: bool = False) -> None:
        self.path = Path(db_path)
        self.readonly = readonly
        try:
            if readonly:
                self._db = sqlite3.connect(
                    f"file:{self.path}?mode=ro", uri=True, isolation_level=None
                )
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._db = sqlite3.connect(self.path, isolation_level=None, timeout=30)
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.execute("PRAGMA foreign_keys=ON")
                self._db.executescript(_SCHEMA)
                self._check_schema()
        except sqlite3.DatabaseError as exc:
            raise GeotlRuntimeError(
                f"monitor state cannot be opened ({exc}): restore it from a backup or move it away "
                "to start over",
                self.path,
            ) from exc
        self._db.execute("PRAGMA busy_timeout=30000")

    def _check_schema(self) -> None:
        version = self.get_meta("schema_version")
        if version is None:
            self.set_meta("schema_version", str(SCHEMA_VERSION))
        elif int(version) != SCHEMA_VERSION:
            raise GeotlRuntimeError(
                f"monitor state has schema {version}, this geotl writes {SCHEMA_VERSION}: use the "
                "geotl that wrote it or start a new --out folder",
                self.path,
            )

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def __enter__(self) -> MonitorState:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic write transaction."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # --- meta -----------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        """A value of the ``meta`` table."""
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        """Set a value of the ``meta`` table."""
        self._db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    # --- scenes ---------------------------------------------------------------------------

    def known_fingerprints(self) -> dict[str, str]:
        """Every scene seen: key -> fingerprint."""
        return {str(k): str(f) for k, f in self._db.execute("SELECT key, fingerprint FROM scenes")}

    def latest_acquired(self) -> datetime | None:
        """Acquisition time of the newest scene seen."""
        row = self._db.execute("SELECT MAX(acquired) FROM scenes").fetchone()
        return _opt_ts(row[0]) if row else None

    def record_scenes(
        self, scenes: list[Scene], source: str, model_id: str, now: datetime
    ) -> tuple[int, int]:
        """Insert newly found scenes (each with a pending job) and reset changed ones.

        A scene whose fingerprint changed (the file was replaced, the item updated) gets its
        job for ``model_id`` back to pending, with attempts and backoff reset.

        Returns:
            (new scenes, changed scenes).
        """
        new = changed = 0
        stamp = format_ts(now)
        with self.transaction() as db:
            names = {str(n): str(k) for k, n in db.execute("SELECT key, name FROM scenes")}
            for scene in scenes:
                row = db.execute(
                    "SELECT fingerprint FROM scenes WHERE key = ?", (scene.key,)
                ).fetchone()
                assets = json.dumps(scene.assets, sort_keys=True)
                if row is None:
                    name = scene.name
                    if name in names and names[name] != scene.key:
                        name = f"{name}-{hashlib.sha256(scene.key.encode()).hexdigest()[:6]}"
                    names[name] = scene.key
                    db.execute(
                        "INSERT INTO scenes (key, name, source, uri, acquired, acquired_from, fingerprint, "
                        "footprint, assets, cloud_cover, first_seen, last_seen) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            scene.key,
                            name,
                            source,
                            scene.uri,
                            format_ts(scene.acquired),
                            scene.acquired_from,
                            scene.fingerprint,
                            scene.footprint_wkt,
                            assets,
                            scene.cloud_cover,
                            stamp,
                            stamp,
                        ),
                    )
                    db.execute(
                        "INSERT INTO jobs (scene_key, model_id, status) VALUES (?, ?, 'pending')",
                        (scene.key, model_id),
                    )
                    new += 1
                elif row[0] != scene.fingerprint:
                    db.execute(
                        "UPDATE scenes SET uri = ?, acquired = ?, acquired_from = ?, fingerprint = ?, "
                        "footprint = COALESCE(?, footprint), assets = ?, cloud_cover = ?, last_seen = ? "
                        "WHERE key = ?",
                        (
                            scene.uri,
                            format_ts(scene.acquired),
                            scene.acquired_from,
                            scene.fingerprint,
                            scene.footprint_wkt,
                            assets,
                            scene.cloud_cover,
                            stamp,
                            scene.key,
                        ),
                    )
                    db.execute(
                        "INSERT INTO jobs (scene_key, model_id, status) VALUES (?, ?, 'pending') "
                        "ON CONFLICT (scene_key, model_id) DO UPDATE SET status = 'pending', "
                        "attempts = 0, error = NULL, next_attempt = NULL",
                        (scene.key, model_id),
                    )
                    changed += 1
        return new, changed

    def update_scene(self, scene: Scene) -> None:
        """Replace a known scene's source fields (a refreshed STAC item)."""
        with self.transaction() as db:
            db.execute(
                "UPDATE scenes SET uri = ?, acquired = ?, fingerprint = ?, footprint = COALESCE(?, footprint), "
                "assets = ?, cloud_cover = ? WHERE key = ?",
                (
                    scene.uri,
                    format_ts(scene.acquired),
                    scene.fingerprint,
                    scene.footprint_wkt,
                    json.dumps(scene.assets, sort_keys=True),
                    scene.cloud_cover,
                    scene.key,
                ),
            )

    def ensure_jobs(self, model_id: str, reprocess: bool) -> int:
        """Create pending jobs for ``model_id`` where one is owed.

        Every scene that no model has processed yet is owed one; with ``reprocess`` every
        scene without a job for ``model_id`` is (a new model redoing the history).

        Returns:
            How many jobs were created.
        """
        condition = (
            ""
            if reprocess
            else "AND NOT EXISTS (SELECT 1 FROM jobs d WHERE d.scene_key = s.key AND d.status = 'done')"
        )
        with self.transaction() as db:
            cur = db.execute(
                "INSERT INTO jobs (scene_key, model_id, status) SELECT s.key, ?, 'pending' FROM scenes s "
                "WHERE NOT EXISTS (SELECT 1 FROM jobs j WHERE j.scene_key = s.key AND j.model_id = ?) "
                + condition,
                (model_id, model_id),
            )
            return int(cur.rowcount)

    def recover_running(self) -> int:
        """Jobs left ``running`` by a killed monitor go back to pending.

        Call this only while holding the region lock: then no job can really be running.
        """
        with self.transaction() as db:
            cur = db.execute("UPDATE jobs SET status = 'pending' WHERE status = 'running'")
            return int(cur.rowcount)

    def due_jobs(
        self, model_id: str, now: datetime, retry_failed: bool = False
    ) -> list[PassRecord]:
        """Jobs for ``model_id`` to run now, oldest acquisition first.

        Pending jobs, and failed ones whose backoff has expired (all failed ones with
        ``retry_failed``).
        """
        failed_clause = (
            "j.status = 'failed'"
            if retry_failed
            else "(j.status = 'failed' AND j.next_attempt IS NOT NULL AND j.next_attempt <= ?)"
        )
        params: tuple[Any, ...] = (model_id,) if retry_failed else (model_id, format_ts(now))
        rows = self._db.execute(
            f"SELECT {_JOB_COLUMNS} FROM jobs j JOIN scenes s ON s.key = j.scene_key "
            f"WHERE j.model_id = ? AND (j.status = 'pending' OR {failed_clause}) "
            "ORDER BY s.acquired, s.name",
            params,
        ).fetchall()
        return [_record(r) for r in rows]

    def job(self, key: str, model_id: str) -> PassRecord | None:
        """One job, or None."""
        row = self._db.execute(
            f"SELECT {_JOB_COLUMNS} FROM jobs j JOIN scenes s ON s.key = j.scene_key "
            "WHERE s.key = ? AND j.model_id = ?",
            (key, model_id),
        ).fetchone()
        return None if row is None else _record(row)

    def mark_running(self, key: str, model_id: str, now: datetime) -> None:
        """A job starts: one more attempt."""
        with self.transaction() as db:
            db.execute(
                "UPDATE jobs SET status = 'running', attempts = attempts + 1, started = ?, error = NULL "
                "WHERE scene_key = ? AND model_id = ?",
                (format_ts(now), key, model_id),
            )

    def mark_done(
        self,
        key: str,
        model_id: str,
        *,
        now: datetime,
        duration_s: float,
        pass_path: str,
        changes_path: str | None,
        detections: int,
        new: int | None,
        gone: int | None,
        previous_scene: str | None,
        footprint_wkt: str | None,
    ) -> None:
        """A job finished: record its outputs (one transaction)."""
        with self.transaction() as db:
            db.execute(
                "UPDATE jobs SET status = 'done', error = NULL, next_attempt = NULL, finished = ?, "
                "duration_s = ?, pass_path = ?, changes_path = ?, detections = ?, new = ?, gone = ?, "
                "previous_scene = ? WHERE scene_key = ? AND model_id = ?",
                (
                    format_ts(now),
                    duration_s,
                    pass_path,
                    changes_path,
                    detections,
                    new,
                    gone,
                    previous_scene,
                    key,
                    model_id,
                ),
            )
            if footprint_wkt is not None:
                db.execute("UPDATE scenes SET footprint = ? WHERE key = ?", (footprint_wkt, key))

    def update_changes(
        self,
        key: str,
        model_id: str,
        *,
        changes_path: str,
        new: int,
        gone: int,
        previous_scene: str | None,
    ) -> None:
        """Replace a done job's change counts (its predecessor changed)."""
        with self.transaction() as db:
            db.execute(
                "UPDATE jobs SET changes_path = ?, new = ?, gone = ?, previous_scene = ? "
                "WHERE scene_key = ? AND model_id = ?",
                (changes_path, new, gone, previous_scene, key, model_id),
            )

    def mark_failed(
        self, key: str, model_id: str, *, now: datetime, error: str, next_attempt: datetime | None
    ) -> None:
        """A job failed; it is retried after ``next_attempt`` (never when None)."""
        with self.transaction() as db:
            db.execute(
                "UPDATE jobs SET status = 'failed', error = ?, finished = ?, next_attempt = ? "
                "WHERE scene_key = ? AND model_id = ?",
                (
                    error,
                    format_ts(now),
                    format_ts(next_attempt) if next_attempt else None,
                    key,
                    model_id,
                ),
            )

    def mark_abandoned(self, key: str, model_id: str) -> None:
        """A job was interrupted on purpose (SIGTERM): back to pending, attempt not counted."""
        with self.transaction() as db:
            db.execute(
                "UPDATE jobs SET status = 'pending', attempts = MAX(attempts - 1, 0) "
                "WHERE scene_key = ? AND model_id = ?",
                (key, model_id),
            )

    def neighbour_passes(
        self, model_id: str, acquired: datetime, *, before: bool
    ) -> Iterator[PassRecord]:
        """Done jobs of ``model_id`` acquired before (or after) ``acquired``, nearest first."""
        op, order = ("<", "DESC") if before else (">", "ASC")
        cursor = self._db.execute(
            f"SELECT {_JOB_COLUMNS} FROM jobs j JOIN scenes s ON s.key = j.scene_key "
            f"WHERE j.model_id = ? AND j.status = 'done' AND s.acquired {op} ? "
            f"ORDER BY s.acquired {order}, s.name {order}",
            (model_id, format_ts(acquired)),
        )
        for row in cursor:
            yield _record(row)

    def done_passes(self, model_id: str | None = None) -> list[PassRecord]:
        """Done jobs (of one model, or all), oldest acquisition first."""
        where, params = ("AND j.model_id = ?", (model_id,)) if model_id else ("", ())
        rows = self._db.execute(
            f"SELECT {_JOB_COLUMNS} FROM jobs j JOIN scenes s ON s.key = j.scene_key "
            f"WHERE j.status = 'done' {where} ORDER BY s.acquired, s.name, j.finished",
            params,
        ).fetchall()
        return [_record(r) for r in rows]

    def latest_passes(self) -> list[PassRecord]:
        """For each scene, its most recently finished done job, oldest acquisition first."""
        rows = self._db.execute(
            f"SELECT {_JOB_COLUMNS} FROM jobs j JOIN scenes s ON s.key = j.scene_key "
            "WHERE j.status = 'done' AND j.finished = (SELECT MAX(d.finished) FROM jobs d "
            "WHERE d.scene_key = j.scene_key AND d.status = 'done') ORDER BY s.acquired, s.name"
        ).fetchall()
        return [_record(r) for r in rows]

    # --- runs -----------------------------------------------------------------------------

    def start_run(self, model_id: str, now: datetime, every_s: float | None) -> int:
        """Record the start of a run; returns its id."""
        with self.transaction() as db:
            cur = db.execute(
                "INSERT INTO runs (started, model_id, pid, every_s) VALUES (?, ?, ?, ?)",
                (format_ts(now), model_id, os.getpid(), every_s),
            )
            return int(cur.lastrowid or 0)

    def finish_run(
        self, run_id: int, now: datetime, processed: int, failed: int, outcome: str
    ) -> None:
        """Record the end of a run."""
        with self.transaction() as db:
            db.execute(
                "UPDATE runs SET finished = ?, processed = ?, failed = ?, outcome = ? WHERE id = ?",
                (format_ts(now), processed, failed, outcome, run_id),
            )

    def last_run(self) -> RunRecord | None:
        """The most recent run."""
        row = self._db.execute(
            "SELECT started, finished, model_id, pid, every_s, processed, failed, outcome FROM runs "
            "ORDER BY id DESC LIMIT 1"
        ).fetchone()
        if row is None:
            return None
        return RunRecord(
            started=parse_ts(row[0]),
            finished=_opt_ts(row[1]),
            model_id=row[2],
            pid=int(row[3]),
            every_s=row[4],
            processed=int(row[5]),
            failed=int(row[6]),
            outcome=row[7],
        )

    def summary(self) -> StateSummary:
        """Everything ``geotl monitor status`` shows."""
        scenes = int(self._db.execute("SELECT COUNT(*) FROM scenes").fetchone()[0])
        by_status: dict[str, int] = {}
        # a scene's status is its best job: done > running > pending > failed
        for status, count in self._db.execute(
            "SELECT status, COUNT(*) FROM (SELECT scene_key, CASE MIN(CASE status WHEN 'done' THEN 0 "
            "WHEN 'running' THEN 1 WHEN 'pending' THEN 2 ELSE 3 END) WHEN 0 THEN 'done' WHEN 1 THEN "
            "'running' WHEN 2 THEN 'pending' ELSE 'failed' END AS status FROM jobs GROUP BY scene_key) "
            "GROUP BY status"
        ):
            by_status[str(status)] = int(count)
        latest = self._db.execute(
            f"SELECT {_JOB_COLUMNS} FROM jobs j JOIN scenes s ON s.key = j.scene_key "
            "WHERE j.status = 'done' ORDER BY s.acquired DESC, j.finished DESC LIMIT 1"
        ).fetchone()
        failed = self._db.execute(
            f"SELECT {_JOB_COLUMNS} FROM jobs j JOIN scenes s ON s.key = j.scene_key "
            "WHERE j.status = 'failed' AND NOT EXISTS (SELECT 1 FROM jobs d WHERE d.scene_key = s.key "
            "AND d.status = 'done') ORDER BY s.acquired"
        ).fetchall()
        pending = self._db.execute(
            f"SELECT {_JOB_COLUMNS} FROM jobs j JOIN scenes s ON s.key = j.scene_key "
            "WHERE j.status IN ('pending', 'running') ORDER BY s.acquired"
        ).fetchall()
        models = [
            str(m)
            for (m,) in self._db.execute("SELECT DISTINCT model_id FROM jobs ORDER BY model_id")
        ]
        return StateSummary(
            scenes=scenes,
            by_status=by_status,
            latest_done=_record(latest) if latest else None,
            failed=[_record(r) for r in failed],
            pending=[_record(r) for r in pending],
            last_run=self.last_run(),
            models=models,
        )
