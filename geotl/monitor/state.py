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
import logging
import os
import sqlite3
import tomllib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from geotl.errors import ConfigError, GeotlInputError, GeotlRuntimeError, error_text
from geotl.io.atomic import atomic_path
from geotl.monitor.sources.scene import Scene, safe_scene_name
from geotl.monitor.storage import storage_error

__all__ = [
    "ALERT_STATUSES",
    "DB_FILE",
    "AlertRecord",
    "AlertSighting",
    "AlertStatus",
    "JobStatus",
    "MonitorState",
    "PassRecord",
    "PassWarnings",
    "RepublishedRecord",
    "RunRecord",
    "StateSummary",
    "format_ts",
    "parse_ts",
    "schema_copy",
]

log = logging.getLogger(__name__)

DB_FILE = "state.sqlite"
#: 2: jobs record areas (``detected_area_m2``, ``new_area_m2``, ``gone_area_m2``); a state of
#: schema 1 is migrated in place when opened for writing (:meth:`MonitorState._migrate`),
#: its copy as schema 1 kept beside it for the geotl that wrote it (:func:`schema_copy`).
#: The tables ``republished`` and ``pass_warnings`` came later within schema 2: they only add
#: (a writer creates them, ``CREATE TABLE IF NOT EXISTS``), and a read-only reader of a
#: state without them sees none (:meth:`MonitorState._optional`). So did the alerts' columns
#: ``last_area_m2`` (the area when last seen) and ``withdrawn*`` (their pass was done again
#: from a corrected file without the object): a writer rebuilds an earlier ``alerts`` table
#: in place for its status CHECK (:meth:`MonitorState._upgrade_alerts`); an earlier geotl
#: still reads and writes the state (it names its columns), a reader of an earlier state
#: sees nothing seen again or withdrawn. ``grown_from`` / ``grown_from_area_m2`` (a growth
#: alert's original alert and the area it grew from) are added to such a table as they are
#: (nullable, no CHECK), and read as empty where they are not yet
SCHEMA_VERSION = 2
#: the oldest schema this geotl opens (and migrates in place)
OLDEST_SCHEMA = 1
#: how many of a pass's warnings are kept word for word (all are counted)
PASS_WARNING_LINES = 3

#: meta key: why the last run ended in error or exited 1 (empty after a good run)
LAST_RUN_ERROR = "last_run_error"

