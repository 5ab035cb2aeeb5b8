"""Strips of chips: planned per scene, read once, cut into chips and masks, written."""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import numpy.typing as npt
import shapely
from affine import Affine
from rasterio.windows import Window
from shapely.geometry import box
from shapely.geometry.base import BaseGeometry

from geotl.chips.boxes import (
    ChipBoxes,
    chip_boxes,
    pixel_boxes,
    small_boxes,
    unseen_boxes,
)
from geotl.chips.labels import (
    IGNORE,
    class_pixel_counts,
    geojson_shapes,
    rasterize_chip,
)
from geotl.chips.scenes import ChipScene
from geotl.chips.tiff import ChipTiffWriter, Compression
from geotl.config import Region
from geotl.io.nodata import holds_value, nodata_mask
from geotl.io.rasters import window_bounds, window_corners

# Chips are read and labelled a strip at a time (a run of chips of one chip row): one read
# and one rasterisation per strip. A strip's pixels stay under this many bytes (a strip is
# at least one chip wide).
STRIP_MAX_BYTES = 16 * 2**20


# Chip images are stored uncompressed: on real 0.1 m RGB imagery (NEON) deflate saves only
# 8-23 % of the bytes but costs 4-7x the time it takes to read the chip (BENCHMARKS.md, Chip).
# Masks (long runs of one value) shrink ~50-100x with deflate (zlib RLE strategy, level 1),
# at ~0.1 ms per chip.
IMAGE_COMPRESSION: Compression = "none"


MASK_COMPRESSION: Compression = "deflate"


@dataclass
class ChipRow:
    """One chip kept for the index: where it is, what it holds and how it was assigned."""

    chip_id: str
    scene: ChipScene
    window: Window
    nodata_fraction: float
    px: list[int]
    object_ids: list[int]
    forced: str | None
    footprint_native: BaseGeometry
    boxes: ChipBoxes | None = None


@dataclass
class Strip:
    """A run of chips of one chip row, read and labelled together."""

    windows: list[Window]
    boxes: list[BaseGeometry]
    labels: list[list[int]]  # per chip: indices of the labels that intersect it
    complete: list[bool] | None  # per chip: touches a complete_within area (None: no areas)
    complete_geoms: list[BaseGeometry] | None  # the areas that touch the strip
    window: Window | None  # the pixels to read: the span of the chips to keep, or nothing


def _plan_strip(
    windows: list[Window],
    transform: Affine,
    label_tree: shapely.STRtree,
    complete_arr: npt.NDArray[np.object_] | None,
    complete_tree: shapely.STRtree | None,
) -> Strip:
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
    return Strip(windows, boxes, labels, complete, complete_geoms, window)


@dataclass(frozen=True)
class SceneSpec:
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
    band_indexes: tuple[int, ...]  # the data bands in the file (an alpha band is not one)
    mask_bands: tuple[int, ...]  # bands whose GDAL masks are read beside the nodata value


@dataclass(frozen=True)
class CutJob:
    """One strip to cut: its pixels, chips, and the label shapes that touch it."""

    window: Window
    windows: list[Window]
    complete: list[bool] | None
    shapes: list[tuple[dict[str, Any], int]]  # (GeoJSON geometry, class id)
    complete_geoms: list[BaseGeometry] | None


# per kept chip: (index in the strip, nodata fraction, pixel counts per mask value)
Record = tuple[int, float, list[int]]


ChipFile = tuple[str, npt.NDArray[Any], npt.NDArray[np.uint8], Affine]


@dataclass(frozen=True)
class CutResult:
    """What cutting a strip produced (index records, chips skipped, or the read error)."""

    records: list[Record]
    n_nodata: int
    n_incomplete: int
    error: str | None = None  # a read error, raised by the parent as a RasterError


