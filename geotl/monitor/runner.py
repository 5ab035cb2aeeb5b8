"""The pass loop: find new scenes, process every due job oldest first, rebuild the outputs.

One run (``geotl monitor --once``) takes the region's lock, asks the source for scenes it
has not seen, and processes every due job oldest first (:mod:`geotl.monitor.passes`).
``latest.geojson`` and ``history.csv`` are then rebuilt from the state
(:mod:`geotl.monitor.outputs`); with ``[monitor.alerts]``, the alert rules are evaluated on
the new passes and open alerts delivered (:mod:`geotl.monitor.alerts`). Every file is
written under a temporary name and renamed, and each job is recorded only after its files
exist, so a run killed at any point is finished by the next one without duplicates or
half-written files.

A scene that re-publishes a pass already done (a reprocessed STAC item under a new id or
updated in place, a re-delivered file) is not a new pass (:mod:`geotl.monitor.republished`).

A failing scene is recorded with its error and retried on later runs after an exponential
backoff; it never stops the other scenes, and the run's exit code becomes 1. A scene that
would fail the same way again (bands the model lacks, another resolution, a STAC item
missing an asset) is not retried until it changes or ``--retry-failed`` is given.
"""

from __future__ import annotations

import contextlib
import filecmp
import logging
import os
import shutil
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import geopandas as gpd

from geotl.cluster import (
    ModelRef,
    PendingScene,
    SceneJob,
    check_workers,
    open_cluster,
    parse_cluster,
    submit_scenes,
)
from geotl.config import AlertRule, Region
from geotl.errors import (
    ConfigError,
    GeotlError,
    GeotlRuntimeError,
    SceneError,
    SchedulerUnreachableError,
)
from geotl.io.atomic import TMP_PREFIX
from geotl.io.gdal_messages import gdal_messages_logged
from geotl.models.artefact import Artefact
from geotl.monitor.alerts.engine import AlertEngine
from geotl.monitor.changes import ChangeCriteria
from geotl.monitor.lock import RegionLock
from geotl.monitor.options import Detector, MonitorOptions
from geotl.monitor.outputs import rebuild_outputs, region_dir
from geotl.monitor.passes import PassProcessor, PassResult
from geotl.monitor.republished import without_republished
from geotl.monitor.schedule import utc_now
from geotl.monitor.sources import Scene, SceneSource, make_source, monitor_config, region_aoi
from geotl.monitor.state import DB_FILE, LAST_RUN_ERROR, MonitorState, PassRecord
from geotl.monitor.storage import storage_error
from geotl.predict.engine import load_model
from geotl.progress import progress_seen

__all__ = [
    "ClusterDetector",
    "Monitor",
    "RunSummary",
    "failure_reason",
    "predict_detector",
    "resolve_model_dir",
    "run_monitor",
    "watch_region",
]

log = logging.getLogger(__name__)


@dataclass
class RunSummary:
    """The outcome of one run (or of all rounds of a ``--every`` loop)."""

    region: str
    model_id: str
    found: int = 0
    passes: list[PassResult] = field(default_factory=list)
    stopped: bool = False
    rounds: int = 0
    undelivered: list[str] = field(default_factory=list)  # alerts whose delivery failed for good
    unanswered: list[str] = field(default_factory=list)  # tried in this run, retried later
    open_alerts: int = 0  # not delivered after the run, tried or not

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
        """0 when nothing failed, 1 otherwise (a scene, or an alert's delivery)."""
        return 1 if self.failed or self.undelivered or self.unanswered else 0


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


def predict_detector(region: Region, bands: list[str], resample: bool = False) -> Detector:
    """The default detector: :func:`geotl.predict.predict_scene` with the region's settings.

    Args:
        region: supplies ``[predict]`` (thresholds, minimum area, simplification).
        bands: the monitored scenes' bands in file order (``[imagery] bands`` for folders,
            ``[monitor] assets`` order for STAC).
        resample: passes at another ground resolution are resampled to the model's.
    """
    from geotl.predict import PredictOptions, predict_scene

    options = PredictOptions.from_region(
        region, bands=tuple(bands), progress=progress_seen(), resample=resample
    )

    def detect(artefact: Artefact, path: Path, scene: Scene) -> gpd.GeoDataFrame:
        result = predict_scene(artefact, path, options, acquired=scene.acquired.isoformat())
        frame: gpd.GeoDataFrame = result.features
        return frame

    return detect


