"""The pass loop: find new scenes, detect objects, compare with the previous pass, record.

One run (``geotl monitor --once``) takes the region's lock, asks the source for scenes it
has not seen, and processes every due job oldest first: predict, write the pass GeoJSON,
compare with the previous pass over the same area, write the changes GeoJSON, and record
the job as done in one transaction. ``latest.geojson`` and ``history.csv`` are then rebuilt
from the state. Every file is written under a temporary name and renamed, and each job is
recorded only after its files exist, so a run killed at any point is finished by the next
one without duplicates or half-written files.

A failing scene is recorded with its error and retried on later runs after an exponential
backoff; it never stops the other scenes, and the run's exit code becomes 1.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import os
import re
import shutil
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import geopandas as gpd
import pandas as pd
import shapely
from rasterio.errors import RasterioError
from shapely import wkt as shapely_wkt
from shapely.geometry.base import BaseGeometry

from geotl.bands import canonical_band
from geotl.config import Region
from geotl.errors import BandMismatchError, ConfigError, GeotlError, SceneError
from geotl.io.atomic import TMP_PREFIX, atomic_write_text
from geotl.io.geojson import write_geojson
from geotl.models.artefact import Artefact, load_artefact
from geotl.monitor.changes import CHANGE_COLUMNS, detect_changes, empty_features, scene_footprint
from geotl.monitor.sources import Scene, SceneSource, local_scene_path, make_source, remote_gdal_env
from geotl.monitor.state import DB_FILE, LOCK_FILE, MonitorState, PassRecord, RegionLock

__all__ = [
    "Detector",
    "Monitor",
    "MonitorOptions",
    "MonitorStatus",
    "PassResult",
    "RunSummary",
    "format_status",
    "monitor_status",
    "parse_every",
    "pass_stem",
    "region_dir",
    "run_monitor",
    "watch_region",
]

log = logging.getLogger(__name__)

#: A function that turns one scene into detections (EPSG:4326, predict's columns).
Detector = Callable[[Artefact, Path, Scene], gpd.GeoDataFrame]

#: Items acquired up to this long before the newest seen scene are searched again, so that a
#: catalogue that publishes an item late still gets it processed (known items are skipped).
STAC_LOOKBACK = timedelta(days=3)

HISTORY_COLUMNS = [
    "acquired",
    "scene",
    "detections",
    "new",
    "gone",
    "duration_s",
    "processed",
    "previous_scene",
    "model",
    "pass_file",
    "changes_file",
]


@dataclass(frozen=True)
class MonitorOptions:
    """How a monitor run behaves.

    Attributes:
        out_dir: the output folder; the region's files go to ``out_dir/<region name>``.
        model_dir: the model artefact (default: ``[monitor] model`` of the region).
        reprocess: redo scenes already processed by another model with this model.
        retry_failed: retry failed scenes now, ignoring their backoff.
        device: torch device for prediction.
        retry_base_s: backoff after the first failure; doubles with each further failure.
        retry_max_s: longest backoff.
        max_attempts: after this many failures a scene is no longer retried automatically.
    """

    out_dir: Path
    model_dir: Path | None = None
    reprocess: bool = False
    retry_failed: bool = False
    device: str = "cpu"
    retry_base_s: float = 600.0
    retry_max_s: float = 86_400.0
    max_attempts: int = 8


@dataclass(frozen=True)
class PassResult:
    """What happened to one scene in a run."""

    scene: str
    acquired: datetime
    status: Literal["done", "failed", "abandoned"]
    duration_s: float
    detections: int = 0
    new: int | None = None
    gone: int | None = None
    previous_scene: str | None = None
    error: str | None = None
    next_attempt: datetime | None = None


@dataclass
class RunSummary:
    """The outcome of one run (or of all rounds of a ``--every`` loop)."""

    region: str
    model_id: str
    found: int = 0
    passes: list[PassResult] = field(default_factory=list)
    stopped: bool = False
    rounds: int = 0

    @property
    def processed(self) -> list[PassResult]:
        """Scenes processed successfully."""
        return [p for p in self.passes if p.status == "done"]

    @property
    def failed(self) -> list[PassResult]:
        """Scenes that failed (they are retried on later runs)."""
        return [p for p in self.passes if p.status == "failed"]

    @property
    def exit_code(self) -> int:
        """0 when nothing failed, 1 otherwise."""
        return 1 if self.failed else 0


def region_dir(region: Region, out_dir: Path) -> Path:
    """``out_dir/<region name>``: where a region's monitor outputs and state live."""
    return Path(out_dir) / region.name