JobStatus = Literal["pending", "running", "done", "failed"]
AlertStatus = Literal["open", "delivered", "acknowledged", "failed", "withdrawn"]
ALERT_STATUSES: tuple[AlertStatus, ...] = (
    "open",
    "delivered",
    "acknowledged",
    "failed",
    "withdrawn",
)

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
    detected_area_m2 REAL,
    new_area_m2 REAL,
    gone_area_m2 REAL,
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
CREATE TABLE IF NOT EXISTS alerts (
    id TEXT PRIMARY KEY,
    rule TEXT NOT NULL,
    class TEXT NOT NULL,
    change TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('open', 'delivered', 'acknowledged', 'failed',
                                           'withdrawn')),
    geometry TEXT NOT NULL,
    object_id TEXT NOT NULL,
    score REAL,
    area_m2 REAL NOT NULL,
    model_id TEXT NOT NULL,
    fired_scene TEXT NOT NULL,
    fired_acquired TEXT NOT NULL,
    first_scene TEXT NOT NULL,
    first_acquired TEXT NOT NULL,
    last_scene TEXT NOT NULL,
    last_acquired TEXT NOT NULL,
    reference_layer TEXT,
    reference_ids TEXT NOT NULL DEFAULT '[]',
    seen INTEGER NOT NULL,
    looked INTEGER NOT NULL,
    created TEXT NOT NULL,
    updated TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt TEXT,
    last_error TEXT,
    http_status INTEGER,
    delivered TEXT,
    acknowledged TEXT,
    last_area_m2 REAL,
    withdrawn TEXT,
    withdrawn_scene TEXT,
    withdrawal_notice TEXT CHECK (withdrawal_notice IN ('pending', 'sent', 'failed')),
    grown_from TEXT,
    grown_from_area_m2 REAL
);
CREATE INDEX IF NOT EXISTS alerts_status ON alerts (status);
CREATE INDEX IF NOT EXISTS alerts_rule ON alerts (rule);
CREATE TABLE IF NOT EXISTS alert_deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id TEXT NOT NULL REFERENCES alerts (id),
    attempt INTEGER NOT NULL,
    url TEXT NOT NULL,
    started TEXT NOT NULL,
    finished TEXT,
    outcome TEXT NOT NULL CHECK (outcome IN ('sending', 'delivered', 'retry', 'failed')),
    http_status INTEGER,
    error TEXT
);
CREATE INDEX IF NOT EXISTS alert_deliveries_alert ON alert_deliveries (alert_id);
CREATE TABLE IF NOT EXISTS republished (
    key TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    of_key TEXT NOT NULL,
    acquired TEXT NOT NULL,
    seen TEXT NOT NULL,
    replaced INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS pass_warnings (
    scene_key TEXT NOT NULL,
    model_id TEXT NOT NULL,
    count INTEGER NOT NULL,
    lines TEXT NOT NULL,
    PRIMARY KEY (scene_key, model_id)
);
CREATE TABLE IF NOT EXISTS alert_evaluations (
    scene_key TEXT NOT NULL,
    model_id TEXT NOT NULL,
    rules TEXT NOT NULL,
    evaluated TEXT NOT NULL,
    fired INTEGER NOT NULL,
    PRIMARY KEY (scene_key, model_id, rules)
);
"""


def schema_copy(db_path: Path, version: int) -> Path:
    """Where the state is kept as schema ``version`` when a geotl migrates it past that.

    A state migrated in place can no longer be opened by the geotl that wrote it (it refuses
    another schema), so a team that goes back to that geotl needs the state as it left it.

    >>> schema_copy(Path("out/peru/state.sqlite"), 1).as_posix()
    'out/peru/state-schema-1.sqlite'
    """
    return db_path.with_name(f"{db_path.stem}-schema-{version}{db_path.suffix}")


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
    #: the pass's objects' ``area_m2`` summed, and the new / gone ones' (None: not known,
    #: e.g. a pass done by a geotl before areas were recorded whose files did not tell)
    detected_area_m2: float | None = None
    new_area_m2: float | None = None
    gone_area_m2: float | None = None

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
class AlertRecord:
    """One alert as stored (see ``geotl.monitor.alerts``).

    ``fired_*`` is the pass whose evaluation raised it; ``first_*`` / ``last_*`` the first and
    last pass that saw the object. ``geometry`` is a GeoJSON geometry (EPSG:4326).
    """

    id: str
    rule: str
    class_name: str
    change: str
    status: AlertStatus
    geometry: dict[str, Any]
    object_id: str
    score: float | None
    area_m2: float
    model_id: str
    fired_scene: str
    fired_acquired: datetime
    first_scene: str
    first_acquired: datetime
    last_scene: str
    last_acquired: datetime
    reference_layer: str | None
    reference_ids: list[str]
    seen: int
    looked: int
    created: datetime
    updated: datetime
    attempts: int = 0
    next_attempt: datetime | None = None
    last_error: str | None = None
    http_status: int | None = None
    delivered: datetime | None = None
    acknowledged: datetime | None = None
    #: the object's area in ``last_scene`` (None: not seen since it fired, or an older state)
    last_area_m2: float | None = None
    #: when and by which pass (done again, without the object) it was withdrawn
    withdrawn: datetime | None = None
    withdrawn_scene: str | None = None
    #: telling the webhook of the withdrawal: None (it never received the alert), pending,
    #: sent or failed
    withdrawal_notice: str | None = None
    #: a ``grown`` alert: the alert first raised for the object (the one a team acknowledged)
    #: and the area it grew from (that alert's, or the previous growth alert's)
    grown_from: str | None = None
    grown_from_area_m2: float | None = None

    @property
    def notice_due(self) -> bool:
        """A withdrawn alert whose receiver must still be told (its earlier POST arrived)."""
        return self.status == "withdrawn" and self.withdrawal_notice == "pending"


@dataclass(frozen=True)
class PassWarnings:
    """What was warned while a pass was processed (its scene's units, compression, bands).

    Kept with the pass so that ``monitor status``, the report page and ``history.csv`` show
    a week later that its detections and changes are suspect, not only stderr at the time.
    """

    count: int
    lines: list[str]  # the first :data:`PASS_WARNING_LINES`, as logged


@dataclass(frozen=True)
class RepublishedRecord:
    """An item or file found to be a re-publication of a pass already done.

    ``key``/``name``: the re-published item (or file); ``of_key``/``of_name``: the scene whose
    pass stands for the acquisition (the same key when an item was updated in place).
    """

    key: str
    name: str
    of_key: str
    of_name: str
    acquired: datetime
    seen: datetime
    replaced: bool = False  # superseded: the pass was predicted again from a later version


_ALERT_COLUMNS = (
    "id, rule, class, change, status, geometry, object_id, score, area_m2, model_id, "
    "fired_scene, fired_acquired, first_scene, first_acquired, last_scene, last_acquired, "
    "reference_layer, reference_ids, seen, looked, created, updated, attempts, next_attempt, "
    "last_error, http_status, delivered, acknowledged, last_area_m2, withdrawn, "
    "withdrawn_scene, withdrawal_notice, grown_from, grown_from_area_m2"
)
_ALERT_COLUMN_COUNT = len(_ALERT_COLUMNS.split(", "))


def _alert_columns_of(have: Sequence[str]) -> str:
    """What a read-only reader selects from an earlier ``alerts`` table (not upgraded yet).

    The columns it lacks read as NULL: nothing seen again, withdrawn or grown.
    """
    return ", ".join(c if c in have else "NULL" for c in _ALERT_COLUMNS.split(", "))


#: alerts a delivery round sends: open ones, and withdrawals their receiver must hear of
_TO_SEND = "(status = 'open' OR (status = 'withdrawn' AND withdrawal_notice = 'pending'))"


def _alert(row: sqlite3.Row) -> AlertRecord:
    return AlertRecord(
        id=row[0],
        rule=row[1],
        class_name=row[2],
        change=row[3],
        status=row[4],
        geometry=json.loads(row[5]),
        object_id=row[6],
        score=row[7],
        area_m2=float(row[8]),
        model_id=row[9],
        fired_scene=row[10],
        fired_acquired=parse_ts(row[11]),
        first_scene=row[12],
        first_acquired=parse_ts(row[13]),
        last_scene=row[14],
        last_acquired=parse_ts(row[15]),
        reference_layer=row[16],
        reference_ids=json.loads(row[17] or "[]"),
        seen=int(row[18]),
        looked=int(row[19]),
        created=parse_ts(row[20]),
        updated=parse_ts(row[21]),
        attempts=int(row[22]),
        next_attempt=_opt_ts(row[23]),
        last_error=row[24],
        http_status=row[25],
        delivered=_opt_ts(row[26]),
        acknowledged=_opt_ts(row[27]),
        last_area_m2=None if row[28] is None else float(row[28]),
        withdrawn=_opt_ts(row[29]),
        withdrawn_scene=row[30],
        withdrawal_notice=row[31],
        grown_from=row[32],
        grown_from_area_m2=None if row[33] is None else float(row[33]),
    )


def _alert_values(a: AlertRecord) -> tuple[Any, ...]:
    return (
        a.id,
        a.rule,
        a.class_name,
        a.change,
        a.status,
        json.dumps(a.geometry, separators=(",", ":")),
        a.object_id,
        a.score,
        a.area_m2,
        a.model_id,
        a.fired_scene,
        format_ts(a.fired_acquired),
        a.first_scene,
        format_ts(a.first_acquired),
        a.last_scene,
        format_ts(a.last_acquired),
        a.reference_layer,
        json.dumps(a.reference_ids),
        a.seen,
        a.looked,
        format_ts(a.created),
        format_ts(a.updated),
        a.attempts,
        format_ts(a.next_attempt) if a.next_attempt else None,
        a.last_error,
        a.http_status,
        format_ts(a.delivered) if a.delivered else None,
        format_ts(a.acknowledged) if a.acknowledged else None,
        a.last_area_m2,
        format_ts(a.withdrawn) if a.withdrawn else None,
        a.withdrawn_scene,
        a.withdrawal_notice,
        a.grown_from,
        a.grown_from_area_m2,
    )


@dataclass(frozen=True)
class AlertSighting:
    """A later pass saw an alert's object again: its last pass (and area) moves forward."""

    alert_id: str
    scene: str
    acquired: datetime
    area_m2: float | None = None


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
    alerts: dict[str, int] = field(default_factory=dict)  # alert status -> count


_JOB_COLUMNS = (
    "s.key, s.name, s.source, s.uri, s.acquired, s.acquired_from, s.fingerprint, s.footprint, "
    "s.assets, j.model_id, j.status, j.attempts, j.error, j.next_attempt, j.started, j.finished, "
    "j.duration_s, j.pass_path, j.changes_path, j.detections, j.new, j.gone, j.previous_scene, "
    "j.detected_area_m2, j.new_area_m2, j.gone_area_m2"
)
#: what schema 1 (no areas) reads in their place, when it cannot be migrated (read-only)
_JOB_COLUMNS_V1 = _JOB_COLUMNS.replace(
    "j.detected_area_m2, j.new_area_m2, j.gone_area_m2", "NULL, NULL, NULL"
)
#: the columns schema 2 adds to ``jobs``
_AREA_COLUMNS = ("detected_area_m2", "new_area_m2", "gone_area_m2")


def _opt_ts(text: str | None) -> datetime | None:
    return parse_ts(text) if text else None


def _region_name(path: Path) -> str | None:
    """The ``name`` of a region file, or None when it is gone or unreadable."""
    try:
        name = tomllib.loads(path.read_text(encoding="utf-8")).get("name")
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    return name if isinstance(name, str) else None


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _area_from_file(
    root: Path, rel: str | None, expected: dict[str | None, int | None]
) -> dict[str | None, float] | None:
    """``area_m2`` summed per ``change`` (None: all features) of a pass's GeoJSON file.

    For passes recorded before areas were (schema 1). None unless the file exists, parses
    and holds exactly the ``expected`` number of features of each kind: a file rewritten
    after its counts were recorded (a run killed in between) would give areas of another
    comparison than the counts'.
    """
    if rel is None or any(v is None for v in expected.values()):
        return None
    try:
        features = json.loads((root / rel).read_text(encoding="utf-8"))["features"]
        props = [f.get("properties") or {} for f in features]
        if len(props) != sum(int(v or 0) for v in expected.values()):
            return None
        areas: dict[str | None, float] = {}
        for kind, count in expected.items():
            mine = [p for p in props if kind is None or p.get("change") == kind]
            if len(mine) != count:
                return None
            areas[kind] = float(sum(float(p.get("area_m2") or 0.0) for p in mine))
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None
    return areas


def _schema_number(version: str, path: Path) -> int:
    """The ``schema_version`` meta value as a number (a damaged state refused in one line)."""
    try:
        return int(version)
    except ValueError:
        raise GeotlRuntimeError(
            f"monitor state records schema {version!r}, not a number: restore it from a "
            "backup or move it away to start over",
            path,
        ) from None


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
        detected_area_m2=row[23],
        new_area_m2=row[24],
        gone_area_m2=row[25],
    )


class MonitorState:
    """The SQLite state of one monitored region.

    Writers must hold the region's :class:`RegionLock`; readers (``status``) need not: WAL
    lets them read while a monitor writes.
    """

    def __init__(self, db_path: Path, readonly: bool = False) -> None:
        self.path = Path(db_path)
        self.readonly = readonly
        self._job_columns = _JOB_COLUMNS
        self._alert_columns = _ALERT_COLUMNS
        self._to_send = _TO_SEND
        try:
            if readonly:
                self._db = self._connect_readonly()
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._db = sqlite3.connect(self.path, isolation_level=None, timeout=30)
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.execute("PRAGMA foreign_keys=ON")
                self._db.executescript(_SCHEMA)
                self._migrate()
                self._check_schema()
        except sqlite3.DatabaseError as exc:
            if not readonly and not os.access(self.path.parent, os.W_OK):
                raise ConfigError(
                    f"monitor state cannot be written ({exc}): the folder is read-only; "
                    "choose a writable --out folder or fix its permissions",
                    self.path,
                ) from exc
            if (full := storage_error(exc, self.path.parent)) is not None:
                raise full from exc  # a full disk (a migration writes), not a damaged state
            raise GeotlRuntimeError(
                f"monitor state cannot be opened ({exc}): restore it from a backup or move it away "
                "to start over",
                self.path,
            ) from exc
        self._db.execute("PRAGMA busy_timeout=30000")

    def _connect_readonly(self) -> sqlite3.Connection:
        """A read-only connection, schema checked (connecting alone reads nothing).

        WAL readers need the ``-shm`` file, which cannot be created in a folder this user
        cannot write (a backup, a read-only share, another user's monitor). Without a
        ``-wal`` file no writer is active and the database file holds everything: it is then
        read as immutable.
        """
        uri = f"file:{self.path}?mode=ro"
        db: sqlite3.Connection | None = None
        try:
            db = self._db = sqlite3.connect(uri, uri=True, isolation_level=None)
            self._check_schema()
        except sqlite3.OperationalError:
            wal = self.path.with_name(self.path.name + "-wal")
            if os.access(self.path.parent, os.W_OK) or wal.exists():
                raise
            if db is not None:
                db.close()
            self._db = sqlite3.connect(f"{uri}&immutable=1", uri=True, isolation_level=None)
            self._check_schema()
        return self._db

    def _migrate(self) -> None:
        """Bring a state of an earlier geotl's schema to this one, in place, once per step."""
        self._migrate_1_to_2()
        self._upgrade_alerts()

    def _alert_table_columns(self) -> list[str]:
        return [str(r[1]) for r in self._db.execute("PRAGMA table_info(alerts)")]

    def _upgrade_alerts(self) -> None:
        """Alerts of an earlier geotl gain ``last_area_m2``, ``withdrawn`` and ``grown_from``.

        SQLite cannot change a CHECK constraint (the ``withdrawn`` status), so an earlier
        table is rebuilt under this geotl's definition and every row copied (the new columns
        empty: not seen since, not withdrawn, not grown), all in one transaction;
        ``alert_deliveries`` keeps pointing at the same ids. A second writer waits, then
        finds the table upgraded.
        """
        if "grown_from" in self._alert_table_columns():
            return
        # SQLite's way to change a table (https://sqlite.org/lang_altertable.html#otheralter):
        # foreign keys off (outside the transaction), a new table renamed over the old one,
        # so the deliveries' REFERENCES alerts clause is not rewritten, then checked
        self._db.execute("PRAGMA foreign_keys=OFF")
        try:
            with self.transaction() as db:
                have = self._alert_table_columns()
                if "grown_from" not in have:
                    table = _SCHEMA[_SCHEMA.index("CREATE TABLE IF NOT EXISTS alerts (") :]
                    table = table[: table.index(");") + 2]
                    columns = ", ".join(have)
                    db.execute(table.replace("IF NOT EXISTS alerts (", "alerts_v3 (", 1))
                    db.execute(f"INSERT INTO alerts_v3 ({columns}) SELECT {columns} FROM alerts")
                    db.execute("DROP TABLE alerts")
                    db.execute("ALTER TABLE alerts_v3 RENAME TO alerts")
                    db.execute("CREATE INDEX IF NOT EXISTS alerts_status ON alerts (status)")
                    db.execute("CREATE INDEX IF NOT EXISTS alerts_rule ON alerts (rule)")
                    if (
                        db.execute("PRAGMA foreign_key_check(alert_deliveries)").fetchone()
                        is not None
                    ):
                        raise sqlite3.DatabaseError("alert deliveries lost their alerts")
        finally:
            self._db.execute("PRAGMA foreign_keys=ON")

    def _migrate_1_to_2(self) -> None:
        """Bring a state of schema 1 to schema 2, in place, once.

        Schema 2 adds the areas of each pass. Passes done before are given them from their
        own files where those are the ones recorded (the pass file holds ``detections``
        features, the changes file ``new`` and ``gone`` ones); otherwise the areas stay
        empty (not known), never a guess. One transaction: a second writer waits, then
        finds the state migrated.
        """
        if self.get_meta("schema_version") != "1":
            return
        copy = self._keep_copy(1)
        with self.transaction() as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is None or int(row[0]) != 1:
                return
            have = {str(r[1]) for r in db.execute("PRAGMA table_info(jobs)")}
            for column in _AREA_COLUMNS:
                if column not in have:
                    db.execute(f"ALTER TABLE jobs ADD COLUMN {column} REAL")
            rows = db.execute(
                "SELECT scene_key, model_id, pass_path, changes_path, detections, new, gone "
                "FROM jobs WHERE status = 'done'"
            ).fetchall()
            for key, model_id, pass_path, changes_path, detections, new, gone in rows:
                detected = _area_from_file(self.path.parent, pass_path, {None: detections})
                changed = (
                    _area_from_file(self.path.parent, changes_path, {"new": new, "gone": gone})
                    if new is not None and gone is not None
                    else None
                )
                db.execute(
                    "UPDATE jobs SET detected_area_m2 = ?, new_area_m2 = ?, gone_area_m2 = ? "
                    "WHERE scene_key = ? AND model_id = ?",
                    (
                        None if detected is None else detected[None],
                        None if changed is None else changed["new"],
                        None if changed is None else changed["gone"],
                        key,
                        model_id,
                    ),
                )
            db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", ("2",))
        log.info(
            "%s: monitor state migrated from schema 1 to 2 (pass areas); the geotl that wrote "
            "it cannot open it now: its copy as schema 1 is %s (to go back to that geotl, put "
            "it back as %s)",
            self.path,
            copy.name,
            self.path.name,
        )

    def _keep_copy(self, version: int) -> Path:
        """Copy the state, as of schema ``version``, beside it before migrating it in place.

        The copy is a consistent snapshot (SQLite's online backup, WAL included) written to
        a temporary name and renamed. One copy is kept: one already there is the state as
        the earlier geotl left it (a migration that failed after the copy leaves the state
        as it was, so the copy is the same).

        Raises:
            ConfigError: the disk is full or read-only (nothing is migrated).
        """
        copy = schema_copy(self.path, version)
        if copy.exists():
            return copy
        try:
            with atomic_path(copy) as tmp:
                target = sqlite3.connect(tmp)
                try:
                    self._db.backup(target)
                finally:
                    target.close()
        except (OSError, sqlite3.Error) as exc:
            raise storage_error(exc, self.path.parent) or ConfigError(
                f"cannot keep a copy of the monitor state before migrating it "
                f"({error_text(exc)}): fix the --out folder, then run again",
                copy,
            ) from exc
        return copy

    def _check_schema(self) -> None:
        version = self.get_meta("schema_version")
        number = SCHEMA_VERSION if version is None else _schema_number(version, self.path)
        if version is None:
            if not self.readonly:
                self.set_meta("schema_version", str(SCHEMA_VERSION))
        elif number == 1 and self.readonly:
            # an earlier geotl's state read before a monitor run migrated it: no areas yet
            self._job_columns = _JOB_COLUMNS_V1
        elif number > SCHEMA_VERSION:
            copy = schema_copy(self.path, SCHEMA_VERSION)
            back = (
                f", or put back {copy.name} (this geotl's state, kept when the newer one "
                "migrated it; passes done since are then done again)"
                if copy.exists()
                else ""
            )
            raise GeotlInputError(
                f"monitor state has schema {number}, written by a newer geotl (this one reads "
                f"schemas {OLDEST_SCHEMA} to {SCHEMA_VERSION}): run that geotl or a later one"
                f"{back}, or start a new --out folder",
                self.path,
            )
        elif number != SCHEMA_VERSION:
            raise GeotlRuntimeError(
                f"monitor state has schema {number}, which no geotl wrote: restore it from a "
                "backup or move it away to start over",
                self.path,
            )
        have = self._alert_table_columns()
        if self.readonly and "grown_from" not in have:
            self._alert_columns = _alert_columns_of(have)  # alerts of an earlier geotl
            if "withdrawal_notice" not in have:
                self._to_send = "status = 'open'"

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

    def check_region_file(self, region_file: Path, name: str, *, claim: bool = False) -> None:
        """Refuse a state that another region file of the same name monitors.

        Two region files of one ``name`` and one ``--out`` would share this state: the
        second's passes compared against the first's objects, its scenes marked done by the
        first. The state records the region file it belongs to and where it was then; a file
        that was moved (the recorded one is gone, or no longer has this name) is adopted, and
        so is any file once the state itself was moved or copied elsewhere.

        Args:
            region_file: the region file of this command.
            name: its region name.
            claim: record ``region_file`` as the state's (a monitor run; readers only check).

        Raises:
            ConfigError: the recorded region file is another file of the same name.
        """
        here = Path(region_file).resolve()
        where = str(self.path.parent.resolve())
        stored = self.get_meta("region_file")
        if stored is not None and stored != str(here) and self.get_meta("region_dir") == where:
            other = Path(stored)
            if _region_name(other) == name and not _same_file(other, here):
                raise ConfigError(
                    f"region '{name}' in {self.path.parent.parent} is already monitored from "
                    f"{other}: two region files of one name cannot share a monitor state; give "
                    "this one another name or another --out (or remove the other file if this "
                    "one replaces it)",
                    here,
                )
        if claim and (stored != str(here) or self.get_meta("region_dir") != where):
            self.set_meta("region_file", str(here))
            self.set_meta("region_dir", where)

    # --- scenes ---------------------------------------------------------------------------

    def known_fingerprints(self) -> dict[str, str]:
        """Every scene seen: key -> fingerprint."""
        return {str(k): str(f) for k, f in self._db.execute("SELECT key, fingerprint FROM scenes")}

    def latest_acquired(self, now: datetime | None = None) -> datetime | None:
        """Acquisition time of the newest scene seen, not after ``now`` (default: the clock).

        A scene dated in the future (a wrong datetime in a catalogue item or a file name) is
        left out: a catalogue searched from its date on would never return another item.
        """
        row = self._db.execute(
            "SELECT MAX(acquired) FROM scenes WHERE acquired <= ?",
            (format_ts(now or datetime.now(UTC)),),
        ).fetchone()
        return _opt_ts(row[0]) if row else None

    def oldest_given_up(self, model_id: str) -> datetime | None:
        """Acquisition time of the oldest scene whose job for ``model_id`` is no longer retried.

        A catalogue is searched back to it, so that a new version of its item (the only
        thing that heals such a job without ``--retry-failed``) is found.
        """
        row = self._db.execute(
            "SELECT MIN(s.acquired) FROM jobs j JOIN scenes s ON s.key = j.scene_key "
            "WHERE j.model_id = ? AND j.status = 'failed' AND j.next_attempt IS NULL",
            (model_id,),
        ).fetchone()
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
                assets = json.dumps(scene.assets)
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

    def copy_fingerprints(self) -> dict[str, str]:
        """Files found to be byte copies of a known scene (no passes): key -> fingerprint."""
        rows = self._db.execute("SELECT key, value FROM meta WHERE key LIKE 'copy:%'")
        return {str(k)[len("copy:") :]: str(json.loads(v)["fingerprint"]) for k, v in rows}

    def record_copy(self, key: str, fingerprint: str, original: str) -> None:
        """A file is a byte copy of the scene ``original``: it is not a pass of its own."""
        self.set_meta(f"copy:{key}", json.dumps({"fingerprint": fingerprint, "of": original}))

    def _optional(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        """Rows of a table a read-only state written by an earlier geotl may lack (then none)."""
        try:
            return self._db.execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" not in str(exc):
                raise
            return []

    def done_keys(self) -> set[str]:
        """Keys of the scenes whose pass is done (by any model)."""
        rows = self._db.execute("SELECT DISTINCT scene_key FROM jobs WHERE status = 'done'")
        return {str(k) for (k,) in rows}

    def done_scenes_near(
        self, acquired: datetime, within: timedelta, source: str
    ) -> list[tuple[str, str, str | None, str]]:
        """(key, name, footprint WKT, uri) of ``source``'s done scenes acquired within ``within``.

        Scenes dated by their file's modification time are left out: that is when the file
        was written, not when the ground was seen.
        """
        rows = self._db.execute(
            "SELECT s.key, s.name, s.footprint, s.uri FROM scenes s WHERE s.source = ? "
            "AND s.acquired_from != 'mtime' AND s.acquired BETWEEN ? AND ? AND EXISTS (SELECT 1 FROM jobs j "
            "WHERE j.scene_key = s.key AND j.status = 'done') ORDER BY s.acquired, s.name",
            (source, format_ts(acquired - within), format_ts(acquired + within)),
        )
        return [(str(k), str(n), f, str(u)) for k, n, f, u in rows]

    def republished_fingerprints(self) -> dict[str, str]:
        """Items and files recorded as re-publications of a done pass: key -> fingerprint."""
        rows = self._optional("SELECT key, fingerprint FROM republished")
        return {str(k): str(f) for k, f in rows}

    def record_republished(self, scene: Scene, of_key: str, now: datetime) -> None:
        """``scene`` re-publishes the pass of ``of_key``: remembered, not a pass of its own.

        A scene of another key that was recorded before (a file half copied when first
        seen) loses its jobs that are not done, and its row when none is left.
        """
        with self.transaction() as db:
            if scene.key != of_key:
                db.execute(
                    "DELETE FROM jobs WHERE scene_key = ? AND status != 'done'", (scene.key,)
                )
                db.execute(
                    "DELETE FROM scenes WHERE key = ? AND NOT EXISTS "
                    "(SELECT 1 FROM jobs j WHERE j.scene_key = ?)",
                    (scene.key, scene.key),
                )
            db.execute(
                "INSERT OR REPLACE INTO republished (key, name, fingerprint, of_key, acquired, "
                "seen) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    scene.key,
                    scene.name,
                    scene.fingerprint,
                    of_key,
                    format_ts(scene.acquired),
                    format_ts(now),
                ),
            )

    def republished(self) -> list[RepublishedRecord]:
        """Every re-publication recorded, most recently seen first."""
        rows = self._optional(
            "SELECT r.key, r.name, r.of_key, COALESCE(s.name, r.of_key), r.acquired, r.seen, "
            "r.replaced FROM republished r LEFT JOIN scenes s ON s.key = r.of_key "
            "ORDER BY r.seen DESC, r.name"
        )
        return [
            RepublishedRecord(str(k), str(n), str(o), str(on), parse_ts(a), parse_ts(t), bool(r))
            for k, n, o, on, a, t, r in rows
        ]

    def replace_scene(self, old_key: str, scene: Scene, now: datetime) -> None:
        """The pass of ``old_key`` is to be predicted again from ``scene``, its re-publication.

        One transaction: the scene row takes the new item's (or file's) key, address,
        fingerprint and assets but keeps its name, so the pass keeps its output files and
        its alert ids (nothing already raised fires again); its jobs go back to pending; the
        old key is remembered as superseded, so the old item, still in the catalogue, is
        not found as a new pass.
        """
        with self.transaction() as db:
            row = db.execute(
                "SELECT name, fingerprint, acquired FROM scenes WHERE key = ?", (old_key,)
            ).fetchone()
            if row is None:
                return
            db.execute("PRAGMA defer_foreign_keys = ON")
            # the new key recorded before as a pass of its own, never done (a half-copied file)
            db.execute("DELETE FROM jobs WHERE scene_key = ? AND status != 'done'", (scene.key,))
            db.execute("DELETE FROM scenes WHERE key = ?", (scene.key,))
            db.execute(
                "UPDATE scenes SET key = ?, uri = ?, fingerprint = ?, assets = ?, "
                "footprint = COALESCE(?, footprint), cloud_cover = ?, last_seen = ? WHERE key = ?",
                (
                    scene.key,
                    scene.uri,
                    scene.fingerprint,
                    json.dumps(scene.assets),
                    scene.footprint_wkt,
                    scene.cloud_cover,
                    format_ts(now),
                    old_key,
                ),
            )
            db.execute(
                "UPDATE jobs SET scene_key = ?, status = 'pending', attempts = 0, error = NULL, "
                "next_attempt = NULL WHERE scene_key = ?",
                (scene.key, old_key),
            )
            for table in ("alert_evaluations", "pass_warnings"):
                db.execute(
                    f"UPDATE {table} SET scene_key = ? WHERE scene_key = ?", (scene.key, old_key)
                )
            db.execute("DELETE FROM republished WHERE key = ?", (scene.key,))
            db.execute("UPDATE republished SET of_key = ? WHERE of_key = ?", (scene.key, old_key))
            # named for the superseded item or file (the pass keeps its own name)
            superseded = safe_scene_name(
                old_key.rsplit("/", 1)[-1] if old_key.startswith("stac:") else Path(old_key).stem
            )
            db.execute(
                "INSERT OR REPLACE INTO republished (key, name, fingerprint, of_key, acquired, "
                "seen, replaced) VALUES (?, ?, ?, ?, ?, ?, 1)",
                (old_key, superseded, str(row[1]), scene.key, str(row[2]), format_ts(now)),
            )

    def pass_warnings(self) -> dict[tuple[str, str], PassWarnings]:
        """(scene key, model id) -> the warnings said while that pass was processed."""
        rows = self._optional("SELECT scene_key, model_id, count, lines FROM pass_warnings")
        return {
            (str(k), str(m)): PassWarnings(int(c), list(json.loads(lines)))
            for k, m, c, lines in rows
        }

    def folder_scenes_of_size(self, size: str) -> list[tuple[str, str, str]]:
        """(key, name, uri) of the folder scenes whose file had ``size`` bytes when seen."""
        rows = self._db.execute(
            "SELECT key, name, uri FROM scenes WHERE source = 'folder' AND fingerprint LIKE ?",
            (f"{size}:%",),
        )
        return [(str(k), str(n), str(u)) for k, n, u in rows]

    def folder_scenes_with(self, fingerprint: str) -> list[tuple[str, str, str]]:
        """(key, name, uri) of the folder scenes last seen with ``fingerprint``."""
        rows = self._db.execute(
            "SELECT key, name, uri FROM scenes WHERE source = 'folder' AND fingerprint = ?",
            (fingerprint,),
        )
        return [(str(k), str(n), str(u)) for k, n, u in rows]

    def move_scene(self, old_key: str, new_key: str, uri: str) -> None:
        """A known scene's file moved (same name, bytes and time stamp): it keeps its passes."""
        with self.transaction() as db:
            db.execute("PRAGMA defer_foreign_keys = ON")
            db.execute("UPDATE scenes SET key = ?, uri = ? WHERE key = ?", (new_key, uri, old_key))
            db.execute("UPDATE jobs SET scene_key = ? WHERE scene_key = ?", (new_key, old_key))
            for table in ("alert_evaluations", "pass_warnings"):
                db.execute(
                    f"UPDATE {table} SET scene_key = ? WHERE scene_key = ?", (new_key, old_key)
                )

    def output_in_use(self, rel: str) -> bool:
        """Whether a job records ``rel`` (relative to the region folder) as its pass or changes."""
        row = self._db.execute(
            "SELECT 1 FROM jobs WHERE pass_path = ? OR changes_path = ? LIMIT 1", (rel, rel)
        ).fetchone()
        return row is not None

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
                    json.dumps(scene.assets),
                    scene.cloud_cover,
                    scene.key,
                ),
            )

    def requeue_lost(self, model_id: str, root: Path) -> list[str]:
        """Done jobs of ``model_id`` whose pass file is gone go back to pending.

        A file deleted by hand or by a disk clean-up is predicted again by the run.

        Returns:
            The names of their scenes.
        """
        with self.transaction() as db:
            rows = db.execute(
                "SELECT j.scene_key, s.name, j.pass_path FROM jobs j JOIN scenes s "
                "ON s.key = j.scene_key WHERE j.model_id = ? AND j.status = 'done' "
                "AND j.pass_path IS NOT NULL",
                (model_id,),
            ).fetchall()
            lost = [(str(k), str(n)) for k, n, p in rows if not (root / str(p)).exists()]
            for key, _ in lost:
                db.execute(
                    "UPDATE jobs SET status = 'pending', attempts = 0, error = NULL, "
                    "next_attempt = NULL WHERE scene_key = ? AND model_id = ?",
                    (key, model_id),
                )
        return [name for _, name in lost]

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

    def forget_job(self, key: str, model_id: str) -> None:
        """Drop a job that was never done, and its scene when no other job refers to it.

        For a scene file that left the folder before it was processed: found again, it is
        a new scene.
        """
        with self.transaction() as db:
            db.execute(
                "DELETE FROM jobs WHERE scene_key = ? AND model_id = ? AND status != 'done'",
                (key, model_id),
            )
            db.execute(
                "DELETE FROM scenes WHERE key = ? AND NOT EXISTS "
                "(SELECT 1 FROM jobs j WHERE j.scene_key = ?)",
                (key, key),
            )

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
            f"SELECT {self._job_columns} FROM jobs j JOIN scenes s ON s.key = j.scene_key "
            f"WHERE j.model_id = ? AND (j.status = 'pending' OR {failed_clause}) "
            "ORDER BY s.acquired, s.name",
            params,
        ).fetchall()
        return [_record(r) for r in rows]

    def job(self, key: str, model_id: str) -> PassRecord | None:
        """One job, or None."""
        row = self._db.execute(
            f"SELECT {self._job_columns} FROM jobs j JOIN scenes s ON s.key = j.scene_key "
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
        detected_area_m2: float | None = None,
        new_area_m2: float | None = None,
        gone_area_m2: float | None = None,
        warnings: list[str] | None = None,
    ) -> None:
        """A job finished: record its outputs and what was warned meanwhile (one transaction).

        Alert evaluations of this pass and of the later passes of ``model_id`` are dropped
        in the same transaction: a pass done again (its file replaced by a corrected one)
        or a pass arriving late changes what those passes' rules see, so the alert engine
        evaluates them again (alert ids are deterministic: nothing already raised fires twice).
        """
        with self.transaction() as db:
            db.execute(
                "DELETE FROM alert_evaluations WHERE model_id = ? AND scene_key IN "
                "(SELECT key FROM scenes WHERE acquired >= "
                "(SELECT acquired FROM scenes WHERE key = ?))",
                (model_id, key),
            )
            db.execute(
                "UPDATE jobs SET status = 'done', error = NULL, next_attempt = NULL, finished = ?, "
                "duration_s = ?, pass_path = ?, changes_path = ?, detections = ?, new = ?, gone = ?, "
                "previous_scene = ?, detected_area_m2 = ?, new_area_m2 = ?, gone_area_m2 = ? "
                "WHERE scene_key = ? AND model_id = ?",
                (
                    format_ts(now),
                    duration_s,
                    pass_path,
                    changes_path,
                    detections,
                    new,
                    gone,
                    previous_scene,
                    detected_area_m2,
                    new_area_m2,
                    gone_area_m2,
                    key,
                    model_id,
                ),
            )
            if footprint_wkt is not None:
                db.execute("UPDATE scenes SET footprint = ? WHERE key = ?", (footprint_wkt, key))
            db.execute(
                "DELETE FROM pass_warnings WHERE scene_key = ? AND model_id = ?", (key, model_id)
            )
            if warnings:
                db.execute(
                    "INSERT INTO pass_warnings (scene_key, model_id, count, lines) "
                    "VALUES (?, ?, ?, ?)",
                    (key, model_id, len(warnings), json.dumps(warnings[:PASS_WARNING_LINES])),
                )

    def update_changes(
        self,
        key: str,
        model_id: str,
        *,
        changes_path: str,
        new: int,
        gone: int,
        previous_scene: str | None,
        new_area_m2: float | None = None,
        gone_area_m2: float | None = None,
    ) -> None:
        """Replace a done job's change counts and areas (its predecessor changed)."""
        with self.transaction() as db:
            db.execute(
                "UPDATE jobs SET changes_path = ?, new = ?, gone = ?, previous_scene = ?, "
                "new_area_m2 = ?, gone_area_m2 = ? WHERE scene_key = ? AND model_id = ?",
                (
                    changes_path,
                    new,
                    gone,
                    previous_scene,
                    new_area_m2,
                    gone_area_m2,
                    key,
                    model_id,
                ),
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
            f"SELECT {self._job_columns} FROM jobs j JOIN scenes s ON s.key = j.scene_key "
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
            f"SELECT {self._job_columns} FROM jobs j JOIN scenes s ON s.key = j.scene_key "
            f"WHERE j.status = 'done' {where} ORDER BY s.acquired, s.name, j.finished",
            params,
        ).fetchall()
        return [_record(r) for r in rows]

    def latest_passes(self) -> list[PassRecord]:
        """For each scene, its most recently finished done job, oldest acquisition first."""
        rows = self._db.execute(
            f"SELECT {self._job_columns} FROM jobs j JOIN scenes s ON s.key = j.scene_key "
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

    def record_loop_stopped(self, now: datetime) -> None:
        """An ``--every`` loop ended (stopped, or failed on bad input): no run follows."""
        self.set_meta("loop_stopped", format_ts(now))

    def loop_stopped(self) -> datetime | None:
        """When an ``--every`` loop last ended (None when none did)."""
        return _opt_ts(self.get_meta("loop_stopped"))

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
            f"SELECT {self._job_columns} FROM jobs j JOIN scenes s ON s.key = j.scene_key "
            "WHERE j.status = 'done' ORDER BY s.acquired DESC, j.finished DESC LIMIT 1"
        ).fetchone()
        failed = self._db.execute(
            f"SELECT {self._job_columns} FROM jobs j JOIN scenes s ON s.key = j.scene_key "
            "WHERE j.status = 'failed' AND NOT EXISTS (SELECT 1 FROM jobs d WHERE d.scene_key = s.key "
            "AND d.status = 'done') ORDER BY s.acquired"
        ).fetchall()
        pending = self._db.execute(
            f"SELECT {self._job_columns} FROM jobs j JOIN scenes s ON s.key = j.scene_key "
            "WHERE j.status IN ('pending', 'running') ORDER BY s.acquired"
        ).fetchall()
        models = [
            str(m)
            for (m,) in self._db.execute("SELECT DISTINCT model_id FROM jobs ORDER BY model_id")
        ]
        alerts = {
            str(status): int(count)
            for status, count in self._db.execute(
                "SELECT status, COUNT(*) FROM alerts GROUP BY status"
            )
        }
        return StateSummary(
            scenes=scenes,
            by_status=by_status,
            latest_done=_record(latest) if latest else None,
            failed=[_record(r) for r in failed],
            pending=[_record(r) for r in pending],
            last_run=self.last_run(),
            models=models,
            alerts=alerts,
        )

    # --- alerts ---------------------------------------------------------------------------

    def evaluated_scenes(self, model_id: str, rules: str) -> set[str]:
        """Scene keys whose pass of ``model_id`` was evaluated under the rules hash ``rules``."""
        return {
            str(k)
            for (k,) in self._db.execute(
                "SELECT scene_key FROM alert_evaluations WHERE model_id = ? AND rules = ?",
                (model_id, rules),
            )
        }

    def record_alert_evaluation(
        self,
        scene_key: str,
        model_id: str,
        rules: str,
        *,
        now: datetime,
        new: list[AlertRecord],
        sightings: list[AlertSighting],
        withdrawn: Sequence[str] = (),
    ) -> int:
        """Store one pass's evaluation in one transaction: new alerts, sightings, the mark.

        A pass evaluated twice (a run killed after the alerts were written) inserts nothing
        twice: alert ids are deterministic and inserts ignore existing ids. An object whose
        alert was withdrawn and that fires again (the pass corrected back) comes here under
        a new id (``AlertEngine._reopened``: a receiver sees a new key); were a withdrawn id
        given again, it would be reopened in place. ``withdrawn``: alerts of this pass (done
        again) that it no longer supports; the receivers of those delivered are told once.

        Returns:
            How many alerts were new.
        """
        stamp = format_ts(now)
        inserted = 0
        with self.transaction() as db:
            for alert in new:
                # a withdrawn id given again is reopened in place (the engine gives new ids)
                cur = db.execute(
                    f"INSERT INTO alerts ({_ALERT_COLUMNS}) VALUES "
                    f"({', '.join('?' * _ALERT_COLUMN_COUNT)}) "
                    "ON CONFLICT (id) DO UPDATE SET status = 'open', geometry = "
                    "excluded.geometry, object_id = excluded.object_id, score = excluded.score, "
                    "area_m2 = excluded.area_m2, last_area_m2 = NULL, seen = excluded.seen, "
                    "looked = excluded.looked, updated = excluded.updated, attempts = 0, "
                    "next_attempt = NULL, last_error = NULL, http_status = NULL, delivered = "
                    "NULL, withdrawn = NULL, withdrawn_scene = NULL, withdrawal_notice = NULL, "
                    "grown_from = excluded.grown_from, grown_from_area_m2 = "
                    "excluded.grown_from_area_m2 "
                    "WHERE alerts.status = 'withdrawn'",
                    _alert_values(alert),
                )
                inserted += int(cur.rowcount)
            for seen in sightings:
                # the same pass again (done again, corrected): its area is the newer one
                db.execute(
                    "UPDATE alerts SET last_scene = ?, last_acquired = ?, updated = ?, "
                    "last_area_m2 = COALESCE(?, last_area_m2) WHERE id = ? AND last_acquired <= ? "
                    "AND status != 'withdrawn'",
                    (
                        seen.scene,
                        format_ts(seen.acquired),
                        stamp,
                        seen.area_m2,
                        seen.alert_id,
                        format_ts(seen.acquired),
                    ),
                )
            for alert_id in withdrawn:
                # kept, never deleted; a receiver that got the alert is told (its own key)
                db.execute(
                    "UPDATE alerts SET status = 'withdrawn', withdrawn = ?, withdrawn_scene = "
                    "(SELECT name FROM scenes WHERE key = ?), updated = ?, attempts = 0, "
                    "next_attempt = NULL, withdrawal_notice = CASE WHEN delivered IS NULL THEN "
                    "NULL ELSE 'pending' END WHERE id = ? AND status != 'withdrawn'",
                    (stamp, scene_key, stamp, alert_id),
                )
            db.execute(
                "INSERT OR REPLACE INTO alert_evaluations (scene_key, model_id, rules, evaluated, "
                "fired) VALUES (?, ?, ?, ?, ?)",
                (scene_key, model_id, rules, stamp, inserted),
            )
        return inserted

    def alerts(
        self, statuses: tuple[AlertStatus, ...] | None = None, rule: str | None = None
    ) -> list[AlertRecord]:
        """Alerts (with one of ``statuses``, of one rule), oldest first."""
        where: list[str] = []
        params: list[Any] = []
        if statuses is not None:
            where.append(f"status IN ({', '.join('?' * len(statuses))})")
            params.extend(statuses)
        if rule is not None:
            where.append("rule = ?")
            params.append(rule)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self._db.execute(
            f"SELECT {self._alert_columns} FROM alerts {clause} ORDER BY fired_acquired, created, id",
            params,
        ).fetchall()
        return [_alert(r) for r in rows]

    def alert(self, alert_id: str) -> AlertRecord | None:
        """One alert, or None."""
        row = self._db.execute(
            f"SELECT {self._alert_columns} FROM alerts WHERE id = ?", (alert_id,)
        ).fetchone()
        return None if row is None else _alert(row)

    def reopen_failed_alerts(self) -> int:
        """Alerts whose delivery failed for good are open again, attempts from zero.

        Returns:
            How many (``geotl monitor --retry-failed``, once the receiver is fixed).
        """
        with self.transaction() as db:
            cur = db.execute(
                "UPDATE alerts SET status = 'open', attempts = 0, next_attempt = NULL "
                "WHERE status = 'failed'"
            )
            notices = db.execute(
                "UPDATE alerts SET withdrawal_notice = 'pending', attempts = 0, next_attempt = "
                "NULL WHERE status = 'withdrawn' AND withdrawal_notice = 'failed'"
            )
        return int(cur.rowcount) + int(notices.rowcount)

    def unsent_alerts(self) -> list[AlertRecord]:
        """Alerts not sent yet: open ones, and withdrawals their receiver must still hear of."""
        rows = self._db.execute(
            f"SELECT {self._alert_columns} FROM alerts WHERE {self._to_send} "
            "ORDER BY fired_acquired, created, id"
        ).fetchall()
        return [_alert(r) for r in rows]

    def due_alerts(self, now: datetime) -> list[AlertRecord]:
        """Open alerts (and withdrawals to tell) to send now (never tried, or backoff over)."""
        rows = self._db.execute(
            f"SELECT {self._alert_columns} FROM alerts WHERE {self._to_send} AND "
            "(next_attempt IS NULL OR next_attempt <= ?) ORDER BY fired_acquired, created, id",
            (format_ts(now),),
        ).fetchall()
        return [_alert(r) for r in rows]

    def next_alert_attempt(self) -> datetime | None:
        """When the next open alert is due for another delivery attempt."""
        row = self._db.execute(
            f"SELECT MIN(COALESCE(next_attempt, '')) FROM alerts WHERE {self._to_send}"
        ).fetchone()
        if row is None or row[0] is None:
            return None
        return datetime.min.replace(tzinfo=UTC) if row[0] == "" else parse_ts(row[0])

    def start_delivery(self, alert_id: str, url: str, now: datetime) -> int:
        """Record that a delivery attempt starts (before anything is sent).

        Returns:
            The delivery row's id; a row left ``sending`` is an attempt whose outcome was
            never recorded (geotl was killed): the alert stays open and is sent again.
        """
        with self.transaction() as db:
            db.execute("UPDATE alerts SET attempts = attempts + 1 WHERE id = ?", (alert_id,))
            attempt = int(
                db.execute("SELECT attempts FROM alerts WHERE id = ?", (alert_id,)).fetchone()[0]
            )
            cur = db.execute(
                "INSERT INTO alert_deliveries (alert_id, attempt, url, started, outcome) "
                "VALUES (?, ?, ?, ?, 'sending')",
                (alert_id, attempt, url, format_ts(now)),
            )
            return int(cur.lastrowid or 0)

    def finish_delivery(
        self,
        delivery_id: int,
        alert_id: str,
        *,
        now: datetime,
        outcome: Literal["delivered", "retry", "failed"],
        http_status: int | None,
        error: str | None,
        next_attempt: datetime | None,
    ) -> None:
        """Record a delivery attempt's outcome and move the alert on (one transaction).

        An alert acknowledged meanwhile stays acknowledged; a withdrawn one stays withdrawn
        (its notice is what was sent: sent, retried or failed).
        """
        stamp = format_ts(now)
        status = {"delivered": "delivered", "retry": "open", "failed": "failed"}[outcome]
        with self.transaction() as db:
            db.execute(
                "UPDATE alert_deliveries SET finished = ?, outcome = ?, http_status = ?, error = ? "
                "WHERE id = ?",
                (stamp, outcome, http_status, error, delivery_id),
            )
            db.execute(
                "UPDATE alerts SET status = CASE WHEN status IN ('acknowledged', 'withdrawn') "
                "THEN status ELSE ? END, withdrawal_notice = CASE WHEN status = 'withdrawn' "
                "THEN ? ELSE withdrawal_notice END, "
                "http_status = ?, last_error = ?, next_attempt = ?, updated = ?, "
                "delivered = CASE WHEN ? = 'delivered' AND status != 'withdrawn' THEN ? "
                "ELSE delivered END WHERE id = ?",
                (
                    status,
                    {"delivered": "sent", "retry": "pending", "failed": "failed"}[outcome],
                    http_status,
                    error,
                    format_ts(next_attempt) if next_attempt else None,
                    stamp,
                    outcome,
                    stamp,
                    alert_id,
                ),
            )

    def deliveries(self, alert_id: str) -> list[dict[str, Any]]:
        """Every delivery attempt of an alert, oldest first."""
        cur = self._db.execute(
            "SELECT attempt, url, started, finished, outcome, http_status, error "
            "FROM alert_deliveries WHERE alert_id = ? ORDER BY id",
            (alert_id,),
        )
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def acknowledge_alerts(self, alert_ids: list[str], now: datetime) -> list[str]:
        """Acknowledge alerts, all or none.

        Returns:
            The ids that are not alerts of this state; when any, nothing was changed.
        """
        with self.transaction() as db:
            unknown = [
                a
                for a in alert_ids
                if db.execute("SELECT 1 FROM alerts WHERE id = ?", (a,)).fetchone() is None
            ]
            if unknown:
                return unknown
            for alert_id in alert_ids:
                db.execute(
                    "UPDATE alerts SET status = 'acknowledged', acknowledged = COALESCE(acknowledged, ?), "
                    "updated = ? WHERE id = ?",
                    (format_ts(now), format_ts(now), alert_id),
                )
        return []
