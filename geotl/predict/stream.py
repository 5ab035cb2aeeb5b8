"""Streaming inference: overlapping windows in batches, blended, in bounded memory.

Four threads share the work so that the model never waits on IO:

* a reader reads and normalises batches of windows (GDAL releases the GIL);
* the calling thread runs the network;
* a writer adds each window's blended probabilities into an on-disk accumulator and,
  as soon as a row of windows is complete, turns the rows no later window touches into
  the final per-pixel planes (class map, scores, ...: the task's
  :class:`~geotl.predict.objects.ObjectExtractor` says which) and the optional
  probability GeoTIFF;
* a vectoriser turns finished rows into objects, window by window with a halo
  (the extractor's ``extract_by_windows``), while inference goes on.

The accumulator and the planes are raw scratch files read and written with
``pread``/``pwrite``, so memory is bounded by the window and batch size, not the scene:
the operating system's page cache, not the process, holds the scene.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.windows import Window

from geotl.errors import GeotlInputError
from geotl.models.artefact import Artefact
from geotl.predict.engine import Engine, engine_for
from geotl.predict.objects import ObjectExtractor, SegmentationExtractor, extractor_for
from geotl.predict.vectorise import VectorObject
from geotl.predict.windows import PixelWindow, WindowPlan, blend_weights

__all__ = ["RawRaster", "StreamStats", "infer_and_vectorise"]

log = logging.getLogger(__name__)

_FINALISE_COLS = 2048


class RawRaster:
    """A scratch raster ``(height, width, bands)`` in a raw file, read/written by window."""

    def __init__(self, path: Path, height: int, width: int, bands: int, dtype: Any) -> None:
        self.path = path
        self.height, self.width, self.bands = height, width, bands
        self.dtype = np.dtype(dtype)
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        os.ftruncate(self._fd, height * width * bands * self.dtype.itemsize)  # sparse zeros

    def read(self, row: int, col: int, height: int, width: int) -> np.ndarray:
        """Read a window as ``(height, width, bands)``."""
        out = np.empty((height, width, self.bands), dtype=self.dtype)
        row_bytes = self.width * self.bands * self.dtype.itemsize
        px_bytes = self.bands * self.dtype.itemsize
        for i in range(height):
            os.preadv(
                self._fd, [memoryview(out[i]).cast("B")], (row + i) * row_bytes + col * px_bytes
            )
        return out

    def write(self, row: int, col: int, data: np.ndarray) -> None:
        """Write ``(height, width, bands)`` at ``(row, col)``."""
        data = np.ascontiguousarray(data, dtype=self.dtype)
        row_bytes = self.width * self.bands * self.dtype.itemsize
        px_bytes = self.bands * self.dtype.itemsize
        for i in range(data.shape[0]):
            os.pwritev(
                self._fd, [memoryview(data[i]).cast("B")], (row + i) * row_bytes + col * px_bytes
            )

    def close(self) -> None:
        """Close and delete the scratch file."""
        os.close(self._fd)
        self.path.unlink(missing_ok=True)


@dataclass
class StreamStats:
    """Where the time went (seconds) and how much work was done."""

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


def _batches(plan: WindowPlan, batch_size: int) -> Iterator[list[PixelWindow]]:
    batch: list[PixelWindow] = []
    for w in plan.windows:
        batch.append(w)
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


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

    Returns:
        The objects (scene CRS via ``source.transform``) and timing statistics.
    """
    height, width = plan.scene_shape
    card = artefact.card
    extractor = extractor or extractor_for(card.task, len(card.classes))
    n_ch = extractor.channels
    window_px = plan.window_px
    depth = 2**artefact.card.network.encoder_depth
    model_px = max(window_px, depth)
    model_px = (model_px + depth - 1) // depth * depth
    weights_full = blend_weights(window_px, window_px, max(plan.overlap_px, 1))
    transform: Affine = source.transform
    stats = StreamStats(windows=len(plan.windows))
    pipe = _Pipeline()
    q_in: queue.Queue[Any] = queue.Queue(maxsize=2)
    q_out: queue.Queue[Any] = queue.Queue(maxsize=2)
    accum = RawRaster(scratch_dir / "accum.raw", height, width, n_ch + 1, np.float32)
    planes = RawRaster(scratch_dir / "planes.raw", height, width, extractor.planes, np.float32)
    objects: list[VectorObject] = []
    nodata = source.nodata
    is_float = np.dtype(source.dtypes[0]).kind == "f"

    def reader() -> None:
        try:
            for batch in _batches(plan, batch_size):
                t0 = time.perf_counter()
                arr = np.zeros(
                    (len(batch), len(band_indexes), model_px, model_px), dtype=np.float32
                )
                valids: list[np.ndarray] = []
                for k, w in enumerate(batch):
                    r0, c0, r1, c1 = w.clip((height, width))
                    win = Window(c0, r0, c1 - c0, r1 - r0)
                    raw = source.read(band_indexes, window=win)
                    masks = source.read_masks(band_indexes, window=win)
                    valid = (masks > 0).any(axis=0)
                    if is_float:
                        valid &= np.isfinite(raw).all(axis=0)
                    elif nodata is not None:
                        valid &= ~(raw == nodata).all(axis=0)
                    norm = artefact.normalise(raw)
                    norm[:, ~valid] = 0.0
                    top, left = r0 - w.row_off, c0 - w.col_off
                    bottom, right = model_px - top - (r1 - r0), model_px - left - (c1 - c0)
                    if top or left or bottom or right:
                        norm = np.pad(
                            norm, ((0, 0), (top, bottom), (left, right)), mode="symmetric"
                        )
                    arr[k] = norm
                    valids.append(valid)
                stats.read_s += time.perf_counter() - t0
                pipe.put(q_in, (batch, arr, valids))
            pipe.put(q_in, None)
        except _Stop:
            pass
        except BaseException as exc:
            pipe.fail(exc)

    prob_ds: Any = None

    def finalise(r0: int, r1: int) -> None:
        for c0 in range(0, width, _FINALISE_COLS):
            cw = min(_FINALISE_COLS, width - c0)
            acc = accum.read(r0, c0, r1 - r0, cw)
            wsum = acc[..., -1]
            valid = wsum > 0
            blended = np.moveaxis(acc[..., :-1] / np.where(valid, wsum, 1.0)[..., None], -1, 0)
            planes.write(r0, c0, np.moveaxis(extractor.finalise(blended, valid, threshold), 0, -1))
            if prob_ds is not None:
                probs = extractor.class_probabilities(blended)
                out = np.where(valid[None], probs, -1.0).astype(np.float32)
                prob_ds.write(out, window=Window(c0, r0, cw, r1 - r0))

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
                for w, p, valid in zip(batch, probs, valids, strict=True):
                    r0, c0, r1, c1 = w.clip((height, width))
                    rsl = slice(r0 - w.row_off, r1 - w.row_off)
                    csl = slice(c0 - w.col_off, c1 - w.col_off)
                    wts = weights_full[rsl, csl] * valid
                    acc = accum.read(r0, c0, r1 - r0, c1 - c0)
                    acc[..., :-1] += np.moveaxis(p[:, rsl, csl], 0, -1) * wts[..., None]
                    acc[..., -1] += wts
                    accum.write(r0, c0, acc)
                    done_in_row[w.grid_row] = done_in_row.get(w.grid_row, 0) + 1
                    if done_in_row[w.grid_row] == plan.n_cols:
                        rows = plan.final_rows_after(w.grid_row)
                        if rows > final:
                            finalise(final, rows)
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
        except _Stop:
            pass
        except BaseException as exc:
            pipe.fail(exc)

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
        for raw in (accum, planes):
            raw.close()
    if pipe.errors:
        raise pipe.errors[0]
    stats.wall_s = time.perf_counter() - t_start
    stats.objects = len(objects)
    return objects, stats


def _flip_averaged(engine: Engine, batch: np.ndarray) -> np.ndarray:
    """Probabilities averaged over the identity, left-right, up-down and both flips."""
    total: np.ndarray | None = None
    for axes in ((), (-1,), (-2,), (-2, -1)):
        x = np.ascontiguousarray(np.flip(batch, axes)) if axes else batch
        p = engine.probabilities(x)
        p = np.flip(p, axes) if axes else p
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
            out = _flip_averaged(engine, arr) if flip_tta else engine.probabilities(arr)
            stats.model_s += time.perf_counter() - t0
            stats.batches += 1
            pipe.put(q_out, (batch, out, valids))
            if progress is not None:
                progress(len(batch))
    except _Stop:
        pass
    except BaseException as exc:
        pipe.fail(exc)
