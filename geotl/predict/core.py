"""Whole scenes to detection polygons: ``predict_scene`` (one) and ``predict_scenes`` (a job)."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, cast

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio
import shapely
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window
from shapely.geometry.base import BaseGeometry

from geotl.cluster import ModelRef, SceneJob, open_cluster, parse_cluster, predict_on_cluster
from geotl.cores import usable_cores
from geotl.errors import BandMismatchError, GeotlError, GeotlInputError, SceneError
from geotl.io.atomic import atomic_path, check_output_file, check_writable
from geotl.io.band_names import band_descriptions
from geotl.io.compression import say_compression
from geotl.io.dates import acquired_text, read_acquired
from geotl.io.lonlat import geodesic_areas_m2, lonlat
from geotl.io.rasters import (
    check_georeferenced,
    data_band_indexes,
    is_virtual,
    mask_bands,
    nodata_vrt_options,
    north_up,
    open_raster,
    read_failure,
    remote_gdal_env,
    say_pages,
    split_subdataset,
    window_corners,
    with_nodata,
)
from geotl.io.rasters import scene_path as as_scene_path
from geotl.io.scratch import scratch_dir
from geotl.models.artefact import Artefact
from geotl.predict.blocks import RowBlock
from geotl.predict.boxes import artefact_detector, detect_boxes
from geotl.predict.engine import load_model
from geotl.predict.objects import ObjectExtractor, extractor_for
from geotl.predict.outputs import WRITERS, Prediction, write_cog, write_probabilities_qml
from geotl.predict.outputs.base import scene_file_part
from geotl.predict.outputs.quicklook import QuicklookWriter, ScenePicture, sidecar_paths
from geotl.predict.radiometry import sample_scene, warn_other_radiometry
from geotl.predict.scene import (
    STACK_BANDS,
    check_scene_pixels,
    map_bands,
    scene_band_names,
)
from geotl.predict.stream import StreamStats, infer_and_vectorise
from geotl.predict.tiles import drop_tile_overlaps
from geotl.predict.vectorise import min_pixels_for
from geotl.predict.windows import ground_anchor, plan_windows
from geotl.progress import progress_bar, set_phase

__all__ = [
    "COLUMNS",
    "PredictOptions",
    "PredictSummary",
    "SceneDetections",
    "predict_scene",
    "predict_scenes",
]

log = logging.getLogger(__name__)

#: a scene's count line; on a Dask cluster the coordinator says it with the scene's totals
#: (:meth:`geotl.cluster.PendingScene.result`), not each block's worker
SCENE_COUNT_LOG = "%s: %d polygon(s) from %d window(s) in %.1f s (model %.1f s)"

COLUMNS = ["id", "class", "score", "area_m2", "scene", "acquired", "model"]
CPU_BATCH_PX = 4 * 256 * 256
"""Pixels per forward pass of a PyTorch network on the CPU (:meth:`PredictOptions.batch_for`)."""


@dataclass(frozen=True)
class PredictOptions:
    """How to predict: windows, batching, thresholds and polygon clean-up.

    Attributes:
        batch_size: windows per forward pass (default: :meth:`batch_for`).
        window_px: inference window (default: the larger of 256 and the card's chip size).
        overlap_px: overlap between windows (default: a quarter of the window).
        threshold: minimum foreground probability, or box score for a detector (default:
            the card's).
        nms_iou: detectors: boxes of one class overlapping more are one object (default:
            the card's).
        seed_threshold: instance models: the seed score where the watershed starts an
            object (default: the card's: 0.6, or the training region's).
        min_area_m2: drop smaller polygons (default: the card's, from the training region).
        simplify_px: topology-preserving simplification tolerance in pixels (default: the
            card's).
        resample: resample scenes at another ground resolution to the model's.
        bands: the scenes' band names in file order (default: band descriptions, else the
            model's order when the count matches).
        bands_from: who named ``bands``: ``--bands`` wins over the files' band
            descriptions (with a warning); the region's ``[imagery] bands`` never does
            (a disagreement is refused: :func:`geotl.predict.scene.scene_band_names`).
        nodata: the scenes' nodata value, over the files' own (the region's ``[imagery]
            nodata``: chips, training and prediction see the same pixels as no data).
        datetime_regex: reads the acquisition date from a file name (one capture group).
        vector_window_px: core window of the vectoriser.
        halo_px: initial halo of the vectoriser windows.
        probabilities_path: write the blended probabilities as a Cloud-Optimised GeoTIFF.
        progress: show a progress bar on stderr.
        ground_grid: anchor the inference windows to a grid fixed to the ground (the CRS
            origin), so that passes cropped differently predict the same over the same
            ground; off: windows start at the scene's corner.
        flip_tta: average every window's probabilities over its four flips (4x the model
            time; steadier objects from pass to pass).
        workers: processes that vectorise row strips of a scene side by side (default:
            the usable cores, for scenes of at least 4 Mpx; smaller scenes, and 1,
            vectorise in a thread: a pool's start costs more than it saves there). The
            objects are the same whatever the number.
        read_threads: threads reading windows ahead (default: 16 for ``/vsicurl/`` and
            other remote files, else a quarter of the cores, 1 to 4).
    """

    batch_size: int | None = None
    window_px: int | None = None
    overlap_px: int | None = None
    threshold: float | None = None
    nms_iou: float | None = None
    seed_threshold: float | None = None
    min_area_m2: float | None = None
    simplify_px: float | None = None
    resample: bool = False
    bands: tuple[str, ...] | None = None
    bands_from: str = "--bands"
    nodata: float | None = None
    datetime_regex: str | None = None
    vector_window_px: int = 1024
    halo_px: int = 64
    probabilities_path: Path | None = None
    progress: bool = True
    ground_grid: bool = True
    flip_tta: bool = False
    workers: int | None = None
    read_threads: int | None = None

    @classmethod
    def from_region(cls, region: Any, **overrides: Any) -> PredictOptions:
        """Options from a region's ``[predict]`` and ``[imagery]`` tables, then ``overrides``.

        ``[predict]``'s thresholds, minimum area, simplification and box overlap only when
        the file sets them: else the model card's stand (the threshold chosen on
        validation, the others the training region's).
        """
        given = region.predict.given
        base = cls(
            min_area_m2=given("min_area_m2"),
            simplify_px=given("simplify_px"),
            threshold=given("threshold"),
            nms_iou=given("nms_iou"),
            seed_threshold=given("seed_threshold"),
            overlap_px=region.predict.overlap_px,
            flip_tta=region.predict.flip_tta,
            bands=tuple(region.imagery.bands),
            bands_from="[imagery] bands",
            nodata=region.imagery.nodata,
            datetime_regex=region.imagery.datetime_regex,
        )
        return replace(base, **overrides)

    def windowing(self, card: Any) -> tuple[int, int]:
        """Inference window and overlap in model pixels for a model card.

        The window defaults to the larger of 256 px and the card's chip size and is rounded
        up to the encoder's stride; the overlap defaults to a quarter of the window.
        """
        window_px = card.network.round_up_px(self.window_px or max(256, card.chip_size_px))
        overlap_px = self.overlap_px if self.overlap_px is not None else window_px // 4
        return window_px, min(overlap_px, window_px - 1)

    def batch_for(self, window_px: int, artefact: Artefact) -> int:
        """Windows per forward pass: ``batch_size``, else a default for the engine's device.

        PyTorch on the CPU: as many windows as make :data:`CPU_BATCH_PX` pixels (4 of
        256 px), whose activations stay in the caches: 1.2-1.3x faster per pixel than 8
        windows of 256 px on this machine (BENCHMARKS.md, issue 10). Else 8.
        """
        if self.batch_size is not None:
            return self.batch_size
        if artefact.engine is None and artefact.device.type == "cpu":
            return max(1, CPU_BATCH_PX // (window_px * window_px))
        return 8

    def seed_threshold_for(self, card: Any) -> float:
        """Instance models' watershed seed threshold (``seed_threshold``, else the card's)."""
        return float(
            self.seed_threshold if self.seed_threshold is not None else card.seed_threshold
        )

    def min_area_for(self, card: Any) -> float:
        """The smallest object kept in m² (``min_area_m2``, else the card's)."""
        return float(self.min_area_m2 if self.min_area_m2 is not None else card.min_area_m2)

    def edge_margin_m(self, card: Any) -> float:
        """Half the window overlap in metres: the band along a scene's edge that saw padding.

        Inside a scene every pixel is owned by a window core at least half an overlap away
        from that window's edge; within half an overlap of the scene's own edge there is no
        neighbour window, so the model saw padded pixels there. The monitor leaves a band this
        wide out when it compares two passes
        (:meth:`geotl.monitor.changes.ChangeCriteria.for_model`, ``[monitor] edge_margin_m``);
        ``scripts/bench_pass_consistency.py --margins`` measures multiples of this width.
        """
        _, overlap_px = self.windowing(card)
        return overlap_px / 2 * float(card.resolution_m)


@dataclass
class SceneDetections:
    """The detections of one scene.

    Attributes:
        scene: the scene file.
        name: what the outputs call it (the ``scene`` column, per-scene file names).
        features: GeoDataFrame in EPSG:4326 with :data:`COLUMNS` + geometry.
        native: the same features in the scene's CRS (for the GeoPackage).
        footprint: the scene's footprint in EPSG:4326.
        rgb_indexes: 1-based scene bands to show in a quicklook.
        stats: timings.
        mask_bands: the bands whose GDAL masks told the pixels with data
            (:func:`geotl.io.rasters.mask_bands`), and
        nodata: the nodata value they were read with (None: the file's): a quicklook
            shows the pixels prediction saw as data, the rest transparent.
    """

    scene: Path
    name: str
    features: gpd.GeoDataFrame
    native: gpd.GeoDataFrame
    footprint: BaseGeometry
    rgb_indexes: list[int]
    stats: StreamStats = field(default_factory=StreamStats)
    mask_bands: tuple[int, ...] = ()
    nodata: float | None = None

    @property
    def picture(self) -> ScenePicture:
        """The scene to draw, with the pixels prediction saw as data (quicklooks, thumbnails)."""
        return ScenePicture(self.scene, self.rgb_indexes, self.mask_bands, self.nodata)


@dataclass
class PredictSummary:
    """What a multi-scene job wrote and which scenes failed."""

    geojson: Path
    features: int
    scenes: list[SceneDetections]
    failed: list[tuple[Path, str]]
    gpkg: Path | None = None
    qml: list[Path] = field(default_factory=list)
    quicklooks: list[Path] = field(default_factory=list)
    probabilities: list[Path] = field(default_factory=list)


def _object_id(scene: str, class_name: str, *px: int) -> str:
    key = "|".join([scene, class_name, *(str(v) for v in px)])
    digest = hashlib.sha1(key.encode(), usedforsecurity=False)
    return digest.hexdigest()[:16]


def _empty_frame(crs: Any) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {c: pd.Series(dtype="float64" if c in ("score", "area_m2") else "object") for c in COLUMNS},
        geometry=gpd.GeoSeries([], crs=crs),
        crs=crs,
    )


def _rgb_indexes(
    scene_bands: list[str] | None, mapped: list[int], model_bands: list[str]
) -> list[int]:
    names = scene_bands if scene_bands is not None else model_bands
    if all(b in names for b in ("red", "green", "blue")):
        return [names.index(b) + 1 for b in ("red", "green", "blue")]
    return mapped[:3] if len(mapped) >= 3 else mapped[:1]


def predict_scene(
    artefact: Artefact,
    scene_path: str | Path,
    options: PredictOptions | None = None,
    acquired: str | None = None,
    block: RowBlock | None = None,
    name: str | None = None,
) -> SceneDetections:
    """Predict one scene into detection polygons.

    Args:
        artefact: the loaded model (:func:`geotl.models.artefact.load_artefact`).
        scene_path: a GeoTIFF (any CRS, EPSG code or not).
        options: see :class:`PredictOptions`.
        acquired: ISO 8601 acquisition time; default: from the TIFF tag or file name.
        block: predict only the objects of these rows (:mod:`geotl.predict.blocks`;
            segmentation and instances on the ground grid, without resampling).
        name: the scene's name in the outputs (default: its file name).

    Returns:
        The detections (EPSG:4326 and native CRS).

    Raises:
        RasterError: unreadable scene, no CRS, or another ground resolution without
            ``resample``.
        BandMismatchError: the scene's bands cannot be mapped onto the model's.
    """
    path = scene_path if isinstance(scene_path, Path) else as_scene_path(scene_path)
    try:
        with remote_gdal_env() if is_virtual(path) else contextlib.nullcontext():
            return _predict_scene(artefact, path, options, acquired, block, name)
    except RasterioError as exc:
        raise read_failure(exc, scene_path) from exc


def _predict_scene(
    artefact: Artefact,
    scene_path: Path,
    options: PredictOptions | None,
    acquired: str | None,
    block: RowBlock | None,
    name: str | None,
) -> SceneDetections:
    options = options or PredictOptions()
    _check_task(artefact, options)
    name = name or scene_path.name
    card = artefact.card
    threshold = options.threshold if options.threshold is not None else card.threshold
    min_area_m2 = options.min_area_for(card)
    simplify_px = options.simplify_px if options.simplify_px is not None else card.simplify_px
    fixed = getattr(artefact.engine, "tile_px", None)  # an .onnx file's graph: one tile size
    if options.window_px is None and fixed is not None:
        options = replace(options, window_px=int(fixed))
    window_px, overlap_px = options.windowing(card)
    with open_raster(scene_path) as file_ds:
        ds = with_nodata(file_ds, options.nodata)
        check_georeferenced(ds, scene_path)
        # an alpha band is the scene's mask (read with every band's), not a data band
        data_bands = data_band_indexes(ds, len(options.bands or card.bands))
        described = band_descriptions(ds)
        scene_bands = scene_band_names(
            tuple(described[i - 1] for i in data_bands),
            len(data_bands),
            list(options.bands) if options.bands else None,
            path=scene_path,
            declared_by=options.bands_from,
        )
        indexes = [
            data_bands[i - 1]
            for i in map_bands(
                scene_bands,
                len(data_bands),
                card.bands,
                scene_path,
                say=block is None or block.start == 0,  # once per scene
            )
        ]
        # the GDAL masks read beside the nodata value: the file's, as chips read them
        masked = mask_bands(file_ds, data_bands)
        if block is None or block.start == 0:  # said once per scene, not once per block
            say_compression(file_ds, scene_path, trained=card.lossy)
            say_pages(file_ds, scene_path)
            warn_other_radiometry(
                sample_scene(ds, indexes, masked),
                card.normalisation,
                card.bands,
                name,
                scaling=[(ds.scales[i - 1], ds.offsets[i - 1]) for i in indexes],
            )
        scene_xy, model_xy, factors = check_scene_pixels(
            ds.crs,
            ds.transform,
            ds.width,
            ds.height,
            card,
            options.resample,
            scene_path,
            name=name,
            say=block is None or block.start == 0,  # once per scene, not once per block
        )
        resample = factors is not None
        when = (
            acquired
            if acquired is not None
            else acquired_text(read_acquired(scene_path, ds.tags(), options.datetime_regex))
        )
        footprint = _footprint(ds.transform, ds.width, ds.height, ds.crs)
        source: Any = ds
        vrt = None
        vrt_options: dict[str, Any] | None = None
        flipped = north_up(ds.transform, ds.width, ds.height)
        if resample or flipped is not None:
            # read through a VRT: at the model's pixel size and shape (each axis scaled on
            # its own: a degree grid's pixels are narrower east-west than the model's), and
            # north-up (a scene stored south-up is seen as the model saw the ground in
            # training, windows included)
            fx, fy = factors or (1.0, 1.0)
            t = flipped or ds.transform
            vrt_options = {
                **nodata_vrt_options(options.nodata),
                "crs": ds.crs,
                "transform": rasterio.Affine(t.a * fx, t.b * fy, t.c, t.d * fx, t.e * fy, t.f),
                "width": max(1, round(ds.width / fx)),
                "height": max(1, round(ds.height / fy)),
                "resampling": Resampling.bilinear if resample else Resampling.nearest,
            }
            vrt = WarpedVRT(file_ds, **vrt_options)
            source = vrt
            if resample:
                log.info(
                    "%s: resampling %.4g x %.4g m -> %.4g x %.4g m pixels on the fly",
                    name,
                    *scene_xy,
                    *model_xy,
                )
            if flipped is not None:
                log.info("%s: stored south-up or east-left: read north-up", name)
        extractor: ObjectExtractor | None = None
        if card.task != "detection":
            extractor = extractor_for(
                card.task, len(card.classes), seed_threshold=options.seed_threshold_for(card)
            )
        open_source: Callable[[], contextlib.AbstractContextManager[Any]] = partial(
            _open_source, scene_path, vrt_options, options.nodata
        )
        if block is not None:
            if (
                card.task == "detection"
                or vrt is not None
                or not options.ground_grid
                or options.probabilities_path is not None
            ):
                raise ValueError("a block needs segmentation or instances on the ground grid")
            assert extractor is not None
            source, extractor, open_source = block.wrap(source, extractor, window_px, open_source)
        plan = plan_windows(
            (source.height, source.width),
            window_px,
            overlap_px,
            # the detector's reader (predict.boxes) takes windows inside the scene only
            anchor=ground_anchor(source.transform)
            if options.ground_grid and card.task != "detection"
            else None,
        )
        px_x, px_y = model_xy if resample else scene_xy
        min_pixels = min_pixels_for(min_area_m2, px_x * px_y)
        bar = progress_bar(
            total=len(plan.windows),
            desc=f"predict {name}",
            unit="win",
            enabled=options.progress,
            leave=False,
        )

        def advance(n: int = 1) -> None:
            bar.update(n)
            if bar.n >= len(plan.windows):  # the count stops here; the scene is not done
                set_phase(bar, "merging boxes" if card.task == "detection" else "last rows")

        try:
            with scratch_dir("predict") as scratch:
                if card.task == "detection":
                    objects, stats = _detect(
                        artefact, source, indexes, masked, plan, options, threshold, advance
                    )
                else:
                    objects, stats = infer_and_vectorise(
                        artefact,
                        source,
                        indexes,
                        plan,
                        scratch,
                        mask_bands=masked,
                        batch_size=options.batch_for(window_px, artefact),
                        threshold=threshold,
                        simplify_px=simplify_px,
                        min_pixels=min_pixels,
                        vector_window_px=options.vector_window_px,
                        halo_px=options.halo_px,
                        probabilities_path=(scratch / "probabilities.tif")
                        if options.probabilities_path
                        else None,
                        progress=advance,
                        flip_tta=options.flip_tta,
                        # a block is the unit of parallelism already: no strip pool in it
                        workers=1
                        if block is not None
                        else _workers(options.workers, plan.scene_shape),
                        read_threads=options.read_threads,
                        open_source=open_source,
                        extractor=extractor,
                    )
                if options.probabilities_path is not None:
                    set_phase(bar, "writing the probabilities")
                    write_cog(scratch / "probabilities.tif", options.probabilities_path)
        finally:
            bar.close()
            if vrt is not None:
                vrt.close()
        crs = source.crs
    cpu0 = time.thread_time()
    native = _frame(objects, crs, card.classes, name, when, card.model_id)
    geoms, areas = _lonlat_areas(objects, native.geometry.to_numpy(), crs)
    wgs = native.set_geometry(geoms, crs=4326)
    if len(wgs):
        wgs["area_m2"] = [round(float(a), 2) for a in areas]
        keep = (wgs["area_m2"] >= min_area_m2).to_numpy()
        wgs = wgs[keep].reset_index(drop=True)
        native = native[keep].reset_index(drop=True)
        native["area_m2"] = wgs["area_m2"].to_numpy()
    stats.add_cpu("frame", time.thread_time() - cpu0)
    log.info(SCENE_COUNT_LOG, name, len(wgs), stats.windows, stats.wall_s, stats.model_s)
    return SceneDetections(
        scene=scene_path,
        name=name,
        features=wgs,
        native=native,
        footprint=footprint,
        rgb_indexes=_rgb_indexes(scene_bands, indexes, card.bands),
        stats=stats,
        mask_bands=masked,
        nodata=options.nodata,
    )


def _footprint(transform: Any, width: int, height: int, crs: Any) -> BaseGeometry:
    """The grid's outline in EPSG:4326: its four corners (a rotated grid's bounds are not)."""
    outline = shapely.Polygon(window_corners(transform, Window(0, 0, width, height)))
    outline = shapely.segmentize(outline, max(outline.length / 64, 1e-9))  # edges curve in 4326
    return cast(BaseGeometry, lonlat(np.array([outline]), crs)[0])


def _lonlat_areas(objects: list[Any], geoms: np.ndarray, crs: Any) -> tuple[np.ndarray, np.ndarray]:
    """The objects in longitude/latitude and their geodesic areas (m²).

    As the vectorising pool's workers made them beside the model
    (:func:`geotl.predict.strips.measured`: the same functions on the same geometries, so
    equal to the bit), else made here (objects vectorised in this process: one core, boxes).
    """
    carried = [getattr(o, "lonlat", None) for o in objects]
    if objects and all(g is not None for g in carried):
        return np.array(carried, dtype=object), np.array([o.area_m2 for o in objects])
    wgs = lonlat(geoms, crs)
    return wgs, geodesic_areas_m2(wgs)


_POOL_MIN_PX = 2048 * 2048


def _workers(workers: int | None, scene_shape: tuple[int, int]) -> int:
    """Vectorising processes: as asked, else every usable core for scenes worth a pool."""
    if workers is not None:
        return max(1, workers)
    if scene_shape[0] * scene_shape[1] < _POOL_MIN_PX:
        return 1
    return usable_cores()


@contextlib.contextmanager
def _open_source(
    path: Path, vrt_options: dict[str, Any] | None, nodata: float | None
) -> Iterator[Any]:
    """Another handle on a scene (and its resampling), for one reading thread."""
    with rasterio.open(path) as ds:
        if vrt_options is None:
            yield with_nodata(ds, nodata)
        else:
            with WarpedVRT(ds, **vrt_options) as vrt:
                yield vrt


def _detect(
    artefact: Artefact,
    source: Any,
    indexes: list[int],
    masked: tuple[int, ...],
    plan: Any,
    options: PredictOptions,
    threshold: float,
    progress: Callable[[int], None],
) -> tuple[list[Any], StreamStats]:
    """A detector's boxes over the scene (:mod:`geotl.predict.boxes`)."""
    nms_iou = options.nms_iou if options.nms_iou is not None else artefact.card.nms_iou
    model_px = artefact.card.network.round_up_px(plan.window_px)
    return detect_boxes(
        artefact_detector(artefact, nms_iou),
        source,
        indexes,
        plan,
        normalise=artefact.normalise,
        model_px=model_px,
        batch_size=options.batch_for(model_px, artefact),
        score_threshold=threshold,
        nms_iou=nms_iou,
        progress=progress,
        mask_bands=masked,
    )


def _check_task(artefact: Artefact, options: PredictOptions) -> None:
    if artefact.card.task == "detection" and options.probabilities_path is not None:
        raise GeotlInputError(
            "is a detection model: it predicts boxes, not probabilities; drop --probabilities",
            artefact.path,
        )


def _frame(
    objects: list[Any], crs: Any, classes: list[str], scene: str, acquired: str | None, model: str
) -> gpd.GeoDataFrame:
    if not objects:
        return _empty_frame(crs)
    names = [classes[o.class_index - 1] for o in objects]
    return gpd.GeoDataFrame(
        {
            "id": [_object_id(scene, n, *o.first_px) for n, o in zip(names, objects, strict=True)],
            "class": names,
            "score": [round(float(o.score), 4) for o in objects],
            "area_m2": np.zeros(len(objects)),
            "scene": scene,
            "acquired": acquired,
            "model": model,
        },
        geometry=[o.geometry for o in objects],
        crs=crs,
    )


#: a scene's staged quicklook: the PNG, and its world file and ``.aux.xml``
_Quicklook = tuple[Path, tuple[Path, Path]]


def _per_scene(path: Path | None, name: str, many: bool) -> Path | None:
    if path is None or not many:
        return path
    return path.with_name(f"{path.stem}_{scene_file_part(name)}{path.suffix}")


def _probabilities_qml(
    probabilities: Path | None, name: str, many: bool, geojson: Path
) -> Path | None:
    """The QGIS style beside a scene's probabilities COG (``NAME.qml``), or None.

    None too where it would be the detections' style (``-o p.geojson --probabilities
    p.tif``): that one wins, and the COG opens unstyled.
    """
    cog = _per_scene(probabilities, name, many)
    if cog is None:
        return None
    style = cog.with_suffix(".qml")
    return None if style == geojson.with_suffix(".qml") else style


def scene_names(scenes: list[Path]) -> list[str]:
    """What the outputs call each scene: its file name, and folders as needed.

    As many of its folders as tell it from the other scenes' (``a/plot.tif``,
    ``b/plot.tif``). A subdataset is named as given, its file by name in the same way
    (``GTIFF_DIR:2:mp.tif``, ``netCDF:"s.nc":Band1``).

    >>> scene_names([Path("x/a/plot.tif"), Path("x/b/plot.tif"), Path("x/c.tif")])
    ['a/plot.tif', 'b/plot.tif', 'c.tif']
    >>> scene_names([Path("GTIFF_DIR:1:/d/mp.tif"), Path("GTIFF_DIR:2:/d/mp.tif")])
    ['GTIFF_DIR:1:mp.tif', 'GTIFF_DIR:2:mp.tif']

    Raises:
        GeotlInputError: a file is given twice.
    """
    parts_of = [split_subdataset(str(s)) or ("", str(s), "") for s in scenes]
    full = [Path(os.path.abspath(file)) for _, file, _ in parts_of]
    seen: dict[tuple[str, Path, str], Path] = {}
    for given, (before, _, after), path in zip(scenes, parts_of, full, strict=True):
        key = (before, path, after)
        if key in seen:
            raise GeotlInputError(
                f"is given twice (also as {seen[key]}): give each scene once", given
            )
        seen[key] = given
    depth = [1] * len(full)
    while True:
        names = [
            before + "/".join(p.parts[-d:]) + after
            for (before, _, after), p, d in zip(parts_of, full, depth, strict=True)
        ]
        parts = [scene_file_part(n) for n in names]
        clash = {n for n in parts if parts.count(n) > 1}
        if not clash:
            return names
        grown = False
        for i, n in enumerate(parts):
            if n in clash and depth[i] < len(full[i].parts) - 1:
                depth[i] += 1
                grown = True
        if not grown:
            raise GeotlInputError(
                f"scenes {', '.join(str(s) for s, n in zip(scenes, parts, strict=True) if n in clash)}"
                " would write outputs of the same name: rename one"
            )


def predict_scenes(
    model_dir: str | Path,
    scenes: list[Path],
    geojson: Path,
    *,
    gpkg: Path | None = None,
    quicklook: Path | None = None,
    probabilities: Path | None = None,
    options: PredictOptions | None = None,
    device: str = "cpu",
    overwrite: bool = False,
    engine: str = "torch",
    threads: int | None = None,
    cluster: str | None = None,
) -> PredictSummary:
    """Predict several scenes into one GeoJSON (+ GeoPackage, QML styles, quicklooks).

    Outputs are checked before any work (folders exist; existing files need
    ``overwrite``). A scene that fails is skipped and listed in ``failed``; the others are
    still written. With several scenes, ``quicklook`` and ``probabilities`` get one file per
    scene (``NAME_<scene>.png``). ``model_dir`` may be an exported ``.onnx``; ``engine`` and
    ``threads``: see :func:`geotl.predict.engine.load_model`. ``cluster`` (``local:N`` or
    ``tcp://HOST:PORT``) predicts the scenes on Dask workers (:mod:`geotl.cluster`); this
    process still writes every output, and the files equal a run without it.

    Raises:
        GeotlInputError: an output folder is missing, or an output exists without
            ``overwrite`` (before any work); the model folder is unusable.
        ClusterError: the cluster cannot be reached or its workers cannot run the model.
        SceneError: every scene failed (a single scene's input error is raised as is).
    """
    options = options or PredictOptions()
    many = len(scenes) > 1
    names = scene_names(scenes)
    outputs: list[Path] = [geojson, geojson.with_suffix(".qml")]
    if gpkg is not None:
        outputs.append(gpkg)
    for name in names:
        for p in (_per_scene(quicklook, name, many), _per_scene(probabilities, name, many)):
            if p is not None:
                outputs.append(p)
        if (style := _probabilities_qml(probabilities, name, many, geojson)) is not None:
            outputs.append(style)
        if quicklook is not None:  # the files that place each picture on the map
            outputs.extend(sidecar_paths(_per_scene(quicklook, name, many) or quicklook))
    for p in outputs:
        check_output_file(p, overwrite)
    check_writable(outputs)
    for path, suffixes, fix in (
        (geojson, (".geojson", ".json"), "-o OUT.geojson (--gpkg OUT.gpkg for a GeoPackage)"),
        (gpkg, (".gpkg",), "--gpkg OUT.gpkg"),
        (quicklook, (".png",), "--quicklook OUT.png"),
        (probabilities, (".tif", ".tiff"), "--probabilities OUT.tif"),
    ):
        if path is not None and path.suffix.lower() not in suffixes:
            raise GeotlInputError(f"is written as {suffixes[0][1:]}: name it {fix}", path)
    if cluster is not None:
        parse_cluster(cluster)
        if probabilities is not None:
            raise GeotlInputError(
                "--probabilities is written by one process: drop --cluster or --probabilities"
            )
    with contextlib.ExitStack() as staged:
        # every file is written under a temporary name and renamed when all are: an
        # interrupted or failed run leaves none of them, and the same command can run again
        def stage(path: Path | None) -> Path | None:
            return None if path is None else stage_file(path)

        def stage_file(path: Path) -> Path:
            return staged.enter_context(atomic_path(path, optional=True))

        jobs = [
            SceneJob(
                scene,
                replace(options, probabilities_path=stage(_per_scene(probabilities, name, many))),
                name=name,
            )
            for scene, name in zip(scenes, names, strict=True)
        ]
        quicklooks: dict[str, _Quicklook | None] = {name: None for name in names}
        if quicklook is not None:
            for name in names:
                png = _per_scene(quicklook, name, many) or quicklook
                pgw, aux = sidecar_paths(png)
                quicklooks[name] = (stage_file(png), (stage_file(pgw), stage_file(aux)))
        got = _predict_jobs(model_dir, jobs, quicklooks, options, cluster, engine, device, threads)
        done, failed = got.scenes, got.failed
        if not done and len(failed) > 1 and all(r.endswith(STACK_BANDS) for _, r in failed):
            # one file per band given as the scenes: one line, not the same advice per file
            raise BandMismatchError(
                f"{len(failed)} files of one band each ({failed[0][0].name}, ...) given as "
                f"scenes, but the model needs its bands in one scene: {STACK_BANDS}",
                failed[0][0].parent,
            )
        if not done:
            raise SceneError(
                "no scene could be predicted: " + "; ".join(f"{p.name}: {r}" for p, r in failed),
                scenes[0] if len(scenes) == 1 else None,
            )
        # tiles of one acquisition overlap: an object seen by two is kept once
        kept = drop_tile_overlaps(done)
        frames = [d.features for d in kept if len(d.features)]
        allf = pd.concat(frames, ignore_index=True) if frames else _empty_frame(4326)
        merged = gpd.GeoDataFrame(allf, geometry="geometry", crs=4326)
        prediction = Prediction(merged, kept, got.classes, got.task)
        qml = geojson.with_suffix(".qml")
        for fmt, path in (("geojson", geojson), ("qml", qml), ("gpkg", gpkg)):
            if path is not None:
                WRITERS[fmt].write(staged.enter_context(atomic_path(path)), prediction)
        styles = [qml]
        cogs = {job.name: job.options.probabilities_path for job in jobs}
        for d in done:
            if (cog := cogs[d.name]) is None:
                continue
            style = _probabilities_qml(probabilities, d.name, many, geojson)
            if style is None:  # said once the file is written, not before a refusal
                log.warning(
                    "%s: written without its QGIS style: %s is the detections' style "
                    "(name the probabilities unlike the GeoJSON to get one)",
                    _per_scene(probabilities, d.name, many),
                    geojson.with_suffix(".qml"),
                )
                continue
            write_probabilities_qml(cog, stage_file(style))
            styles.append(style)

    def written(path: Path | None) -> list[Path]:
        return [p for d in done if (p := _per_scene(path, d.name, many)) is not None]

    return PredictSummary(
        geojson=geojson,
        features=len(merged),
        scenes=done,
        failed=failed,
        gpkg=gpkg,
        qml=styles,
        quicklooks=written(quicklook),
        probabilities=written(probabilities),
    )


@dataclass
class _Gathered:
    """The scenes predicted, those that failed, and the model's classes and task."""

    classes: list[str]
    task: str
    scenes: list[SceneDetections] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)


def _predict_jobs(
    model_dir: str | Path,
    jobs: list[SceneJob],
    quicklooks: dict[str, _Quicklook | None],
    options: PredictOptions,
    cluster: str | None,
    engine: str,
    device: str,
    threads: int | None,
) -> _Gathered:
    """Predict the jobs here or on the cluster; each scene's quicklook as it comes."""
    with contextlib.ExitStack() as stack:
        if cluster is None:
            artefact = load_model(model_dir, engine, device, threads)
            _check_task(artefact, jobs[0].options)
            classes, task = artefact.card.classes, artefact.card.task
            results = _predict_here(artefact, jobs)
        else:
            model = ModelRef.from_path(model_dir, engine, device, threads)
            classes, task = list(model.classes), model.task
            client = stack.enter_context(open_cluster(cluster))
            results = predict_on_cluster(client, model, jobs, progress=options.progress)
        got = _Gathered(classes, task)
        _gather(results, got, quicklooks, many=len(jobs) > 1)
    return got


def _predict_here(
    artefact: Artefact, jobs: list[SceneJob]
) -> Iterator[tuple[SceneJob, SceneDetections | BaseException]]:
    """Predict the scenes in this process, one after the other."""
    for job in jobs:
        try:
            yield job, predict_scene(artefact, job.scene, job.options, name=job.name)
        except (GeotlError, RasterioError, OSError) as exc:
            yield job, exc


def _gather(
    results: Iterator[tuple[SceneJob, SceneDetections | BaseException]],
    got: _Gathered,
    quicklooks: dict[str, _Quicklook | None],
    many: bool,
) -> None:
    """Record each scene's detections (and quicklook) or failure, in the scenes' order."""
    for job, det in results:
        scene = job.scene
        if isinstance(det, BaseException):
            exc = det
            if not many and isinstance(exc, GeotlInputError):
                raise exc  # a single unusable scene is an input error (exit 2), not a skip
            if not isinstance(exc, GeotlError | RasterioError | OSError):
                exc_text = f"{type(exc).__name__}: {exc}"
            else:
                exc_text = exc.message if isinstance(exc, GeotlError) else str(exc)
            reason = exc_text.splitlines()[0] if exc_text else type(exc).__name__
            log.error("%s: skipped: %s", scene, reason)
            got.failed.append((scene, reason))
            continue
        if det.stats.windows and not det.stats.valid_windows:
            # nothing seen, nothing detected (a tile beyond a swath's edge); but say so: a
            # wrong nodata value looks the same
            log.warning(
                "%s: no valid pixel (every pixel is nodata or masked), so no detections; if "
                "it holds data, check its nodata value (gdalinfo)",
                scene,
            )
        got.scenes.append(det)
        ql = quicklooks[det.name]
        if ql is not None:
            writer = cast(QuicklookWriter, WRITERS["quicklook"])
            writer.write(
                ql[0], Prediction(det.features, [det], got.classes, got.task), sidecars=ql[1]
            )