def pass_stem(acquired: datetime, scene: str) -> str:
    """File stem of a pass's outputs: ``<acquired>_<scene>``, sortable by time.

    >>> pass_stem(datetime(2019, 9, 4, tzinfo=UTC), "m_4709963_se_14_1_20190904")
    '20190904T000000Z_m_4709963_se_14_1_20190904'
    """
    return f"{acquired.astimezone(UTC).strftime('%Y%m%dT%H%M%SZ')}_{scene}"


_EVERY = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_every(text: str) -> float:
    """Parse an interval such as ``6h``, ``30m``, ``1d`` or ``1h30m`` into seconds.

    >>> parse_every("6h"), parse_every("1h30m"), parse_every("45s")
    (21600.0, 5400.0, 45.0)

    Raises:
        ValueError: the text is not an interval.
    """
    cleaned = text.strip().lower().replace(" ", "")
    if not cleaned or _EVERY.sub("", cleaned):
        raise ValueError(f"'{text}' is not an interval: use e.g. 30m, 6h, 1d or 1h30m")
    total = sum(float(n) * _UNIT_S[u] for n, u in _EVERY.findall(cleaned))
    if total <= 0:
        raise ValueError(f"interval '{text}' must be longer than 0 s")
    return total


def resolve_model_dir(region: Region, model_dir: Path | None) -> Path:
    """``--model`` if given, else ``[monitor] model`` (relative to the region file).

    Raises:
        ConfigError: neither names a model.
    """
    if model_dir is not None:
        return Path(model_dir)
    if region.monitor is not None and region.monitor.model:
        return region.resolve(region.monitor.model)
    raise ConfigError(
        "no model to monitor with: pass --model MODEL_DIR or set model = '...' in [monitor]",
        region.path,
    )


def predict_detector(region: Region, bands: list[str]) -> Detector:
    """The default detector: :func:`geotl.predict.predict_scene` with the region's settings.

    Args:
        region: supplies ``[predict]`` (thresholds, minimum area, simplification).
        bands: the monitored scenes' bands in file order (``[imagery] bands`` for folders,
            ``[monitor] assets`` order for STAC).
    """
    from geotl.predict import PredictOptions, predict_scene

    options = PredictOptions.from_region(region, bands=tuple(bands), progress=sys.stderr.isatty())

    def detect(artefact: Artefact, path: Path, scene: Scene) -> gpd.GeoDataFrame:
        result = predict_scene(artefact, path, options, acquired=scene.acquired.isoformat())
        frame: gpd.GeoDataFrame = result.features
        return frame

    return detect


def _check_bands(region: Region, source: SceneSource, artefact: Artefact) -> None:
    have = {canonical_band(b) for b in source.band_names()}
    missing = [b for b in artefact.card.bands if canonical_band(b) not in have]
    if missing:
        raise BandMismatchError(
            f"model {artefact.model_id} needs band(s) {missing} but the monitored scenes have "
            f"{source.band_names()}: fix [imagery] bands / [monitor] assets or use a model for these bands",
            region.path,
        )


