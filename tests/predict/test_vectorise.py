"""Vectorisation: polygons, holes, nodata, repair and seam-free windowing."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
import shapely
from affine import Affine
from scipy import ndimage

import geotl.predict.vectorise as vec
from geotl.predict.vectorise import (
    NODATA_CLASS,
    class_map_from_probabilities,
    objects_to_frame,
    vectorise,
    vectorise_by_windows,
)

from . import data

T = Affine(0.5, 0, 400_000, 0, -0.5, 3_000_000)


def test_doctests() -> None:
    assert doctest.testmod(vec).failed == 0


def _blobs(
    seed: int, shape: tuple[int, int] = (120, 150), classes: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    noise = ndimage.gaussian_filter(rng.random(shape), 3)
    cm = np.zeros(shape, dtype=np.uint8)
    cm[noise > np.quantile(noise, 0.6)] = 1
    if classes > 1:
        cm[noise > np.quantile(noise, 0.85)] = 2
    # a long object across many seams and a ring with a hole
    cm[60:63, 5:145] = 1
    cm[10:30, 100:120] = 1
    cm[15:25, 105:115] = 0
    scores = rng.random(shape).astype(np.float32)
    return cm, scores


def _key(o: vec.VectorObject) -> tuple[tuple[int, int], int]:
    return (o.first_px, o.class_index)


@pytest.mark.parametrize("window_px,halo_px", [(7, 1), (16, 4), (33, 2), (50, 8), (1000, 64)])
@pytest.mark.parametrize("simplify_px,min_pixels", [(0.0, 3), (1.0, 3), (1.0, 30)])
@pytest.mark.parametrize("flood_seeds", [0, vec.FLOOD_SEEDS, 10**6])
def test_windows_equal_whole_scene(
    window_px: int,
    halo_px: int,
    simplify_px: float,
    min_pixels: int,
    flood_seeds: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # a retry labels its whole window or floods the objects the earlier read cut: the same
    floods = data.count_floods(monkeypatch, flood_seeds)
    cm, scores = _blobs(0)
    whole = vectorise(cm, T, scores=scores, simplify_px=simplify_px, min_pixels=min_pixels)
    reads: list[tuple[int, int]] = []

    def read(r: int, c: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
        reads.append((h, w))
        return cm[r : r + h, c : c + w], scores[r : r + h, c : c + w]

    tiled = sorted(
        vectorise_by_windows(
            read,
            cm.shape,
            T,
            window_px=window_px,
            halo_px=halo_px,
            simplify_px=simplify_px,
            min_pixels=min_pixels,
        ),
        key=_key,
    )
    assert len(whole) > 10
    assert [_key(o) for o in tiled] == [_key(o) for o in whole]
    for a, b in zip(tiled, whole, strict=True):
        assert shapely.equals_exact(a.geometry, b.geometry, tolerance=0)
        assert a.score == pytest.approx(b.score, rel=1e-12)
        assert a.pixel_count == b.pixel_count
    # no object is split or duplicated: union of areas equals whole-scene areas
    assert sum(o.geometry.area for o in tiled) == pytest.approx(sum(o.geometry.area for o in whole))
    if window_px < 100:
        assert min(h for h, _ in reads) < cm.shape[0]  # really windowed
        assert (len(floods) > 0) == (flood_seeds > 0)


def test_hole_kept_and_georeferenced() -> None:
    cm = np.zeros((10, 10), dtype=np.uint8)
    cm[1:9, 1:9] = 1
    cm[3:6, 3:6] = 0
    (obj,) = vectorise(cm, T, simplify_px=0)
    assert isinstance(obj.geometry, shapely.Polygon)
    assert len(obj.geometry.interiors) == 1
    assert obj.geometry.area == pytest.approx((64 - 9) * 0.25)
    assert obj.geometry.bounds == (400_000.5, 2_999_995.5, 400_004.5, 2_999_999.5)


def test_holes_under_min_pixels_filled_the_others_kept() -> None:
    cm = np.zeros((20, 30), dtype=np.uint8)
    cm[1:19, 1:15] = 1  # object A (class 1), 18 x 14 px
    cm[4, 4] = 0  # a pinhole: filled
    cm[4:8, 8:12] = 0  # a 16 px hole: kept
    cm[11, 4:6] = 2  # a 2 px speck of class 2, too small to keep: filled
    cm[10:17, 7:14] = 0  # a 7 x 7 px hole ...
    cm[12:15, 9:12] = 2  # ... around a 9 px island: the gap around a kept object stays
    cm[1:19, 15:29] = 2  # object B (class 2) touching A
    cm[9, 14:16] = 0  # a 2 px pocket between A and B: stays
    a, b, island = vectorise(cm, Affine.identity(), simplify_px=0, min_pixels=6)
    assert sorted(shapely.Polygon(r).area for r in a.geometry.interiors) == [16.0, 49.0]
    assert a.geometry.area == a.pixel_count + 1 + 2  # the pinhole and the speck
    assert (b.geometry.area, len(b.geometry.interiors)) == (b.pixel_count, 0)
    assert island.geometry.area == island.pixel_count == 9
    # min_pixels 1 (min_area 0) fills nothing: every hole stays, the speck is an object
    objs = vectorise(cm, Affine.identity(), simplify_px=0, min_pixels=1)
    assert len(objs[0].geometry.interiors) == 4
    assert [o.pixel_count for o in objs] == [183, 251, 2, 9]


def test_nodata_and_background_not_vectorised() -> None:
    cm = np.full((8, 8), NODATA_CLASS, dtype=np.uint8)
    assert vectorise(cm, T) == []
    cm[:4] = 0
    assert vectorise(cm, T) == []


def test_diagonal_touch_gives_valid_geometry() -> None:
    cm = np.zeros((6, 6), dtype=np.uint8)
    cm[1:3, 1:3] = 1
    cm[3:5, 3:5] = 1  # touches the first square at a corner: two 4-connected objects
    objs = vectorise(cm, T, simplify_px=1.0)
    assert all(o.geometry.is_valid for o in objs)
    assert len(objs) == 2
    ring = np.ones((5, 5), dtype=np.uint8)
    ring[1, 1] = ring[2, 2] = 0  # background pixels touching at a corner inside an object
    (obj,) = vectorise(ring, T, simplify_px=0)
    assert obj.geometry.is_valid
    assert obj.geometry.area == pytest.approx(23 * 0.25)


def test_min_pixels_and_score() -> None:
    cm = np.zeros((6, 6), dtype=np.uint8)
    cm[0, 0] = 1
    cm[2:5, 2:5] = 1
    scores = np.full((6, 6), 0.25, dtype=np.float32)
    scores[2:5, 2:5] = 0.75
    objs = vectorise(cm, T, scores=scores, min_pixels=2)
    assert len(objs) == 1
    assert objs[0].score == pytest.approx(0.75)
    assert objs[0].first_px == (2, 2)
    frame = objects_to_frame(objs, "EPSG:32617", ["tree"])
    assert list(frame["class"]) == ["tree"]  # type: ignore[index]


def test_class_map_threshold_and_valid() -> None:
    p = np.zeros((3, 2, 2), dtype=np.float32)
    p[0] = 0.5
    p[1] = [[0.4, 0.1], [0.3, 0.45]]
    p[2] = [[0.1, 0.4], [0.2, 0.05]]
    valid = np.array([[True, True], [True, False]])
    cm, score = class_map_from_probabilities(p, threshold=0.35, valid=valid)
    assert cm.tolist() == [[1, 2], [0, NODATA_CLASS]]
    assert score[0, 0] == pytest.approx(0.4)
    with pytest.raises(ValueError):
        class_map_from_probabilities(p[:1])


def test_polygons_built_at_once_equal_shape_by_shape() -> None:
    import rasterio.features
    from shapely.geometry import shape

    cm, _ = _blobs(5, classes=1)
    cm[40:50, 40:50] = 1
    cm[44:46, 44:46] = 0  # a hole
    labels, _ = vec.label_classes(cm)
    traced = [g for g, _ in rasterio.features.shapes(labels, mask=labels > 0, connectivity=4)]
    built = vec._polygons_from_shapes(traced)
    assert len(built) == len(traced) > 5
    assert any(len(p.interiors) for p in built)
    for got, geojson in zip(built, traced, strict=True):
        assert got.equals_exact(shape(geojson), 0)


def test_first_pixels_are_the_first_in_raster_order() -> None:
    cm, _ = _blobs(6)
    labels, _ = vec.label_classes(cm)
    slices = ndimage.find_objects(labels)
    got = vec._first_pixels(labels, slices)
    for lab in range(1, labels.max() + 1):
        rows, cols = np.nonzero(labels == lab)
        assert got[lab] == (rows[0], cols[0])  # np.nonzero walks in raster order


@pytest.mark.parametrize("core", [(0, 0, 40, 50), (30, 45, 37, 41), (60, 100, 40, 50)])
def test_labels_starting_in_a_core_are_those_whose_first_pixel_it_holds(
    core: tuple[int, int, int, int],
) -> None:
    from rasterio.windows import Window

    cm, _ = _blobs(7)
    labels, _ = vec.label_classes(cm)
    slices = ndimage.find_objects(labels)
    row, col, h, w = core
    want = [
        lab
        for lab, (r, c) in vec._first_pixels(labels, slices).items()
        if row <= r < row + h and col <= c < col + w
    ]
    assert want
    assert vec.labels_starting_in(labels, slices, Window(col, row, w, h)) == want
