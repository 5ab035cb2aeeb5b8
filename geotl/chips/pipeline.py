"""``chip_region``: a region's scenes + labels -> chip/mask GeoTIFFs and the chip index.

All input checks run before anything is written; the chips folder is built under a
temporary name and swapped into place, so an interrupted run never leaves an index that
claims missing chips.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import multiprocessing as mp
import os
import signal
import sys
import threading
import warnings
import zlib
from collections import deque
from collections.abc import Hashable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.pool import AsyncResult, Pool
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import numpy.typing as npt
import rasterio
import shapely
from affine import Affine
from rasterio.errors import RasterioError
from rasterio.windows import Window
from shapely.geometry import box
from shapely.geometry.base import BaseGeometry
from tqdm import tqdm

from geotl import __version__
from geotl.chips.boxes import (
    MIN_BOX_PX,
    MIN_VISIBLE_FRACTION,
    ChipBoxes,
    chip_boxes,
    flat_boxes,
    pixel_boxes,
    small_boxes,
)
from geotl.chips.guard import GuardChip, GuardReport, apply_guard_bands, guard_boxes
from geotl.chips.index import write_chip_index
from geotl.chips.labels import (
    IGNORE,
    class_pixel_counts,
    geojson_shapes,
    rasterize_chip,
)
from geotl.chips.split import SPLITS, assign_blocks, block_key, split_chips
from geotl.chips.tiff import ChipTiffWriter, Compression
from geotl.chips.windows import ChipWindow, chip_windows, window_bounds
from geotl.config import Region
from geotl.errors import BandMismatchError, ConfigError, LabelError, RasterError
from geotl.io.atomic import atomic_dir, prepare_output_dir
from geotl.io.nodata import nodata_mask
from geotl.io.rasters import SceneInfo, open_raster, read_scene_info
from geotl.io.vectors import crs_name, read_areas, read_labels
from geotl.progress import progress_bar

__all__ = ["ChipSummary", "chip_region"]

log = logging.getLogger(__name__)

COMMON_CRS = "EPSG:4326"
# GDAL's block cache defaults to 5 % of RAM and fills up with the blocks of a large scene;
# a fixed cap keeps memory independent of scene size.
_GDAL_CACHE_BYTES = 64 * 2**20
_MAX_PENDING_STRIPS = 1  # bounds memory: at most this many cut strips wait to be written
# Chips are read and labelled a strip at a time (a run of chips of one chip row): one read
# and one rasterisation per strip. A strip's pixels stay under this many bytes (a strip is
# at least one chip wide).
_STRIP_MAX_BYTES = 16 * 2**20
# Chip images are stored uncompressed: on real 0.1 m RGB imagery (NEON) deflate saves only
# 8-23 % of the bytes but costs 4-7x the time it takes to read the chip (BENCHMARKS.md, Chip).
# Masks (long runs of one value) shrink ~50-100x with deflate (zlib RLE strategy, level 1),
# at ~0.1 ms per chip.
IMAGE_COMPRESSION: Compression = "none"
MASK_COMPRESSION: Compression = "deflate"


@dataclass(frozen=True)
class ChipSummary:
    """What ``chip_region`` produced."""

    out_dir: Path
    counts: dict[str, int]
    n_objects: int
    n_skipped_nodata: int = 0
    n_skipped_incomplete: int = 0
    n_scenes: int = 0
    n_scenes_too_small: int = 0
    objects_per_split: dict[str, int] = field(default_factory=dict)
    n_small_boxes: int = 0
    pixels_per_split: dict[str, int] = field(default_factory=dict)  # labelled (class) pixels
    guard: GuardReport = field(default_factory=lambda: GuardReport(guard_px=0))

    @property
    def n_chips(self) -> int:
        """Chips in the index."""
        return sum(self.counts.values())

    def line(self) -> str:
        """The one-line summary printed at the end of ``geotl chip``."""
        per_split = ", ".join(f"{self.counts.get(s, 0)} {s}" for s in SPLITS)
        objects = ", ".join(f"{self.objects_per_split.get(s, 0)} {s}" for s in SPLITS)
        pixels = ", ".join(f"{self.pixels_per_split.get(s, 0)} {s}" for s in SPLITS)
        took = ", ".join(f"{n} {s}" for s, n in sorted(self.guard.pixels.items()))
        text = (
            f"{self.n_chips} chips ({per_split}) from {self.n_scenes} scene(s); "
            f"{self.n_objects} labelled objects ({objects}); labelled pixels ({pixels}); "
            f"guard bands of {self.guard.guard_px} px took {self.guard.total_pixels()} "
            f"labelled pixels" + (f" ({took})" if took else "")
        )
        skipped = []
        if self.n_skipped_nodata:
            skipped.append(f"{self.n_skipped_nodata} mostly nodata")
        if self.n_skipped_incomplete:
            skipped.append(f"{self.n_skipped_incomplete} outside complete_within")
        if skipped:
            text += "; skipped " + ", ".join(skipped)
        return text


@dataclass
class _Scene:
    info: SceneInfo
    scene_id: str
    nodata: float | None
    windows: list[ChipWindow]

    @functools.cached_property
    def crs_label(self) -> str:
        """Short name of the scene's CRS (computed once: it is needed for every chip)."""
        return crs_name(self.info.crs)


@dataclass
class _Row:
    chip_id: str
    scene: _Scene
    window: ChipWindow
    nodata_fraction: float
    px: list[int]
    object_ids: list[int]
    forced: str | None
    footprint_native: BaseGeometry
    boxes: ChipBoxes | None = None


