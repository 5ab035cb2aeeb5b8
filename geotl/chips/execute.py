"""Where strips are cut: in this process (a writer thread beside it) or in forked workers."""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import signal
import sys
import threading
import warnings
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from multiprocessing.pool import AsyncResult, Pool
from typing import Any

import rasterio
from rasterio.errors import RasterioError
from tqdm import tqdm

from geotl.chips.cut import (
    ChipRow,
    CutJob,
    CutResult,
    SceneCutter,
    SceneSpec,
    Strip,
    _strip_width_px,
    cut_strip,
    strips,
    write_chips,
    writers,
)
from geotl.chips.scenes import ChipScene
from geotl.config import Region
from geotl.cores import usable_cores
from geotl.io.rasters import open_raster, read_bands, read_failure

_MAX_PENDING_STRIPS = 1  # bounds memory: at most this many cut strips wait to be written


def chip_serial(
    cutters: list[SceneCutter], skipped: dict[str, int], bar: tqdm[Any]
) -> list[ChipRow]:
    """Cut every scene in this process, a strip at a time.

    One thread writes the chip files while the next strip is cut (measured: reading ahead
    in another thread, or cutting strips in several threads, was slower on 2 busy cores).
    Memory stays bounded: the strip being cut, of at most :data:`STRIP_MAX_BYTES`, plus
    at most :data:`_MAX_PENDING_STRIPS` strip(s) being written.
    """
    rows: list[ChipRow] = []
    with ThreadPoolExecutor(max_workers=1) as writer:
        for cutter in cutters:
            spec = cutter.spec
            image_writer, mask_writer = writers(spec)
            pending: deque[Future[None]] = deque()
            with open_raster(cutter.scene.info.path) as ds:
                for strip in cutter.plans():
                    bar.update(len(strip.windows))
                    if strip.window is None:  # every chip lies outside complete_within
                        skipped["incomplete"] += len(strip.windows)
                        continue
                    try:
                        strip_data, valid = read_bands(
                            ds, spec.band_indexes, spec.mask_bands, strip.window
                        )
                    except RasterioError as exc:
                        raise read_failure(exc, cutter.scene.info.path) from exc
                    result, files = cut_strip(spec, cutter.job(strip), strip_data, valid)
                    skipped["nodata"] += result.n_nodata
                    skipped["incomplete"] += result.n_incomplete
                    rows.extend(cutter.rows(strip, result.records))
                    # one task per strip: the writer thread writes while the next is cut
                    pending.append(
                        writer.submit(write_chips, spec.folder, files, image_writer, mask_writer)
                    )
                    if len(pending) > _MAX_PENDING_STRIPS:
                        pending.popleft().result()
                for f in pending:
                    f.result()
    return rows


def chip_parallel(
    cutters: list[SceneCutter],
    pool: Pool,
    n_workers: int,
    skipped: dict[str, int],
    bar: tqdm[Any],
) -> list[ChipRow]:
    """Cut the strips of every scene in the worker processes of ``pool``.

    Workers read, label and write strips and return their small per-chip records; the
    parent plans the strips and builds the index rows in submission order, so the output
    equals the serial path's. A task is the run of strips that start in one block row of
    the scene (tiles or TIFF strips), so that each block is decoded by one worker only
    (its block cache serves the next strip). At most ``2 * n_workers`` tasks are in flight;
    a worker holds one strip's pixels at a time.
    """
    rows: list[ChipRow] = []
    pending: deque[tuple[SceneCutter, list[Strip], AsyncResult[list[CutResult]]]] = deque()

    def collect() -> None:
        cutter, strips, future = pending.popleft()
        for strip, result in zip(strips, future.get(), strict=True):
            if result.error is not None:
                raise read_failure(RasterioError(result.error), cutter.scene.info.path)
            skipped["nodata"] += result.n_nodata
            skipped["incomplete"] += result.n_incomplete
            rows.extend(cutter.rows(strip, result.records))
            bar.update(len(strip.windows))

    def submit(cutter: SceneCutter, strips: list[Strip]) -> None:
        jobs = [cutter.job(strip) for strip in strips]
        pending.append((cutter, strips, pool.apply_async(_worker_cut, (cutter.spec, jobs))))
        while len(pending) > 2 * n_workers:
            collect()

    try:
        for cutter in cutters:
            block_rows = _block_rows(cutter.scene)
            group: list[Strip] = []
            group_key = -1
            for strip in cutter.plans():
                if strip.window is None:  # every chip lies outside complete_within
                    bar.update(len(strip.windows))
                    skipped["incomplete"] += len(strip.windows)
                    continue
                key = int(strip.window.row_off) // block_rows
                if group and key != group_key:
                    submit(cutter, group)
                    group = []
                group.append(strip)
                group_key = key
            if group:
                submit(cutter, group)
        while pending:
            collect()
    except BaseException:
        pool.terminate()  # no worker may still write into the folder being removed
        pool.join()
        raise
    return rows


