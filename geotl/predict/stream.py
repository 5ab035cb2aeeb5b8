"""Streaming inference: overlapping windows in batches, blended, in bounded memory.

Threads (and a process pool) share the work so that the model never waits:

* readers read and normalise windows ahead of the model (``read_threads`` threads, each
  with its own handle on the scene: GDAL releases the GIL, and remote files reward many
  requests in flight);
* the calling thread runs the network; its probabilities stay on the model's device;
* a writer blends each window's probabilities into a band of rows on that device (a
  torch tensor as wide as the scene and one window high) and, as soon as a row of
  windows is complete, turns the rows no later window touches into the final per-pixel
  planes (class map, scores, ...: the task's
  :class:`~geotl.predict.objects.ObjectExtractor` says which): only those finished rows'
  probabilities are copied back to the CPU, into a scratch file
  (:class:`~geotl.predict.strips.RawRaster`), and the optional probability GeoTIFF;
* a vectoriser turns finished rows into objects window by window with a halo (the
  ownership rule of :func:`~geotl.predict.vectorise.objects_by_windows`), in a process
  pool over the cores (:mod:`geotl.predict.strips`) or in its own thread, while inference
  goes on.

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
from typing import Any

import numpy as np
import rasterio
import torch
from affine import Affine
from rasterio.windows import Window

from geotl.errors import GeotlInputError
from geotl.io.nodata import valid_mask
from geotl.models.artefact import Artefact
from geotl.predict.engine import Engine, device_probabilities, engine_for
from geotl.predict.objects import ObjectExtractor, SegmentationExtractor, extractor_for
from geotl.predict.strips import (
    RawRaster,
    StripResult,
    StripTask,
    discard_pool,
    strip_pool,
    submit_strip,
)
from geotl.predict.vectorise import VectorObject, core_windows
from geotl.predict.windows import WindowPlan, blend_weights, clip_window

__all__ = ["RawRaster", "StreamStats", "infer_and_vectorise"]

log = logging.getLogger(__name__)

_FINALISE_COLS = 2048


@dataclass
class StreamStats:
    """Where the time went (seconds) and how much work was done.

    ``vectorise_s`` is the vectorising work summed over the pool's processes (it can exceed
    the wall time when several run at once).
    """

    windows: int = 0
    batches: int = 0
    read_s: float = 0.0
    model_s: float = 0.0
    write_s: float = 0.0
    vectorise_s: float = 0.0
    wall_s: float = 0.0
    objects: int = 0
    extra: dict[str, float] = field(default_factory=dict)


class _Stop(Exception):
    pass


class _Pipeline:
    """Shared state between the threads: queues, errors, the finished-row frontier."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.cond = threading.Condition()
        self.final_rows = 0

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