class ClusterDetector:
    """:func:`predict_detector` on Dask workers (:mod:`geotl.cluster`).

    :meth:`prefetch` submits every local pass due in a run at once, so the workers predict
    them side by side (a large pass in blocks) while this process writes and records them
    one by one, oldest first. The detections equal :func:`predict_detector`'s. A failure on
    the cluster (the scene's error, or a task whose workers kept dying) fails the pass,
    which is retried like any failed pass.
    """

    def __init__(
        self,
        region: Region,
        bands: list[str],
        client: Any,
        model: ModelRef,
        resample: bool = False,
        reopen: Callable[[], Any] | None = None,
    ) -> None:
        from geotl.predict import PredictOptions

        self.options = PredictOptions.from_region(
            region, bands=tuple(bands), progress=False, resample=resample
        )
        self.client = client
        self.model = model
        self._reopen = reopen
        self._ahead: dict[tuple[str, str], PendingScene] = {}

    def ensure_connected(self) -> None:
        """Connect again when the client lost its scheduler in an earlier round.

        ``monitor --every`` keeps one client for days; a scheduler restarted meanwhile (a
        new pod, a maintenance window) would fail every later round until the monitor was
        restarted by hand.

        Raises:
            GeotlRuntimeError: the scheduler cannot be reached yet (the round fails, the
                next one tries again).
            ClusterError: the workers refuse the job (another version, other model files).
        """
        if self._reopen is None or getattr(self.client, "status", "running") == "running":
            return
        log.warning("the Dask scheduler was lost in an earlier round: connecting again")
        try:
            self.client = self._reopen()
        except SchedulerUnreachableError as exc:
            raise GeotlRuntimeError(f"{exc.message}; the next round tries again") from None

    def _job(self, path: Path, scene: Scene) -> SceneJob:
        return SceneJob(path, self.options, scene.acquired.isoformat())

    def prefetch(self, scenes: list[Scene]) -> None:
        """Submit the local scenes (remote ones are read through a VRT made per pass)."""
        jobs = [self._job(Path(s.uri), s) for s in scenes if not s.is_remote]
        for pending in submit_scenes(self.client, self.model, jobs):
            self._ahead[(str(pending.job.scene), str(pending.job.acquired))] = pending

    def discard(self) -> None:
        """Cancel what was submitted and not used (a stopped run)."""
        for pending in self._ahead.values():
            pending.cancel()
        self._ahead.clear()

    def __call__(self, artefact: Artefact, path: Path, scene: Scene) -> gpd.GeoDataFrame:
        """The pass's detections (EPSG:4326), from its prefetched tasks or submitted now."""
        job = self._job(path, scene)
        pending = self._ahead.pop((str(job.scene), str(job.acquired)), None)
        if pending is None:
            [pending] = submit_scenes(self.client, self.model, [job])
        result = pending.result()
        if isinstance(result, GeotlError):
            raise result
        if isinstance(result, BaseException):
            raise SceneError(
                f"failed on the cluster ({type(result).__name__}: {result})", path
            ) from result
        frame: gpd.GeoDataFrame = result.features
        return frame


def change_criteria(region: Region, artefact: Artefact) -> ChangeCriteria:
    """How the region's passes are compared.

    ``[monitor] edge_margin_m`` and ``change_min_area_m2`` where the region sets them, else
    the defaults for the model and ``[predict]`` (:meth:`ChangeCriteria.for_model`).
    """
    from geotl.predict import PredictOptions

    config = monitor_config(region)
    return ChangeCriteria.for_model(
        PredictOptions.from_region(region),
        artefact.card,
        edge_margin_m=config.edge_margin_m,
        min_area_m2=config.change_min_area_m2,
    )


def _check_bands(region: Region, source: SceneSource, artefact: Artefact) -> None:
    from geotl.predict.scene import check_model_bands

    check_model_bands(
        artefact.card.bands,
        source.band_names(),
        region.path,
        what=f"model {artefact.model_id}: the monitored scenes'",
        fix="fix [imagery] bands / [monitor] assets or use a model for these bands",
    )


