"""Candidate areas for ``geotl suggest``: squares over the scenes, minus what is taken.

Windows of ``size_px`` (columns, rows) tile each scene from its top-left pixel (no
overlap; a strip narrower than a window at the right and bottom edges is left out). They
are square on the ground, not in pixels: a scene in degrees has pixels narrower east-west
than north-south, so its windows have more columns than rows (see
:func:`geotl.io.rasters.ground_pixel_size_m`). A window is a candidate unless

- it overlaps a **test area** at all: the test chips of the region's spatial split (from
  the chips folder, see :func:`geotl.evaluate.find_chips`) and the ``[split] test_within``
  polygons, so that labels drawn in a suggestion never leak into the test split;
- more than :data:`MAX_COMPLETE_FRACTION` of it is already **labelled completely**
  (``[labels] complete_within``; without it, the convex hull of each scene's labels).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely
from rasterio.windows import Window
from shapely.geometry import box
from shapely.geometry.base import BaseGeometry

from geotl.config import Region
from geotl.io.rasters import SceneInfo, window_bounds
from geotl.io.scratch import scratch_dir

__all__ = [
    "MAX_COMPLETE_FRACTION",
    "Candidate",
    "TakenAreas",
    "grid_windows",
    "read_taken_areas",
    "scene_candidates",
]

log = logging.getLogger(__name__)

MAX_COMPLETE_FRACTION = 0.1


@dataclass(frozen=True)
class Candidate:
    """One area, square on the ground, that could be labelled next."""

    scene: SceneInfo
    window: Window  # columns and rows may differ: pixels need not be square on the ground
    geometry: BaseGeometry  # the window's outline in the scene's CRS


@dataclass(frozen=True)
class TakenAreas:
    """Areas no suggestion may take, per scene (scene CRS), and where they came from."""

    test: dict[Path, list[BaseGeometry]]
    complete: dict[Path, list[BaseGeometry]]
    complete_source: str  # "complete_within", "labels' hull" or "none"


def grid_windows(width_px: int, height_px: int, size_px: tuple[int, int]) -> list[Window]:
    """Non-overlapping windows of ``size_px`` (columns, rows) tiling a scene from its top left.

    >>> [(w.row_off, w.col_off) for w in grid_windows(300, 130, (128, 128))]
    [(0, 0), (0, 128)]
    >>> grid_windows(100, 100, (128, 128))
    []
    >>> [(w.col_off, w.width, w.height) for w in grid_windows(300, 130, (150, 100))]
    [(0, 150, 100), (150, 150, 100)]
    """
    cols, rows = size_px
    return [
        Window(c, r, cols, rows)
        for r in range(0, height_px - rows + 1, rows)
        for c in range(0, width_px - cols + 1, cols)
    ]


def scene_candidates(
    scene: SceneInfo,
    size_px: tuple[int, int],
    test: Sequence[BaseGeometry],
    complete: Sequence[BaseGeometry],
) -> tuple[list[Candidate], int, int]:
    """The candidate windows of ``size_px`` (columns, rows) of one scene.

    Returns:
        The candidates, and how many windows were dropped for test areas and for
        complete areas.

    >>> from affine import Affine
    >>> from rasterio.crs import CRS
    >>> info = SceneInfo(Path("s.tif"), CRS.from_epsg(32617), Affine(1, 0, 0, 0, -1, 40),
    ...                  40, 40, 3, "uint8", None, 1.0, (1, 2, 3))
    >>> cands, n_test, n_done = scene_candidates(
    ...     info, (20, 20), [box(0, 0, 10, 10)], [box(20, 20, 40, 40)]
    ... )
    >>> [(c.window.row_off, c.window.col_off) for c in cands], n_test, n_done
    ([(0, 0), (20, 20)], 1, 1)
    """
    windows = grid_windows(scene.width, scene.height, size_px)
    squares = [box(*window_bounds(scene.transform, w)) for w in windows]
    out: list[Candidate] = []
    n_test = n_complete = 0
    test_tree = shapely.STRtree(list(test)) if test else None
    done_tree = shapely.STRtree(list(complete)) if complete else None
    for w, sq in zip(windows, squares, strict=True):
        if test_tree is not None:
            hits = test_tree.geometries.take(test_tree.query(sq, predicate="intersects"))
            # touching edges share no pixel: only an overlap would leak
            if any(shapely.area(shapely.intersection(sq, hits)) > sq.area * 1e-9):
                n_test += 1
                continue
        if done_tree is not None:
            hits = done_tree.geometries.take(done_tree.query(sq, predicate="intersects"))
            if len(hits):
                covered = shapely.intersection(sq, shapely.union_all(hits)).area
                if covered > MAX_COMPLETE_FRACTION * sq.area:
                    n_complete += 1
                    continue
        out.append(Candidate(scene, w, sq))
    return out, n_test, n_complete


def read_taken_areas(
    region: Region, scenes: list[SceneInfo], model_dir: Path, chips_dir: Path | None
) -> TakenAreas:
    """Test and complete areas per scene, in each scene's CRS.

    Test areas are the region's test chips (cut once into a temporary folder when neither
    ``chips_dir`` nor the model's ``chips/`` holds this region's chips) and the
    ``[split] test_within`` polygons.

    Raises:
        GeotlInputError: unreadable area files, chips of another region.
    """
    from geotl.io.vectors import read_areas, read_labels

    test: dict[Path, list[BaseGeometry]] = {s.path: [] for s in scenes}
    complete: dict[Path, list[BaseGeometry]] = {s.path: [] for s in scenes}
    source = "none"
    by_path = {s.path.resolve(): s for s in scenes}
    if region.split.test_within:
        areas = read_areas(region.resolve(region.split.test_within), "[split] test_within")
        _add_native(test, areas, scenes)
    if region.labels is not None:
        for s, geoms in _test_chips(region, model_dir, chips_dir, by_path):
            test[s.path].extend(geoms)
        if region.labels.complete_within:
            done = read_areas(
                region.resolve(region.labels.complete_within), "[labels] complete_within"
            )
            _add_native(complete, done, scenes)
            source = "complete_within"
        else:
            labels = read_labels(region, within=[(s.crs, box(*s.bounds)) for s in scenes])
            for s in scenes:
                native = labels.to_crs(s.crs).geometry
                inside = native[native.intersects(box(*s.bounds))]
                if len(inside):
                    complete[s.path].append(shapely.union_all(inside.values).convex_hull)
            source = "labels' hull"
            log.warning(
                "%s: no [labels] complete_within: the labels' hull in each scene counts as "
                "labelled, but training treats every scene as completely labelled; add a "
                "complete_within file before training on new labels",
                region.path,
            )
    return TakenAreas(test=test, complete=complete, complete_source=source)


def _add_native(
    into: dict[Path, list[BaseGeometry]], areas: gpd.GeoSeries, scenes: list[SceneInfo]
) -> None:
    for s in scenes:
        native = areas.to_crs(s.crs)
        sbox = box(*s.bounds)
        into[s.path].extend(g for g in native.values if g is not None and g.intersects(sbox))


def _test_chips(
    region: Region, model_dir: Path, chips_dir: Path | None, by_path: dict[Path, SceneInfo]
) -> list[tuple[SceneInfo, list[BaseGeometry]]]:
    from geotl.chips import read_chip_index
    from geotl.evaluate import find_chips

    with scratch_dir("suggest") as tmp:
        cdir = find_chips(model_dir, region, chips_dir, tmp)
        frame = read_chip_index(cdir).split("test")
    out: dict[Path, list[BaseGeometry]] = {}
    for scene, row_off, col_off, h, w in zip(
        frame["scene"],
        frame["row_off"],
        frame["col_off"],
        frame["height"],
        frame["width"],
        strict=True,
    ):
        info = by_path.get(Path(str(scene)).resolve())
        if info is None:
            continue  # a scene no longer in [imagery]: nothing to suggest there
        win = Window(int(col_off), int(row_off), int(w), int(h))
        out.setdefault(info.path, []).append(box(*window_bounds(info.transform, win)))
    log.debug(
        "test chips: %d in %d scene(s)", int(np.sum([len(v) for v in out.values()])), len(out)
    )
    return [(by_path[p.resolve()], geoms) for p, geoms in out.items()]