class SceneCutter:
    """Per-scene state of the parent: plans strips, turns cut records into index rows."""

    def __init__(
        self,
        region: Region,
        scene: ChipScene,
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
        self.unseen = unseen_boxes(self.label_px_boxes, region.chips.size_px)
        self.complete_arr = np.asarray(complete, dtype=object) if complete is not None else None
        self.complete_tree = shapely.STRtree(self.complete_arr) if complete else None
        self.test_tree = shapely.STRtree(test_areas) if test_areas else None
        self.val_tree = shapely.STRtree(val_areas) if val_areas else None
        self.spec = SceneSpec(
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
            band_indexes=info.band_indexes,
            mask_bands=info.mask_bands,
        )
        self.strips = strips(scene.windows, _strip_width_px(region, scene))

    def plans(self) -> Iterator[Strip]:
        """The scene's strips, planned lazily (labels and areas that touch each chip)."""
        t = self.scene.info.transform
        for ws in self.strips:
            yield _plan_strip(ws, t, self.label_tree, self.complete_arr, self.complete_tree)

    def job(self, strip: Strip) -> CutJob:
        """The cut job of a strip that has pixels to read."""
        assert strip.window is not None
        strip_idx = sorted({i for ids in strip.labels for i in ids})
        shapes = [(self.label_shapes[i], int(self.label_class[i])) for i in strip_idx]
        return CutJob(strip.window, strip.windows, strip.complete, shapes, strip.complete_geoms)

    def rows(self, strip: Strip, records: list[Record]) -> list[ChipRow]:
        """Index rows of a strip's kept chips, in chip order."""
        out = []
        for k, nd_fraction, px in records:
            w = strip.windows[k]
            out.append(
                ChipRow(
                    chip_id=_chip_id(self.scene.scene_id, w),
                    scene=self.scene,
                    window=w,
                    nodata_fraction=nd_fraction,
                    px=px,
                    object_ids=sorted({int(self.label_ids[i]) for i in strip.labels[k]}),
                    forced=forced(strip.boxes[k], self.test_tree, self.val_tree),
                    footprint_native=_footprint(self.scene.info.transform, w, strip.boxes[k]),
                    boxes=self.chip_boxes(strip.labels[k], w),
                )
            )
        return out

    def chip_boxes(self, label_idx: list[int], w: Window) -> ChipBoxes:
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


def _footprint(t: Affine, w: Window, envelope: BaseGeometry) -> BaseGeometry:
    """A chip's ground: its envelope on a north-up or south-up grid, else its four corners.

    On a rotated grid the envelope reaches over the neighbouring chips, so the guard bands
    of a split boundary took most of the chips around it.
    """
    if t.b == 0 and t.d == 0:
        return envelope
    return shapely.Polygon(window_corners(t, w))


def _strip_width_px(region: Region, scene: ChipScene) -> int:
    """The widest strip whose pixels stay under :data:`STRIP_MAX_BYTES` (>= one chip)."""
    size = region.chips.size_px
    px_bytes = scene.info.count * np.dtype(scene.info.dtype).itemsize
    return max(size, STRIP_MAX_BYTES // (size * px_bytes))


def _chip_id(scene_id: str, w: Window) -> str:
    return f"{scene_id}_r{w.row_off}_c{w.col_off}"


def writers(spec: SceneSpec) -> tuple[ChipTiffWriter, ChipTiffWriter]:
    """(image writer, mask writer) for the chips of one scene."""
    image_writer = ChipTiffWriter(
        spec.dtype, spec.count, spec.crs_wkt, spec.nodata, spec.bands, compress=IMAGE_COMPRESSION
    )
    return image_writer, _mask_writer(spec.crs_wkt)


def _mask_writer(crs_wkt: str) -> ChipTiffWriter:
    return ChipTiffWriter(
        "uint8", 1, crs_wkt, IGNORE, compress=MASK_COMPRESSION, strategy=zlib.Z_RLE
    )


def chip_transform(t: Affine, w: Window) -> Affine:
    """The transform of a chip cut at window ``w`` of a scene with transform ``t``."""
    x, y = t @ (w.col_off, w.row_off)
    return Affine(t.a, t.b, x, t.d, t.e, y)


def cut_strip(
    spec: SceneSpec,
    job: CutJob,
    strip_data: npt.NDArray[Any],
    dataset_mask: npt.NDArray[Any] | None = None,
) -> tuple[CutResult, list[ChipFile]]:
    """Nodata test, rasterise and slice one strip: the kept chips' records and files.

    The strip's labels (and ``complete_within`` areas) are rasterised once; each chip's
    mask is a slice of it. Used by the serial path and by pool workers alike. Pixels that
    GDAL's masks (``dataset_mask``, 0 = no data: an alpha band, an internal mask, the bands'
    own nodata values) leave out are written as the chips' nodata value in every band, so
    the chips carry them.
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
    # masks of several bands are a stack's own nodata values: a band without a value there
    # leaves the pixel without data (its nodata number would pass as a reflectance)
    strip_nd = nodata_mask(strip_data, spec.nodata, dataset_mask, per_band=len(spec.mask_bands) > 1)
    fill = spec.nodata
    if dataset_mask is not None and fill is not None and holds_value(strip_data.dtype, fill):
        strip_data[:, strip_nd] = fill
    strip_mask[strip_nd] = IGNORE  # chips are views: overlapping chips agree
    records: list[Record] = []
    files: list[ChipFile] = []
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
                chip_transform(t, w),
            )
        )
        records.append((k, nd_fraction, px))
    return CutResult(records, n_nodata, n_incomplete), files


def strips(windows: list[Window], max_width_px: int) -> list[list[Window]]:
    """Consecutive windows of one chip row, each group spanning at most ``max_width_px``.

    >>> from geotl.chips.windows import chip_windows
    >>> [[(w.row_off, w.col_off) for w in s] for s in strips(chip_windows(5, 4, 2, 2), 4)]
    [[(0, 0), (0, 2)], [(0, 3)], [(2, 0), (2, 2)], [(2, 3)]]
    """
    out: list[list[Window]] = []
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


def write_chips(
    folder: str,  # plain strings: pathlib costs more than writing a small file
    chips: list[ChipFile],
    image_writer: ChipTiffWriter,
    mask_writer: ChipTiffWriter,
) -> None:
    """Write a strip's chips and masks."""
    for chip_id, data, mask, transform in chips:
        image_writer.write(f"{folder}/images/{chip_id}.tif", data, transform)
        mask_writer.write(f"{folder}/masks/{chip_id}.tif", mask, transform)


def forced(
    chip_box: BaseGeometry,
    test_tree: shapely.STRtree | None,
    val_tree: shapely.STRtree | None,
) -> str | None:
    """``test`` or ``val`` when the chip's centre lies in a test or val area, else None."""
    centre = chip_box.centroid
    if test_tree is not None and len(test_tree.query(centre, predicate="within")):
        return "test"
    if val_tree is not None and len(val_tree.query(centre, predicate="within")):
        return "val"
    return None