def _check_rule_classes(region: Region, rules: list[AlertRule], artefact: Artefact) -> None:
    """Refuse alert rules for a class the model does not predict: they could never fire."""
    classes = artefact.card.classes
    for i, rule in enumerate(rules):
        if rule.class_name not in classes:
            raise ConfigError(
                f"monitor.alerts.rule[{i}] is for class '{rule.class_name}', which model "
                f"{artefact.model_id} does not predict ({', '.join(classes)}): name one of "
                "its classes or use a model for this class",
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
        monitor_config(region)
        self.region = region
        self.options = options
        self.dir = region_dir(region, options.out_dir)
        self.model_dir = resolve_model_dir(region, options.model_dir)
        self.source: SceneSource = make_source(region)
        self.stop = stop or threading.Event()
        self.every_s = every_s
        self._detector = detector
        self._lock = RegionLock(self.dir, region.name)
        self._cluster = contextlib.ExitStack()
        self._abandon = threading.Event()
        self._state: MonitorState | None = None
        self._passes: PassProcessor | None = None
        self._alerts: AlertEngine | None = None
        self._made: list[Path] = []  # the folders entering made, until the first run ends

    # --- lifetime -------------------------------------------------------------------------

    def __enter__(self) -> Monitor:
        out_parent = Path(self.options.out_dir)
        if out_parent.exists() and not out_parent.is_dir():
            raise ConfigError("--out exists and is a file: choose a folder", out_parent)
        client = None
        if self.options.cluster is not None and self._detector is None:
            # before the lock: an unreachable scheduler or a refusing worker writes nothing
            parse_cluster(self.options.cluster)
            model = ModelRef.from_path(self.model_dir, "auto", self.options.device)
            try:
                client = self._cluster.enter_context(open_cluster(self.options.cluster))
                check_workers(client, model)
            except BaseException:
                self._cluster.close()
                raise
        # a folder the first run makes is removed again if that run fails on bad input
        self._made = [p for p in (self.dir, out_parent) if not p.exists()]
        try:
            self._lock.acquire({"region": str(self.region.path), "model": str(self.model_dir)})
        except BaseException:
            self._cluster.close()
            raise
        try:
            artefact = load_model(self.model_dir, "auto", self.options.device)
            _check_bands(self.region, self.source, artefact)
            alerts = monitor_config(self.region).alerts
            if alerts is not None:
                _check_rule_classes(self.region, alerts.rule, artefact)
            bands = self.source.band_names()
            detector = self._detector or (
                ClusterDetector(
                    self.region, bands, client, model, self.options.resample, self._reconnect
                )
                if client is not None
                else predict_detector(self.region, bands, self.options.resample)
            )
            self._state = MonitorState(self.dir / DB_FILE)
            self._state.check_region_file(self.region.path, self.region.name, claim=True)
            self._passes = PassProcessor(
                self.dir,
                self._state,
                self.source,
                artefact,
                detector,
                self.options,
                self._abandon,
                change_criteria(self.region, artefact),
            )
            if alerts is not None:
                self._alerts = AlertEngine(
                    self.region, self._state, self.dir, region_aoi(self.region)
                )
            for sub in ("passes", "changes"):
                (self.dir / sub).mkdir(parents=True, exist_ok=True)
            self._remove_leftovers()
            recovered = self._state.recover_running()
            if recovered:
                log.warning(
                    "%d scene(s) were left running by an interrupted monitor: redoing them",
                    recovered,
                )
        except BaseException as exc:
            full = (
                storage_error(exc, self.dir)
                if isinstance(exc, OSError | sqlite3.Error) and not isinstance(exc, GeotlError)
                else None
            )
            # a refusal (bad model, bands, rule, reference layer) leaves no folder, lock or
            # state behind: cron would otherwise keep an empty region folder that status
            # reads as a region that never ran
            error = full or exc
            refused = isinstance(error, GeotlError) and error.exit_code == 2
            self.close(discard=self._made if refused else [])
            if refused:
                self._made = []
            if full is not None:  # the disk under --out is full or read-only
                raise full from exc
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self) -> RunSummary:
        """:meth:`run_once`; the region's first run, failing on bad input, leaves nothing.

        Some mistakes show only when the source is first searched (a ``[monitor]
        collection`` the API lacks), after the state and folders exist: a fresh ``--out``
        kept an empty state, ``passes/`` and ``changes/`` for a region that never ran. The
        folders entering made are removed then; nothing is removed from a folder that
        existed before, nor after the region's first run.
        """
        made, self._made = self._made, []
        try:
            with gdal_messages_logged():
                return self.run_once()
        except GeotlError as exc:
            if exc.exit_code == 2 and made:
                self.close(discard=made)
            raise
        except (OSError, sqlite3.Error) as exc:  # the disk under --out filled up mid-run
            if (full := storage_error(exc, self.dir)) is None:
                raise
            raise full from exc

    def _reconnect(self) -> Any:
        """A new client on ``--cluster`` (the old one lost its scheduler), its workers checked."""
        assert self.options.cluster is not None
        self._cluster.close()
        client = self._cluster.enter_context(open_cluster(self.options.cluster))
        check_workers(client, ModelRef.from_path(self.model_dir, "auto", self.options.device))
        return client

    def close(self, discard: list[Path] | None = None) -> None:
        """Close the state and release the lock.

        Args:
            discard: folders this monitor made and removes (a refused first run). They go
                while the lock is still held: released first, a monitor starting meanwhile
                could take the lock in the folder about to be removed.
        """
        if self._state is not None:
            self._state.close()
            self._state = None
        self._passes = None
        self._alerts = None
        for folder in discard or []:
            shutil.rmtree(folder, ignore_errors=True)
        self._lock.release()
        self._cluster.close()

    @property
    def is_open(self) -> bool:
        """Inside the context manager, and not closed."""
        return self._passes is not None

    @property
    def passes(self) -> PassProcessor:
        """The pass processor (inside the context manager)."""
        if self._passes is None:
            raise RuntimeError("Monitor used outside its 'with' block")
        return self._passes

    @property
    def state(self) -> MonitorState:
        """The open state (inside the context manager)."""
        return self.passes.state

    @property
    def artefact(self) -> Artefact:
        """The loaded model (inside the context manager)."""
        return self.passes.artefact

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
        self._abandon.set()
        self.stop.set()

    # --- one run --------------------------------------------------------------------------

    def run_once(self) -> RunSummary:
        """Look for new scenes and process every due job, oldest first."""
        state = self.state
        model_id = self.artefact.model_id
        now = utc_now()
        summary = RunSummary(region=self.region.name, model_id=model_id, rounds=1)
        run_id = state.start_run(model_id, now, self.every_s)
        outcome, error = "error", ""
        try:
            since = state.latest_acquired()
            given_up = state.oldest_given_up(model_id)
            if since is not None and given_up is not None:
                since = min(since, given_up)  # a new version of its item heals it
            known = state.known_fingerprints()
            seen = {**state.copy_fingerprints(), **known, **state.republished_fingerprints()}
            found = self.source.discover(seen, since)
            found = self._without_copies(self._without_moved(found, known), known)
            found = without_republished(
                found,
                state,
                self.source.kind,
                getattr(self.source.options, "republished", "skip"),
                now,
            )
            new, changed = state.record_scenes(found, self.source.kind, model_id, now)
            summary.found = new
            owed = state.ensure_jobs(model_id, self.options.reprocess)
            lost = state.requeue_lost(model_id, self.dir)
            if lost:
                log.warning(
                    "%d pass file(s) missing (%s): predicting those passes again",
                    len(lost),
                    ", ".join(lost[:5]) + (", ..." if len(lost) > 5 else ""),
                )
            if changed:
                # processed or failed (a half-copied file, since completed): both read again
                log.info(
                    "%d scene file(s) changed since they were last read: processing them again",
                    changed,
                )
            if owed and self.options.reprocess:
                log.info("reprocessing %d scene(s) with model %s", owed, model_id)
            due = self._without_vanished(
                state.due_jobs(model_id, utc_now(), self.options.retry_failed)
            )
            if due:
                log.info("%s: %d new scene(s), %d due", self.region.name, new, len(due))
            if isinstance(self.passes.detector, ClusterDetector) and due:
                self.passes.detector.ensure_connected()
                self.passes.detector.prefetch([job.to_scene() for job in due])
            for job in due:
                if self.stop.is_set():
                    summary.stopped = True
                    log.info(
                        "stop requested: %d scene(s) left for the next run",
                        len(due) - len(summary.passes),
                    )
                    break
                summary.passes.append(self.passes.process(job))
                if summary.passes[-1].status == "abandoned":
                    summary.stopped = True
                    break
            if summary.processed or not (self.dir / "history.csv").exists():
                self.rebuild_outputs()
            if self._alerts is not None:  # evaluate, record, deliver (alerts/engine.py)
                if self.options.retry_failed and (again := state.reopen_failed_alerts()):
                    log.info("sending %d alert(s) whose delivery had failed again", again)
                done = self._alerts.after_passes(
                    model_id, stop=self.stop.is_set, sleep=self.stop.wait
                )
                if done.delivery is not None:
                    summary.undelivered = list(done.delivery.failed)
                    summary.unanswered = done.delivery.unanswered
                    summary.open_alerts = done.delivery.open
            # "failed" whenever the run exits 1 (a scene, or an alert's delivery): status then
            # says what the scheduler saw
            outcome = "stopped" if summary.stopped else ("failed" if summary.exit_code else "ok")
            if summary.exit_code:
                # cron mailed exit 1: status must say why, not only "failed"
                error = failure_reason(summary, state)
        except BaseException as exc:
            error = str(exc) or type(exc).__name__
            raise
        finally:
            if isinstance(self.passes.detector, ClusterDetector):
                self.passes.detector.discard()
            state.finish_run(
                run_id, utc_now(), len(summary.processed), len(summary.failed), outcome
            )
            # why the run stopped short, for monitor status (one line; empty after a run)
            state.set_meta(LAST_RUN_ERROR, " ".join(error.split())[:500])
        return summary

    def _without_moved(self, found: list[Scene], known: dict[str, str]) -> list[Scene]:
        """New files less known scenes whose file moved there (and is gone from where it was).

        A project folder moved or renamed, or the incoming folder moved to another disk
        (``mv``, ``rsync -a``: the same name, size and time stamp): its passes are the same
        passes, not new ones to predict and list again beside the old.
        """
        if self.source.kind != "folder":
            return found
        kept: list[Scene] = []
        moved: list[str] = []
        for scene in found:
            old = None
            if scene.key not in known:
                old = next(
                    (
                        (key, uri)
                        for key, _, uri in self.state.folder_scenes_with(scene.fingerprint)
                        if Path(uri).name == Path(scene.uri).name and not os.path.lexists(uri)
                    ),
                    None,
                )
            if old is None:
                kept.append(scene)
                continue
            self.state.move_scene(old[0], scene.key, scene.uri)
            moved.append(f"{old[1]} -> {scene.uri}")
        if moved:
            log.info(
                "%d known pass file(s) moved (%s): they stay the same passes",
                len(moved),
                moved[0] + (", ..." if len(moved) > 1 else ""),
            )
        return kept

    def _without_copies(self, found: list[Scene], known: dict[str, str]) -> list[Scene]:
        """New files less those with the same bytes as a known scene or another new file.

        The same pass delivered twice under other names (re-sent, or copied into two
        folders the globs match) would be two passes of one date: listed twice, its changes
        counted twice, and an alert's persistence reached by one sighting. A copy is
        recorded and skipped while it stays unchanged.
        """
        if self.source.kind != "folder":
            return found
        kept: list[Scene] = []
        for scene in found:
            if scene.key in known:
                kept.append(scene)
                continue
            size = scene.fingerprint.split(":", 1)[0]
            others = [
                (s.key, s.name, s.uri) for s in kept if s.fingerprint.split(":", 1)[0] == size
            ]
            original = next(
                (
                    (key, name, uri)
                    for key, name, uri in [*self.state.folder_scenes_of_size(size), *others]
                    if key != scene.key and _same_bytes(uri, scene.uri)
                ),
                None,
            )
            if original is None:
                kept.append(scene)
                continue
            self.state.record_copy(scene.key, scene.fingerprint, original[0])
            log.warning(
                "%s: the same bytes as scene %s (%s): a copy, not a new pass; skipped",
                scene.uri,
                original[1],
                original[2],
            )
        return kept

    def _without_vanished(self, due: list[PassRecord]) -> list[PassRecord]:
        """Due jobs less those whose file left the folder: they are forgotten, not failed.

        An operator deletes a half-copied or broken file, or moves it away: retrying it would
        fail every run (exit 1) until the retries run out. Should it come back, it is found
        again as a new scene.
        """
        kept: list[PassRecord] = []
        for job in due:
            if job.source == "folder" and not job.assets and not Path(job.uri).exists():
                self.state.forget_job(job.key, job.model_id)
                log.warning(
                    "%s: its file %s is gone: forgotten (it is processed if it arrives again)",
                    job.name,
                    job.uri,
                )
            else:
                kept.append(job)
        return kept

    def rebuild_outputs(self) -> None:
        """Rewrite ``history.csv`` and ``latest.geojson`` from the state (atomically)."""
        rebuild_outputs(self.state, self.dir)


