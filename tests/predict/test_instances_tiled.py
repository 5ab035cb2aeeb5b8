"""Clusters wider than ``WIDE_PX`` split by tiles of the scene grid: bounded, seam-free, close.

A closed canopy over a large scene is one cluster as large as the scene: read whole, it
made the vectoriser's memory grow with the scene (BENCHMARKS.md, issue 10, stop 47). Here
the sizes are made small so that small scenes hold wide clusters.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
import rasterio.features
import shapely
import torch
from affine import Affine
from scipy import ndimage

import geotl.predict.objects.instances as instances
from geotl.models.artefact import ModelCard, write_artefact
from geotl.models.network import build_network
from geotl.predict import PredictOptions, predict_scene
from geotl.predict.blocks import BlockMarginError, RowBlock, plan_blocks
from geotl.predict.engine import load_model
from geotl.predict.objects import InstanceExtractor
from geotl.predict.strips import RawRaster, StripTask, extract_strip
from geotl.predict.vectorise import core_windows

from . import data
from .test_instances import T, _key, _planes, _touching_discs

REAL_SCENE = (
    Path(__file__).resolve().parents[2] / "regions" / "demo-osbs" / "imagery" / "OSBS_029.tif"
)


def _small_tiles(monkeypatch: pytest.MonkeyPatch, wide: int, tile: int, halo: int) -> None:
    monkeypatch.setattr(instances, "WIDE_PX", wide)
    monkeypatch.setattr(instances, "TILE_PX", tile)
    monkeypatch.setattr(instances, "TILE_HALO_PX", halo)


def _canopy() -> np.ndarray:
    """Planes of touching discs joined by a bar from top to bottom: one cluster 300 px tall."""
    inst, noise = _touching_discs(5, shape=(300, 340), n=160)
    inst[:, 84:86] = 999
    return _planes(inst, noise)


@pytest.mark.parametrize("window_px,halo_px", [(23, 4), (50, 8), (17, 30)])
def test_a_wide_cluster_is_split_by_tiles_the_same_by_windows_and_strips(
    window_px: int, halo_px: int, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _small_tiles(monkeypatch, wide=40, tile=48, halo=12)
    planes = _canopy()
    shape = (planes.shape[1], planes.shape[2])
    ex = InstanceExtractor(1)
    tiles: list[int] = []
    real = instances._split_tile

    def counted(*args: object, **kwargs: object) -> object:
        tiles.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(instances, "_split_tile", counted)
    whole = ex.extract(planes, T, simplify_px=0.0, min_pixels=1)
    assert len(tiles) == len(range(0, 300, 48)) * len(range(0, 340, 48))  # every tile, once
    reads: list[tuple[int, int]] = []

    def read(r: int, c: int, h: int, w: int) -> np.ndarray:
        reads.append((h, w))
        return planes[:, r : r + h, c : c + w]

    windows = sorted(
        ex.extract_by_windows(
            read, shape, T, window_px=window_px, halo_px=halo_px, simplify_px=0.0, min_pixels=1
        ),
        key=_key,
    )
    assert windows == whole
    # no read holds the whole cluster: a core is read at most WIDE_PX around it, a tile
    # at most WIDE_PX around it (the class plane, for which clusters are wide)
    assert max(h for h, _ in reads) <= max(window_px, 48) + 2 * 40 < shape[0]
    # strips of cores, as a pool's processes run them, from the planes file
    raw = RawRaster(tmp_path / "planes.raw", *shape, 3, np.float32)
    raw.write(0, 0, np.moveaxis(planes, 0, -1))
    strips: list[object] = []
    for row in core_windows(shape, window_px):
        task = StripTask(ex, raw.path, shape, 3, tuple(row), T, window_px, halo_px, 0.0, 1, 300)
        done = extract_strip(task)
        assert done.cores_done == len(row)
        strips.extend(done.objects)
    raw.close()
    assert sorted(strips, key=_key) == whole
    # each pixel in exactly one object, each object once
    assert sum(o.pixel_count for o in whole) == np.count_nonzero(planes[0])
    assert len({_key(o) for o in whole}) == len(whole)
    geoms = np.array([o.geometry for o in whole])
    union = shapely.union_all(geoms)
    assert shapely.area(geoms).sum() == pytest.approx(union.area, rel=1e-12)


def test_a_cluster_within_the_limit_is_split_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    # the same scene with the default sizes: one cluster, read whole, no tile split
    planes = _canopy()
    calls: list[int] = []
    monkeypatch.setattr(instances, "_split_tile", lambda *a, **k: calls.append(1))
    objs = InstanceExtractor(1).extract(planes, T, simplify_px=1.0, min_pixels=1)
    assert not calls and len(objs) > 100


def _instance_texture_model(folder: Path, seed_threshold: float) -> Path:
    """A randomly initialised instance U-Net: its maps follow the real scene's texture."""
    c = data.card()
    card = c.model_copy(
        update={
            "task": "instances",
            "seed_threshold": seed_threshold,
            "network": c.network.model_copy(update={"num_classes": 4}),
        }
    )
    assert isinstance(card, ModelCard)
    torch.manual_seed(0)
    write_artefact(folder, build_network(card.network), card)
    return folder