class Monitor:
    """A region under watch: its lock, state, source and model, held for one or more runs.

    Use as a context manager; entering takes the lock (or raises :class:`LockedError` at
    once) and loads the model.
    """

    def __init__(
        self,
        region: Region,
        options: MonitorOptions,
        *,
        detector: Detector | None = None,
        stop: threading.Event | None = None,
        every_s: float | None = None,
    ) -> None:
        if region.monitor is None:
            raise ConfigError(
                "no [monitor] table: add one with source = 'folder' and paths = ['incoming/*.tif']",
                region.path,
            )
        self.region = region
        self.options = options
        self.dir = region_dir(region, options.out_dir)
        self.model_dir = resolve_model_dir(region, options.model_dir)
        self.source: SceneSource = make_source(region)
        self.stop = stop or threading.Event()
        self.every_s = every_s
        self._detector = detector
        self._lock = RegionLock(self.dir, region.name)
        self._state: MonitorState | None = None
        self._artefact: Artefact | None = None
        self._abandon = False

    # --- lifetime -------------------------------------------------------------------------

    def __enter__(self) -> Monitor:
        out_parent = Path(self.options.out_dir)
        if out_parent.exists() and not out_parent.is_dir():
            raise ConfigError("--out exists and is a file: choose a folder", out_parent)
        self._lock.acquire({"region": str(self.region.path), "model": str(self.model_dir)})
        try:
            self._artefact = load_artefact(self.model_dir, self.options.device)
            _check_bands(self.region, self.source, self._artefact)
            if self._detector is None:
                self._detector = predict_detector(self.region, self.source.band_names())
            self._state = MonitorState(self.dir / DB_FILE)
            for sub in ("passes", "changes"):
                (self.dir / sub).mkdir(parents=True, exist_ok=True)
            self._remove_leftovers()
            recovered = self._state.recover_running()
            if recovered:
                log.warning(
                    "%d scene(s) were left running by an interrupted monitor: redoing them",
                    recovered,
                )
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the state and release the lock."""
        if self._state is not None:
            self._state.close()
            self._state = None
        self._lock.release()

    @property
    def state(self) -> MonitorState:
        """The open state (inside the context manager)."""
        if self._state is None:
            raise RuntimeError("Monitor used outside its 'with' block")
        return self._state

    @property
    def artefact(self) -> Artefact:
        """The loaded model (inside the context manager)."""
        if self._artefact is None:
            raise RuntimeError("Monitor used outside its 'with' block")
        return self._artefact

    def _remove_leftovers(self) -> None:
        """Temporary files of a killed run (we hold the lock: nobody else writes here)."""
        for folder in (self.dir, self.dir / "passes", self.dir / "changes"):
            for tmp in folder.glob(f"{TMP_PREFIX}*"):
                log.debug("removing leftover %s", tmp)
                if tmp.is_dir():
                    shutil.rmtree(tmp, ignore_errors=True)
                else:
                    tmp.unlink(missing_ok=True)
        shutil.rmtree(self.dir / ".work", ignore_errors=True)

    def request_abandon(self) -> None:
        """Stop now: the current scene is abandoned (it goes back to pending)."""
        self._abandon = True
        self.stop.set()

    # --- one run --------------------------------------------------------------------------

    def run_once(self) -> RunSummary:
        """Look for new scenes and process every due job, oldest first."""
        state = self.state
        model_id = self.artefact.model_id
        now = _now()
        summary = RunSummary(region=self.region.name, model_id=model_id, rounds=1)
        run_id = state.start_run(model_id, now, self.every_s)
        outcome = "error"
        try:
            since = state.latest_acquired()
            if since is not None:
                since -= STAC_LOOKBACK
            found = self.source.discover(state.known_fingerprints(), since)
            new, changed = state.record_scenes(found, self.source.kind, model_id, now)
            summary.found = new
            owed = state.ensure_jobs(model_id, self.options.reprocess)
            if changed:
                log.info("%d scene(s) changed since they were processed: redoing them", changed)
            if owed and self.options.reprocess:
                log.info("reprocessing %d scene(s) with model %s", owed, model_id)
            due = state.due_jobs(model_id, _now(), self.options.retry_failed)
            if due:
                log.info("%s: %d new scene(s), %d due", self.region.name, new, len(due))
            for job in due:
                if self.stop.is_set():
                    summary.stopped = True
                    log.info(
                        "stop requested: %d scene(s) left for the next run",
                        len(due) - len(summary.passes),
                    )
                    break
                summary.passes.append(self._process(job))
                if summary.passes[-1].status == "abandoned":
                    summary.stopped = True
                    break
            if summary.processed or not (self.dir / "history.csv").exists():
                self.rebuild_outputs()
            outcome = "stopped" if summary.stopped else ("failed" if summary.failed else "ok")
        finally:
            state.finish_run(run_id, _now(), len(summary.processed), len(summary.failed), outcome)
        return summary

    def _process(self, job: PassRecord) -> PassResult:
        state = self.state
        model_id = self.artefact.model_id
        scene = job.to_scene()
        started = time.perf_counter()
        refresh = getattr(self.source, "refresh", None)
        if job.attempts > 0 and scene.is_remote and callable(refresh):
            fresh = refresh(scene)  # a retry reads the item again: its assets may be fixed
            if (
                isinstance(fresh, Scene)
                and fresh.key == scene.key
                and fresh.fingerprint != scene.fingerprint
            ):
                state.update_scene(fresh)
                scene = replace(fresh, name=job.name)
        state.mark_running(job.key, model_id, _now())
        try:
            footprint, features = self._detect(scene)
            stem = pass_stem(scene.acquired, job.name)
            pass_rel = f"passes/{stem}.geojson"
            write_geojson(self.dir / pass_rel, features)
            previous = self._previous_pass(job, footprint)
            changes_rel = f"changes/{stem}.geojson"
            new = gone = None
            if previous is not None:
                prev_fp = _footprint_of(previous)
                changes = detect_changes(
                    features,
                    self._read_pass(previous),
                    footprint,
                    prev_fp,
                    current_scene=job.name,
                    previous_scene=previous.name,
                )
                new, gone = changes.new, changes.gone
                write_geojson(self.dir / changes_rel, changes.frame)
            else:
                write_geojson(self.dir / changes_rel, empty_features(CHANGE_COLUMNS))
            duration = time.perf_counter() - started
            state.mark_done(
                job.key,
                model_id,
                now=_now(),
                duration_s=duration,
                pass_path=pass_rel,
                changes_path=changes_rel,
                detections=len(features),
                new=new,
                gone=gone,
                previous_scene=previous.name if previous else None,
                footprint_wkt=footprint.wkt,
            )
            self._refresh_successor(job, footprint)
        except KeyboardInterrupt:
            state.mark_abandoned(job.key, model_id)
            log.warning("pass %s abandoned: it will be redone on the next run", job.name)
            raise
        except (GeotlError, RasterioError, OSError, ValueError, RuntimeError) as exc:
            if self._abandon:
                state.mark_abandoned(job.key, model_id)
                return PassResult(
                    job.name, scene.acquired, "abandoned", time.perf_counter() - started
                )
            return self._failed(job, exc, time.perf_counter() - started)
        finally:
            shutil.rmtree(self.dir / ".work", ignore_errors=True)
        result = PassResult(
            scene=job.name,
            acquired=scene.acquired,
            status="done",
            duration_s=duration,
            detections=len(features),
            new=new,
            gone=gone,
            previous_scene=previous.name if previous else None,
        )
        log.info(
            "pass %s %s: %d detections, %s new, %s gone%s (%.1f s)",
            scene.acquired.date().isoformat(),
            job.name,
            len(features),
            "-" if new is None else new,
            "-" if gone is None else gone,
            f" since {previous.name}" if previous else " (first pass over this area)",
            duration,
        )
        return result

    def _failed(self, job: PassRecord, exc: BaseException, duration: float) -> PassResult:
        attempts = job.attempts + 1
        message = str(exc).splitlines()[0][:500] if str(exc) else type(exc).__name__
        if not isinstance(exc, GeotlError):
            message = f"{type(exc).__name__}: {message}"
        next_attempt: datetime | None = None
        if attempts < self.options.max_attempts:
            delay = min(self.options.retry_base_s * 2 ** (attempts - 1), self.options.retry_max_s)
            next_attempt = _now() + timedelta(seconds=delay)
        self.state.mark_failed(
            job.key, self.artefact.model_id, now=_now(), error=message, next_attempt=next_attempt
        )
        when = (
            f"retry after {next_attempt.isoformat(timespec='seconds')}"
            if next_attempt
            else f"no more automatic retries after {attempts} attempts (use --retry-failed)"
        )
        log.warning("pass %s failed (attempt %d; %s): %s", job.name, attempts, when, message)
        return PassResult(
            job.name, job.acquired, "failed", duration, error=message, next_attempt=next_attempt
        )

    def _detect(self, scene: Scene) -> tuple[BaseGeometry, gpd.GeoDataFrame]:
        detector = self._detector
        if detector is None:  # pragma: no cover - set in __enter__
            raise RuntimeError("no detector")
        env = remote_gdal_env() if scene.is_remote else contextlib.nullcontext()
        with env:
            path = local_scene_path(scene, self.dir / ".work")
            if scene.footprint_wkt:
                footprint = shapely_wkt.loads(scene.footprint_wkt)
            else:
                try:
                    footprint = scene_footprint(path)
                except (RasterioError, OSError) as exc:
                    raise SceneError(
                        f"cannot be read ({str(exc).splitlines()[0][:200]})", scene.uri
                    ) from exc
            frame = detector(self.artefact, path, scene)
        frame = frame.to_crs("EPSG:4326") if frame.crs is not None else frame.set_crs("EPSG:4326")
        frame = frame.copy()
        if scene.is_remote or "scene" not in frame.columns:
            frame["scene"] = scene.name  # a STAC item's id, not the name of its temporary VRT
        frame["model"] = self.artefact.model_id
        if "acquired" not in frame.columns or frame["acquired"].isna().all():
            frame["acquired"] = scene.acquired.isoformat()
        return footprint, frame

    def _previous_pass(self, job: PassRecord, footprint: BaseGeometry) -> PassRecord | None:
        """The latest earlier pass overlapping this one: same model first, else any model."""
        model_id = self.artefact.model_id
        for rec in self.state.neighbour_passes(model_id, job.acquired, before=True):
            if rec.key != job.key and _overlaps(footprint, rec):
                return rec
        for rec in reversed(self.state.done_passes()):
            if rec.acquired < job.acquired and rec.key != job.key and _overlaps(footprint, rec):
                return rec
        return None

    def _refresh_successor(self, job: PassRecord, footprint: BaseGeometry) -> None:
        """A pass processed late (a backfill, a retry) becomes its successor's previous pass."""
        model_id = self.artefact.model_id
        succ = next(
            (
                rec
                for rec in self.state.neighbour_passes(model_id, job.acquired, before=False)
                if _overlaps(footprint, rec)
            ),
            None,
        )
        if succ is None or succ.previous_scene == job.name or succ.pass_path is None:
            return
        succ_fp = _footprint_of(succ)
        if not _overlaps(succ_fp, job, footprint):
            return
        changes = detect_changes(
            self._read_pass(succ),
            self._read_pass_path(self.dir / f"passes/{pass_stem(job.acquired, job.name)}.geojson"),
            succ_fp,
            footprint,
            current_scene=succ.name,
            previous_scene=job.name,
        )
        changes_rel = succ.changes_path or f"changes/{pass_stem(succ.acquired, succ.name)}.geojson"
        write_geojson(self.dir / changes_rel, changes.frame)
        self.state.update_changes(
            succ.key,
            model_id,
            changes_path=changes_rel,
            new=changes.new,
            gone=changes.gone,
            previous_scene=job.name,
        )
        log.info("changes of %s recomputed against %s (processed later)", succ.name, job.name)

    def _read_pass(self, rec: PassRecord) -> gpd.GeoDataFrame:
        if rec.pass_path is None:
            return empty_features()
        return self._read_pass_path(self.dir / rec.pass_path)

    @staticmethod
    def _read_pass_path(path: Path) -> gpd.GeoDataFrame:
        if not path.exists():
            raise SceneError(
                "previous pass file is missing: rerun with --reprocess to rebuild it", path
            )
        frame = gpd.read_file(path)
        if frame.crs is None:
            frame = frame.set_crs("EPSG:4326")
        if "id" in frame.columns:
            frame["id"] = frame["id"].astype(str)
        return frame

    # --- derived outputs ------------------------------------------------------------------

    def rebuild_outputs(self) -> None:
        """Rewrite ``history.csv`` and ``latest.geojson`` from the state (atomically)."""
        passes = self.state.latest_passes()
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(HISTORY_COLUMNS)
        for rec in passes:
            writer.writerow(
                [
                    rec.acquired.isoformat(),
                    rec.name,
                    rec.detections,
                    "" if rec.new is None else rec.new,
                    "" if rec.gone is None else rec.gone,
                    "" if rec.duration_s is None else f"{rec.duration_s:.3f}",
                    rec.finished.isoformat(timespec="seconds") if rec.finished else "",
                    rec.previous_scene or "",
                    rec.model_id,
                    rec.pass_path or "",
                    rec.changes_path or "",
                ]
            )
        atomic_write_text(self.dir / "history.csv", buf.getvalue())
        write_geojson(self.dir / "latest.geojson", self._latest_frame(passes))

    def _latest_frame(self, passes: list[PassRecord]) -> gpd.GeoDataFrame:
        """Newest pass wins where passes overlap; older passes fill what newer ones did not see."""
        if not passes:
            return empty_features()
        footprints = [_footprint_of(p) for p in passes]
        everything = shapely.union_all(footprints)
        covered: BaseGeometry = shapely.Polygon()
        parts: list[gpd.GeoDataFrame] = []
        for rec, fp in zip(reversed(passes), reversed(footprints), strict=True):
            frame = self._read_pass(rec)
            if not frame.empty:
                if not covered.is_empty:
                    points = frame.geometry.representative_point()
                    frame = frame[~points.within(covered).to_numpy()]
                parts.append(frame)
            covered = shapely.union(covered, fp)
            if covered.covers(everything):
                break
        parts = [p for p in parts if not p.empty]
        if not parts:
            return empty_features()
        return gpd.GeoDataFrame(
            pd.concat(parts, ignore_index=True), geometry="geometry", crs="EPSG:4326"
        )


