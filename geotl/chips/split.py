"""Spatial split: blocks of chips go to train / val / test, kept apart by guard bands.

Chips are grouped into square blocks (``block_size_m``); a seeded RNG shuffles the blocks and
hands them out so that the chip counts come close to the requested fractions. Chips inside
designated areas (``test_within`` / ``val_within``) are forced into test / val. No chip is
dropped: where chips of different splits come close, the lower-ranked one (train < val <
test) gives way with a band of ignore pixels (:func:`guard_pairs` finds the pairs,
:mod:`geotl.chips.guard` draws the bands).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

__all__ = [
    "SPLITS",
    "SPLIT_RANK",
    "SplitResult",
    "assign_blocks",
    "block_key",
    "guard_pairs",
    "split_chips",
]

SPLITS = ("train", "val", "test")
SPLIT_RANK = {"train": 0, "val": 1, "test": 2}  # a lower rank gives way in a guard band
# Footprints are compared in one common frame (EPSG:4326 degrees); this tolerance (about
# 0.1 mm) makes edges that should coincide but differ in the last float bits count as touching.
TOUCH_TOLERANCE = 1e-9


@dataclass(frozen=True)
class SplitResult:
    """Split per chip."""

    splits: list[str]

    def counts(self) -> dict[str, int]:
        """Chips per split."""
        return {s: sum(1 for x in self.splits if x == s) for s in SPLITS}


def block_key(frame: str, x: float, y: float, block_size: float) -> tuple[str, int, int]:
    """The block that contains point (x, y) of a given frame.

    >>> block_key("EPSG:32618", 250.0, -10.0, 200.0)
    ('EPSG:32618', 1, -1)
    """
    return (frame, math.floor(x / block_size), math.floor(y / block_size))


def assign_blocks(
    blocks: Sequence[Hashable],
    forced: Sequence[str | None],
    val_fraction: float,
    test_fraction: float,
    seed: int,
) -> list[str]:
    """Split per chip from its block, aiming at the fractions by chip count.

    Args:
        blocks: block key per chip (sortable: tuples of str / int).
        forced: ``"test"``, ``"val"`` or None per chip (designated areas win).
        val_fraction: wanted share of val chips.
        test_fraction: wanted share of test chips.
        seed: RNG seed; the same inputs and seed give the same split.

    >>> assign_blocks([("a", 0, 0)] * 3 + [("a", 1, 0)] * 3, [None] * 6, 0.0, 0.5, 0)
    ['test', 'test', 'test', 'train', 'train', 'train']
    """
    n = len(blocks)
    counts = {s: 0 for s in SPLITS}
    for f in forced:
        if f is not None:
            counts[f] += 1
    sizes: dict[Hashable, int] = {}
    for b, f in zip(blocks, forced, strict=True):
        if f is None:
            sizes[b] = sizes.get(b, 0) + 1
    order = sorted(sizes, key=repr)
    rng = np.random.default_rng(seed)
    shuffled = [order[i] for i in rng.permutation(len(order))]
    targets = {"test": test_fraction * n, "val": val_fraction * n}
    block_split: dict[Hashable, str] = {}
    for b in shuffled:
        size = sizes[b]
        chosen = "train"
        for s in ("test", "val"):
            # take the block when that brings the count closer to the target than not
            if targets[s] > 0 and counts[s] + size / 2 <= targets[s]:
                chosen = s
                break
        block_split[b] = chosen
        counts[chosen] += size
    return [f if f is not None else block_split[b] for b, f in zip(blocks, forced, strict=True)]


def guard_pairs(
    footprints: Sequence[BaseGeometry], splits: Sequence[str], distance: float
) -> dict[int, list[int]]:
    """Per chip, the chips of higher-ranked splits within ``distance`` (train < val < test).

    The lower-ranked chip of each such pair gives way: its pixels near the other chip
    become a guard band (see :mod:`geotl.chips.guard`).

    >>> from shapely.geometry import box
    >>> guard_pairs([box(0, 0, 1, 1), box(1.5, 0, 2.5, 1), box(5, 5, 6, 6)], ["train", "test", "val"], 1.0)
    {0: [1]}
    """
    geoms = np.asarray(footprints, dtype=object)
    out: dict[int, list[int]] = {}
    if len(geoms) == 0:
        return out
    tree = shapely.STRtree(geoms)
    left, right = tree.query(geoms, predicate="dwithin", distance=distance + TOUCH_TOLERANCE)
    for i, j in zip(left.tolist(), right.tolist(), strict=True):
        if SPLIT_RANK[splits[j]] > SPLIT_RANK[splits[i]]:
            out.setdefault(i, []).append(j)
    return {i: sorted(js) for i, js in sorted(out.items())}


def split_chips(
    blocks: Sequence[Hashable],
    forced: Sequence[str | None],
    val_fraction: float,
    test_fraction: float,
    seed: int,
) -> SplitResult:
    """Assign blocks to splits (see module docstring).

    Args:
        blocks: block key per chip.
        forced: designated split per chip (or None).
        val_fraction: wanted share of val chips.
        test_fraction: wanted share of test chips.
        seed: RNG seed.
    """
    return SplitResult(splits=assign_blocks(blocks, forced, val_fraction, test_fraction, seed))