@pytest.mark.usefixtures("one_thread")
def test_a_real_canopy_split_by_tiles_is_the_same_in_one_process_with_the_pool_and_by_blocks(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # a low class threshold closes the canopy: one cluster over the whole 400 px scene
    _small_tiles(monkeypatch, wide=48, tile=64, halo=16)
    artefact = load_model(_instance_texture_model(tmp_path / "model", 0.12), "torch")
    options = PredictOptions(
        window_px=32,
        overlap_px=8,
        vector_window_px=32,
        halo_px=8,
        threshold=0.3,
        simplify_px=0.0,
        min_area_m2=0.01,
        progress=False,
    )
    tiles: list[int] = []
    real = instances._split_tile

    def counted(*args: object, **kwargs: object) -> instances._TileSplit:
        out = real(*args, **kwargs)  # type: ignore[arg-type]
        tiles.append(int(np.count_nonzero(out.key_index)))
        return out

    monkeypatch.setattr(instances, "_split_tile", counted)
    one = predict_scene(artefact, REAL_SCENE, options).features
    assert sum(tiles) > 100_000  # the canopy went through the tiles
    assert len(one) > 300 and one["id"].is_unique
    pooled = predict_scene(
        artefact, REAL_SCENE, PredictOptions(**{**vars(options), "workers": 2})
    ).features
    parts = []
    for start, stop in plan_blocks(400, 3, 32):
        block = RowBlock(start, stop, 8)
        while True:
            try:
                parts.append(predict_scene(artefact, REAL_SCENE, options, block=block).features)
                break
            except BlockMarginError as exc:
                block = block.widened(exc.rows)
        # a wide cluster no longer needs the whole scene: the margin stays bounded
        assert block.margin_px < 400
    blocks = pd.concat(parts, ignore_index=True)
    for other in (pooled, blocks):
        assert list(other["id"]) == list(one["id"])
        assert (other["score"].to_numpy() == one["score"].to_numpy()).all()
        assert all(a.equals_exact(b, 0) for a, b in zip(other.geometry, one.geometry, strict=True))
    # each object once: objects traced without simplification do not overlap
    geoms = one.to_crs(32617).geometry.to_numpy()
    union = shapely.union_all(geoms)
    assert shapely.area(geoms).sum() == pytest.approx(union.area, rel=1e-9)


def _pixels(objects: list[object], shape: tuple[int, int]) -> np.ndarray:
    """The object (1-based, in order) of each pixel, from polygons traced without simplifying."""
    out = np.zeros(shape, np.int32)
    for i, o in enumerate(objects, start=1):
        geom = o.geometry  # type: ignore[attr-defined]
        out += rasterio.features.rasterize([(geom, i)], out_shape=shape, dtype="int32")
    return out


@pytest.mark.usefixtures("one_thread")
def test_the_tiled_split_of_a_real_canopy_is_close_to_the_whole_split(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # the instance maps of a real scene (a texture model's: a closed canopy with seeds
    # spread over it), split whole and by tiles: near a tile's edge a seed beyond the halo
    # no longer competes, and pieces no seed reaches are cut at the tiles' edges
    artefact = load_model(_instance_texture_model(tmp_path / "model", 0.12), "torch")
    probs = tmp_path / "probabilities.tif"
    options = PredictOptions(window_px=64, overlap_px=16, progress=False, probabilities_path=probs)
    predict_scene(artefact, REAL_SCENE, options)
    with rasterio.open(probs) as ds:
        blended = ds.read().astype(np.float32)
    ex = InstanceExtractor(1, seed_threshold=0.12)
    planes = ex.finalise(blended, blended[0] >= 0, 0.3)
    shape = (planes.shape[1], planes.shape[2])
    clusters, _ = ndimage.label(planes[0] == 1)
    assert np.bincount(clusters.ravel())[1:].max() > 0.9 * planes[0].size  # closed
    whole = ex.extract(planes, Affine.identity(), simplify_px=0.0, min_pixels=1)
    _small_tiles(monkeypatch, wide=64, tile=128, halo=32)
    tiled = InstanceExtractor(1, seed_threshold=0.12).extract(
        planes, Affine.identity(), simplify_px=0.0, min_pixels=1
    )
    a, b = _pixels(whole, shape), _pixels(tiled, shape)
    assert (a > 0).sum() == (b > 0).sum() == np.count_nonzero(planes[0] == 1)
    # each tiled object matched to the whole-split object it overlaps most
    pairs, counts = np.unique(np.stack([b.ravel(), a.ravel()]), axis=1, return_counts=True)
    match = np.zeros(len(tiled) + 1, np.int64)
    best = np.zeros(len(tiled) + 1, np.int64)
    for (t, w), n in zip(pairs.T.tolist(), counts.tolist(), strict=True):
        if t and n > best[t]:
            match[t], best[t] = w, n
    moved = float(np.mean(match[b] != a, where=a > 0))
    more = len(tiled) - len(whole)
    print(f"whole {len(whole)} objects, tiled {len(tiled)} ({more:+d}); {moved:.4%} px moved")
    assert abs(more) <= 0.03 * len(whole)
    assert moved <= 0.01


def test_tiles_follow_the_scene_grid_not_the_core_windows() -> None:
    from rasterio.windows import Window

    got = instances._tiles_around(Window(30, 20, 10, 10), (100, 90), 16, 4)
    assert [(t.row_off, t.col_off) for t in got] == list(itertools.product([16, 32], [16, 32]))
    corner = instances._tiles_around(Window(80, 90, 10, 10), (100, 90), 16, 4)
    assert [(t.row_off, t.col_off, t.height, t.width) for t in corner] == [
        (80, 64, 16, 16),
        (80, 80, 16, 10),
        (96, 64, 4, 16),
        (96, 80, 4, 10),
    ]
