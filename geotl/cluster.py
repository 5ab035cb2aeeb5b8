"""Dask distributed: scenes, and blocks of large scenes, predicted as tasks on a cluster.

The one module that talks to Dask. ``--cluster local:N`` starts a
:class:`distributed.LocalCluster` of N worker processes on this machine;
``--cluster tcp://HOST:PORT`` joins a running scheduler (dask-jobqueue on SLURM, Dask on
Kubernetes, ...). The process that submits the job (the *coordinator*) keeps every write:
it checks the outputs, fans the scenes out, gathers the detections in the scenes' order and
writes the files exactly as one process would (:func:`geotl.predict.predict_scenes`,
:class:`geotl.monitor.Monitor`).

Each worker verifies that it runs the coordinator's geotl (its release, and the digest of
its code: :mod:`geotl.build`) and sees the same model (path and sha256 of its weights)
before it predicts, loads the model once per process and streams its scene by windows as
:func:`geotl.predict.predict_scene` does. A scene much
larger than one worker's share is split into blocks of window rows
(:mod:`geotl.predict.blocks`) whose objects join into exactly the whole scene's. A worker
that dies mid-task is replaced and its task rerun elsewhere by the scheduler; results are
keyed by task, so every object arrives once.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import CancelledError
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import geopandas as gpd
import pandas as pd

from geotl import __version__
from geotl.build import code_digest
from geotl.errors import (
    ClusterError,
    GeotlError,
    GeotlRuntimeError,
    SchedulerUnreachableError,
    error_text,
)
from geotl.models.artefact import WEIGHTS_FILE, read_card, verify_weights, weights_sha256
from geotl.progress import progress_bar

if TYPE_CHECKING:
    from distributed import Client

    from geotl.models.artefact import Artefact
    from geotl.predict.blocks import RowBlock
    from geotl.predict.core import PredictOptions, SceneDetections

__all__ = [
    "ClusterError",
    "ClusterSpec",
    "ModelRef",
    "PendingScene",
    "SceneJob",
    "check_worker",
    "check_workers",
    "join_blocks",
    "open_cluster",
    "parse_cluster",
    "predict_on_cluster",
    "submit_scenes",
]

log = logging.getLogger(__name__)

#: Seconds to wait for a scheduler before giving up (a typo must not hang the command).
CONNECT_TIMEOUT_S = 5.0
_LOCAL = re.compile(r"^local:(\d+)$")
# the inference window assumed when sizing blocks (the worker knows the real one)
_MAX_WINDOW_PX = 512


@dataclass(frozen=True)
class ClusterSpec:
    """Where the work runs: N local worker processes, or a scheduler's address.

    >>> parse_cluster("local:2")
    ClusterSpec(local_workers=2, address=None)
    >>> parse_cluster("tcp://10.0.0.5:8786").address
    'tcp://10.0.0.5:8786'
    """

    local_workers: int | None = None
    address: str | None = None

    def __str__(self) -> str:
        return self.address or f"local:{self.local_workers}"


def parse_cluster(text: str) -> ClusterSpec:
    """Parse ``local:N`` or ``tcp://HOST:PORT`` (also ``tls://``, ``ws://``...).

    ``HOST:PORT`` alone (and a trailing ``/``) is the scheduler's TCP address, as Dask
    takes it (``dask worker HOST:PORT``).

    >>> parse_cluster("10.0.0.5:8786/").address
    'tcp://10.0.0.5:8786'

    Raises:
        ClusterError: anything else.
    """
    text = text.strip()
    if re.match(r"^[\w.\-]+:\d+/?$", text) and not _LOCAL.match(text):
        text = f"tcp://{text}"
    if "://" in text:
        text = text.rstrip("/")
    m = _LOCAL.match(text)
    if m:
        n = int(m.group(1))
        if n < 1:
            raise ClusterError(f"--cluster {text}: a local cluster needs at least 1 worker")
        return ClusterSpec(local_workers=n)
    if re.match(r"^(tcp|tls|ws|wss|inproc)://[^/\s]+$", text):
        return ClusterSpec(address=text)
    raise ClusterError(
        f"--cluster {text!r}: use local:N (N worker processes here) or tcp://HOST:PORT "
        "(a running Dask scheduler)"
    )


@contextlib.contextmanager
def open_cluster(
    spec: ClusterSpec | str, connect_timeout_s: float = CONNECT_TIMEOUT_S
) -> Iterator[Client]:
    """A Dask client on the cluster ``spec``; a local cluster is closed on exit.

    Raises:
        ClusterError: the scheduler cannot be reached within ``connect_timeout_s``.
    """
    from distributed import Client, LocalCluster

    if isinstance(spec, str):
        spec = parse_cluster(spec)
    if spec.local_workers is not None:
        with (
            LocalCluster(
                n_workers=spec.local_workers,
                threads_per_worker=1,
                processes=True,
                # Dask starts workers with OMP_NUM_THREADS=1: a scene would run on one core
                # while the others idle; each worker's torch takes its share of the machine
                env={_THREADS_ENV: str(_local_share(spec.local_workers))},
                dashboard_address=None,
                # the scheduler serves HTTP even without a dashboard, on 8787 unless told:
                # a free port, so a dashboard of the user's own there is no clash (warnings)
                scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"},
                # geotl reports each failed task itself, in one line: not the workers' log
                silence_logs=logging.CRITICAL,
            ) as cluster,
            Client(cluster) as client,
        ):
            yield client
        return
    with _quiet_client_log():
        try:
            client = Client(spec.address, timeout=connect_timeout_s)
        except (OSError, TimeoutError) as exc:
            raise SchedulerUnreachableError(
                f"cannot reach the Dask scheduler at {spec.address} within "
                f"{connect_timeout_s:g} s ({type(exc).__name__}): start it (dask scheduler) "
                "and its workers, or fix --cluster"
            ) from None
        try:
            yield client
        finally:
            client.close()


@contextlib.contextmanager
def _quiet_client_log() -> Iterator[None]:
    """Dask's client logs a lost scheduler with tracebacks; geotl says it in one line.

    Left as it is when geotl logs at DEBUG (``-vv``).
    """
    logger = logging.getLogger("distributed.client")
    level = logger.level
    if logging.getLogger("geotl").getEffectiveLevel() > logging.DEBUG:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


# --- the model, as the coordinator knows it and as each worker checks it ----------------


@dataclass(frozen=True)
class ModelRef:
    """The model a job runs, as every worker must see it.

    Attributes:
        path: absolute path of the model folder or ``.onnx`` file (same on every worker).
        sha256: sha256 of its weights (``model.safetensors``, or the ``.onnx`` file).
        geotl_version: the coordinator's geotl version.
        task: the model's task.
        classes: the model's classes.
        engine: see :func:`geotl.predict.engine.load_model`.
        device: torch device on the workers.
        threads: ONNX Runtime threads on each worker.
        build: the digest of the coordinator's geotl code (:func:`geotl.build.code_digest`):
            one release installed from two commits differs here.
        given: the path as the user gave it (named in a worker's refusal beside ``path``);
            not part of the model's identity.
    """

    path: str
    sha256: str
    geotl_version: str
    task: str
    classes: tuple[str, ...]
    engine: str = "auto"
    device: str = "cpu"
    threads: int | None = None
    build: str = ""
    given: str | None = field(default=None, compare=False)

    @classmethod
    def from_path(
        cls,
        model: str | Path,
        engine: str = "auto",
        device: str = "cpu",
        threads: int | None = None,
    ) -> ModelRef:
        """Verify the model here (coordinator) and describe it for the workers.

        Raises:
            ModelArtefactError: missing or damaged model files.
        """
        path = Path(model).resolve()
        if path.suffix.lower() == ".onnx":
            from geotl.export.onnx import read_onnx

            card = read_onnx(path).card
            digest = weights_sha256(path)
        else:
            card = read_card(path)
            digest = weights_sha256(verify_weights(path, card))
        return cls(
            str(path),
            digest,
            __version__,
            card.task,
            tuple(card.classes),
            engine,
            device,
            threads,
            code_digest(),
            str(model),
        )

    @property
    def weights(self) -> Path:
        """The file whose sha256 identifies the model."""
        path = Path(self.path)
        return path if path.suffix.lower() == ".onnx" else path / WEIGHTS_FILE

    def weights_named(self) -> str:
        """The weights file as the user named it, and where workers look when that differs.

        A relative model folder (``geotl predict models/m ...``) is sent to the workers
        absolute: a refusal naming only that path left the user to match it to theirs.
        """
        if self.given is None:
            return str(self.weights)
        given = Path(self.given)
        given = given if given.suffix.lower() == ".onnx" else given / WEIGHTS_FILE
        return str(given) if str(given) == str(self.weights) else f"{given} ({self.weights})"


_WORKER_LOCK = threading.Lock()
_WORKER_MODELS: dict[ModelRef, Artefact] = {}
_WORKER_HASHES: dict[tuple[str, int, int], str] = {}


def _worker_name() -> str:
    from distributed import get_worker

    try:
        return str(get_worker().address)
    except ValueError:  # not on a worker (a direct call)
        return "this process"


def check_worker(model: ModelRef, dask_worker: Any = None) -> str:
    """Refuse to work with another geotl (release or code) or without the same model files.

    Runs on a worker (before every task, and on every worker before a job starts).
    ``dask_worker``: the worker, as :meth:`distributed.Client.run` passes it (its tasks'
    worker is found without it).

    Returns:
        The worker's address.

    Raises:
        ClusterError: the message names the worker and says which check failed and how to
            fix it.
    """
    name = str(dask_worker.address) if dask_worker is not None else _worker_name()
    if __version__ != model.geotl_version:
        raise ClusterError(
            f"worker {name} runs geotl {__version__} but the coordinator runs "
            f"{model.geotl_version}: install the same version on every worker "
            f"(pip install 'geotl=={model.geotl_version}')"
        )
    if model.build and code_digest() != model.build:
        raise ClusterError(
            f"worker {name} runs geotl {__version__} built from other code (digest "
            f"{code_digest()}) than the coordinator's ({model.build}): install geotl from "
            "the same commit on every worker"
        )
    weights = model.weights
    try:
        st = weights.stat()
    except OSError:
        raise ClusterError(
            f"worker {name} has no model file {model.weights_named()}: put the model on "
            "storage every worker sees, at the same path"
        ) from None
    key = (str(weights), st.st_size, st.st_mtime_ns)
    with _WORKER_LOCK:
        digest = _WORKER_HASHES.get(key)
        if digest is None:
            digest = _WORKER_HASHES[key] = weights_sha256(weights)
    if digest != model.sha256:
        raise ClusterError(
            f"worker {name} sees another model at {model.weights_named()} (sha256 "
            f"{digest[:12]}..., the coordinator's {model.sha256[:12]}...): copy the same model "
            "folder to every worker"
        )
    return name


def check_workers(client: Client, model: ModelRef) -> list[str]:
    """:func:`check_worker` on every worker the cluster has now (refuse early, by name).

    Raises:
        ClusterError: a worker runs another geotl or lacks the model; no worker at all.
        GeotlRuntimeError: the scheduler stopped answering (now, or since an earlier job).
    """
    if client.status in ("closing", "closed"):  # it lost the scheduler earlier (monitor --every)
        raise _lost_scheduler(client, "an earlier job ran")
    try:
        if not client.nthreads():
            try:
                client.wait_for_workers(1, timeout=CONNECT_TIMEOUT_S * 6)
            except TimeoutError:
                raise ClusterError(
                    f"the Dask scheduler at {_address(client)} has no workers: start some "
                    "(dask worker ADDRESS)"
                ) from None
        # each worker's answer, so that a refusal names the worker (client.run raises the
        # first error alone, and get_worker() is unset where it runs)
        answers = client.run(check_worker, model, on_error="return")
    except (OSError, CancelledError) as exc:  # OSError: Dask's CommClosedError, timeouts
        raise _lost_scheduler(client, "the workers were checked") from exc
    for address, answer in answers.items():
        if isinstance(answer, ClusterError):
            raise answer
        if isinstance(answer, GeotlError):
            raise ClusterError(f"worker {address}: {answer}") from None
        if isinstance(answer, BaseException):  # a worker without geotl cannot load the check
            raise ClusterError(
                f"worker {address} cannot run geotl's check ({type(answer).__name__}: "
                f"{error_text(answer)}): install 'geotl=={model.geotl_version}' in every "
                "worker's environment"
            ) from None
    return [str(name) for name in answers.values()]


def _address(client: Client | None) -> str:
    """The scheduler's address as the client knows it (also once it closed)."""
    address = getattr(getattr(client, "scheduler", None), "address", None)
    given = getattr(client, "_start_arg", None)  # the address given (a closed client's)
    return str(address or (given if isinstance(given, str) else "?"))


def _lost_scheduler(client: Client | None, during: str) -> GeotlRuntimeError:
    """The error for a scheduler that stopped answering mid-job (its tasks went with it)."""
    return GeotlRuntimeError(
        f"lost the Dask scheduler at {_address(client)} while {during}: check that the "
        "scheduler still runs, then run the command again"
    )


def _worker_artefact(model: ModelRef) -> Artefact:
    """The model, loaded once per worker process (keyed by path, sha256 and engine)."""
    from geotl.predict.engine import load_model

    check_worker(model)
    with _WORKER_LOCK:
        artefact = _WORKER_MODELS.get(model)
        if artefact is None:
            # as many threads as the worker runs tasks with (Dask sets OMP_NUM_THREADS=1 in
            # its processes; ONNX Runtime would take every core of the machine)
            threads = model.threads or _worker_threads()
            artefact = load_model(model.path, model.engine, model.device, threads)
            if artefact.engine is None:  # PyTorch runs the network (ONNX Runtime: no torch)
                import torch

                torch.set_num_threads(threads)
            _WORKER_MODELS[model] = artefact
        return artefact


#: set on the workers of a ``local:N`` cluster: torch threads per worker process
_THREADS_ENV = "GEOTL_WORKER_THREADS"


def _local_share(n_workers: int) -> int:
    """Cores per worker process when ``n_workers`` share this machine (at least 1)."""
    from geotl.cores import usable_cores

    return max(1, usable_cores() // max(1, n_workers))


def _worker_threads() -> int:
    from distributed import get_worker

    from geotl.cores import usable_cores

    share = os.environ.get(_THREADS_ENV)
    if share and share.isdigit():
        return max(1, int(share))
    try:
        return max(1, int(get_worker().state.nthreads))
    except ValueError:  # not in a Dask worker
        return usable_cores()


# --- tasks ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SceneJob:
    """One scene to predict: its options, acquisition time and name in the outputs.

    ``acquired``: default from the file; ``name``: default the file name; ``seen_here``:
    the coordinator sees the file (set by :func:`submit_scenes`).
    """

    scene: Path
    options: PredictOptions
    acquired: str | None = None
    name: str | None = None
    seen_here: bool = False


#: a task's log lines as ``(level, logger name, message)``, sent back with its detections
LogRecords = list[tuple[int, str, str]]
_TASK_RECORDS: dict[int, LogRecords] = {}


class _TaskLog(logging.Handler):
    """Keeps the log lines (INFO and up) of the task running in each thread of a worker.

    Printed on the worker, a scene's warning (the band order of a file without band names)
    came once per block and per worker, unformatted, and its INFO lines (resampling on the
    fly, the scene's count) not at all: the worker logs at WARNING, and a remote cluster's
    user never sees a worker's stderr. The coordinator logs them once per scene, as one
    process does. The count line is left out: a block's count is not the scene's, and the
    coordinator says the joined scene's. Records of threads that run no task are printed
    as before (Python's last-resort handler, warnings and up).
    """

    def emit(self, record: logging.LogRecord) -> None:
        from geotl.predict.core import SCENE_COUNT_LOG

        records = _TASK_RECORDS.get(record.thread or 0)
        if records is not None:
            if record.msg is not SCENE_COUNT_LOG:
                records.append((record.levelno, record.name, record.getMessage()))
        elif logging.lastResort is not None and record.levelno >= logging.lastResort.level:
            logging.lastResort.handle(record)


_TASK_LOG = _TaskLog(logging.INFO)


@contextlib.contextmanager
def _task_warnings() -> Iterator[LogRecords]:
    """The geotl log lines of this thread meanwhile (on a Dask worker only)."""
    records: LogRecords = []
    if _worker_name() == "this process":  # a direct call: the caller's handlers say them
        yield records
        return
    ident = threading.get_ident()
    logger = logging.getLogger("geotl")
    with _WORKER_LOCK:
        _TASK_RECORDS[ident] = records
        if _TASK_LOG not in logger.handlers:
            logger.addHandler(_TASK_LOG)
            if logger.getEffectiveLevel() > logging.INFO:  # Dask's workers log at WARNING
                logger.setLevel(logging.INFO)
    try:
        yield records
    finally:
        with _WORKER_LOCK:
            _TASK_RECORDS.pop(ident, None)


def _predict_task(
    model: ModelRef, job: SceneJob, block: RowBlock | None
) -> tuple[SceneDetections, LogRecords]:
    """Runs on a worker: one scene, or one block of it (widening its margin as needed).

    Returns:
        The detections, and the warnings logged meanwhile (said by the coordinator).

    Raises:
        ClusterError: the coordinator sees the scene's file and this worker does not (a
            "file not found" there sent the user to check a path that exists).
    """
    from geotl.predict import predict_scene
    from geotl.predict.blocks import BlockMarginError

    artefact = _worker_artefact(model)
    if job.seen_here and not os.path.exists(job.scene):
        raise ClusterError(
            f"worker {_worker_name()} has no such file at {job.scene} (the coordinator has): "
            "put the scenes on storage every worker sees, at the same path",
            job.scene,
        )
    options = _task_options(job.options)
    with _task_warnings() as records, _without_causes(records):
        if block is None:
            det = predict_scene(artefact, job.scene, options, acquired=job.acquired, name=job.name)
            return det, records
        while True:
            try:
                det = predict_scene(
                    artefact, job.scene, options, acquired=job.acquired, block=block, name=job.name
                )
                return det, records
            except BlockMarginError as exc:
                block = block.widened(exc.rows)
                log.info("%s: %s; margin now %d px", job.scene.name, exc, block.margin_px)


def _task_options(options: PredictOptions) -> PredictOptions:
    """A task's options on its worker: no progress bar, and no vectorising process pool.

    The tasks are the job's parallelism (scenes, blocks of large scenes). A pool inside a
    worker is unknown to Dask, and outlives the worker: a ``dask worker --no-nanny`` killed
    mid-task (SIGKILL, the OOM killer) left the pool's processes and its forkserver running
    for good, and their resource tracker warned of 5 leaked semaphores when they ended. A
    nanny's worker process is daemonic and never started one
    (:func:`geotl.predict.strips.strip_pool`); now no worker does, whatever ``--workers``
    says: the polygons are the same for any number.
    """
    return replace(options, progress=False, workers=1)


#: the attribute of a task's error that carries the log lines said before it failed
_RECORDS_ATTR = "worker_log"


@contextlib.contextmanager
def _without_causes(records: LogRecords) -> Iterator[None]:
    """Errors of geotl leave a worker without the exceptions they were raised from.

    Dask sends an exception back with its cause; rasterio's (``CPLE_AppDefinedError``)
    cannot be unpickled, and Dask then sends ``Exception(repr(error))``: an input error
    became a traceback-like line with exit 1. The message already holds the cause's text.
    The task's log lines so far go with the error (one process says a damaged file's band
    warning before its error; the cluster said none).
    """
    try:
        yield
    except GeotlError as exc:
        exc.__cause__ = exc.__context__ = None
        exc.__suppress_context__ = True
        setattr(exc, _RECORDS_ATTR, list(records))
        raise


def join_blocks(parts: list[SceneDetections]) -> SceneDetections:
    """The detections of a scene's blocks (in row order) as one scene's detections."""
    from geotl.predict.core import SceneDetections
    from geotl.predict.stream import StreamStats

    first = parts[0]
    if len(parts) == 1:
        return first

    def concat(frames: list[gpd.GeoDataFrame], empty: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
        kept = [f for f in frames if len(f)]
        if not kept:
            return empty
        return gpd.GeoDataFrame(
            pd.concat(kept, ignore_index=True), geometry="geometry", crs=empty.crs
        )

    stats = StreamStats()
    for p in parts:
        for name in ("windows", "valid_windows", "batches", "objects"):
            setattr(stats, name, getattr(stats, name) + getattr(p.stats, name))
        for name in ("read_s", "model_s", "write_s", "vectorise_s", "wall_s"):
            setattr(stats, name, getattr(stats, name) + getattr(p.stats, name))
        for stage, cpu in p.stats.cpu_s.items():
            stats.add_cpu(stage, cpu)
    return SceneDetections(
        scene=first.scene,
        name=first.name,
        features=concat([p.features for p in parts], first.features),
        native=concat([p.native for p in parts], first.native),
        footprint=first.footprint,
        rgb_indexes=first.rgb_indexes,
        stats=stats,
        mask_bands=first.mask_bands,
        nodata=first.nodata,
    )


def _scene_blocks(
    job: SceneJob, model: ModelRef, share_px: float, block_rows: int | None
) -> list[RowBlock] | None:
    """How to split a scene (None: one task). Only what joins exactly is split."""
    import rasterio
    from rasterio.errors import RasterioError

    from geotl.io.rasters import north_up
    from geotl.predict.blocks import RowBlock, plan_blocks
    from geotl.predict.windows import ground_anchor

    opts = job.options
    if (
        model.task == "detection"
        or opts.resample
        or not opts.ground_grid
        or opts.probabilities_path is not None
    ):
        return None
    try:
        with rasterio.open(job.scene) as ds:
            height, width, transform = ds.height, ds.width, ds.transform
    except (RasterioError, OSError):
        return None  # the worker reports the scene's error
    if ground_anchor(transform) is None or north_up(transform, width, height) is not None:
        return None  # rotated, or read north-up through a VRT: one worker takes it whole
    core = opts.vector_window_px
    margin = 2 * opts.halo_px  # widened by the worker when an object needs more
    if block_rows is not None:
        n = math.ceil(height / max(block_rows, 1))
    else:
        # a block re-reads its margins and one inference window on each side: split only
        # into blocks that own several times as many rows (default settings: >= 2560 rows)
        n = min(
            int(height * width // max(share_px, 1.0)),
            height // max(2 * core, 4 * (margin + _MAX_WINDOW_PX)),
        )
        if n < 2:
            return None
    rows = plan_blocks(height, n, core)
    if len(rows) < 2:
        return None
    return [RowBlock(a, b, margin) for a, b in rows]


def _scene_pixels(scene: Path) -> int:
    import rasterio
    from rasterio.errors import RasterioError

    try:
        with rasterio.open(scene) as ds:
            return int(ds.height * ds.width)
    except (RasterioError, OSError):
        return 0


@dataclass
class PendingScene:
    """A scene submitted to the cluster: its tasks (one, or one per block).

    ``sent``: the scene's path as the workers got it (absolute), named in their warnings.
    """

    job: SceneJob
    futures: list[Any]
    sent: Path | None = None

    def result(self) -> SceneDetections | BaseException:
        """Wait for the scene's tasks: its detections, or the error of a failed task.

        Raises:
            ClusterError: a worker refused the job (another version, other model files).
            GeotlRuntimeError: the connection to the scheduler was lost (it stopped, or the
                network failed): the scene's tasks are gone with it.
        """
        from distributed import wait

        try:
            wait(self.futures)
            errors = [f.exception() for f in self.futures if f.status != "finished"]
        except (OSError, CancelledError) as exc:
            # the client cancels every task when it loses the scheduler for good
            client = self.futures[0].client if self.futures else None
            raise _lost_scheduler(client, f"{self.job.scene.name} was predicted") from exc
        if errors:
            error = errors[0]
            if isinstance(error, GeotlError):
                self._say(error.__dict__.pop(_RECORDS_ATTR, []))
                error = self._as_given_error(error)
            if isinstance(error, ClusterError):
                raise error
            return error if isinstance(error, BaseException) else RuntimeError(str(error))
        results = [f.result() for f in self.futures]
        self._say([r for _, records in results for r in records])
        joined = join_blocks([det for det, _ in results])
        joined.scene = self.job.scene  # as the caller named it (the workers got it absolute)
        self._say_count(joined)
        return joined

    def _as_given(self, text: str) -> str:
        """``text`` naming the scene as the caller gave it (the workers got it absolute)."""
        if self.sent is None or self.sent == self.job.scene:
            return text
        return text.replace(str(self.sent), str(self.job.scene))

    def _as_given_error(self, error: GeotlError) -> GeotlError:
        """A worker's error about the scene, naming it as the caller gave it.

        A relative scene failed as ``/abs/path/scene.tif: file not found`` on the cluster and
        ``scene.tif: file not found`` in one process. A worker's refusal
        (:class:`ClusterError`) keeps where the worker looked in its message.
        """
        if self.sent is None or self.sent == self.job.scene:
            return error
        path = self.job.scene if error.path == self.sent else error.path
        message = (
            error.message if isinstance(error, ClusterError) else self._as_given(error.message)
        )
        renamed = type(error)(message, path)
        renamed.__dict__.update(
            {k: v for k, v in error.__dict__.items() if k not in ("message", "path")}
        )
        return renamed

    def _say(self, records: LogRecords) -> None:
        """Log the workers' lines here, each once for the scene, naming it as given.

        Every block (and a task rerun after its worker died) warns as the whole scene
        would: the same message from several tasks is one line.
        """
        for level, name, message in dict.fromkeys(records):
            logging.getLogger(name).log(level, "%s", self._as_given(message))

    def _say_count(self, joined: SceneDetections) -> None:
        """The scene's count line, as one process says it: the blocks' totals, said once."""
        from geotl.predict.core import SCENE_COUNT_LOG

        stats = joined.stats
        logging.getLogger("geotl.predict.core").info(
            SCENE_COUNT_LOG,
            self.job.name or Path(self.job.scene).name,
            len(joined.features),
            stats.windows,
            stats.wall_s,
            stats.model_s,
        )

    def cancel(self) -> None:
        """Drop the scene's tasks (finished or not); nothing to do once the client closed.

        A generator of :func:`predict_on_cluster` abandoned by an error is closed when it
        is collected, often after its client: cancelling then printed a traceback.
        """
        for f in self.futures:
            if getattr(f.client, "status", None) != "running":
                return
            with contextlib.suppress(RuntimeError):  # the client's event loop just closed
                f.cancel()


def submit_scenes(
    client: Client, model: ModelRef, jobs: list[SceneJob], *, block_rows: int | None = None
) -> list[PendingScene]:
    """Submit scenes to the cluster (after checking every worker); results come later.

    Scenes are tasks; a scene with more pixels than two workers' shares of the job (or
    every scene, when ``block_rows`` is given) is split into blocks of whole vectoriser
    windows, predicted by different workers and joined in row order by
    :meth:`PendingScene.result`.

    Raises:
        ClusterError: a worker runs another geotl version or lacks the model.
    """
    check_workers(client, model)
    workers = max(1, sum(client.nthreads().values()))
    total_px = sum(_scene_pixels(j.scene) for j in jobs)
    share = total_px / workers
    token = uuid.uuid4().hex[:12]  # keys of earlier jobs on the same client stay apart
    pending = []
    for i, job in enumerate(jobs):
        blocks = _scene_blocks(job, model, share, block_rows)
        # workers may run elsewhere: an absolute path (GDAL's /vsi... paths stay as given)
        if str(job.scene).startswith("/vsi"):
            task = job
        else:
            task = replace(job, scene=job.scene.resolve(), seen_here=job.scene.exists())
        if blocks is None:
            futures = [client.submit(_predict_task, model, task, None, key=f"geotl-{token}-{i}")]
        else:
            futures = [
                client.submit(_predict_task, model, task, b, key=f"geotl-{token}-{i}-rows{b.start}")
                for b in blocks
            ]
        pending.append(PendingScene(job, futures, task.scene))
    return pending


def predict_on_cluster(
    client: Client,
    model: ModelRef,
    jobs: list[SceneJob],
    *,
    block_rows: int | None = None,
    progress: bool = True,
) -> Iterator[tuple[SceneJob, SceneDetections | BaseException]]:
    """Predict scenes on the cluster; yield each scene's detections or error, in order.

    Args:
        client: from :func:`open_cluster`.
        model: from :meth:`ModelRef.from_path`.
        jobs: the scenes, in output order.
        block_rows: rows per block (default: split by the workers' share; see
            :func:`submit_scenes`).
        progress: a progress bar over the tasks on stderr.

    Yields:
        ``(job, detections)`` or ``(job, exception)`` for a scene that failed.

    Raises:
        ClusterError: a worker runs another geotl version or lacks the model.
    """
    pending = submit_scenes(client, model, jobs, block_rows=block_rows)
    total = sum(len(p.futures) for p in pending)
    bar = progress_bar(total=total, desc="predict (cluster)", unit="task", enabled=progress)
    try:
        for p in pending:
            result = p.result()
            bar.update(len(p.futures))
            yield p.job, result
    finally:
        bar.close()
        for p in pending:
            p.cancel()
