"""``chip_region``: a region's scenes + labels -> chip/mask GeoTIFFs and the chip index.

All input checks run before anything is written; the chips folder is built under a
temporary name and swapped into place, so an interrupted run never leaves an index that
claims missing chips.
"""

from __future__ import annotations

import logging
import os
from multiprocessing.pool import Pool
from pathlib import Path
from typing import NoReturn

import rasterio

from geotl.chips.assemble import (
    ChipSummary,
    check_split,
    chip_blocks,
    chipset_meta,
    footprints_common,
    guard_bands,
    index_frame,
)
from geotl.chips.boxes import (
    MIN_BOX_PX,
)
from geotl.chips.cut import ChipRow, SceneCutter
from geotl.chips.execute import chip_parallel, chip_serial, fork_pool, pick_workers
from geotl.chips.index import write_chip_index
from geotl.chips.scenes import (
    ChipScene,
    areas_in,
    labels_per_scene,
    scan_scenes,
    warn_label_overlaps,
)
from geotl.chips.split import SPLITS, split_chips
from geotl.config import Region
from geotl.errors import ConfigError, LabelError, RasterError
from geotl.io.atomic import atomic_dir, prepare_output_dir
from geotl.io.vectors import read_areas, read_labels
from geotl.progress import progress_bar

__all__ = ["ChipSummary", "chip_region"]

log = logging.getLogger(__name__)

# GDAL's block cache defaults to 5 % of RAM and fills up with the blocks of a large scene;
# a fixed cap keeps memory independent of scene size.
_GDAL_CACHE_BYTES = 64 * 2**20


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
    out = Path(out_dir).expanduser()
    if not out.name or ".." in out.parts:  # `--out .` / `..`: a name to swap the folder in by
        out = Path(os.path.abspath(out))
    region.check_output_dir(out)
    prepare_output_dir(out, overwrite)
    if region.labels is None:
        raise ConfigError(
            "geotl chip needs labels: add [labels] path = 'labels.geojson'", region.path
        )
    scenes = scan_scenes(region)
    n_workers = pick_workers(workers, scenes, region)
    # the pool forks before this process starts any thread (progress bar, writer)
    with fork_pool(n_workers) as pool:
        return _chip_region(region, out, overwrite, scenes, pool, n_workers)


def _chip_region(
    region: Region,
    out: Path,
    overwrite: bool,
    scenes: list[ChipScene],
    pool: Pool | None,
    n_workers: int,
) -> ChipSummary:
    assert region.labels is not None
    # a national layer over a few scenes: only the geometries over them are read
    labels = read_labels(region, within=[(s.info.crs, s.envelope) for s in scenes])
    warn_label_overlaps(region, labels)
    per_scene = labels_per_scene(region, labels, scenes)
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
                SceneCutter(
                    region,
                    scene,
                    per_scene[scene.scene_id],
                    class_ids,
                    areas_in(complete, scene),
                    areas_in(test_areas, scene),
                    areas_in(val_areas, scene),
                    tmp,
                )
                for scene in scenes
                if scene.windows
            ]
            if pool is None:
                rows = chip_serial(cutters, skipped, bar)
            else:
                log.debug("cutting strips in %d worker processes", n_workers)
                rows = chip_parallel(cutters, pool, n_workers, skipped, bar)
        if not rows:
            _no_chip_left(region, skipped)
        footprints = footprints_common(rows, scenes)
        _warn_unused_areas(region, rows)
        blocks = chip_blocks(rows, region.split.block_size_m)
        # designated areas are the whole of their split: no random blocks beside them
        result = split_chips(
            blocks,
            [r.forced for r in rows],
            0.0 if val_areas is not None else region.split.val_fraction,
            0.0 if test_areas is not None else region.split.test_fraction,
            region.split.seed,
        )
        designated = {
            s.scene_id: {
                split: areas
                for split, areas in (
                    ("test", areas_in(test_areas, s)),
                    ("val", areas_in(val_areas, s)),
                )
                if areas
            }
            for s in scenes
        }
        guard = guard_bands(region, rows, footprints, result.splits, tmp, designated, per_scene)
        frame = index_frame(region, rows, footprints, result.splits)
        objects_per_split = {
            s: len({i for ids in frame.loc[frame["split"] == s, "object_ids"] for i in ids})
            for s in SPLITS
        }
        class_pixels = {
            c: {s: int(frame.loc[frame["split"] == s, f"px_{c}"].sum()) for s in SPLITS}
            for c in region.classes
        }
        pixels_per_split = {s: sum(by[s] for by in class_pixels.values()) for s in SPLITS}
        advice = check_split(
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
        n_unseen = len({int(i) for c in cutters for i in c.label_ids[c.unseen]})
        if n_unseen and region.task == "detection":
            log.warning(
                "%s: %d object(s) larger than a chip can show (no chip holds half of the box): "
                "they are ignore boxes everywhere and a detector never learns them; raise "
                "[chips] size_px or chip at a coarser resolution",
                region.labels_path(),
                n_unseen,
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
            class_pixels_per_split=class_pixels,
            guard=guard,
        )
        meta = chipset_meta(region, scenes, frame, summary, labels)
        meta["split"]["advice"] = advice
        write_chip_index(tmp, frame, meta)
    log.debug("%s", summary.line())
    return summary


def _warn_unused_areas(region: Region, rows: list[ChipRow]) -> None:
    """Say which designated areas (``test_within`` / ``val_within``) no chip is centred in.

    Their split is then empty: no random blocks stand in for designated areas.
    """
    chip_m = region.chips.size_px * max(r.scene.info.resolution_m for r in rows)
    for split, key in (("test", region.split.test_within), ("val", region.split.val_within)):
        if key and not any(r.forced == split for r in rows):
            log.warning(
                "%s: no chip is centred inside these [split] %s_within areas, so the %s split "
                "is empty: they lie off the scenes or are narrower than a chip (%.0f m); draw "
                "them over the scenes, at least a chip wide",
                region.resolve(key),
                split,
                split,
                chip_m,
            )


def _no_chip_left(region: Region, skipped: dict[str, int]) -> NoReturn:
    """Say why every chip was dropped, naming the file to fix.

    Raises:
        RasterError: the scenes were (mostly) nodata where chips fell.
        LabelError: the chips lay outside ``complete_within``.
    """
    limit = region.chips.max_nodata_fraction
    if skipped["nodata"] >= skipped["incomplete"]:
        raise RasterError(
            f"no chip left: all {skipped['nodata']} were more than {limit:.0%} nodata; check "
            "the scenes' nodata value ([imagery] nodata, gdalinfo) and that they hold data, or "
            "raise [chips] max_nodata_fraction",
            region.path,
        )
    areas = region.labels.complete_within if region.labels else None
    raise LabelError(
        f"no chip left: {skipped['incomplete']} lay outside these [labels] complete_within "
        f"areas ({skipped['nodata']} more were over {limit:.0%} nodata): check that they "
        "cover the scenes",
        region.resolve(areas) if areas else region.labels_path(),
    )
