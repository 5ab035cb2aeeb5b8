"""The split: blocks, fractions, designated areas and the no-touch guarantee."""

import numpy as np
import pytest
from pyproj import Transformer
from shapely.geometry import box
from shapely.ops import transform as shp_transform

from geotl.chips.split import (
    assign_blocks,
    block_key,
    drop_guard_chips,
    split_chips,
    touching_pairs_across_splits,
)


def _grid(
    n_rows: int,
    n_cols: int,
    size: float,
    x0: float = 0.0,
    y0: float = 0.0,
    stride: float | None = None,
):
    step = stride or size
    return [
        box(x0 + c * step, y0 + r * step, x0 + c * step + size, y0 + r * step + size)
        for r in range(n_rows)
        for c in range(n_cols)
    ]


def _blocks(geoms, block: float, frame: str = "f"):
    return [block_key(frame, g.centroid.x, g.centroid.y, block) for g in geoms]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("stride", [None, 5.0])  # edge-sharing grid and overlapping chips
def test_no_touch_guarantee_generated(seed: int, stride: float | None) -> None:
    rng = np.random.default_rng(seed)
    geoms = _grid(20, 20, 10.0, stride=stride)
    # scattered extra chips at odd positions
    geoms += [box(x, y, x + 10, y + 10) for x, y in rng.uniform(0, 190, size=(40, 2))]
    result = split_chips(geoms, _blocks(geoms, 40.0), [None] * len(geoms), 0.2, 0.2, seed)
    assert len(touching_pairs_across_splits(geoms, result.splits)) == 0
    # every kept chip: no kept chip of another split intersects it (brute force)
    kept = [(g, s) for g, s in zip(geoms, result.splits, strict=True) if s is not None]
    for g, s in kept:
        assert not any(g.intersects(h) for h, t in kept if t != s)
    counts = result.counts()
    assert counts["train"] > counts["val"] > 0 and counts["test"] > 0
    assert result.n_guard == sum(1 for s in result.splits if s is None)


def test_same_seed_same_split_other_seed_other_split() -> None:
    geoms = _grid(16, 16, 10.0)
    blocks = _blocks(geoms, 40.0)
    a = split_chips(geoms, blocks, [None] * len(geoms), 0.15, 0.15, 7)
    b = split_chips(geoms, blocks, [None] * len(geoms), 0.15, 0.15, 7)
    c = split_chips(geoms, blocks, [None] * len(geoms), 0.15, 0.15, 8)
    assert a == b
    assert a.splits != c.splits


def test_fractions_by_chip_count_before_guards() -> None:
    geoms = _grid(40, 40, 10.0)
    assigned = assign_blocks(_blocks(geoms, 20.0), [None] * len(geoms), 0.15, 0.25, 3)
    share = {s: assigned.count(s) / len(assigned) for s in ("train", "val", "test")}
    assert share["val"] == pytest.approx(0.15, abs=0.01)
    assert share["test"] == pytest.approx(0.25, abs=0.01)


def test_chips_of_one_block_share_a_split() -> None:
    geoms = _grid(8, 8, 10.0)
    blocks = _blocks(geoms, 40.0)
    assigned = assign_blocks(blocks, [None] * len(geoms), 0.25, 0.25, 0)
    by_block: dict = {}
    for b, s in zip(blocks, assigned, strict=True):
        by_block.setdefault(b, set()).add(s)
    assert all(len(v) == 1 for v in by_block.values())


def test_forced_areas_win_and_stay_separated() -> None:
    geoms = _grid(10, 10, 10.0)
    forced = [
        "test" if g.centroid.x < 30 else ("val" if g.centroid.x > 80 else None) for g in geoms
    ]
    result = split_chips(geoms, _blocks(geoms, 20.0), forced, 0.1, 0.1, 0)
    for f, s in zip(forced, result.splits, strict=True):
        if f is not None and s is not None:
            assert s == f
    assert result.counts()["test"] > 0 and result.counts()["val"] > 0
    assert len(touching_pairs_across_splits(geoms, result.splits)) == 0


def test_corner_touch_counts_and_lone_chip_costs_one() -> None:
    geoms = [box(0, 0, 1, 1), box(1, 1, 2, 2)]  # corner contact only
    assert drop_guard_chips(geoms, ["train", "test"]).count(None) == 1
    # a lone test chip amid 8 train chips: drop it rather than its 8 neighbours
    ring = _grid(3, 3, 1.0)
    splits = ["train"] * 9
    splits[4] = "test"
    out = drop_guard_chips(ring, splits, {"train": 0.7, "val": 0.15, "test": 0.15})
    assert out.count(None) == 1 and out[4] is None


def test_chips_in_different_crs_checked_in_common_frame() -> None:
    """Two UTM zones meeting at 78W: chips on both sides that overlap on the ground."""
    to_wgs_18 = Transformer.from_crs("EPSG:32618", "EPSG:4326", always_xy=True).transform
    to_wgs_17 = Transformer.from_crs("EPSG:32617", "EPSG:4326", always_xy=True).transform
    to_17 = Transformer.from_crs("EPSG:4326", "EPSG:32617", always_xy=True).transform
    a18 = _grid(6, 6, 100.0, x0=166_000, y0=4_500_000)  # near the west edge of zone 18
    west_edge = shp_transform(to_wgs_18, a18[0])
    x17, y17 = to_17(west_edge.bounds[0], west_edge.bounds[1])
    a17 = _grid(6, 6, 100.0, x0=x17 - 300, y0=y17)  # overlaps a18 on the ground
    geoms = [shp_transform(to_wgs_18, g) for g in a18] + [shp_transform(to_wgs_17, g) for g in a17]
    blocks = _blocks(a18, 200.0, "EPSG:32618") + _blocks(a17, 200.0, "EPSG:32617")
    assert any(g.intersects(h) for g in geoms[:36] for h in geoms[36:])
    for seed in range(5):
        result = split_chips(geoms, blocks, [None] * len(geoms), 0.3, 0.3, seed)
        assert len(touching_pairs_across_splits(geoms, result.splits)) == 0
