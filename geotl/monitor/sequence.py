"""Pass ordering: which recorded pass comes before or after another over the same area.

Changes are computed against what the earlier passes last saw of a pass's ground: the latest
earlier pass whose footprint overlaps, then, where it did not cover the ground, the latest
before it that did, and so on (same model first, else any model). A pass processed late (a
backfill, a retry) slots in between, so its successor's changes must then be recomputed.
"""

from __future__ import annotations

from collections.abc import Iterator

import shapely
from shapely import wkt as shapely_wkt
from shapely.geometry.base import BaseGeometry

from geotl.monitor.state import MonitorState, PassRecord

__all__ = ["footprint_of", "next_pass", "overlaps", "previous_passes"]

#: at most this many earlier passes make up the view a pass is compared with
MAX_EARLIER = 20
#: ground less than this share of a footprint is not worth another earlier pass (the slivers
#: that decimated nodata masks leave between passes of one grid)
_SLIVER = 1e-3


def footprint_of(rec: PassRecord) -> BaseGeometry:
    """A recorded pass's footprint (EPSG:4326; empty when unknown)."""
    return shapely_wkt.loads(rec.footprint_wkt) if rec.footprint_wkt else shapely.Polygon()


def overlaps(footprint: BaseGeometry, rec: PassRecord, other: BaseGeometry | None = None) -> bool:
    """True when ``footprint`` shares area with ``rec``'s footprint (or with ``other``)."""
    fp = other if other is not None else footprint_of(rec)
    return bool(not fp.is_empty and shapely.intersection(footprint, fp).area > 0)


def previous_passes(
    state: MonitorState, model_id: str, job: PassRecord, footprint: BaseGeometry
) -> list[PassRecord]:
    """The earlier passes that last saw ``footprint``'s ground, newest first.

    The latest earlier overlapping pass first (same model first, else any model), then each
    older one that saw ground inside ``footprint`` the newer ones did not, until all of it
    is seen.
    A pass that only partly overlaps the last one is thus compared, beyond that one, with
    what an earlier pass saw there: a change there is not missed.
    """

    def same() -> Iterator[PassRecord]:
        for rec in state.neighbour_passes(model_id, job.acquired, before=True):
            if rec.key != job.key:
                yield rec

    def anyone() -> Iterator[PassRecord]:  # read only when no pass of this model overlaps
        for rec in reversed(state.done_passes()):
            if rec.acquired < job.acquired and rec.key != job.key:
                yield rec

    for candidates in (same(), anyone()):
        out: list[PassRecord] = []
        seen: BaseGeometry = shapely.Polygon()
        for rec in candidates:
            fp = footprint_of(rec)
            if not overlaps(footprint, rec, fp):
                continue
            adds = shapely.difference(shapely.intersection(footprint, fp), seen)
            if out and adds.area <= _SLIVER * footprint.area:
                continue
            out.append(rec)
            seen = shapely.union(seen, fp)
            if len(out) >= MAX_EARLIER or shapely.difference(footprint, seen).area <= (
                _SLIVER * footprint.area
            ):
                break
        if out:
            return out
    return []


def next_pass(
    state: MonitorState, model_id: str, job: PassRecord, footprint: BaseGeometry
) -> PassRecord | None:
    """The earliest later pass of ``model_id`` overlapping ``footprint``."""
    return next(
        (
            rec
            for rec in state.neighbour_passes(model_id, job.acquired, before=False)
            if overlaps(footprint, rec)
        ),
        None,
    )