def failure_reason(summary: RunSummary, state: MonitorState) -> str:
    """Why a run exits 1, in one line, for ``monitor status`` (``last_run.error``).

    The run ended without an exception (its scenes and alerts are recorded), so nothing
    else says why cron saw exit 1: a failed pass, alerts that could not be delivered, or a
    webhook that did not answer (with the latest error and when it is tried again).
    """
    parts: list[str] = []
    if failed := summary.failed:
        parts.append(f"{len(failed)} pass(es) failed ({failed[0].scene}: {failed[0].error})")
    if summary.undelivered:
        errors = [
            a.last_error
            for a in state.alerts(("failed", "withdrawn"))  # a withdrawal's notice too
            if a.id in summary.undelivered
        ]
        parts.append(
            f"{len(summary.undelivered)} alert(s) could not be delivered"
            + (f" ({errors[-1]})" if errors and errors[-1] else "")
            + "; fix the webhook, then run with --retry-failed"
        )
    if summary.unanswered:
        waiting = state.unsent_alerts()
        tried = [a for a in waiting if a.attempts > 0]
        error = max(tried, key=lambda a: a.updated).last_error if tried else None
        due = min((a.next_attempt for a in tried if a.next_attempt is not None), default=None)
        parts.append(
            f"{max(len(waiting), len(summary.unanswered))} alert(s) not delivered"
            + f" ({error or 'no answer'})"
            + (f"; next try at {due.isoformat(timespec='seconds')}" if due else "")
        )
    return "; ".join(parts)


