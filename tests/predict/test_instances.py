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
def test_windows_equal_whole_scene(window_px: int, halo_px: int, simplify_px: float) -> None:
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


def test_extractor_for_task() -> None:
    assert isinstance(extractor_for("segmentation", 2), SegmentationExtractor)
    ex = extractor_for("instances", 2)
    assert ex.outputs == 5 and ex.channels == 4 and ex.planes == 3