def _footprint_of(rec: PassRecord) -> BaseGeometry:
    return shapely_wkt.loads(rec.footprint_wkt) if rec.footprint_wkt else shapely.Polygon()


def _overlaps(footprint: BaseGeometry, rec: PassRecord, other: BaseGeometry | None = None) -> bool:
    fp = other if other is not None else _footprint_of(rec)
    return bool(not fp.is_empty and shapely.intersection(footprint, fp).area > 0)


def _now() -> datetime:
    return datetime.now(UTC)


def run_monitor(
    region: Region,
    options: MonitorOptions,
    *,
    detector: Detector | None = None,
    stop: threading.Event | None = None,
) -> RunSummary:
    """One monitor run over a region (``geotl monitor --once``).

    Raises:
        LockedError: another monitor runs on this region.
        ConfigError, ModelArtefactError, BandMismatchError: bad region, model or bands.
        GeotlRuntimeError: the scene source cannot be searched.
    """
    with Monitor(region, options, detector=detector, stop=stop) as monitor:
        return monitor.run_once()


def watch_region(
    region: Region,
    options: MonitorOptions,
    every_s: float,
    *,
    detector: Detector | None = None,
    stop: threading.Event | None = None,
    on_monitor: Callable[[Monitor], None] | None = None,
) -> RunSummary:
    """Run, sleep ``every_s``, run again, until ``stop`` is set (``geotl monitor --every``).

    The lock is held for the whole loop. A failing search is logged and retried on the next
    round. Returns the union of all rounds.
    """
    stop = stop or threading.Event()
    with Monitor(region, options, detector=detector, stop=stop, every_s=every_s) as monitor:
        if on_monitor is not None:
            on_monitor(monitor)
        total = RunSummary(region=region.name, model_id=monitor.artefact.model_id)
        while not stop.is_set():
            try:
                summary = monitor.run_once()
            except GeotlError as exc:
                if exc.exit_code == 2:
                    raise
                log.error("run failed: %s", exc)
                summary = RunSummary(region=region.name, model_id=total.model_id)
                total.passes.append(PassResult("(search)", _now(), "failed", 0.0, error=str(exc)))
            total.rounds += 1
            total.found += summary.found
            total.passes.extend(summary.passes)
            next_at = _now() + timedelta(seconds=every_s)
            log.info(
                "run %d: %d new scene(s), %d processed, %d failed; next run at %s",
                total.rounds,
                summary.found,
                len(summary.processed),
                len(summary.failed),
                next_at.isoformat(timespec="seconds"),
            )
            if stop.wait(every_s):
                break
        total.stopped = True
        return total


