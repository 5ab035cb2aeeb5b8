"""Instance extraction: touching objects separated, seam-free window by window."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from affine import Affine
from scipy import ndimage

from geotl.chips.targets import instance_targets
from geotl.predict.objects import InstanceExtractor, SegmentationExtractor, extractor_for
from geotl.predict.objects.instances import split_instances
from geotl.predict.vectorise import FLOOD_SEEDS, vectorise_labels

from . import data

T = Affine(0.5, 0, 1000.0, 0, -0.5, 2000.0)


def _touching_discs(
    seed: int, shape: tuple[int, int] = (150, 170), n: int = 40
) -> tuple[np.ndarray, np.ndarray]:
    """Instance ids of random discs that touch and overlap (later ones on top)."""
    rng = np.random.default_rng(seed)
    inst = np.zeros(shape, dtype=np.int32)
    rr, cc = np.mgrid[: shape[0], : shape[1]]
    for i in range(1, n + 1):
        r, c, rad = rng.integers(0, shape[0]), rng.integers(0, shape[1]), rng.integers(5, 12)
        inst[(rr - r) ** 2 + (cc - c) ** 2 <= rad * rad] = i
    # one long thin object across many seams
    inst[75:78, 3:167] = n + 1
    return inst, rng.random(shape).astype(np.float32)


def _planes(inst: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """Planes as a perfect instance model would give them (class, score, seed)."""
    border, contact = instance_targets(inst)
    fg = inst > 0
    score = np.where(fg, 0.6 + 0.4 * noise, 0.0).astype(np.float32)
    seed = (score * ~border * ~contact).astype(np.float32)
    return np.stack([fg.astype(np.float32), score, seed])


def _clusters(labels: np.ndarray, label_class: list[int]) -> np.ndarray:
    """The group of each label: the touching objects (4-connected foreground) it is in."""
    clusters, _ = ndimage.label(labels > 0)
    groups = np.zeros(len(label_class), dtype=np.int64)
    groups[labels.ravel()] = clusters.ravel()
    return groups


def _key(o: object) -> tuple[tuple[int, int], int]:
    return (o.first_px, o.class_index)  # type: ignore[attr-defined]


def test_touching_objects_are_separated() -> None:
    inst = np.zeros((40, 60), dtype=np.int32)
    inst[5:30, 5:30] = 1
    inst[5:30, 30:55] = 2  # touches 1 along a whole side
    planes = _planes(inst, np.zeros(inst.shape, np.float32))
    seg = SegmentationExtractor(1).extract(planes[:2], T, simplify_px=0, min_pixels=1)
    ins = InstanceExtractor(1).extract(planes, T, simplify_px=0, min_pixels=1)
    assert len(seg) == 1
    assert len(ins) == 2
    areas = sorted(o.pixel_count for o in ins)
    assert areas == [625, 625]


def test_component_without_seed_stays_one_object() -> None:
    cm = np.zeros((10, 10), dtype=np.uint8)
    cm[2:5, 2:5] = 1
    labels, classes = split_instances(cm, np.zeros(cm.shape, np.float32))
    assert classes == [0, 1]
    assert int(labels.max()) == 1 and int((labels == 1).sum()) == 9


@pytest.mark.parametrize("window_px,halo_px", [(9, 1), (23, 4), (40, 16), (64, 2), (500, 64)])
@pytest.mark.parametrize("simplify_px", [0.0, 1.0])
@pytest.mark.parametrize("flood_seeds", [0, FLOOD_SEEDS, 10**6])
def test_windows_equal_whole_scene(
    window_px: int,
    halo_px: int,
    simplify_px: float,
    flood_seeds: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # a retry labels its whole window or floods the clusters the earlier read cut: the same
    floods = data.count_floods(monkeypatch, flood_seeds)
    inst, noise = _touching_discs(1)
    planes = _planes(inst, noise)
    ex = InstanceExtractor(1)
    whole = ex.extract(planes, T, simplify_px=simplify_px, min_pixels=5)
    reads: list[tuple[int, int]] = []

    def read(r: int, c: int, h: int, w: int) -> np.ndarray:
        reads.append((h, w))
        return planes[:, r : r + h, c : c + w]

    tiled = sorted(
        ex.extract_by_windows(
            read,
            inst.shape,
            T,
            window_px=window_px,
            halo_px=halo_px,
            simplify_px=simplify_px,
            min_pixels=5,
        ),
        key=_key,
    )
    # touching discs are separated: far more objects than connected components
    _, n_components = ndimage.label(inst > 0)
    assert len(whole) > n_components + 10
    assert [_key(o) for o in tiled] == [_key(o) for o in whole]
    for a, b in zip(tiled, whole, strict=True):
        assert shapely.equals_exact(a.geometry, b.geometry, tolerance=0)
        assert a.pixel_count == b.pixel_count
        assert a.score == pytest.approx(b.score, rel=1e-12)
    if window_px < 100:
        assert min(h for h, _ in reads) < inst.shape[0]
        assert (len(floods) > 0) == (flood_seeds > 0)


@pytest.mark.parametrize("window_px,halo_px", [(9, 1), (23, 4), (64, 2)])
@pytest.mark.parametrize("flood_seeds", [0, 10**6])
def test_windows_equal_whole_scene_with_specks(
    window_px: int, halo_px: int, flood_seeds: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # specks on window edges: a speck cut by a halo edge may be larger outside, so the
    # window is read again before it is left out
    data.count_floods(monkeypatch, flood_seeds)
    inst, noise = _touching_discs(4)
    inst[::7, ::9] = np.where(inst[::7, ::9] == 0, 999, inst[::7, ::9])
    planes = _planes(inst, noise)
    ex = InstanceExtractor(1)
    whole = ex.extract(planes, T, simplify_px=1.0, min_pixels=3)
    tiled = ex.extract_by_windows(
        lambda r, c, h, w: planes[:, r : r + h, c : c + w],
        inst.shape,
        T,
        window_px=window_px,
        halo_px=halo_px,
        simplify_px=1.0,
        min_pixels=3,
    )
    assert sorted(tiled, key=_key) == whole


def test_small_components_left_out_are_the_objects_dropped_anyway() -> None:
    # specks under min_pixels are not split or traced; the objects equal splitting all
    inst, noise = _touching_discs(2)
    rng = np.random.default_rng(3)
    for k, (r, c) in enumerate(rng.integers(0, 140, size=(60, 2)), start=100):
        side = 1 + k % 3  # 1, 4 and 9 px specks
        inst[r : r + side, c : c + side] = np.where(inst[r : r + side, c : c + side] == 0, k, 0)
    planes = _planes(inst, noise)
    cm, seed = planes[0].astype(np.uint8), planes[2]
    labels_all, classes_all = split_instances(cm, seed, min_seed_px=5)
    labels_big, classes_big = split_instances(cm, seed, min_seed_px=5, min_pixels=5)
    assert len(classes_big) < len(classes_all)  # specks were left out
    kw = {"scores": planes[1], "simplify_px": 1.0, "min_pixels": 5}
    want = vectorise_labels(
        labels_all, classes_all, T, groups=_clusters(labels_all, classes_all), **kw
    )  # type: ignore[arg-type]
    got = vectorise_labels(
        labels_big, classes_big, T, groups=_clusters(labels_big, classes_big), **kw
    )  # type: ignore[arg-type]
    assert [_key(o) for o in got] == [_key(o) for o in want]
    assert all(
        shapely.equals_exact(a.geometry, b.geometry, 0) for a, b in zip(got, want, strict=True)
    )
    assert InstanceExtractor(1).extract(planes, T, simplify_px=1.0, min_pixels=5) == got


def test_extractor_for_task() -> None:
    assert isinstance(extractor_for("segmentation", 2), SegmentationExtractor)
    ex = extractor_for("instances", 2)
    assert ex.outputs == 5 and ex.channels == 4 and ex.planes == 3


def test_a_component_across_windows_is_split_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # a closed canopy: every disc touches the long bar, one component across all windows
    import geotl.predict.objects.instances as instances

    inst, noise = _touching_discs(5)
    inst[:, 84:86] = 999
    planes = _planes(inst, noise)
    _, n_components = ndimage.label(inst > 0)
    calls: list[tuple[int, int]] = []
    real = instances.split_component

    def counted(
        mask: np.ndarray, seed: np.ndarray, min_seed_px: int, seed_threshold: float
    ) -> tuple[np.ndarray, int]:
        calls.append(mask.shape)
        return real(mask, seed, min_seed_px, seed_threshold)

    monkeypatch.setattr(instances, "split_component", counted)
    ex = InstanceExtractor(1)
    whole = ex.extract(planes, T, simplify_px=1.0, min_pixels=1)
    assert len(calls) == n_components
    calls.clear()
    tiled = ex.extract_by_windows(
        lambda r, c, h, w: planes[:, r : r + h, c : c + w],
        inst.shape,
        T,
        window_px=23,
        halo_px=4,
        simplify_px=1.0,
        min_pixels=1,
    )
    assert sorted(tiled, key=_key) == whole
    assert len(calls) == n_components  # not once per window the canopy touches


def test_the_flood_skips_inner_seed_pixels_and_grows_the_same_objects() -> None:
    # a closed canopy of touching discs whose seeds cover most of it: split_component
    # floods only what seeds can reach and gives scikit-image's watershed over the whole
    # component, pixel for pixel (seed scores distinct: no ties for the heap to order)
    from skimage.segmentation import watershed

    from geotl.predict.objects.instances import SEED_THRESHOLD, split_component

    inst, _ = _touching_discs(7, shape=(120, 140), n=60)
    inst[:, 60:62] = 999  # every disc on a bar: one component
    mask = ndimage.label(inst > 0)[0] == 1
    rng = np.random.default_rng(8)
    border, contact = instance_targets(inst)
    seed = np.where(border | contact, 0.3, 0.7) + rng.random(inst.shape) * 0.2
    markers = ndimage.label(
        mask & (seed >= SEED_THRESHOLD), structure=ndimage.generate_binary_structure(2, 1)
    )[0]
    sizes = np.bincount(markers.ravel())
    assert (markers > 0).sum() > 0.5 * mask.sum()  # most of the canopy is seed
    got, n = split_component(mask, seed, min_seed_px=1)
    want = watershed(-seed, markers, mask=mask, connectivity=1)
    assert n == len(sizes) - 1 > 20
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("simplify_px", [1.0, 2.0])
@pytest.mark.parametrize("n_classes", [1, 2])
@pytest.mark.parametrize("window_px", [None, 23])
def test_touching_objects_keep_their_shared_edges_when_simplified(
    simplify_px: float, n_classes: int, window_px: int | None
) -> None:
    # README: "--simplify (pixels, topology kept)". Touching objects (split from one
    # component, or of two classes side by side) are simplified as one coverage: their
    # shared edges stay shared, with no overlap and no gap, whole or window by window
    inst, noise = _touching_discs(5)
    planes = _planes(inst, noise)
    if n_classes == 2:  # odd discs of class 2: components of both classes touch
        planes[0] = np.where(inst > 0, 1 + inst % 2, 0).astype(np.float32)
    ex = InstanceExtractor(n_classes)
    exact = ex.extract(planes, T, simplify_px=0, min_pixels=5)
    if window_px is None:
        objs = ex.extract(planes, T, simplify_px=simplify_px, min_pixels=5)
    else:
        objs = sorted(
            ex.extract_by_windows(
                lambda r, c, h, w: planes[:, r : r + h, c : c + w],
                inst.shape,
                T,
                window_px=window_px,
                halo_px=4,
                simplify_px=simplify_px,
                min_pixels=5,
            ),
            key=_key,
        )
    assert [_key(o) for o in objs] == [_key(o) for o in exact]
    before = np.array([o.geometry for o in exact])
    after = np.array([o.geometry for o in objs])
    assert shapely.get_num_coordinates(after).sum() < shapely.get_num_coordinates(before).sum()
    assert shapely.is_valid(after).all()
    # the pairs that share an edge (not just a corner) in pixels
    i, j = shapely.STRtree(before).query(before, predicate="intersects")
    i, j = i[i < j], j[i < j]
    shared = shapely.intersection(before[i], before[j])
    along = shapely.length(shared) > 0
    i, j, shared = i[along], j[along], shared[along]
    assert len(i) > 20
    # no overlap
    overlap = shapely.area(shapely.intersection(after[i], after[j]))
    smaller = np.minimum(shapely.area(after[i]), shapely.area(after[j]))
    assert (overlap <= 1e-9 * smaller).all(), f"{int((overlap > 1e-9 * smaller).sum())} overlap"
    # no gap: every shared edge is still covered by the objects, away from the outline
    # of the objects (which simplification moves, by up to about simplify_px)
    outline = shapely.boundary(shapely.union_all(before))
    inner = shapely.difference(shared, shapely.buffer(outline, 2 * simplify_px * T.a))
    gaps = shapely.length(shapely.difference(inner, shapely.union_all(after)))
    assert gaps.max() < 1e-9, f"{int((gaps > 1e-9).sum())} shared edges with gaps"