# A task groups the strips of one block row unless blocks are taller than this (a striped
# TIFF stored as one huge strip): then each strip is a task.
_MAX_GROUP_ROWS = 2048


def _block_rows(scene: ChipScene) -> int:
    """Rows per block of the scene's first band, or 1 (no grouping) for very tall blocks."""
    with open_raster(scene.info.path) as ds:
        block_h = int(ds.block_shapes[0][0])
    return block_h if 0 < block_h <= _MAX_GROUP_ROWS else 1


# Strips are cut in worker processes when a job has at least this many strips and chips:
# forking and joining the workers costs ~30-50 ms, and two processes creating files in one
# folder contend for it on ext4. Measured on 2 cores (BENCHMARKS.md, Chip): 64 chips were
# ~10 % slower in parallel, 256 even on disk and ~15 % faster on tmpfs, 1024 1.3-1.4x faster.
PARALLEL_MIN_STRIPS = 4


PARALLEL_MIN_CHIPS = 256


MAX_WORKERS = 4


_WORKER_GDAL_CACHE_BYTES = 32 * 2**20  # per worker process


_worker: dict[str, Any] = {}  # a worker process's state: open dataset, writers, GDAL env


def pick_workers(workers: int | None, scenes: list[ChipScene], region: Region) -> int:
    """Worker processes to use: 1 (serial) for small jobs or where fork is not safe."""
    if workers is not None and workers <= 1:
        return 1
    if "fork" not in mp.get_all_start_methods() or sys.platform == "darwin":
        return 1  # workers must inherit the imported libraries; spawn costs ~1 s each
    if _other_threads():
        return 1  # forking a process with Python threads running can deadlock
    if workers is None:
        n_chips = sum(len(s.windows) for s in scenes)
        n_strips = sum(len(strips(s.windows, _strip_width_px(region, s))) for s in scenes)
        if n_strips < PARALLEL_MIN_STRIPS or n_chips < PARALLEL_MIN_CHIPS:
            return 1
        workers = min(usable_cores(), MAX_WORKERS)
    return max(1, workers)


def _other_threads() -> list[threading.Thread]:
    """Python threads besides this one, ignoring tqdm's idle monitor (it only sleeps)."""
    monitor = getattr(tqdm, "monitor", None)
    current = threading.current_thread()
    return [t for t in threading.enumerate() if t is not current and t is not monitor]


@contextlib.contextmanager
def fork_pool(n_workers: int) -> Iterator[Pool | None]:
    """A pool of ``n_workers`` forked processes, or None for 1 (serial).

    Created before the parent starts any thread (progress bar, writer thread): the
    workers inherit the imported libraries, so none pays the ~1 s import.
    """
    if n_workers <= 1:
        yield None
        return
    with warnings.catch_warnings():
        # Python 3.12 warns about fork() in any process with OS threads; those here are
        # the libraries' own idle pools (OpenBLAS, jemalloc), which handle fork
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*fork.*")
        pool = mp.get_context("fork").Pool(n_workers, initializer=_worker_init)
    try:
        yield pool
        pool.close()
        pool.join()
    finally:
        pool.terminate()


def _worker_init() -> None:
    # Ctrl-C is the parent's to handle: it terminates the pool (no traceback per worker)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    env = rasterio.Env(GDAL_CACHEMAX=_WORKER_GDAL_CACHE_BYTES)
    env.__enter__()  # for the worker's lifetime
    _worker.clear()
    _worker["env"] = env


def _worker_cut(spec: SceneSpec, jobs: list[CutJob]) -> list[CutResult]:
    """In a worker: read, cut and write strips, one at a time; return their records."""
    if _worker.get("path") != spec.path:
        if "ds" in _worker:
            _worker.pop("ds").close()
        _worker["ds"] = rasterio.open(spec.path)
        _worker["path"] = spec.path
    if _worker.get("scene") != spec.scene_id:
        _worker["writers"] = writers(spec)
        _worker["scene"] = spec.scene_id
    results = []
    for job in jobs:
        try:
            strip_data, valid = read_bands(
                _worker["ds"], spec.band_indexes, spec.mask_bands, job.window
            )
        except RasterioError as exc:
            results.append(CutResult([], 0, 0, error=str(exc)))
            break
        result, files = cut_strip(spec, job, strip_data, valid)
        write_chips(spec.folder, files, *_worker["writers"])
        results.append(result)
    return results