def _scan_scenes(region: Region) -> list[_Scene]:
    size, stride = region.chips.size_px, region.chips.stride
    n_bands = len(region.imagery.bands)
    scenes: list[_Scene] = []
    for path in region.scene_paths():
        info = read_scene_info(path)
        if info.count != n_bands:
            raise BandMismatchError(
                f"has {info.count} band(s) but [imagery] bands lists {n_bands} "
                f"({', '.join(region.imagery.bands)}): list one name per band, in file order",
                path,
            )
        _probe(path, info)
        nodata = region.imagery.nodata if region.imagery.nodata is not None else info.nodata
        windows = chip_windows(info.width, info.height, size, stride)
        scenes.append(_Scene(info, path.stem, nodata, windows))
    widest = max(min(s.info.width, s.info.height) for s in scenes)
    if not any(s.windows for s in scenes):
        largest = max(scenes, key=lambda s: s.info.width * s.info.height)
        raise ConfigError(
            f"chips.size_px = {size} is larger than every scene (largest: "
            f"{largest.info.path.name}, {largest.info.width}x{largest.info.height} px): "
            f"lower [chips] size_px to {max(32, widest // 32 * 32)}",
            region.path,
        )
    guard = region.guard_px
    if guard and 2 * guard >= widest:
        raise ConfigError(
            f"[split] guard_px = {guard} is wider than the region (the widest scene is {widest} px "
            f"across): bands on both sides of a split boundary would cover it; use guard_px = "
            f"{max(1, widest // 16)} or less",
            region.path,
        )
    for s in scenes:
        if not s.windows:
            log.warning(
                "%s: %dx%d px is smaller than a %d px chip: skipped",
                s.info.path.name,
                s.info.width,
                s.info.height,
                size,
            )
    _unique_scene_ids(scenes, region)
    return scenes


def _probe(path: Path, info: SceneInfo) -> None:
    """Read the first and last pixel: catches most truncated files before any work."""
    with open_raster(path) as ds:
        try:
            ds.read(window=Window(0, 0, 1, 1))
            ds.read(window=Window(info.width - 1, info.height - 1, 1, 1))
        except RasterioError as exc:
            raise _read_error(path, exc) from exc


def _read_error(path: Path, exc: Exception) -> RasterError:
    first = str(exc).splitlines()[0][:160]
    return RasterError(
        f"pixels cannot be read ({first}): the file is truncated or corrupt; replace it", path
    )


def _unique_scene_ids(scenes: list[_Scene], region: Region) -> None:
    stems = [s.scene_id for s in scenes]
    if len(set(stems)) == len(stems):
        return
    for s in scenes:
        if stems.count(s.scene_id) > 1:
            s.scene_id = f"{s.info.path.parent.name}_{s.info.path.stem}"
    ids = [s.scene_id for s in scenes]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise ConfigError(
            f"several scenes share the name {dup[0]!r}: give scenes unique file names",
            region.path,
        )


def _labels_per_scene(
    region: Region, labels: gpd.GeoDataFrame, scenes: list[_Scene]
) -> dict[str, gpd.GeoDataFrame]:
    """Labels reprojected to each scene's CRS, keeping those that touch the scene."""
    path = region.labels_path()
    out: dict[str, gpd.GeoDataFrame] = {}
    hit = np.zeros(len(labels), dtype=bool)
    for s in scenes:
        if not s.windows:
            continue
        native = labels if labels.crs == s.info.crs else labels.to_crs(s.info.crs)
        geoms = native.geometry.values
        with np.errstate(invalid="ignore"):
            finite = np.isfinite(shapely.bounds(geoms)).all(axis=1)
        inside = finite & shapely.intersects(geoms, box(*s.info.bounds))
        hit |= inside
        sub = native[inside].copy()
        sub["geometry"] = shapely.make_valid(sub.geometry.values)
        out[s.scene_id] = sub
    if not hit.any():
        declared = crs_name(labels.crs)
        for s in scenes:
            as_scene = labels.geometry.set_crs(s.info.crs, allow_override=True)
            if as_scene.intersects(box(*s.info.bounds)).any():
                name = crs_name(s.info.crs)
                raise LabelError(
                    f"declared {declared} but coordinates look like {name} (the CRS of "
                    f"{s.info.path.name}): set [labels] crs = '{name}' in the region file",
                    path,
                )
        raise LabelError(
            f"no label overlaps any scene (labels in {declared}, bounds "
            f"{_fmt_bounds(labels.total_bounds)}): check [labels] path and [imagery] paths",
            path,
        )
    outside = int((~hit).sum())
    if outside:
        log.warning("labels: %d of %d polygon(s) lie outside every scene", outside, len(labels))
    return out


def _fmt_bounds(bounds: Any) -> str:
    return "(" + ", ".join(f"{v:.6g}" for v in bounds) + ")"


def _areas_in(areas: gpd.GeoSeries | None, scene: _Scene) -> list[BaseGeometry] | None:
    if areas is None:
        return None
    native = areas if areas.crs == scene.info.crs else areas.to_crs(scene.info.crs)
    sbox = box(*scene.info.bounds)
    return [g for g in native.values if g is not None and g.intersects(sbox)]


# Blocks narrower than a few chips are all boundary: every chip touches another block, and
def _block_size(scene: _Scene, block_size_m: float) -> float:
    """Block size in the units of the scene's CRS."""
    crs = scene.info.crs
    if crs.is_geographic:
        t = scene.info.transform
        px_deg = (math.hypot(t.a, t.d) + math.hypot(t.b, t.e)) / 2
        return block_size_m / scene.info.resolution_m * px_deg
    factor = crs.linear_units_factor[1] if crs.is_projected else 1.0
    return block_size_m / factor


