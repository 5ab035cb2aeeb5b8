"""Per-pass processing: one due job from detection to its recorded outputs.

A pass is read through its source, handed to the detector, written as
``passes/<stem>.geojson``, compared with the previous pass over the same area
(``changes/<stem>.geojson``) and recorded as done in one transaction, only after its files
exist, with the warnings said while it was processed. A failure is recorded with its error and a retry time (exponential backoff).
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import sqlite3
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

import geopandas as gpd
import shapely
from rasterio.errors import RasterioError
from shapely import wkt as shapely_wkt
from shapely.geometry.base import BaseGeometry

from geotl.errors import BandMismatchError, GeotlError, ResolutionError, SceneError, error_text
from geotl.io.geojson import write_geojson
from geotl.models.artefact import Artefact
from geotl.monitor.changes import (
    CHANGE_COLUMNS,
    ChangeCriteria,
    ChangeSet,
    detect_changes,
    empty_features,
    scene_footprint,
    total_area_m2,
)
from geotl.monitor.options import Detector, MonitorOptions
from geotl.monitor.outputs import counted, latest_frame, pass_file, read_pass
from geotl.monitor.schedule import backoff_s, utc_now
from geotl.monitor.sequence import footprint_of, next_pass, overlaps, previous_passes
from geotl.monitor.sources import Scene, SceneSource
from geotl.monitor.sources.remote import ItemError
from geotl.monitor.state import MonitorState, PassRecord
from geotl.monitor.storage import storage_error

__all__ = ["PassProcessor", "PassResult"]

log = logging.getLogger(__name__)

#: A pass with no detections where this many objects of the previous pass were is warned.
BLANK_PASS_GONE = 5


class _WarningsHeard(logging.Handler):
    """The distinct geotl warnings logged while one pass is processed, kept with the pass.

    What predict says about a scene (other units or an offset, lossy compression, bands or
    nodata guessed) and what the pass loop says about its result (no detections where
    there were many, another model's previous pass) goes to stderr, which nobody reads a
    week later: the pass's record keeps it for ``monitor status``, the report page and
    ``history.csv``. A warning repeated (once per window or block) counts once. Warnings of
    the ``--cluster`` workers count too: the coordinator logs them again, once per scene.
    """

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        line = " ".join(record.getMessage().split())[:500]
        if line not in self.lines:
            self.lines.append(line)


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
    detected_area_m2: float | None = None
    new_area_m2: float | None = None
    gone_area_m2: float | None = None


@dataclass
class PassProcessor:
    """Processes jobs of one region with one model (held by :class:`~geotl.monitor.Monitor`).

    Attributes:
        dir: the region's monitor folder.
        state: the open state.
        source: reads (and refreshes) the scenes.
        artefact: the model.
        detector: turns a scene into detections.
        options: retry policy.
        abandon: set when the current scene is to be abandoned (it goes back to pending).
        criteria: how two passes are compared (:meth:`ChangeCriteria.for_model`).
    """

    dir: Path
    state: MonitorState
    source: SceneSource
    artefact: Artefact
    detector: Detector
    options: MonitorOptions
    abandon: threading.Event
    criteria: ChangeCriteria = field(default_factory=ChangeCriteria)

    def process(self, job: PassRecord) -> PassResult:
        """Process one job; failures are recorded and returned, never raised.

        Raises:
            KeyboardInterrupt: after recording the job as abandoned.
        """
        state = self.state
        model_id = self.artefact.model_id
        scene = job.to_scene()
        started = time.perf_counter()
        if job.attempts > 0:
            fresh = self.source.refresh(scene)  # a retry reads the item again: it may be fixed
            if (
                fresh is not None
                and fresh.key == scene.key
                and fresh.fingerprint != scene.fingerprint
            ):
                state.update_scene(fresh)
                scene = replace(fresh, name=job.name)
        state.mark_running(job.key, model_id, utc_now())
        heard = _WarningsHeard()
        logging.getLogger("geotl").addHandler(heard)
        try:
            footprint, features = self._detect(scene)
            pass_rel = pass_file("passes", scene.acquired, job.name)
            write_geojson(self.dir / pass_rel, features)
            earlier = previous_passes(state, model_id, job, footprint)
            previous = earlier[0] if earlier else None
            changes_rel = pass_file("changes", scene.acquired, job.name)
            new = gone = None
            new_area = gone_area = None
            if previous is not None:
                changes = self._compare(features, footprint, job.name, scene.acquired, earlier)
                new, gone = changes.new, changes.gone
                new_area, gone_area = changes.new_area_m2, changes.gone_area_m2
                write_geojson(self.dir / changes_rel, changes.frame)
                if features.empty and gone >= BLANK_PASS_GONE:
                    # every object gone at once is rarely the ground: a pass the model does
                    # not fit (haze, another season or processing) would fire `gone` now and
                    # `new` for everything on the next pass
                    log.warning(
                        "pass %s: no detections, and all %d objects of %s gone: the model may "
                        "not fit this pass (haze, season, processing); check the scene before "
                        "trusting its changes (alert persistence such as passes = 2, of = 3 "
                        "keeps one such pass from alerting)",
                        job.name,
                        gone,
                        previous.name,
                    )
                other = next((r for r in earlier if r.model_id != model_id), None)
                if other is not None:
                    log.warning(
                        "pass %s compared with %s, which model %s processed: some of its %d "
                        "new / %d gone may come from the change of model, not of the ground "
                        "(geotl monitor --reprocess redoes the earlier passes with this model)",
                        job.name,
                        other.name,
                        other.model_id,
                        new,
                        gone,
                    )
            else:
                write_geojson(self.dir / changes_rel, empty_features(CHANGE_COLUMNS))
            duration = time.perf_counter() - started
            detected_area = total_area_m2(features)
            state.mark_done(
                job.key,
                model_id,
                now=utc_now(),
                duration_s=duration,
                pass_path=pass_rel,
                changes_path=changes_rel,
                detections=len(features),
                new=new,
                gone=gone,
                previous_scene=previous.name if previous else None,
                footprint_wkt=footprint.wkt,
                detected_area_m2=detected_area,
                new_area_m2=new_area,
                gone_area_m2=gone_area,
                warnings=heard.lines,
            )
            self._refresh_successor(job, footprint)
            self._remove_replaced(job)
        except KeyboardInterrupt:
            state.mark_abandoned(job.key, model_id)
            log.warning("pass %s abandoned: it will be redone on the next run", job.name)
            raise
        except (GeotlError, RasterioError, OSError, ValueError, RuntimeError) as exc:
            if (full := storage_error(exc, self.dir)) is not None:
                # not the scene's fault: no failure, no backoff; redone once there is room
                with contextlib.suppress(sqlite3.Error):
                    state.mark_abandoned(job.key, model_id)
                raise full from exc
            if self.abandon.is_set():
                state.mark_abandoned(job.key, model_id)
                return PassResult(
                    job.name, scene.acquired, "abandoned", time.perf_counter() - started
                )
            return self._failed(job, exc, time.perf_counter() - started)
        finally:
            logging.getLogger("geotl").removeHandler(heard)
            shutil.rmtree(self.dir / ".work", ignore_errors=True)
        log.info(
            "pass %s %s: %s, %s, %s%s (%.1f s)",
            scene.acquired.date().isoformat(),
            job.name,
            counted(len(features), detected_area, "detections"),
            counted(new, new_area, "new"),
            counted(gone, gone_area, "gone"),
            (
                f" since {previous.name}"
                + (
                    f" (and {len(earlier) - 1} earlier pass(es) beyond it)"
                    if len(earlier) > 1
                    else ""
                )
                if previous
                else " (first pass over this area)"
            ),
            duration,
        )
        return PassResult(
            scene=job.name,
            acquired=scene.acquired,
            status="done",
            duration_s=duration,
            detections=len(features),
            new=new,
            gone=gone,
            previous_scene=previous.name if previous else None,
            detected_area_m2=detected_area,
            new_area_m2=new_area,
            gone_area_m2=gone_area,
        )

    def _failed(self, job: PassRecord, exc: BaseException, duration: float) -> PassResult:
        attempts = job.attempts + 1
        message = error_text(exc, 500)
        if not isinstance(exc, GeotlError):
            message = f"{type(exc).__name__}: {message}"
        next_attempt: datetime | None = None
        # the same file or item fails the same way until it, the region or the options change
        # (a changed file or item is found again with a new fingerprint and redone)
        final = isinstance(exc, BandMismatchError | ResolutionError | ItemError)
        if attempts < self.options.max_attempts and not final:
            delay = backoff_s(attempts, self.options.retry_base_s, self.options.retry_max_s)
            next_attempt = utc_now() + timedelta(seconds=delay)
        self.state.mark_failed(
            job.key, self.artefact.model_id, now=utc_now(), error=message, next_attempt=next_attempt
        )
        if next_attempt:
            when = f"retry after {next_attempt.isoformat(timespec='seconds')}"
        elif final:
            when = "not retried until it changes: fix it, then run with --retry-failed"
        else:
            when = f"no more automatic retries after {attempts} attempts (use --retry-failed)"
        log.warning("pass %s failed (attempt %d; %s): %s", job.name, attempts, when, message)
        return PassResult(
            job.name, job.acquired, "failed", duration, error=message, next_attempt=next_attempt
        )

    def _detect(self, scene: Scene) -> tuple[BaseGeometry, gpd.GeoDataFrame]:
        with self.source.open_scene(scene, self.dir / ".work", self.artefact.card) as path:
            if scene.footprint_wkt:
                footprint = shapely_wkt.loads(scene.footprint_wkt)
            else:
                try:
                    footprint = scene_footprint(path)
                except (RasterioError, OSError) as exc:
                    fix = (
                        "check the item's assets"
                        if scene.is_remote
                        else "the file is damaged or not a raster: copy it again (or wait "
                        "until a copy in progress is whole)"
                    )
                    raise SceneError(
                        f"cannot be read ({error_text(exc)}); {fix}", scene.uri
                    ) from exc
            try:
                frame = self.detector(self.artefact, path, scene)
            except GeotlError as exc:
                if not scene.is_remote or exc.path != path:
                    raise
                # name the item, not the temporary VRT that stacks its assets
                raise type(exc)(exc.message, scene.uri) from exc
        frame = frame.to_crs("EPSG:4326") if frame.crs is not None else frame.set_crs("EPSG:4326")
        frame = frame.copy()
        if scene.is_remote or "scene" not in frame.columns:
            frame["scene"] = scene.name  # a STAC item's id, not the name of its temporary VRT
        frame["model"] = self.artefact.model_id
        if "acquired" not in frame.columns or frame["acquired"].isna().all():
            frame["acquired"] = scene.acquired.isoformat()
        return footprint, frame

    def _remove_replaced(self, job: PassRecord) -> None:
        """The files of the job's earlier processing, when they had another name.

        A redone pass whose acquisition time changed (a file replaced, dated by its
        modification time or by a corrected name or tag) is written under a new stem; the
        old files would stay in ``passes/`` and ``changes/`` as a second pass of the scene.
        """
        for old in (job.pass_path, job.changes_path):
            if old and not self.state.output_in_use(old):
                (self.dir / old).unlink(missing_ok=True)

    def _compare(
        self,
        features: gpd.GeoDataFrame,
        footprint: BaseGeometry,
        name: str,
        acquired: datetime,
        earlier: list[PassRecord],
    ) -> ChangeSet:
        """A pass's changes since what ``earlier`` (newest first) last saw of its ground."""
        if len(earlier) == 1:
            before = read_pass(self.dir, earlier[0])
        else:
            before = latest_frame(self.dir, list(reversed(earlier)))
        return detect_changes(
            features,
            before,
            footprint,
            shapely.union_all([footprint_of(r) for r in earlier]),
            current_scene=name,
            previous_scene=earlier[0].name,
            criteria=self.criteria,
            current_acquired=acquired.isoformat(),
            previous_acquired=earlier[0].acquired.isoformat(),
        )

    def _refresh_successor(self, job: PassRecord, footprint: BaseGeometry) -> None:
        """A pass processed late (a backfill, a retry) becomes part of its successor's past."""
        succ = next_pass(self.state, self.artefact.model_id, job, footprint)
        if succ is None or succ.pass_path is None:
            return
        succ_fp = footprint_of(succ)
        if not overlaps(succ_fp, job, footprint):
            return
        earlier = previous_passes(self.state, self.artefact.model_id, succ, succ_fp)
        if job.key not in {r.key for r in earlier}:
            return
        changes = self._compare(
            read_pass(self.dir, succ), succ_fp, succ.name, succ.acquired, earlier
        )
        changes_rel = succ.changes_path or pass_file("changes", succ.acquired, succ.name)
        write_geojson(self.dir / changes_rel, changes.frame)
        self.state.update_changes(
            succ.key,
            self.artefact.model_id,
            changes_path=changes_rel,
            new=changes.new,
            gone=changes.gone,
            previous_scene=earlier[0].name,
            new_area_m2=changes.new_area_m2,
            gone_area_m2=changes.gone_area_m2,
        )
        log.info("changes of %s recomputed against %s (processed later)", succ.name, job.name)