class _BandAccumulator:
    """Blends windows into a band of rows ``(channels + 1, rows, width)`` on a device.

    Windows arrive in raster order, so only the rows between the finished-row frontier
    and the bottom of the current row of windows are ever being blended: the band holds
    those (at most about one window high), and :meth:`finish` hands over the rows no later
    window touches and moves the band down.

    On the CPU the sums run in numpy on the tensors' memory: torch would spread these small
    sums over its thread pool, whose spinning threads take the cores from the other stages.
    Both multiply, then add (no fused multiply-add), so both round alike.
    """

    def __init__(self, channels: int, rows: int, width: int, device: torch.device) -> None:
        self.channels, self.width, self.device = channels, width, device
        self.cpu = device.type == "cpu"
        self.top = 0  # scene row of the band's first row
        self.acc = torch.zeros((channels + 1, rows, width), dtype=torch.float32, device=device)

    def add(
        self,
        probs: torch.Tensor,
        weights: torch.Tensor,
        valid: torch.Tensor,
        window: tuple[int, int, int, int],
    ) -> None:
        """Add ``probs (channels, h, w)`` weighted by ``weights * valid`` at ``window``.

        ``window``: ``(row0, col0, row1, col1)`` in the scene.
        """
        r0, c0, r1, c1 = window
        if r1 - self.top > self.acc.shape[1]:  # never for row-ordered plans; safe anyway
            grow = torch.zeros(
                (self.channels + 1, r1 - self.top - self.acc.shape[1], self.width),
                dtype=self.acc.dtype,
                device=self.device,
            )
            self.acc = torch.cat([self.acc, grow], 1)
        view = self.acc[:, r0 - self.top : r1 - self.top, c0:c1]
        if self.cpu:
            v = view.numpy()
            w = weights.numpy() * valid.numpy()
            v[:-1] += probs.numpy() * w
            v[-1] += w
            return
        w_t = weights * valid
        view[:-1].add_(probs * w_t)
        view[-1].add_(w_t)

    def finish(self, rows_end: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Blended ``(channels, n, width)`` and valid ``(n, width)`` of rows ``top..rows_end``.

        The band then starts at ``rows_end``.
        """
        n = rows_end - self.top
        keep = self.acc.shape[1] - n
        if self.cpu:
            acc = self.acc.numpy()
            wsum = acc[-1, :n]
            ok = wsum > 0
            blended = torch.from_numpy(acc[:-1, :n] / np.where(ok, wsum, 1.0))
            valid = torch.from_numpy(ok)
            rest = np.zeros_like(acc)
            rest[:, :keep] = acc[:, n:]
            self.acc = torch.from_numpy(rest)
        else:
            done = self.acc[:, :n]
            wsum_t = done[-1]
            valid = wsum_t > 0
            blended = done[:-1] / torch.where(valid, wsum_t, torch.ones_like(wsum_t))
            rest_t = torch.zeros_like(self.acc)
            if keep > 0:
                rest_t[:, :keep] = self.acc[:, n:]
            self.acc = rest_t
        self.top = rows_end
        return blended, valid


def _read_threads_default(source: Any) -> int:
    """Threads reading ahead: many for remote files (latency), few for a local disk (CPU)."""
    from geotl.cores import usable_cores

    name = str(getattr(source, "name", "") or "")
    if name.startswith(("/vsicurl", "/vsis3", "/vsigs", "/vsiaz", "http://", "https://")):
        return 16
    return max(1, min(4, usable_cores() // 4))


def infer_and_vectorise(
    artefact: Artefact,
    source: Any,
    band_indexes: list[int],
    plan: WindowPlan,
    scratch_dir: Path,
    *,
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
    extractor = extractor or extractor_for(card.task, len(card.classes))
    n_ch = extractor.channels
    window_px = plan.window_px
    model_px = card.network.round_up_px(window_px)
    device = artefact.device if artefact.engine is None else torch.device("cpu")
    weights_full = torch.from_numpy(blend_weights(window_px, window_px, max(plan.overlap_px, 1)))
    weights_full = weights_full.to(device)
    transform: Affine = source.transform
    stats = StreamStats(windows=len(plan.windows))
    pipe = _Pipeline()
    n_threads = read_threads or _read_threads_default(source)
    if open_source is None:
        n_threads = 1
    q_in: queue.Queue[Any] = queue.Queue(maxsize=2)
    q_out: queue.Queue[Any] = queue.Queue(maxsize=2)
    band = _BandAccumulator(n_ch, min(window_px, height), width, device)
    planes = RawRaster(scratch_dir / "planes.raw", height, width, extractor.planes, np.float32)
    objects: list[VectorObject] = []
    pool = strip_pool(workers)
    stats.extra["workers"] = float(workers if pool is not None else 1)
    stats.extra["read_threads"] = float(n_threads)

    def read_window(ds: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
        """A window normalised and padded to the model's size, and its valid pixels."""
        w = plan.windows[k]
        r0, c0, r1, c1 = clip_window(w, (height, width))
        win = Window(c0, r0, c1 - c0, r1 - r0)
        raw = ds.read(band_indexes, window=win)
        valid = valid_mask(raw, ds.nodata, ds.read_masks(band_indexes, window=win))
        norm = artefact.normalise(raw)
        norm[:, ~valid] = 0.0
        top, left = r0 - w.row_off, c0 - w.col_off
        bottom, right = model_px - top - (r1 - r0), model_px - left - (c1 - c0)
        if top or left or bottom or right:
            norm = np.pad(norm, ((0, 0), (top, bottom), (left, right)), mode="symmetric")
        full = np.zeros((model_px, model_px), dtype=bool)
        full[top : top + r1 - r0, left : left + c1 - c0] = valid
        return norm, full

    def reader() -> None:
        try:
            if n_threads == 1:
                for batch in _batches(plan, batch_size):
                    t0 = time.perf_counter()
                    got = [read_window(source, k) for k in batch]
                    stats.read_s += time.perf_counter() - t0
                    pipe.put(q_in, (batch, *_stack(got)))
            else:
                _read_ahead(n_threads)
            pipe.put(q_in, None)
        except _Stop:
            pass
        except BaseException as exc:
            pipe.fail(exc)

    def _read_ahead(n: int) -> None:
        """``n`` threads, each with its own handle (opened and closed in that thread)."""
        assert open_source is not None
        windows = plan.windows
        slots: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        cond = threading.Condition()
        # windows in flight: enough to keep every thread busy for two batches
        room = threading.Semaphore(max(2 * n, 2 * batch_size))
        next_k = [0]

        def work() -> None:
            try:
                with open_source() as ds:
                    while True:
                        while not room.acquire(timeout=0.1):
                            if pipe.stop.is_set():
                                return
                        with cond:
                            k = next_k[0]
                            next_k[0] += 1
                        if k >= len(windows) or pipe.stop.is_set():
                            return
                        t0 = time.perf_counter()
                        item = read_window(ds, k)
                        with cond:
                            stats.read_s += time.perf_counter() - t0
                            slots[k] = item
                            cond.notify_all()
            except BaseException as exc:
                pipe.fail(exc)

        pool_threads = [
            threading.Thread(target=work, name=f"geotl-read-{i}", daemon=True) for i in range(n)
        ]
        for t in pool_threads:
            t.start()
        try:
            k = 0
            for batch in _batches(plan, batch_size):
                got = []
                for _ in batch:
                    with cond:
                        while k not in slots:
                            if pipe.stop.is_set():
                                raise _Stop
                            cond.wait(timeout=0.1)
                        got.append(slots.pop(k))
                    room.release()
                    k += 1
                pipe.put(q_in, (batch, *_stack(got)))
        finally:
            if k < len(windows):
                pipe.stop.set()  # an error: the threads stop too
            for t in pool_threads:
                t.join()

    prob_ds: Any = None

    def finalise(r_end: int) -> None:
        r0 = band.top
        blended_t, valid_t = band.finish(r_end)
        # only the finished rows' blended probabilities leave the device
        blended_all = blended_t.cpu().numpy()
        valid_all = valid_t.cpu().numpy()
        for c0 in range(0, width, _FINALISE_COLS):
            c1 = min(c0 + _FINALISE_COLS, width)
            blended = blended_all[:, :, c0:c1]
            valid = valid_all[:, c0:c1]
            planes.write(r0, c0, np.moveaxis(extractor.finalise(blended, valid, threshold), 0, -1))
            if prob_ds is not None:
                probs = extractor.class_probabilities(blended)
                out = np.where(valid[None], probs, -1.0).astype(np.float32)
                prob_ds.write(out, window=Window(c0, r0, c1 - c0, r_end - r0))

    def writer() -> None:
        try:
            done_in_row: dict[int, int] = {}
            final = 0
            while True:
                item = pipe.get(q_out)
                if item is None:
                    break
                t0 = time.perf_counter()
                batch, probs, valids = item
                for j, k in enumerate(batch):
                    w = plan.windows[k]
                    grid_row = plan.grid_position(k)[0]
                    r0, c0, r1, c1 = clip_window(w, (height, width))
                    rsl = slice(r0 - w.row_off, r1 - w.row_off)
                    csl = slice(c0 - w.col_off, c1 - w.col_off)
                    band.add(
                        probs[j, :, rsl, csl],
                        weights_full[rsl, csl],
                        valids[j, rsl, csl],
                        (r0, c0, r1, c1),
                    )
                    done_in_row[grid_row] = done_in_row.get(grid_row, 0) + 1
                    if done_in_row[grid_row] == plan.n_cols:
                        rows = plan.final_rows_after(grid_row)
                        if rows > final:
                            finalise(rows)
                            final = rows
                            pipe.rows_done(final)
                stats.write_s += time.perf_counter() - t0
        except _Stop:
            pass
        except BaseException as exc:
            pipe.fail(exc)

    waited = [0.0]

    def read_final(r: int, c: int, h: int, w: int) -> np.ndarray:
        t0 = time.perf_counter()
        pipe.wait_rows(r + h)
        waited[0] += time.perf_counter() - t0
        return np.moveaxis(planes.read(r, c, h, w), -1, 0)

    def vectoriser() -> None:
        t0 = time.perf_counter()
        try:
            if pool is None:
                for obj in extractor.extract_by_windows(
                    read_final,
                    (height, width),
                    transform,
                    window_px=vector_window_px,
                    halo_px=halo_px,
                    simplify_px=simplify_px,
                    min_pixels=min_pixels,
                ):
                    objects.append(obj)
                stats.vectorise_s = time.perf_counter() - t0 - waited[0]
            else:
                _vectorise_in_pool()
        except _Stop:
            pass
        except BaseException as exc:
            pipe.fail(exc)

    def _vectorise_in_pool() -> None:
        assert pool is not None
        cores = [c for row in core_windows((height, width), vector_window_px) for c in row]
        # a few tasks per worker: balanced, yet each reads its halos only once
        per_task = max(1, len(cores) // (4 * workers))
        chunks = [tuple(cores[i : i + per_task]) for i in range(0, len(cores), per_task)]

        def task(chunk: tuple[tuple[int, int, int, int], ...]) -> StripTask:
            return StripTask(
                extractor=extractor,
                planes_path=planes.path,
                scene_shape=(height, width),
                planes=extractor.planes,
                cores=chunk,
                transform=transform,
                window_px=vector_window_px,
                halo_px=halo_px,
                simplify_px=simplify_px,
                min_pixels=min_pixels,
                rows_ready=pipe.final_rows,
            )

        futures: list[Future[StripResult]] = []
        try:
            for chunk in chunks:
                last = chunk[-1]
                pipe.wait_rows(min(last[0] + last[2] + halo_px, height))
                futures.append(submit_strip(pool, task(chunk)))
            for chunk, fut in zip(chunks, futures, strict=True):
                res = fut.result()
                while True:
                    objects.extend(res.objects)
                    stats.vectorise_s += res.seconds
                    chunk = chunk[res.cores_done :]
                    if not chunk:
                        break
                    # an object of this chunk reaches rows not final yet: wait, run the rest
                    pipe.wait_rows(min(res.need_rows, height))
                    res = submit_strip(pool, task(chunk)).result()
        except BrokenProcessPool:
            discard_pool(pool)
            raise
        finally:
            for f in futures:
                f.cancel()

    t_start = time.perf_counter()
    profile = None
    if probabilities_path is not None:
        profile = {
            "driver": "GTiff",
            "width": width,
            "height": height,
            "count": len(card.classes),
            "dtype": "float32",
            "crs": source.crs,
            "transform": transform,
            "nodata": -1.0,
            "tiled": True,
            "blockxsize": 512,
            "blockysize": 512,
            "compress": "deflate",
            "predictor": 3,
            "BIGTIFF": "IF_SAFER",
        }
    threads: list[threading.Thread] = []
    try:
        with rasterio.Env(GDAL_CACHEMAX=64 * 2**20):
            if profile is not None:
                prob_ds = rasterio.open(probabilities_path, "w", **profile)
                for i, name in enumerate(artefact.card.classes, start=1):
                    prob_ds.set_band_description(i, name)
            threads = [
                threading.Thread(target=reader, name="geotl-read", daemon=True),
                threading.Thread(target=writer, name="geotl-write", daemon=True),
                threading.Thread(target=vectoriser, name="geotl-vectorise", daemon=True),
            ]
            for t in threads:
                t.start()
            _run_model(artefact, extractor, flip_tta, pipe, q_in, q_out, stats, progress)
            for t in threads:
                t.join()
    finally:
        pipe.stop.set()
        for t in threads:
            if t.ident is not None:  # an interrupt can land between two starts
                t.join(timeout=30)
        if prob_ds is not None:
            prob_ds.close()
        planes.close()
    if pipe.errors:
        raise pipe.errors[0]
    stats.wall_s = time.perf_counter() - t_start
    stats.objects = len(objects)
    return objects, stats


def _stack(got: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """A batch's windows ``(B, bands, px, px)`` float32 and valid pixels ``(B, px, px)``."""
    return np.stack([g[0] for g in got]), np.stack([g[1] for g in got])


def _flip_averaged(engine: Engine, batch: np.ndarray) -> torch.Tensor:
    """Probabilities averaged over the identity, left-right, up-down and both flips."""
    total: torch.Tensor | None = None
    for axes in ((), (-1,), (-2,), (-2, -1)):
        x = np.ascontiguousarray(np.flip(batch, axes)) if axes else batch
        p = device_probabilities(engine, x)
        p = torch.flip(p, axes) if axes else p
        total = p if total is None else total + p
    assert total is not None
    return total / 4.0


def _run_model(
    artefact: Artefact,
    extractor: ObjectExtractor,
    flip_tta: bool,
    pipe: _Pipeline,
    q_in: queue.Queue[Any],
    q_out: queue.Queue[Any],
    stats: StreamStats,
    progress: Callable[[int], object] | None,
) -> None:
    if artefact.engine is not None and not isinstance(extractor, SegmentationExtractor):
        raise GeotlInputError(
            f"the {artefact.engine.name} engine runs segmentation models only, this is a "
            f"{artefact.card.task} model: predict with --engine torch",
            artefact.path,
        )
    engine = engine_for(artefact, extractor.probabilities)
    try:
        while True:
            item = pipe.get(q_in)
            if item is None:
                pipe.put(q_out, None)
                return
            batch, arr, valids = item
            t0 = time.perf_counter()
            out = _flip_averaged(engine, arr) if flip_tta else device_probabilities(engine, arr)
            valid_t = torch.from_numpy(valids).to(out.device, non_blocking=True)
            stats.model_s += time.perf_counter() - t0
            stats.batches += 1
            pipe.put(q_out, (batch, out, valid_t))
            if progress is not None:
                progress(len(batch))
    except _Stop:
        pass
    except BaseException as exc:
        pipe.fail(exc)
