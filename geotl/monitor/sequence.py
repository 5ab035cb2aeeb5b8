"""Pass ordering: which recorded pass comes before or after another over the same area.

Changes are always computed against the latest earlier pass whose footprint overlaps: same
model first, else any model. A pass processed late (a backfill, a retry) slots in between,
so its successor's changes must then be recomputed against it.
"""

from __future__ import annotations

import shapely
from shapely import wkt as shapely_wkt
from shapely.geometry.base import BaseGeometry

from geotl.monitor.state import MonitorState, PassRecord

__all__ = ["footprint_of", "next_pass", "overlaps", "previous_pass"]


def footprint_of(rec: PassRecord) -> BaseGeometry:
    """A recorded pass's footprint (EPSG:4326; empty when unknown)."""
    return shapely_wkt.loads(rec.footprint_wkt) if rec.footprint_wkt else shapely.Polygon()


def overlaps(footprint: BaseGeometry, rec: PassRecord, other: BaseGeometry | None = None) -> bool:
    """True when ``footprint`` shares area with ``rec``'s footprint (or with ``other``)."""
    fp = other if other is not None else footprint_of(rec)
    return bool(not fp.is_empty and shapely.intersection(footprint, fp).area > 0)


def previous_pass(
    state: MonitorState, model_id: str, job: PassRecord, footprint: BaseGeometry
) -> PassRecord | None:
    """The latest earlier pass overlapping ``footprint``: same model first, else any model."""
    for rec in state.neighbour_passes(model_id, job.acquired, before=True):
        if rec.key != job.key and overlaps(footprint, rec):
            return rec
    for rec in reversed(state.done_passes()):
        if rec.acquired < job.acquired and rec.key != job.key and overlaps(footprint, rec):
            return rec
    return None


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
