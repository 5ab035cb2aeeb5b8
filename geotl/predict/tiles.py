"""Tiles of one acquisition: an object seen where two of them overlap is kept once.

A satellite acquisition is delivered as tiles that overlap (Sentinel-2's 110 km tiles share
about 10 km with each neighbour, and tiles on either side of a UTM zone boundary cover the
same ground in two CRSs). Predicted together into one GeoJSON, every object in an overlap
came out twice, once per tile (276 of 1,220 fields of two Sentinel-2 tiles across the zone
31/32 boundary, 3 km apart), though the contract is one feature per object.

Tiles are of one acquisition when their ``acquired`` times are equal and carry a time of
day: passes of other times, or known by their day alone (two passes of one day), are never
merged. Two objects of such tiles are the same object when they share a class and their
intersection covers half of the smaller one (as monitor matches objects between passes).
Of such a pair, the one kept is the one whose tile it belongs to: the tile from whose
edge it lies farther (there the model saw more context, and an object cut by one tile's
edge lies whole in the other); see :func:`_losers`. Each tile's own objects (and its quicklook and
probabilities) are otherwise untouched.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import geopandas as gpd
import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

if TYPE_CHECKING:
    from geotl.predict.core import SceneDetections

__all__ = ["MATCH_SHARE", "drop_tile_overlaps", "one_acquisition"]

log = logging.getLogger(__name__)

MATCH_SHARE = 0.5  # of the smaller object: the same object seen by two tiles


def one_acquisition(acquired: Sequence[str | None]) -> list[list[int]]:
    """Groups (two or more) of the scenes whose ``acquired`` is one time of day.

    >>> one_acquisition(["2023-06-01T10:50:31+00:00", "2023-06-01", None,
    ...     "2023-06-01T10:50:31+00:00", "2023-06-01"])
    [[0, 3]]
    """
    groups: dict[str, list[int]] = {}
    for i, when in enumerate(acquired):
        if when and "T" in when:  # a date alone may be two passes of one day
            groups.setdefault(when, []).append(i)
    return [g for g in groups.values() if len(g) > 1]


def _acquired(d: SceneDetections) -> str | None:
    """The scene's acquisition time, as its features carry it (None: unknown or no feature)."""
    if "acquired" not in d.features:
        return None
    values = d.features["acquired"].dropna()
    return str(values.iloc[0]) if len(values) else None


def drop_tile_overlaps(done: list[SceneDetections], *, say: bool = True) -> list[SceneDetections]:
    """``done`` with each object that two tiles of one acquisition both saw kept once.

    Returns the same list when no two scenes are tiles of one acquisition that overlap.
    ``say``: log what each tile leaves to another (predict's outputs; the monitor's alert
    rules look at earlier passes again every run and say nothing).
    """
    out = list(done)
    for group in one_acquisition([_acquired(d) for d in done]):
        drop: dict[int, set[str]] = {i: set() for i in group}
        for a_pos, a in enumerate(group):
            for b in group[a_pos + 1 :]:
                if not done[a].footprint.intersects(done[b].footprint):
                    continue
                lose_a, lose_b = _losers(done[a], done[b])
                drop[a] |= lose_a
                drop[b] |= lose_b
        for i in group:
            if not drop[i]:
                continue
            d = done[i]
            (log.info if say else log.debug)(
                "%s: %d object(s) also seen by another tile of its acquisition (%s) and kept "
                "there, where they lie farther from the tile's edge",
                d.name,
                len(drop[i]),
                _acquired(d),
            )
            out[i] = replace(
                d,
                features=d.features[~d.features["id"].isin(drop[i])].reset_index(drop=True),
                native=d.native[~d.native["id"].isin(drop[i])].reset_index(drop=True),
            )
    return out


def _losers(a: SceneDetections, b: SceneDetections) -> tuple[set[str], set[str]]:
    """The ids of ``a``'s and of ``b``'s objects that the other tile keeps.

    An object is the tile's own when its point on surface lies farther from that tile's edge
    than from the other's (or outside the other; ties: ``a``, the tile given first). One
    that is not its tile's own is left out only for a matching object that is the other
    tile's own: an object is never dropped for one that is dropped too, so where the two
    tiles outline it differently (one field in one, two in the other) it may stay twice,
    but never vanish.
    """
    crs = a.native.crs if a.native.crs is not None else 4326
    fa, fb = a.features.to_crs(crs), b.features.to_crs(crs)
    ga, gb = np.asarray(fa.geometry.values), np.asarray(fb.geometry.values)
    if not len(ga) or not len(gb):
        return set(), set()
    feet = gpd.GeoSeries([a.footprint, b.footprint], crs=4326).to_crs(crs)
    foot_a, foot_b = feet.iloc[0], feet.iloc[1]
    own_a = ~_deeper(shapely.point_on_surface(ga), foot_b, foot_a, ties=False)
    own_b = _deeper(shapely.point_on_surface(gb), foot_b, foot_a, ties=False)
    left, right = shapely.STRtree(gb).query(ga, predicate="intersects")
    lose_a: set[str] = set()
    lose_b: set[str] = set()
    for i, j in zip(left.tolist(), right.tolist(), strict=True):
        if own_a[i] == own_b[j] or fa["class"].iloc[i] != fb["class"].iloc[j]:
            continue  # both kept (each its tile's own) or neither tile's own: nothing to drop
        shared: BaseGeometry = shapely.intersection(ga[i], gb[j])
        if shared.area < MATCH_SHARE * min(ga[i].area, gb[j].area):
            continue
        if own_a[i]:
            lose_b.add(str(fb["id"].iloc[j]))
        else:
            lose_a.add(str(fa["id"].iloc[i]))
    return lose_a, lose_b


def _deeper(
    points: np.ndarray, foot: BaseGeometry, other: BaseGeometry, *, ties: bool
) -> np.ndarray:
    """Per point: inside ``foot`` and farther from its edge than from ``other``'s edge.

    A point inside ``foot`` but outside ``other`` is deeper in ``foot``; ``ties`` says what
    an equal distance gives.
    """
    inside = shapely.intersects(points, foot)
    d_foot = shapely.distance(points, shapely.boundary(foot))
    d_other = np.where(
        shapely.intersects(points, other), shapely.distance(points, shapely.boundary(other)), 0.0
    )
    return np.asarray(inside & ((d_foot > d_other) | ((d_foot == d_other) & ties)), dtype=bool)