# --- status -------------------------------------------------------------------------------


@dataclass(frozen=True)
class MonitorStatus:
    """What ``geotl monitor status`` reports."""

    region: str
    dir: Path
    initialised: bool
    scenes: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    latest: PassRecord | None = None
    failed: list[PassRecord] = field(default_factory=list)
    pending: list[PassRecord] = field(default_factory=list)
    last_run_started: datetime | None = None
    last_run_finished: datetime | None = None
    last_run_outcome: str | None = None
    next_run_due: datetime | None = None
    next_retry: datetime | None = None
    running_pid: int | None = None
    models: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""

        def ts(v: datetime | None) -> str | None:
            return v.isoformat(timespec="seconds") if v else None

        return {
            "region": self.region,
            "dir": str(self.dir),
            "initialised": self.initialised,
            "scenes": self.scenes,
            "by_status": self.by_status,
            "latest": None
            if self.latest is None
            else {
                "scene": self.latest.name,
                "acquired": ts(self.latest.acquired),
                "detections": self.latest.detections,
            },
            "failed": [
                {
                    "scene": f.name,
                    "attempts": f.attempts,
                    "error": f.error,
                    "next_attempt": ts(f.next_attempt),
                }
                for f in self.failed
            ],
            "pending": [p.name for p in self.pending],
            "last_run": {
                "started": ts(self.last_run_started),
                "finished": ts(self.last_run_finished),
                "outcome": self.last_run_outcome,
            },
            "next_run_due": ts(self.next_run_due),
            "next_retry": ts(self.next_retry),
            "running_pid": self.running_pid,
            "models": self.models,
        }


