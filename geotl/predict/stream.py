"""Streaming inference: overlapping windows in batches, blended, in bounded memory.

Four stages, in threads (and a process pool), share the work so that the model never
waits; :func:`infer_and_vectorise` wires them together through a :class:`_Pipeline`
(two queues, the first error, the finished-row frontier):

1. :class:`_WindowReader` reads and normalises windows ahead of the model
   (``read_threads`` threads, each with its own handle on the scene: GDAL releases the
   GIL, and remote files reward many requests in flight);
2. :func:`_run_model`, in the calling thread, runs the network; its probabilities stay on
   the model's device;
3. :class:`_RowWriter` blends each window's probabilities into a band of rows on that
   device (:class:`~geotl.predict.band.BandAccumulator`, as wide as the scene and one
   window high) and, as soon as a row of windows is complete, turns the rows no later
   window touches into the final per-pixel planes (class map, scores, ...: the task's
   :class:`~geotl.predict.objects.ObjectExtractor` says which): only those finished rows'
   probabilities are copied back to the CPU, into a scratch file
   (:class:`~geotl.predict.strips.RawRaster`), and the optional probability GeoTIFF;
4. :class:`_Vectoriser` turns finished rows into objects window by window with a halo
   (the ownership rule of :func:`~geotl.predict.vectorise.objects_by_windows`), in a
   process pool over the cores (:mod:`geotl.predict.strips`) or in its own thread, while
   inference goes on.

Memory is bounded by the window, the batch and the scene's width, not the scene: the
planes file lives in the operating system's page cache, not the process.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.windows import Window

from geotl.io.lonlat import crs_wkt
from geotl.io.rasters import gdal_write_errors, read_normalised
from geotl.models.artefact import Artefact
from geotl.predict.band import BandAccumulator
from geotl.predict.engine import Engine, device_probabilities, engine_for
from geotl.predict.objects import ObjectExtractor, extractor_for
from geotl.predict.outputs.cog import GDAL_CACHE_BYTES, open_probabilities
from geotl.predict.strips import (
    RawRaster,
    StripResult,
    StripTask,
    discard_pool,
    strip_pool,
    submit_strip,
)
from geotl.predict.vectorise import CoreProgress, VectorObject, core_windows
from geotl.predict.windows import WindowPlan, blend_weights, clip_window

if TYPE_CHECKING:  # on an accelerator only: on the CPU the stream runs in numpy
    import torch

__all__ = ["RawRaster", "StreamStats", "infer_and_vectorise"]

log = logging.getLogger(__name__)

#: pixels finalised at a time: a group of whole rows, written to the planes file at once
#: (a group narrower than the scene meant one write per row: 8,192 for a 4096 px scene)
_FINALISE_PX = 1 << 19


@dataclass
class StreamStats:
    """Where the time went (seconds) and how much work was done.

    ``vectorise_s`` is the vectorising work summed over the pool's processes, and
    ``read_s`` the reading summed over the read-ahead threads (either can exceed the wall
    time when several run at once). ``valid_windows`` counts the windows that hold a valid
    pixel (none: the scene is all nodata). ``cpu_s`` is the CPU time of each stage
    (``read``, ``model``: the forward passes' calling thread, ``write``, ``vectorise``: the
    pool's processes and the thread that feeds them, ``frame``: the objects' table after
    the stream), which the machine's load barely changes, unlike the wall times.
    """

    windows: int = 0
    valid_windows: int = 0
    batches: int = 0
    read_s: float = 0.0
    model_s: float = 0.0
    write_s: float = 0.0
    vectorise_s: float = 0.0
    wall_s: float = 0.0
    objects: int = 0
    extra: dict[str, float] = field(default_factory=dict)
    cpu_s: dict[str, float] = field(default_factory=dict)

    def add_cpu(self, stage: str, seconds: float) -> None:
        """Add ``seconds`` of CPU time to ``stage`` (stages' threads add their own)."""
        with _CPU_LOCK:
            self.cpu_s[stage] = self.cpu_s.get(stage, 0.0) + seconds


_CPU_LOCK = threading.Lock()


class _Stop(Exception):
    pass


class _Pipeline:
    """What the stages share: the two queues, errors, the finished-row frontier.

    ``batches`` carries read windows from the reader to the model, ``probabilities`` the
    model's output to the writer; ``None`` on a queue says that nothing more comes.
    """

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.cond = threading.Condition()
        self.final_rows = 0
        self.batches: queue.Queue[Any] = queue.Queue(maxsize=2)
        self.probabilities: queue.Queue[Any] = queue.Queue(maxsize=2)

    def run_stage(self, stage: Callable[[], None], name: str, stats: StreamStats) -> None:
        """Run ``stage``; its error stops every stage (and is raised by the caller later).

        The thread's CPU time goes to ``stats.cpu_s[name]``.
        """
        cpu0 = time.thread_time()
        try:
            stage()
        except _Stop:
            pass
        except BaseException as exc:
            self.fail(exc)
        finally:
            stats.add_cpu(name, time.thread_time() - cpu0)

    def fail(self, exc: BaseException) -> None:
        self.errors.append(exc)
        self.stop.set()
        with self.cond:
            self.cond.notify_all()

    def put(self, q: queue.Queue[Any], item: Any) -> None:
        while not self.stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return
            except queue.Full:
                continue
        raise _Stop

    def get(self, q: queue.Queue[Any]) -> Any:
        while not self.stop.is_set():
            try:
                return q.get(timeout=0.1)
            except queue.Empty:
                continue
        raise _Stop

    def rows_done(self, rows: int) -> None:
        with self.cond:
            self.final_rows = rows
            self.cond.notify_all()

    def wait_rows(self, rows: int) -> None:
        with self.cond:
            while self.final_rows < rows and not self.stop.is_set():
                self.cond.wait(timeout=0.5)
        if self.stop.is_set() and self.final_rows < rows:
            raise _Stop


def _batches(plan: WindowPlan, batch_size: int) -> Iterator[list[int]]:
    """Indexes of the plan's windows, ``batch_size`` at a time."""
    batch: list[int] = []
    for k in range(len(plan.windows)):
        batch.append(k)
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def _read_threads_default(source: Any) -> int:
    """Threads reading ahead: many for remote files (latency), few for a local disk (CPU).

    A quarter of the cores (1 to 4) on a local disk, with the model on the CPU or not: on
    a 16-core GPU machine, 8 threads instead of 4 read a 4096 px scene with 30 % more CPU
    and made the stream slower (the threads contend for this process's GIL with the stage
    that blends; BENCHMARKS.md, issue 10, stop 49).
    """
    from geotl.cores import usable_cores

    name = str(getattr(source, "name", "") or "")
    if name.startswith(("/vsicurl", "/vsis3", "/vsigs", "/vsiaz", "http://", "https://")):
        return 16
    return max(1, min(4, usable_cores() // 4))


class _WindowReader:
    """Stage 1: reads the plan's windows ahead of the model and queues them by batch.

    With one thread it reads ``source`` itself; with more, each thread opens its own handle
    (``open_source``: a GDAL dataset must not be shared between threads) and the batches
    are put together in plan order from what the threads read.
    """

    def __init__(
        self,
        pipe: _Pipeline,
        stats: StreamStats,
        artefact: Artefact,
        plan: WindowPlan,
        band_indexes: list[int],
        mask_bands: tuple[int, ...],
        batch_size: int,
        source: Any,
        open_source: Callable[[], contextlib.AbstractContextManager[Any]] | None,
        n_threads: int,
    ) -> None:
        self.pipe, self.stats, self.artefact, self.plan = pipe, stats, artefact, plan
        self.band_indexes, self.mask_bands = band_indexes, mask_bands
        self.batch_size = batch_size
        self.source, self.open_source, self.n_threads = source, open_source, n_threads
        self.model_px = artefact.card.network.round_up_px(plan.window_px)
        # the read-ahead threads' hand-over: windows read, by index, and the next to read
        self._slots: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._cond = threading.Condition()
        # windows in flight: enough to keep every thread busy for two batches
        self._room = threading.Semaphore(max(2 * n_threads, 2 * batch_size))
        self._next = 0

    def read(self, ds: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Window ``k`` normalised and padded to the model's size, and its valid pixels."""
        w = self.plan.windows[k]
        win = clip_window(w, self.plan.scene_shape)
        norm, valid = read_normalised(
            ds, self.band_indexes, self.mask_bands, win, self.artefact.normalise
        )
        model_px = self.model_px
        top, left = win.row_off - w.row_off, win.col_off - w.col_off
        bottom, right = model_px - top - win.height, model_px - left - win.width
        if top or left or bottom or right:
            norm = np.pad(norm, ((0, 0), (top, bottom), (left, right)), mode="symmetric")
        full = np.zeros((model_px, model_px), dtype=bool)
        full[top : top + win.height, left : left + win.width] = valid
        return norm, full

    def run(self) -> None:
        """Queue every batch, then None."""
        if self.n_threads == 1:
            for batch in _batches(self.plan, self.batch_size):
                t0 = time.perf_counter()
                got = [self.read(self.source, k) for k in batch]
                self.stats.read_s += time.perf_counter() - t0
                self.pipe.put(self.pipe.batches, (batch, *_stack(got)))
        else:
            self._read_ahead()
        self.pipe.put(self.pipe.batches, None)

    def _read_ahead(self) -> None:
        """``n_threads`` threads read; this one queues their windows by batch, in order."""
        threads = [
            threading.Thread(target=self._work, name=f"geotl-read-{i}", daemon=True)
            for i in range(self.n_threads)
        ]
        for t in threads:
            t.start()
        k = 0
        try:
            for batch in _batches(self.plan, self.batch_size):
                got = []
                for _ in batch:
                    with self._cond:
                        while k not in self._slots:
                            if self.pipe.stop.is_set():
                                raise _Stop
                            self._cond.wait(timeout=0.1)
                        got.append(self._slots.pop(k))
                    self._room.release()
                    k += 1
                self.pipe.put(self.pipe.batches, (batch, *_stack(got)))
        finally:
            if k < len(self.plan.windows):
                self.pipe.stop.set()  # an error: the threads stop too
            for t in threads:
                t.join()

    def _work(self) -> None:
        """One read-ahead thread: its own handle (opened and closed here), the next windows."""
        assert self.open_source is not None
        cpu0 = time.thread_time()
        try:
            with self.open_source() as ds:
                while True:
                    while not self._room.acquire(timeout=0.1):
                        if self.pipe.stop.is_set():
                            return
                    with self._cond:
                        k = self._next
                        self._next += 1
                    if k >= len(self.plan.windows) or self.pipe.stop.is_set():
                        return
                    t0 = time.perf_counter()
                    item = self.read(ds, k)
                    with self._cond:
                        self.stats.read_s += time.perf_counter() - t0
                        self._slots[k] = item
                        self._cond.notify_all()
        except BaseException as exc:
            self.pipe.fail(exc)
        finally:
            self.stats.add_cpu("read", time.thread_time() - cpu0)


class _RowWriter:
    """Stage 3: blends each window into the band, then finishes the rows it completes.

    Finished rows become the task's final planes (in ``planes``) and, optionally, class
    probabilities (in ``prob_ds``); only they leave the model's device.
    """

    def __init__(
        self,
        pipe: _Pipeline,
        stats: StreamStats,
        plan: WindowPlan,
        extractor: ObjectExtractor,
        threshold: float,
        device: str,
        planes: RawRaster,
        prob_ds: Any,
    ) -> None:
        self.pipe, self.stats, self.plan = pipe, stats, plan
        self.extractor, self.threshold = extractor, threshold
        self.planes, self.prob_ds = planes, prob_ds
        height, width = plan.scene_shape
        px = plan.window_px
        self.band = BandAccumulator(extractor.channels, min(px, height), width, device)
        self.weights: Any = blend_weights(px, px, max(plan.overlap_px, 1))
        if not self.band.cpu:  # beside the band, on its device
            import torch

            self.weights = torch.from_numpy(self.weights).to(device)
        self.done_in_row: dict[int, int] = {}  # windows blended, per row of the plan
        self.final = 0  # scene rows finished

    def run(self) -> None:
        """Blend batches from the model until it says it is done."""
        while True:
            item = self.pipe.get(self.pipe.probabilities)
            if item is None:
                return
            t0 = time.perf_counter()
            self.add_batch(*item)
            self.stats.write_s += time.perf_counter() - t0

    def add_batch(
        self,
        batch: list[int],
        probs: np.ndarray | torch.Tensor,
        valids: np.ndarray | torch.Tensor,
    ) -> None:
        """Blend windows ``batch`` of the plan; finish the rows a complete window row frees."""
        plan = self.plan
        for j, k in enumerate(batch):
            w = plan.windows[k]
            inside = clip_window(w, plan.scene_shape)
            top, left = inside.row_off - w.row_off, inside.col_off - w.col_off
            rsl, csl = slice(top, top + inside.height), slice(left, left + inside.width)
            self.band.add(
                probs[j, :, rsl, csl], self.weights[rsl, csl], valids[j, rsl, csl], inside
            )
            grid_row = plan.grid_position(k)[0]
            self.done_in_row[grid_row] = self.done_in_row.get(grid_row, 0) + 1
            if self.done_in_row[grid_row] == plan.n_cols:
                rows = plan.final_rows_after(grid_row)
                if rows > self.final:
                    self.finish_rows(rows)
                    self.final = rows
                    self.pipe.rows_done(rows)

    def finish_rows(self, r_end: int) -> None:
        """Write the final planes (and probabilities) of the band's rows above ``r_end``."""
        top = self.band.top
        blended_all, valid_all = (_host(a) for a in self.band.finish(r_end))
        width = self.plan.scene_shape[1]
        group = max(1, _FINALISE_PX // width)
        for g0 in range(0, r_end - top, group):
            g1 = min(g0 + group, r_end - top)
            blended = blended_all[:, g0:g1]
            valid = valid_all[g0:g1]
            final = self.extractor.finalise(blended, valid, self.threshold)
            self.planes.write_planes(top + g0, 0, final)  # whole rows: one write
            if self.prob_ds is not None:
                probs = self.extractor.probability_planes(blended)
                out = np.where(valid[None], probs, -1.0).astype(np.float32)
                # a full cache writes tiles out here: a full disk must not pass unseen
                with gdal_write_errors(Path(self.prob_ds.name)):
                    self.prob_ds.write(out, window=Window(0, top + g0, width, g1 - g0))


class _Vectoriser:
    """Stage 4: turns finished rows into objects, in its own thread or a process pool.

    Objects are owned by the vectoriser's core windows
    (:func:`~geotl.predict.vectorise.objects_by_windows`); each core waits until the rows
    it reads (with its halo) are final.
    """

    def __init__(
        self,
        pipe: _Pipeline,
        stats: StreamStats,
        extractor: ObjectExtractor,
        planes: RawRaster,
        transform: Affine,
        pool: Any,
        workers: int,
        *,
        window_px: int,
        halo_px: int,
        simplify_px: float,
        min_pixels: int,
        crs: Any = None,
    ) -> None:
        self.pipe, self.stats, self.extractor, self.planes = pipe, stats, extractor, planes
        # a pool worker gives its objects in lon/lat with their areas (off the serial tail);
        # in this process (no pool) the scene's frame makes them
        self.crs_wkt = crs_wkt(crs) if crs is not None and pool is not None else None
        self.scene_shape = (planes.height, planes.width)
        self.transform, self.pool, self.workers = transform, pool, workers
        self.window_px, self.halo_px = window_px, halo_px
        self.simplify_px, self.min_pixels = simplify_px, min_pixels
        self.objects: list[VectorObject] = []
        self.waited_s = 0.0  # time spent waiting for rows, left out of vectorise_s

    def run(self) -> None:
        """Vectorise every core window, in scene order."""
        if self.pool is None:
            self._in_thread()
        else:
            self._in_pool()

    def _in_thread(self) -> None:
        t0 = time.perf_counter()
        for obj in self.extractor.extract_by_windows(
            self._read_final,
            self.scene_shape,
            self.transform,
            window_px=self.window_px,
            halo_px=self.halo_px,
            simplify_px=self.simplify_px,
            min_pixels=self.min_pixels,
        ):
            self.objects.append(obj)
        self.stats.vectorise_s = time.perf_counter() - t0 - self.waited_s

    def _read_final(self, r: int, c: int, h: int, w: int) -> np.ndarray:
        t0 = time.perf_counter()
        self.pipe.wait_rows(r + h)
        self.waited_s += time.perf_counter() - t0
        return np.moveaxis(self.planes.read(r, c, h, w), -1, 0)

    def _task(self, chunk: tuple[Window, ...], resume: CoreProgress | None = None) -> StripTask:
        return StripTask(
            extractor=self.extractor,
            planes_path=self.planes.path,
            scene_shape=self.scene_shape,
            planes=self.extractor.planes,
            cores=chunk,
            transform=self.transform,
            window_px=self.window_px,
            halo_px=self.halo_px,
            simplify_px=self.simplify_px,
            min_pixels=self.min_pixels,
            rows_ready=self.pipe.final_rows,
            resume=resume,
            crs=self.crs_wkt,
        )

    def _in_pool(self) -> None:
        """Run the strips in the pool as soon as their rows are final, one per free worker.

        A strip whose objects reach rows that were not final yet is run again (its cores
        left) as soon as those rows are, beside the others: no strip waits for another.
        Only as many strips as there are workers are handed to the pool at a time, so that
        when a worker frees, the longest work ready goes first: a strip run again with a
        wider halo holds an object larger than its window (a closed canopy, read whole
        and split in one process), and queued behind fresh strips it would start last and
        end the scene late (BENCHMARKS.md, issue 10, stop 35). Objects are gathered per
        strip and joined in scene order.
        """
        height = self.scene_shape[0]
        cores = [c for row in core_windows(self.scene_shape, self.window_px) for c in row]
        # a few tasks per worker: balanced, yet each reads its halos only once
        per_task = max(1, len(cores) // (4 * self.workers))
        left = [tuple(cores[i : i + per_task]) for i in range(0, len(cores), per_task)]
        found: list[list[VectorObject]] = [[] for _ in left]
        need = [min(c[-1].row_off + c[-1].height + self.halo_px, height) for c in left]
        # where a strip's first core stopped, for its next run
        resume: list[CoreProgress | None] = [None] * len(left)
        todo = list(range(len(left)))  # strips to (re)start
        running: dict[Future[StripResult], int] = {}
        cond = self.pipe.cond

        def wake(_: Future[StripResult]) -> None:
            with cond:
                cond.notify_all()

        def startable() -> list[int]:
            free = self.workers - len(running)
            return _strips_to_start(todo, need, resume, self.pipe.final_rows, free)

        def ready() -> bool:
            return any(f.done() for f in running) or bool(startable())

        try:
            while todo or running:
                with cond:
                    while not ready() and not self.pipe.stop.is_set():
                        cond.wait(timeout=0.5)
                if self.pipe.stop.is_set():
                    raise _Stop
                for fut in [f for f in running if f.done()]:
                    i = running.pop(fut)
                    res = fut.result()
                    found[i].extend(res.objects)
                    self.stats.vectorise_s += res.seconds
                    self.stats.add_cpu("vectorise", res.cpu_s)
                    self.stats.extra["pool_cpu_s"] = (
                        self.stats.extra.get("pool_cpu_s", 0.0) + res.cpu_s
                    )
                    left[i] = left[i][res.cores_done :]
                    if left[i]:  # an object reaches rows not final yet: again once they are
                        need[i], resume[i] = min(res.need_rows, height), res.resume
                        todo.append(i)
                for i in startable():
                    todo.remove(i)
                    fut = submit_strip(self.pool, self._task(left[i], resume[i]))
                    running[fut] = i
                    fut.add_done_callback(wake)
        except BrokenProcessPool:
            discard_pool(self.pool)
            raise
        finally:
            for f in running:
                f.cancel()
        self.objects = [o for objects in found for o in objects]


def _strips_to_start(
    todo: list[int],
    need: list[int],
    resume: list[CoreProgress | None],
    final_rows: int,
    free: int,
) -> list[int]:
    """Which strips to hand the pool now: at most ``free``, of those whose rows are final.

    The widest halo first (a strip run again with a wider halo holds an object larger than
    its window: the longest work), then scene order.

    >>> wide = CoreProgress(halo_px=256)
    >>> _strips_to_start([0, 1, 2, 3], [900, 500, 500, 400], [None, None, wide, None], 600, 2)
    [2, 1]
    """
    if free <= 0:
        return []
    ready = [i for i in todo if final_rows >= need[i]]

    def halo(i: int) -> int:
        progress = resume[i]
        return progress.halo_px if progress is not None else 0

    return sorted(ready, key=lambda i: (-halo(i), i))[:free]


def infer_and_vectorise(
    artefact: Artefact,
    source: Any,
    band_indexes: list[int],
    plan: WindowPlan,
    scratch_dir: Path,
    *,
    mask_bands: tuple[int, ...] = (),
    batch_size: int = 8,
    threshold: float = 0.5,
    simplify_px: float = 1.0,
    min_pixels: int = 1,
    vector_window_px: int = 1024,
    halo_px: int = 64,
    probabilities_path: Path | None = None,
    progress: Callable[[int], object] | None = None,
    extractor: ObjectExtractor | None = None,
    flip_tta: bool = False,
    workers: int = 1,
    read_threads: int | None = None,
    open_source: Callable[[], contextlib.AbstractContextManager[Any]] | None = None,
) -> tuple[list[VectorObject], StreamStats]:
    """Predict ``source`` window by window and vectorise the blended class map.

    Args:
        artefact: the loaded model.
        source: an open rasterio dataset or WarpedVRT at the model's resolution.
        band_indexes: 1-based source bands in the model's band order.
        plan: the window plan over ``source``.
        scratch_dir: folder for the scratch files (removed by the caller).
        mask_bands: the bands whose GDAL masks are read beside the nodata value
            (:func:`geotl.io.rasters.mask_bands` of the scene's data bands; none: the
            nodata value alone says which pixels hold data).
        batch_size: windows per forward pass.
        threshold: minimum foreground probability.
        simplify_px: polygon simplification tolerance in pixels.
        min_pixels: drop smaller objects.
        vector_window_px: core window of the vectoriser.
        halo_px: initial halo of the vectoriser.
        probabilities_path: optional GeoTIFF (tiled, float32) of the blended foreground
            class probabilities; nodata -1.
        progress: called with the number of windows done after each batch.
        extractor: the task's object extractor (default: from the card's task).
        flip_tta: average each window's probabilities over its four flips.
        workers: processes that vectorise row strips (1: a thread of this process).
        read_threads: threads reading windows ahead (default: 16 for remote files, else a
            quarter of the cores, 1 to 4); more than one needs ``open_source``.
        open_source: opens another handle on ``source`` (one per reading thread: a GDAL
            dataset must not be shared between threads).

    Returns:
        The objects (scene CRS via ``source.transform``) and timing statistics.
    """
    height, width = plan.scene_shape
    card = artefact.card
    extractor = extractor or extractor_for(
        card.task, len(card.classes), seed_threshold=card.seed_threshold
    )
    device = "cpu" if artefact.on_cpu else artefact.device_name
    n_threads = 1 if open_source is None else read_threads or _read_threads_default(source)
    pool = strip_pool(workers)
    stats = StreamStats(windows=len(plan.windows))
    stats.extra["workers"] = float(workers if pool is not None else 1)
    stats.extra["read_threads"] = float(n_threads)
    pipe = _Pipeline()
    reader = _WindowReader(
        pipe,
        stats,
        artefact,
        plan,
        band_indexes,
        mask_bands,
        batch_size,
        source,
        open_source,
        n_threads,
    )
    planes = RawRaster(scratch_dir / "planes.raw", height, width, extractor.planes, np.float32)
    vectoriser = _Vectoriser(
        pipe,
        stats,
        extractor,
        planes,
        source.transform,
        pool,
        workers,
        window_px=vector_window_px,
        halo_px=halo_px,
        simplify_px=simplify_px,
        min_pixels=min_pixels,
        crs=getattr(source, "crs", None),
    )
    t_start = time.perf_counter()
    prob_ds: Any = None
    threads: list[threading.Thread] = []
    try:
        with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES):
            if probabilities_path is not None:
                prob_ds = open_probabilities(
                    probabilities_path,
                    width,
                    height,
                    source.crs,
                    source.transform,
                    extractor.probability_names(card.classes),
                )
            writer = _RowWriter(pipe, stats, plan, extractor, threshold, device, planes, prob_ds)
            stages = {"read": reader.run, "write": writer.run, "vectorise": vectoriser.run}
            threads = [
                threading.Thread(
                    target=pipe.run_stage,
                    args=(stage, name, stats),
                    name=f"geotl-{name}",
                    daemon=True,
                )
                for name, stage in stages.items()
            ]
            for t in threads:
                t.start()
            _run_model(artefact, extractor, flip_tta, pipe, stats, progress)
            for t in threads:
                t.join()
            if prob_ds is not None and not pipe.errors:
                with gdal_write_errors(Path(prob_ds.name)):  # the last tiles go out here
                    prob_ds.close()
    finally:
        pipe.stop.set()
        for t in threads:
            if t.ident is not None:  # an interrupt can land between two starts
                t.join(timeout=30)
        if prob_ds is not None and not prob_ds.closed:
            prob_ds.close()
        planes.close()
    if pipe.errors:
        raise pipe.errors[0]
    stats.wall_s = time.perf_counter() - t_start
    stats.objects = len(vectoriser.objects)
    return vectoriser.objects, stats


def _stack(got: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """A batch's windows ``(B, bands, px, px)`` float32 and valid pixels ``(B, px, px)``."""
    return np.stack([g[0] for g in got]), np.stack([g[1] for g in got])


def _host(a: np.ndarray | torch.Tensor) -> np.ndarray:
    """An array in this process's memory (a tensor on an accelerator is copied back)."""
    return a if isinstance(a, np.ndarray) else a.cpu().numpy()


def _flip_averaged(engine: Engine, batch: np.ndarray) -> np.ndarray | torch.Tensor:
    """Probabilities averaged over the identity, left-right, up-down and both flips."""
    total: Any = None
    for axes in ((), (-1,), (-2,), (-2, -1)):
        x = np.ascontiguousarray(np.flip(batch, axes)) if axes else batch
        p: Any = device_probabilities(engine, x)
        if axes:
            p = np.flip(p, axes) if isinstance(p, np.ndarray) else p.flip(axes)
        total = p if total is None else total + p
    assert total is not None
    averaged: np.ndarray | torch.Tensor = total / 4.0
    return averaged


def _run_model(
    artefact: Artefact,
    extractor: ObjectExtractor,
    flip_tta: bool,
    pipe: _Pipeline,
    stats: StreamStats,
    progress: Callable[[int], object] | None,
) -> None:
    """Stage 2, in the calling thread: the network's probabilities for each batch."""
    engine = engine_for(artefact, extractor.probabilities)
    try:
        while True:
            item = pipe.get(pipe.batches)
            if item is None:
                pipe.put(pipe.probabilities, None)
                return
            batch, arr, valids = item
            t0, cpu0 = time.perf_counter(), time.thread_time()
            out = _flip_averaged(engine, arr) if flip_tta else device_probabilities(engine, arr)
            valid_t: Any = valids
            if not isinstance(out, np.ndarray):  # on an accelerator, beside the probabilities
                import torch

                valid_t = torch.from_numpy(valids).to(out.device, non_blocking=True)
            stats.model_s += time.perf_counter() - t0
            stats.add_cpu("model", time.thread_time() - cpu0)
            stats.batches += 1
            stats.valid_windows += int(valids.reshape(len(valids), -1).any(axis=1).sum())
            pipe.put(pipe.probabilities, (batch, out, valid_t))
            if progress is not None:
                progress(len(batch))
    except _Stop:
        pass
    except BaseException as exc:
        pipe.fail(exc)
