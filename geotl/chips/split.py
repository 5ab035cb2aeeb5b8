"""Spatial split: blocks of chips go to train / val / test; chips touching across splits go.

Chips are grouped into square blocks (``block_size_m``); a seeded RNG shuffles the blocks and
hands them out so that the chip counts come close to the requested fractions. Chips inside
designated areas (``test_within`` / ``val_within``) are forced into test / val. Finally every
pair of chips from different splits that intersect (touching counts) loses one chip, a
"guard" chip (train gives way to val and test, val gives way to test), so that no pixel,
edge or corner is shared across splits.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import shapely
from shapely.geometry.base import BaseGeometry

__all__ = [
    "SPLITS",
    "SplitResult",
    "assign_blocks",
    "block_key",
    "drop_guard_chips",
    "split_chips",
    "touching_pairs_across_splits",
]

SPLITS = ("train", "val", "test")
_PRIORITY = {"train": 0, "val": 1, "test": 2}
# Footprints are compared in one common frame (EPSG:4326 degrees); this tolerance (about
# 0.1 mm) makes edges that should coincide but differ in the last float bits count as touching.
TOUCH_TOLERANCE = 1e-9


@dataclass(frozen=True)
class SplitResult:
    """Split per chip (``None`` for guard chips) and the number of guard chips."""

    splits: list[str | None]
    n_guard: int

    def counts(self) -> dict[str, int]:
        """Chips per split (guard chips not included)."""
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


def drop_guard_chips(
    footprints: Sequence[BaseGeometry],
    splits: Sequence[str],
    shares: dict[str, float] | None = None,
) -> list[str | None]:
    """Remove few chips so that no kept chip touches a chip of another split.

    Weighted greedy vertex cover of the "touches across splits" graph: the chip with the
    highest (remaining cross-split contacts x share of its split) goes first. A chip of a
    small split is dearer, so boundaries are usually taken from train, yet a lone test chip
    amid train chips costs one chip, not eight. Ties drop train before val before test,
    then the lower index. Dropped chips get split None.

    Args:
        footprints: chip footprints in one common frame.
        splits: split per chip.
        shares: wanted share per split (default: equal).

    >>> from shapely.geometry import box
    >>> drop_guard_chips([box(0, 0, 1, 1), box(1, 0, 2, 1), box(5, 5, 6, 6)], ["train", "test", "val"])
    [None, 'test', 'val']
    """
    geoms = np.asarray(footprints, dtype=object)
    out: list[str | None] = list(splits)
    if len(geoms) == 0:
        return out
    tree = shapely.STRtree(geoms)
    left, right = tree.query(geoms, predicate="dwithin", distance=TOUCH_TOLERANCE)
    contacts: dict[int, set[int]] = {}
    for i, j in zip(left.tolist(), right.tolist(), strict=True):
        if i != j and splits[i] != splits[j]:
            contacts.setdefault(i, set()).add(j)
    weight = {s: max(shares.get(s, 1.0), 0.01) if shares else 1.0 for s in SPLITS}

    def key(i: int, degree: int) -> tuple[float, int, int, int]:
        return (-degree * weight[splits[i]], _PRIORITY[splits[i]], i, degree)

    heap = [key(i, len(n)) for i, n in contacts.items()]
    heapq.heapify(heap)
    while heap:
        *_, i, degree = heapq.heappop(heap)
        current = contacts.get(i)
        if not current:
            continue
        if degree != len(current):  # stale entry: push it back with its current degree
            heapq.heappush(heap, key(i, len(current)))
            continue
        out[i] = None
        for j in current:
            contacts[j].discard(i)
        del contacts[i]
    return out


def split_chips(
    footprints: Sequence[BaseGeometry],
    blocks: Sequence[Hashable],
    forced: Sequence[str | None],
    val_fraction: float,
    test_fraction: float,
    seed: int,
) -> SplitResult:
    """Assign blocks to splits, then drop guard chips (see module docstring).

    Args:
        footprints: chip footprints, all in one common frame.
        blocks: block key per chip.
        forced: designated split per chip (or None).
        val_fraction: wanted share of val chips.
        test_fraction: wanted share of test chips.
        seed: RNG seed.
    """
    assigned = assign_blocks(blocks, forced, val_fraction, test_fraction, seed)
    shares = {
        "train": 1.0 - val_fraction - test_fraction,
        "val": val_fraction,
        "test": test_fraction,
    }
    final = drop_guard_chips(footprints, assigned, shares)
    return SplitResult(splits=final, n_guard=sum(1 for s in final if s is None))


def touching_pairs_across_splits(
    footprints: Sequence[BaseGeometry], splits: Sequence[str | None]
) -> npt.NDArray[np.int64]:
    """Index pairs of kept chips in different splits that intersect (for checks and tests)."""
    keep = [i for i, s in enumerate(splits) if s is not None]
    geoms = np.asarray([footprints[i] for i in keep], dtype=object)
    if len(geoms) == 0:
        return np.zeros((0, 2), dtype=np.int64)
    tree = shapely.STRtree(geoms)
    left, right = tree.query(geoms, predicate="intersects")
    rows = [
        (keep[i], keep[j])
        for i, j in zip(left, right, strict=True)
        if i < j and splits[keep[i]] != splits[keep[j]]
    ]
    return np.array(rows, dtype=np.int64).reshape(-1, 2)