def _lock_holder(lock_path: Path) -> int | None:
    try:
        info = json.loads(lock_path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return None
    pid = info.get("pid")
    if not isinstance(pid, int):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    return pid


def monitor_status(region: Region, out_dir: Path) -> MonitorStatus:
    """Read a region's monitor state without locking it (safe while a monitor runs)."""
    rdir = region_dir(region, out_dir)
    db_path = rdir / DB_FILE
    if not db_path.exists():
        return MonitorStatus(region=region.name, dir=rdir, initialised=False)
    with MonitorState(db_path, readonly=True) as state:
        summary = state.summary()
    last = summary.last_run
    every_s = last.every_s if last and last.every_s else None
    if every_s is None and region.monitor is not None and region.monitor.every:
        with contextlib.suppress(ValueError):
            every_s = parse_every(region.monitor.every)
    next_due = (last.started + timedelta(seconds=every_s)) if last and every_s else None
    retries = [f.next_attempt for f in summary.failed if f.next_attempt is not None]
    return MonitorStatus(
        region=region.name,
        dir=rdir,
        initialised=True,
        scenes=summary.scenes,
        by_status=summary.by_status,
        latest=summary.latest_done,
        failed=summary.failed,
        pending=summary.pending,
        last_run_started=last.started if last else None,
        last_run_finished=last.finished if last else None,
        last_run_outcome=last.outcome if last else None,
        next_run_due=next_due,
        next_retry=min(retries) if retries else None,
        running_pid=_lock_holder(rdir / LOCK_FILE),
        models=summary.models,
    )


def format_status(status: MonitorStatus) -> str:
    """Human-readable status, one fact per line."""
    lines = [f"region: {status.region} ({status.dir})"]
    if not status.initialised:
        lines.append("state: never run (no state database yet)")
        return "\n".join(lines) + "\n"

    def ts(v: datetime | None) -> str:
        return v.isoformat(timespec="seconds") if v else "-"

    counts = ", ".join(f"{k} {v}" for k, v in sorted(status.by_status.items())) or "none"
    lines.append(f"scenes: {status.scenes} ({counts})")
    processed = status.by_status.get("done", 0)
    lines.append(f"processed: {processed}")
    if status.latest is not None:
        lines.append(
            f"latest pass: {status.latest.name} acquired {ts(status.latest.acquired)} "
            f"({status.latest.detections} detections)"
        )
    lines.append(f"failed: {len(status.failed)}")
    for f in status.failed:
        retry = f"next retry {ts(f.next_attempt)}" if f.next_attempt else "no automatic retry left"
        lines.append(f"  {f.name}: {f.attempts} attempt(s), {retry}: {f.error}")
    if status.pending:
        lines.append(
            f"pending: {len(status.pending)} ({', '.join(p.name for p in status.pending[:5])}"
            f"{', ...' if len(status.pending) > 5 else ''})"
        )
    lines.append(
        f"last run: started {ts(status.last_run_started)}, finished {ts(status.last_run_finished)}, "
        f"{status.last_run_outcome or 'unfinished'}"
    )
    if status.running_pid is not None:
        lines.append(f"running now: pid {status.running_pid}")
    due = (
        ts(status.next_run_due)
        if status.next_run_due
        else "on the next scheduled run (cron/systemd; no --every recorded)"
    )
    lines.append(f"next run due: {due}")
    if status.next_retry is not None:
        lines.append(f"next retry due: {ts(status.next_retry)}")
    lines.append(f"models: {', '.join(status.models)}")
    return "\n".join(lines) + "\n"