def chip_region(
    region: Region, out_dir: str | Path, overwrite: bool = False, workers: int | None = None
) -> ChipSummary:
    """Cut a region's scenes into chips with masks, split them spatially, write the index.

    Args:
        region: the loaded region (needs ``[labels]``).
        out_dir: the chips folder to write (``chips.parquet``, ``chipset.json``,
            ``images/``, ``masks/``).
        overwrite: replace an existing, non-empty ``out_dir``.
        workers: processes that cut strips in parallel; None picks
            ``min(CPUs, 4)`` for jobs of at least 4 strips and 256 chips (forked workers,
            Linux; serial where fork is unavailable or other threads run), 1 cuts in this
            process. The output is the same either way.

    Returns:
        The :class:`ChipSummary` (chips per split, labelled objects, guard chips).

    Raises:
        OutputExistsError: ``out_dir`` exists and is not empty, without ``overwrite``.
        ConfigError, RasterError, LabelError, BandMismatchError: bad input (nothing written).
    """
    out = Path(out_dir)
    prepare_output_dir(out, overwrite)
    if region.labels is None:
        raise ConfigError(
            "geotl chip needs labels: add [labels] path = 'labels.geojson'", region.path
        )
    scenes = _scan_scenes(region)
    n_workers = _n_workers(workers, scenes, region)
    # the pool forks before this process starts any thread (progress bar, writer)
    with _fork_pool(n_workers) as pool:
        return _chip_region(region, out, overwrite, scenes, pool, n_workers)


def _chip_region(
    region: Region,
    out: Path,
    overwrite: bool,
    scenes: list[_Scene],
    pool: Pool | None,
    n_workers: int,
) -> ChipSummary:
    assert region.labels is not None
    labels = read_labels(region)
    per_scene = _labels_per_scene(region, labels, scenes)
    complete = (
        read_areas(region.resolve(region.labels.complete_within), "[labels] complete_within")
        if region.labels.complete_within
        else None
    )
    test_areas = (
        read_areas(region.resolve(region.split.test_within), "[split] test_within")
        if region.split.test_within
        else None
    )
    val_areas = (
        read_areas(region.resolve(region.split.val_within), "[split] val_within")
        if region.split.val_within
        else None
    )
    class_ids = {name: i + 1 for i, name in enumerate(region.classes)}

    with atomic_dir(out, overwrite) as tmp, rasterio.Env(GDAL_CACHEMAX=_GDAL_CACHE_BYTES):
        (tmp / "images").mkdir()
        (tmp / "masks").mkdir()
        skipped = {"nodata": 0, "incomplete": 0}
        total = sum(len(s.windows) for s in scenes)
        with progress_bar(total=total, desc="chips", unit="chip") as bar:
            cutters = [
                _SceneCutter(
                    region,
                    scene,
                    per_scene[scene.scene_id],
                    class_ids,
                    _areas_in(complete, scene),
                    _areas_in(test_areas, scene),
                    _areas_in(val_areas, scene),
                    tmp,
                )
                for scene in scenes
                if scene.windows
            ]
            if pool is None:
                rows = _chip_serial(cutters, skipped, bar)
            else:
                log.debug("cutting strips in %d worker processes", n_workers)
                rows = _chip_parallel(cutters, pool, n_workers, skipped, bar)
        if not rows:
            raise LabelError(
                "no chip left (all mostly nodata or outside complete_within): check "
                "[labels] complete_within and [chips] max_nodata_fraction",
                region.labels_path(),
            )
        footprints = _footprints_common(rows, scenes)
        blocks: list[Hashable] = []
        block_sizes = {s.scene_id: _block_size(s, region.split.block_size_m) for s in scenes}
        for r in rows:
            c = r.footprint_native.centroid
            size = block_sizes[r.scene.scene_id]
            blocks.append(block_key(r.scene.crs_label, c.x, c.y, size))
        result = split_chips(
            blocks,
            [r.forced for r in rows],
            region.split.val_fraction,
            region.split.test_fraction,
            region.split.seed,
        )
        guard = _guard_bands(region, rows, footprints, result.splits, tmp)
        frame = _index_frame(region, rows, footprints, result.splits)
        objects_per_split = {
            s: len({i for ids in frame.loc[frame["split"] == s, "object_ids"] for i in ids})
            for s in SPLITS
        }
        class_px = frame[[f"px_{c}" for c in region.classes]].sum(axis=1)
        pixels_per_split = {s: int(class_px[frame["split"] == s].sum()) for s in SPLITS}
        advice = _check_split(
            region, rows, result.splits, objects_per_split, pixels_per_split, guard
        )
        n_objects = len({i for ids in frame["object_ids"] for i in ids})
        n_small = len({int(i) for c in cutters for i in c.label_ids[c.small]})
        if n_small and region.task == "detection":
            log.warning(
                "%s: %d object box(es) narrower or shorter than %g px at the chip resolution "
                "were dropped (a detector cannot learn them)",
                region.labels_path(),
                n_small,
                MIN_BOX_PX,
            )
        summary = ChipSummary(
            out_dir=out,
            counts=result.counts(),
            n_objects=n_objects,
            n_skipped_nodata=skipped["nodata"],
            n_skipped_incomplete=skipped["incomplete"],
            n_scenes=sum(1 for s in scenes if s.windows),
            n_scenes_too_small=sum(1 for s in scenes if not s.windows),
            objects_per_split=objects_per_split,
            n_small_boxes=n_small,
            pixels_per_split=pixels_per_split,
            guard=guard,
        )
        meta = _meta(region, scenes, frame, summary, labels)
        meta["split"]["advice"] = advice
        write_chip_index(tmp, frame, meta)
    log.debug("%s", summary.line())
    return summary


@dataclass
class _Strip:
    """A run of chips of one chip row, read and labelled together."""

    windows: list[ChipWindow]
    boxes: list[BaseGeometry]
    labels: list[list[int]]  # per chip: indices of the labels that intersect it
    complete: list[bool] | None  # per chip: touches a complete_within area (None: no areas)
    complete_geoms: list[BaseGeometry] | None  # the areas that touch the strip
    window: Window | None  # the pixels to read: the span of the chips to keep, or nothing