def _same_bytes(a: str, b: str, tail_bytes: int = 1 << 20) -> bool:
    """Whether two files hold the same bytes (False when one cannot be read).

    Their ends are compared first: scenes of one grid can share long runs of header and
    nodata at the start, and a new file may be compared with many scenes of its size.
    """
    try:
        with open(a, "rb") as fa, open(b, "rb") as fb:
            size = os.fstat(fa.fileno()).st_size
            if size != os.fstat(fb.fileno()).st_size:
                return False
            start = max(0, size - tail_bytes)
            fa.seek(start)
            fb.seek(start)
            if fa.read(tail_bytes) != fb.read(tail_bytes):
                return False
        return filecmp.cmp(a, b, shallow=False)
    except OSError:
        return False


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
        return monitor.run()


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
    round. The loop's end, however it ends, is recorded (status then no longer announces a
    next run). Returns the union of all rounds.
    """
    stop = stop or threading.Event()
    with Monitor(region, options, detector=detector, stop=stop, every_s=every_s) as monitor:
        if on_monitor is not None:
            on_monitor(monitor)
        total = RunSummary(region=region.name, model_id=monitor.artefact.model_id)
        try:
            while not stop.is_set():
                _one_round(monitor, total)
                if stop.wait(every_s):
                    break
        finally:
            if monitor.is_open:  # not when a failed first run discarded it
                monitor.state.record_loop_stopped(utc_now())
        total.stopped = True
        return total


def _one_round(monitor: Monitor, total: RunSummary) -> None:
    """One run of :func:`watch_region`'s loop, added into ``total``."""
    try:
        summary = monitor.run()
    except GeotlError as exc:
        if exc.exit_code == 2:
            raise
        log.error("run failed: %s", exc)
        summary = RunSummary(region=total.region, model_id=total.model_id)
        total.passes.append(PassResult("(search)", utc_now(), "failed", 0.0, error=str(exc)))
    total.rounds += 1
    total.found += summary.found
    total.passes.extend(summary.passes)
    total.undelivered.extend(summary.undelivered)
    total.unanswered = summary.unanswered  # a later round may have delivered earlier ones
    total.open_alerts = summary.open_alerts
    next_at = utc_now() + timedelta(seconds=monitor.every_s or 0.0)
    log.info(
        "run %d: %d new scene(s), %d processed, %d failed; next run at %s",
        total.rounds,
        summary.found,
        len(summary.processed),
        len(summary.failed),
        next_at.isoformat(timespec="seconds"),
    )
