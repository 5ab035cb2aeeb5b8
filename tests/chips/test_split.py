"""The split: blocks, fractions, designated areas and the guard-band pairs."""

from pathlib import Path

import pytest
from affine import Affine
from pyproj import CRS, Transformer
from shapely.geometry import box
from shapely.ops import transform as shp_transform

from geotl.chips.guard import GuardChip, band_mask
from geotl.chips.split import assign_blocks, block_key, guard_pairs, split_chips


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


def test_guard_pairs_rank_and_distance() -> None:
    geoms = _grid(1, 4, 10.0)  # four chips in a row, edge to edge
    splits = ["train", "val", "test", "train"]
    pairs = guard_pairs(geoms, splits, 0.0)
    # train gives way to val and test, val to test; nobody gives way to a lower rank
    assert pairs == {0: [1], 1: [2], 3: [2]}
    assert guard_pairs(geoms, splits, 15.0) == {0: [1, 2], 1: [2], 3: [1, 2]}
    assert guard_pairs(_grid(1, 2, 10.0, stride=30.0), ["train", "test"], 5.0) == {}


def test_band_is_the_guard_width_next_to_the_other_chip() -> None:
    t = Affine(1, 0, 0, 0, -1, 10)  # 10 x 10 px chip at (0..10, 0..10)
    chip = GuardChip(Path("m.tif"), CRS.from_epsg(32617), t, 10, 10, 1.0, box(0, 0, 10, 10))
    band = band_mask(chip, [box(10, 0, 20, 10)], 3)  # neighbour on the right
    assert band[:, 7:].all() and not band[:, :7].any()
    corner = band_mask(chip, [box(10, 10, 20, 20)], 2)  # diagonal neighbour: a corner square
    assert corner[:2, 8:].all() and corner.sum() == 4
    assert not band_mask(chip, [box(30, 0, 40, 10)], 3).any()


def test_same_seed_same_split_other_seed_other_split() -> None:
    geoms = _grid(16, 16, 10.0)
    blocks = _blocks(geoms, 40.0)
    a = split_chips(blocks, [None] * len(geoms), 0.15, 0.15, 7)
    b = split_chips(blocks, [None] * len(geoms), 0.15, 0.15, 7)
    c = split_chips(blocks, [None] * len(geoms), 0.15, 0.15, 8)
    assert a == b
    assert a.splits != c.splits


def test_fractions_by_chip_count() -> None:
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
    result = split_chips(_blocks(geoms, 20.0), forced, 0.1, 0.1, 0)
    for f, s in zip(forced, result.splits, strict=True):
        if f is not None:
            assert s == f
    assert result.counts()["test"] > 0 and result.counts()["val"] > 0


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
        splits = split_chips(blocks, [None] * len(geoms), 0.3, 0.3, seed).splits
        pairs = guard_pairs(geoms, splits, 0.0)
        # every cross-zone overlap of different splits is found, the lower rank gives way
        for i in range(36):
            for j in range(36, 72):
                if geoms[i].intersects(geoms[j]) and splits[i] != splits[j]:
                    lo, hi = sorted((i, j), key=lambda k: ("train", "val", "test").index(splits[k]))
                    assert hi in pairs.get(lo, [])