def _plan_strip(
    windows: list[ChipWindow],
    transform: Affine,
    label_tree: shapely.STRtree,
    complete_arr: npt.NDArray[np.object_] | None,
    complete_tree: shapely.STRtree | None,
) -> _Strip:
    boxes = [box(*window_bounds(transform, w)) for w in windows]
    hits = label_tree.query(boxes, predicate="intersects")
    labels: list[list[int]] = [[] for _ in windows]
    for k, i in zip(hits[0].tolist(), hits[1].tolist(), strict=True):
        labels[k].append(i)
    complete: list[bool] | None = None
    complete_geoms: list[BaseGeometry] | None = None
    if complete_arr is not None:
        complete = [False] * len(windows)
        complete_geoms = []
        if complete_tree is not None:
            hits_c = complete_tree.query(boxes, predicate="intersects")
            for k in hits_c[0].tolist():
                complete[k] = True
            complete_geoms = list(complete_arr[np.unique(hits_c[1])])
    kept = [w for k, w in enumerate(windows) if complete is None or complete[k]]
    window = None
    if kept:
        col0 = kept[0].col_off
        col1 = max(w.col_off + w.width for w in kept)
        window = Window(col0, kept[0].row_off, col1 - col0, kept[0].height)
    return _Strip(windows, boxes, labels, complete, complete_geoms, window)


@dataclass(frozen=True)
class _SceneSpec:
    """What cutting a scene's strips needs (small and picklable: sent to pool workers)."""

    scene_id: str
    path: str
    transform: Affine
    nodata: float | None
    dtype: str
    count: int
    crs_wkt: str
    bands: tuple[str, ...]
    n_classes: int
    max_nodata_fraction: float
    folder: str  # the temporary chips folder


@dataclass(frozen=True)
class _CutJob:
    """One strip to cut: its pixels, chips, and the label shapes that touch it."""

    window: Window
    windows: list[ChipWindow]
    complete: list[bool] | None
    shapes: list[tuple[dict[str, Any], int]]  # (GeoJSON geometry, class id)
    complete_geoms: list[BaseGeometry] | None


# per kept chip: (index in the strip, nodata fraction, pixel counts per mask value)
_Record = tuple[int, float, list[int]]
_ChipFile = tuple[str, npt.NDArray[Any], npt.NDArray[np.uint8], Affine]


@dataclass(frozen=True)
class _CutResult:
    records: list[_Record]
    n_nodata: int
    n_incomplete: int
    error: str | None = None  # a read error, raised by the parent as a RasterError


class _SceneCutter:
    """Per-scene state of the parent: plans strips, turns cut records into index rows."""

    def __init__(
        self,
        region: Region,
        scene: _Scene,
        labels: gpd.GeoDataFrame,
        class_ids: dict[str, int],
        complete: list[BaseGeometry] | None,
        test_areas: list[BaseGeometry] | None,
        val_areas: list[BaseGeometry] | None,
        tmp: Path,
    ) -> None:
        info = scene.info
        self.scene = scene
        geoms = np.asarray(labels.geometry.values, dtype=object)
        self.label_tree = shapely.STRtree(geoms)
        self.label_shapes = geojson_shapes(geoms)  # for rasterio, converted once
        self.label_class = labels["class"].map(class_ids).to_numpy(dtype=np.int64)
        self.label_ids = labels["label_id"].to_numpy(dtype=np.int64)
        # object boxes (envelopes in scene pixels); too small ones never become boxes
        self.label_px_boxes = pixel_boxes(geoms, info.transform)
        self.small = small_boxes(self.label_px_boxes)
        self.complete_arr = np.asarray(complete, dtype=object) if complete is not None else None
        self.complete_tree = shapely.STRtree(self.complete_arr) if complete else None
        self.test_tree = shapely.STRtree(test_areas) if test_areas else None
        self.val_tree = shapely.STRtree(val_areas) if val_areas else None
        self.spec = _SceneSpec(
            scene_id=scene.scene_id,
            path=os.fspath(info.path),
            transform=info.transform,
            nodata=scene.nodata,
            dtype=info.dtype,
            count=info.count,
            crs_wkt=info.crs.to_wkt(),
            bands=tuple(region.imagery.bands),
            n_classes=len(region.classes),
            max_nodata_fraction=region.chips.max_nodata_fraction,
            folder=os.fspath(tmp),
        )
        self.strips = _strips(scene.windows, _strip_width_px(region, scene))

    def plans(self) -> Iterator[_Strip]:
        """The scene's strips, planned lazily (labels and areas that touch each chip)."""
        t = self.scene.info.transform
        for ws in self.strips:
            yield _plan_strip(ws, t, self.label_tree, self.complete_arr, self.complete_tree)

    def job(self, strip: _Strip) -> _CutJob:
        """The cut job of a strip that has pixels to read."""
        assert strip.window is not None
        strip_idx = sorted({i for ids in strip.labels for i in ids})
        shapes = [(self.label_shapes[i], int(self.label_class[i])) for i in strip_idx]
        return _CutJob(strip.window, strip.windows, strip.complete, shapes, strip.complete_geoms)

    def rows(self, strip: _Strip, records: list[_Record]) -> list[_Row]:
        """Index rows of a strip's kept chips, in chip order."""
        out = []
        for k, nd_fraction, px in records:
            w = strip.windows[k]
            out.append(
                _Row(
                    chip_id=_chip_id(self.scene.scene_id, w),
                    scene=self.scene,
                    window=w,
                    nodata_fraction=nd_fraction,
                    px=px,
                    object_ids=sorted({int(self.label_ids[i]) for i in strip.labels[k]}),
                    forced=_forced(strip.boxes[k], self.test_tree, self.val_tree),
                    footprint_native=strip.boxes[k],
                    boxes=self.chip_boxes(strip.labels[k], w),
                )
            )
        return out

    def chip_boxes(self, label_idx: list[int], w: ChipWindow) -> ChipBoxes:
        """The chip's object boxes under the chip-edge rule (:mod:`geotl.chips.boxes`)."""
        idx = np.asarray([i for i in label_idx if not self.small[i]], dtype=np.int64)
        return chip_boxes(
            self.label_px_boxes[idx],
            self.label_class[idx],
            self.label_ids[idx],
            w.row_off,
            w.col_off,
            w.height,
            w.width,
        )


def _strip_width_px(region: Region, scene: _Scene) -> int:
    """The widest strip whose pixels stay under :data:`_STRIP_MAX_BYTES` (>= one chip)."""
    size = region.chips.size_px
    px_bytes = scene.info.count * np.dtype(scene.info.dtype).itemsize
    return max(size, _STRIP_MAX_BYTES // (size * px_bytes))


def _chip_id(scene_id: str, w: ChipWindow) -> str:
    return f"{scene_id}_r{w.row_off}_c{w.col_off}"


def _writers(spec: _SceneSpec) -> tuple[ChipTiffWriter, ChipTiffWriter]:
    """(image writer, mask writer) for the chips of one scene."""
    image_writer = ChipTiffWriter(
        spec.dtype, spec.count, spec.crs_wkt, spec.nodata, spec.bands, compress=IMAGE_COMPRESSION
    )
    return image_writer, _mask_writer(spec.crs_wkt)


def _mask_writer(crs_wkt: str) -> ChipTiffWriter:
    return ChipTiffWriter(
        "uint8", 1, crs_wkt, IGNORE, compress=MASK_COMPRESSION, strategy=zlib.Z_RLE
    )


def _chip_transform(t: Affine, w: ChipWindow) -> Affine:
    """The transform of a chip cut at window ``w`` of a scene with transform ``t``."""
    x, y = t @ (w.col_off, w.row_off)
    return Affine(t.a, t.b, x, t.d, t.e, y)


def _cut_strip(
    spec: _SceneSpec, job: _CutJob, strip_data: npt.NDArray[Any]
) -> tuple[_CutResult, list[_ChipFile]]:
    """Nodata test, rasterise and slice one strip: the kept chips' records and files.

    The strip's labels (and ``complete_within`` areas) are rasterised once; each chip's
    mask is a slice of it. Used by the serial path and by pool workers alike.
    """
    col0, row0 = int(job.window.col_off), int(job.window.row_off)
    h, width = int(job.window.height), int(job.window.width)
    if job.shapes or job.complete_geoms is not None:
        strip_mask = rasterize_chip(
            job.shapes,
            spec.transform @ Affine.translation(col0, row0),
            h,
            width,
            complete=job.complete_geoms,
        )
    else:
        strip_mask = np.zeros((h, width), dtype=np.uint8)
    strip_nd = nodata_mask(strip_data, spec.nodata)
    strip_mask[strip_nd] = IGNORE  # chips are views: overlapping chips agree
    records: list[_Record] = []
    files: list[_ChipFile] = []
    n_nodata = n_incomplete = 0
    t = spec.transform
    for k, w in enumerate(job.windows):
        if job.complete is not None and not job.complete[k]:
            n_incomplete += 1
            continue
        c = w.col_off - col0
        nd = strip_nd[:, c : c + w.width]
        nd_fraction = np.count_nonzero(nd) / nd.size
        if nd_fraction >= 1.0 or nd_fraction > spec.max_nodata_fraction:
            n_nodata += 1
            continue
        mask = strip_mask[:, c : c + w.width]
        px = class_pixel_counts(mask, spec.n_classes)
        if job.complete is not None and px[-1] == mask.size:
            n_incomplete += 1
            continue
        files.append(
            (
                _chip_id(spec.scene_id, w),
                strip_data[:, :, c : c + w.width],
                mask,
                _chip_transform(t, w),
            )
        )
        records.append((k, nd_fraction, px))
    return _CutResult(records, n_nodata, n_incomplete), files


def _chip_serial(
    cutters: list[_SceneCutter], skipped: dict[str, int], bar: tqdm[Any]
) -> list[_Row]:
    """Cut every scene in this process, a strip at a time.

    One thread writes the chip files while the next strip is cut (measured: reading ahead
    in another thread, or cutting strips in several threads, was slower on 2 busy cores).
    Memory stays bounded: the strip being cut, of at most :data:`_STRIP_MAX_BYTES`, plus
    at most :data:`_MAX_PENDING_STRIPS` strip(s) being written.
    """
    rows: list[_Row] = []
    with ThreadPoolExecutor(max_workers=1) as writer:
        for cutter in cutters:
            spec = cutter.spec
            image_writer, mask_writer = _writers(spec)
            pending: deque[Future[None]] = deque()
            with open_raster(cutter.scene.info.path) as ds:
                for strip in cutter.plans():
                    bar.update(len(strip.windows))
                    if strip.window is None:  # every chip lies outside complete_within
                        skipped["incomplete"] += len(strip.windows)
                        continue
                    try:
                        strip_data = ds.read(window=strip.window)
                    except RasterioError as exc:
                        raise _read_error(cutter.scene.info.path, exc) from exc
                    result, files = _cut_strip(spec, cutter.job(strip), strip_data)
                    skipped["nodata"] += result.n_nodata
                    skipped["incomplete"] += result.n_incomplete
                    rows.extend(cutter.rows(strip, result.records))
                    # one task per strip: the writer thread writes while the next is cut
                    pending.append(
                        writer.submit(_write_chips, spec.folder, files, image_writer, mask_writer)
                    )
                    if len(pending) > _MAX_PENDING_STRIPS:
                        pending.popleft().result()
                for f in pending:
                    f.result()
    return rows


def _chip_parallel(
    cutters: list[_SceneCutter],
    pool: Pool,
    n_workers: int,
    skipped: dict[str, int],
    bar: tqdm[Any],
) -> list[_Row]:
    """Cut the strips of every scene in the worker processes of ``pool``.

    Workers read, label and write strips and return their small per-chip records; the
    parent plans the strips and builds the index rows in submission order, so the output
    equals the serial path's. A task is the run of strips that start in one block row of
    the scene (tiles or TIFF strips), so that each block is decoded by one worker only
    (its block cache serves the next strip). At most ``2 * n_workers`` tasks are in flight;
    a worker holds one strip's pixels at a time.
    """
    rows: list[_Row] = []
    pending: deque[tuple[_SceneCutter, list[_Strip], AsyncResult[list[_CutResult]]]] = deque()

    def collect() -> None:
        cutter, strips, future = pending.popleft()
        for strip, result in zip(strips, future.get(), strict=True):
            if result.error is not None:
                raise _read_error(cutter.scene.info.path, RasterioError(result.error))
            skipped["nodata"] += result.n_nodata
            skipped["incomplete"] += result.n_incomplete
            rows.extend(cutter.rows(strip, result.records))
            bar.update(len(strip.windows))

    def submit(cutter: _SceneCutter, strips: list[_Strip]) -> None:
        jobs = [cutter.job(strip) for strip in strips]
        pending.append((cutter, strips, pool.apply_async(_worker_cut, (cutter.spec, jobs))))
        while len(pending) > 2 * n_workers:
            collect()

    try:
        for cutter in cutters:
            block_rows = _block_rows(cutter.scene)
            group: list[_Strip] = []
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


def _block_rows(scene: _Scene) -> int:
    """Rows per block of the scene's first band, or 1 (no grouping) for very tall blocks."""
    with open_raster(scene.info.path) as ds:
        block_h = int(ds.block_shapes[0][0])
    return block_h if 0 < block_h <= _MAX_GROUP_ROWS else 1


# Strips are cut in worker processes when a job has at least this many strips and chips:
# forking and joining the workers costs ~30-50 ms, and two processes creating files in one
# folder contend for it on ext4. Measured on 2 cores (BENCHMARKS.md, Chip): 64 chips were
# ~10 % slower in parallel, 256 even on disk and ~15 % faster on tmpfs, 1024 1.3-1.4x faster.
_PARALLEL_MIN_STRIPS = 4
_PARALLEL_MIN_CHIPS = 256
_MAX_WORKERS = 4
_WORKER_GDAL_CACHE_BYTES = 32 * 2**20  # per worker process

_worker: dict[str, Any] = {}  # a worker process's state: open dataset, writers, GDAL env


def _n_workers(workers: int | None, scenes: list[_Scene], region: Region) -> int:
    """Worker processes to use: 1 (serial) for small jobs or where fork is not safe."""
    if workers is not None and workers <= 1:
        return 1
    if "fork" not in mp.get_all_start_methods() or sys.platform == "darwin":
        return 1  # workers must inherit the imported libraries; spawn costs ~1 s each
    if _other_threads():
        return 1  # forking a process with Python threads running can deadlock
    if workers is None:
        n_cpu = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        n_chips = sum(len(s.windows) for s in scenes)
        n_strips = sum(len(_strips(s.windows, _strip_width_px(region, s))) for s in scenes)
        if n_strips < _PARALLEL_MIN_STRIPS or n_chips < _PARALLEL_MIN_CHIPS:
            return 1
        workers = min(n_cpu or 1, _MAX_WORKERS)
    return max(1, workers)


def _other_threads() -> list[threading.Thread]:
    """Python threads besides this one, ignoring tqdm's idle monitor (it only sleeps)."""
    monitor = getattr(tqdm, "monitor", None)
    current = threading.current_thread()
    return [t for t in threading.enumerate() if t is not current and t is not monitor]


@contextlib.contextmanager
def _fork_pool(n_workers: int) -> Iterator[Pool | None]:
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


def _worker_cut(spec: _SceneSpec, jobs: list[_CutJob]) -> list[_CutResult]:
    """In a worker: read, cut and write strips, one at a time; return their records."""
    if _worker.get("path") != spec.path:
        if "ds" in _worker:
            _worker.pop("ds").close()
        _worker["ds"] = rasterio.open(spec.path)
        _worker["path"] = spec.path
    if _worker.get("scene") != spec.scene_id:
        _worker["writers"] = _writers(spec)
        _worker["scene"] = spec.scene_id
    results = []
    for job in jobs:
        try:
            strip_data = _worker["ds"].read(window=job.window)
        except RasterioError as exc:
            results.append(_CutResult([], 0, 0, error=str(exc)))
            break
        result, files = _cut_strip(spec, job, strip_data)
        _write_chips(spec.folder, files, *_worker["writers"])
        results.append(result)
    return results


def _strips(windows: list[ChipWindow], max_width_px: int) -> list[list[ChipWindow]]:
    """Consecutive windows of one chip row, each group spanning at most ``max_width_px``.

    >>> from geotl.chips.windows import chip_windows
    >>> [[(w.row_off, w.col_off) for w in s] for s in _strips(chip_windows(5, 4, 2, 2), 4)]
    [[(0, 0), (0, 2)], [(0, 3)], [(2, 0), (2, 2)], [(2, 3)]]
    """
    out: list[list[ChipWindow]] = []
    for w in windows:
        last = out[-1] if out else None
        if (
            last is not None
            and last[0].row_off == w.row_off
            and last[0].height == w.height
            and w.col_off + w.width - last[0].col_off <= max(max_width_px, w.width)
        ):
            last.append(w)
        else:
            out.append([w])
    return out


def _write_chips(
    folder: str,  # plain strings: pathlib costs more than writing a small file
    chips: list[_ChipFile],
    image_writer: ChipTiffWriter,
    mask_writer: ChipTiffWriter,
) -> None:
    for chip_id, data, mask, transform in chips:
        image_writer.write(f"{folder}/images/{chip_id}.tif", data, transform)
        mask_writer.write(f"{folder}/masks/{chip_id}.tif", mask, transform)


def _forced(
    chip_box: BaseGeometry,
    test_tree: shapely.STRtree | None,
    val_tree: shapely.STRtree | None,
) -> str | None:
    centre = chip_box.centroid
    if test_tree is not None and len(test_tree.query(centre, predicate="within")):
        return "test"
    if val_tree is not None and len(val_tree.query(centre, predicate="within")):
        return "val"
    return None


def _footprints_common(rows: list[_Row], scenes: list[_Scene]) -> list[BaseGeometry]:
    """Chip footprints in EPSG:4326 (edges densified so reprojection stays faithful)."""
    out: list[BaseGeometry | None] = [None] * len(rows)
    by_scene: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        by_scene.setdefault(r.scene.scene_id, []).append(i)
    for s in scenes:
        idx = by_scene.get(s.scene_id, [])
        if not idx:
            continue
        series = gpd.GeoSeries([rows[i].footprint_native for i in idx], crs=s.info.crs)
        common = series.to_crs(COMMON_CRS).values
        for i, g in zip(idx, common, strict=True):
            out[i] = g
    return [g for g in out if g is not None]


def _guard_bands(
    region: Region,
    rows: list[_Row],
    footprints: list[BaseGeometry],
    splits: list[str],
    tmp: Path,
) -> GuardReport:
    """Ignore pixels between splits in the chips' masks (rows' pixel counts updated)."""
    chips = [
        GuardChip(
            mask_path=tmp / "masks" / f"{r.chip_id}.tif",
            crs=r.scene.info.crs,
            transform=_chip_transform(r.scene.info.transform, r.window),
            width=r.window.width,
            height=r.window.height,
            resolution_m=r.scene.info.resolution_m,
            footprint_native=r.footprint_native,
        )
        for r in rows
    ]
    writers: dict[str, ChipTiffWriter] = {}

    def write(i: int, mask: npt.NDArray[np.uint8], band: npt.NDArray[np.bool_]) -> None:
        r, chip = rows[i], chips[i]
        wkt = r.scene.info.crs.to_wkt()
        if wkt not in writers:
            writers[wkt] = _mask_writer(wkt)
        writers[wkt].write(os.fspath(chip.mask_path), mask, chip.transform)
        r.px = class_pixel_counts(mask, len(region.classes))
        if r.boxes is not None:
            r.boxes = guard_boxes(r.boxes, band)

    report, _ = apply_guard_bands(chips, footprints, COMMON_CRS, splits, region.guard_px, write)
    return report


def _check_split(
    region: Region,
    rows: list[_Row],
    splits: list[str],
    objects_per_split: dict[str, int],
    pixels_per_split: dict[str, int],
    guard: GuardReport,
) -> str | None:
    """Advice when the split leaves training nothing (logged; ``geotl train`` raises it).

    Regions with designated areas (``test_within`` / ``val_within``) may be chipped for
    evaluation only; a region without any labelled object is left to training to report.
    """
    if any(r.forced for r in rows) or not any(objects_per_split.values()):
        return None
    if objects_per_split.get("train", 0) and pixels_per_split.get("train", 0):
        return None
    if objects_per_split.get("train", 0):
        advice = (
            f"the guard bands ([split] guard_px = {guard.guard_px}) took every object pixel of "
            f"the train split: set guard_px = {guard.guard_px // 4} or raise block_size_m"
        )
    else:
        n_train = sum(1 for s in splits if s == "train")
        advice = (
            f"the split left no labelled object in train ({n_train} of {len(rows)} chips; "
            f"objects per split {objects_per_split}): {_split_advice(region, rows)}"
        )
    log.warning("%s: %s", region.path, advice)
    return advice


def _split_advice(region: Region, rows: list[_Row]) -> str:
    """Settings that give train, val and test labelled chips here, found by trying them."""
    split = region.split
    chip_m = region.chips.size_px * max(r.scene.info.resolution_m for r in rows)
    has_objects = [bool(r.object_ids) for r in rows]
    n = len(rows)
    fractions = list(
        dict.fromkeys(
            [
                (split.val_fraction, split.test_fraction),
                (min(split.val_fraction, 0.1), min(split.test_fraction, 0.1)),
                (min(split.val_fraction, 1 / n), min(split.test_fraction, 1 / n)),
            ]
        )
    )
    for seed in range(split.seed, split.seed + 20):
        for block_m in (split.block_size_m, chip_m):
            blocks: list[Hashable] = []
            for r in rows:
                c = r.footprint_native.centroid
                blocks.append(block_key(r.scene.crs_label, c.x, c.y, _block_size(r.scene, block_m)))
            for val, test in fractions:
                got = assign_blocks(blocks, [None] * n, val, test, seed)
                if all(
                    any(s == want and o for s, o in zip(got, has_objects, strict=True))
                    for want, frac in (("train", 1.0), ("val", val), ("test", test))
                    if frac > 0
                ):
                    return (
                        f"use [split] block_size_m = {block_m:g}, val_fraction = {val:.3g}, "
                        f"test_fraction = {test:.3g}, seed = {seed} (one chip is {chip_m:g} m)"
                    )
    return (
        "the region is too small for a train/val/test split: add labels, or set val_fraction "
        f"= 0 and test_fraction = 0 ({n} chips of {chip_m:g} m)"
    )


def _index_frame(
    region: Region,
    rows: list[_Row],
    footprints: list[BaseGeometry],
    splits: list[str],
) -> gpd.GeoDataFrame:
    keep = range(len(rows))
    cols: dict[str, list[Any]] = {
        "chip_id": [],
        "scene": [],
        "scene_crs": [],
        "row_off": [],
        "col_off": [],
        "height": [],
        "width": [],
        "split": [],
        "image": [],
        "mask": [],
        "resolution_m": [],
        "nodata_fraction": [],
        "px_background": [],
        **{f"px_{c}": [] for c in region.classes},
        "px_ignore": [],
        "n_objects": [],
        "object_ids": [],
        # object boxes in chip pixels, flat [x0, y0, x1, y1, ...] (geotl.chips.boxes)
        "boxes": [],
        "box_classes": [],
        "box_object_ids": [],
        "ignore_boxes": [],
    }
    for i in keep:
        r = rows[i]
        cols["chip_id"].append(r.chip_id)
        cols["scene"].append(str(r.scene.info.path))
        cols["scene_crs"].append(r.scene.crs_label)
        cols["row_off"].append(r.window.row_off)
        cols["col_off"].append(r.window.col_off)
        cols["height"].append(r.window.height)
        cols["width"].append(r.window.width)
        cols["split"].append(splits[i])
        cols["image"].append(f"images/{r.chip_id}.tif")
        cols["mask"].append(f"masks/{r.chip_id}.tif")
        cols["resolution_m"].append(r.scene.info.resolution_m)
        cols["nodata_fraction"].append(r.nodata_fraction)
        cols["px_background"].append(r.px[0])
        for k, c in enumerate(region.classes):
            cols[f"px_{c}"].append(r.px[k + 1])
        cols["px_ignore"].append(r.px[-1])
        cols["n_objects"].append(len(r.object_ids))
        cols["object_ids"].append(r.object_ids)
        cb = r.boxes
        cols["boxes"].append(flat_boxes(cb.boxes) if cb is not None else [])
        cols["box_classes"].append(cb.classes.tolist() if cb is not None else [])
        cols["box_object_ids"].append(cb.object_ids.tolist() if cb is not None else [])
        cols["ignore_boxes"].append(flat_boxes(cb.ignore) if cb is not None else [])
    frame = gpd.GeoDataFrame(
        cols, geometry=gpd.GeoSeries([footprints[i] for i in keep], crs=COMMON_CRS)
    )
    for c in ("row_off", "col_off", "height", "width", "px_background", "px_ignore", "n_objects"):
        frame[c] = frame[c].astype("int64")
    for c in region.classes:
        frame[f"px_{c}"] = frame[f"px_{c}"].astype("int64")
    return frame


def _meta(
    region: Region,
    scenes: list[_Scene],
    frame: gpd.GeoDataFrame,
    summary: ChipSummary,
    labels: gpd.GeoDataFrame,
) -> dict[str, Any]:
    assert region.labels is not None
    per_scene = frame["scene"].value_counts().to_dict()
    return {
        "geotl_version": __version__,
        "region": region.name,
        "region_path": str(region.path),
        "task": region.task,
        "classes": list(region.classes),
        "mask_values": {
            "0": "background",
            **{str(i + 1): c for i, c in enumerate(region.classes)},
            str(IGNORE): "ignore",
        },
        "bands": list(region.imagery.bands),
        "size_px": region.chips.size_px,
        "stride_px": region.chips.stride,
        "max_nodata_fraction": region.chips.max_nodata_fraction,
        "labels": {
            "path": str(region.labels_path()),
            "class_field": region.labels.class_field,
            "class_map": region.labels.class_map,
            "unmapped": region.labels.unmapped,
            "crs": region.labels.crs,
            "complete_within": region.labels.complete_within,
        },
        "split": {
            "method": "spatial blocks + guard bands",
            "block_size_m": region.split.block_size_m,
            "val_fraction": region.split.val_fraction,
            "test_fraction": region.split.test_fraction,
            "seed": region.split.seed,
            "test_within": region.split.test_within,
            "val_within": region.split.val_within,
            "guard_px": region.guard_px,
        },
        "counts": {
            **summary.counts,
            "guard": {"chips": summary.guard.chips, "pixels": summary.guard.pixels},
            "pixels_per_split": summary.pixels_per_split,
            "skipped_nodata": summary.n_skipped_nodata,
            "skipped_incomplete": summary.n_skipped_incomplete,
            "objects": summary.n_objects,
            "objects_per_split": summary.objects_per_split,
            "labels_repaired": int(labels.attrs.get("n_repaired", 0)),
            "labels_unmapped_skipped": int(labels.attrs.get("n_unmapped", 0)),
            "labels_ignored": int(labels.attrs.get("n_dropped", 0)),
            "boxes_too_small": summary.n_small_boxes,
        },
        "boxes": {
            "units": "chip pixels, flat [x0, y0, x1, y1, ...], origin the chip's top-left corner",
            "rule": (
                "an object cut by the chip edge keeps its clipped box when at least "
                f"{MIN_VISIBLE_FRACTION:g} of its box area is inside the chip; otherwise the "
                "clipped part is an ignore box (no loss there)"
            ),
            "min_visible_fraction": MIN_VISIBLE_FRACTION,
            "min_box_px": MIN_BOX_PX,
        },
        "scenes": [
            {
                "path": str(s.info.path),
                "scene_id": s.scene_id,
                "crs": crs_name(s.info.crs),
                "width": s.info.width,
                "height": s.info.height,
                "dtype": s.info.dtype,
                "nodata": s.nodata,
                "resolution_m": s.info.resolution_m,
                "chips": int(per_scene.get(str(s.info.path), 0)),
            }
            for s in scenes
        ],
    }
