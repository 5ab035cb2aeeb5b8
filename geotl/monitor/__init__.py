"""Watch a region pass by pass: scene sources, SQLite state, change detection, the pass loop.

``run_monitor(region, options)`` processes every new pass once; ``watch_region`` repeats it
every interval; ``monitor_status`` reads the state without disturbing a running monitor.

Modules, one concept each: ``sources/`` (where scenes come from: one module per
``[monitor] source``), ``state`` (the SQLite database), ``lock`` (one monitor per region),
``runner`` (the run loop), ``passes`` (one job from detection to its recorded outputs),
``sequence`` (which pass precedes which over the same area), ``changes`` (new and gone
objects between two passes), ``outputs`` (the region folder and ``history.csv`` /
``latest.geojson``), ``schedule`` (intervals, backoff) and ``status``.

The names below are imported on first use (PEP 562): loading a region file asks
``geotl.monitor.sources`` for its source's options, and that must not import the pass runner
(and with it PyTorch).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from geotl.monitor.changes import ChangeSet, detect_changes, scene_footprint
    from geotl.monitor.lock import RegionLock
    from geotl.monitor.options import Detector, MonitorOptions
    from geotl.monitor.outputs import pass_stem, region_dir
    from geotl.monitor.passes import PassResult
    from geotl.monitor.runner import Monitor, RunSummary, run_monitor, watch_region
    from geotl.monitor.schedule import parse_every
    from geotl.monitor.sources import (
        SOURCES,
        FolderSource,
        Scene,
        SceneSource,
        StacSource,
        make_source,
    )
    from geotl.monitor.state import MonitorState
    from geotl.monitor.status import MonitorStatus, format_status, monitor_status

#: public name -> the module that defines it
_HOMES = {
    "ChangeSet": "changes",
    "detect_changes": "changes",
    "scene_footprint": "changes",
    "RegionLock": "lock",
    "Detector": "options",
    "MonitorOptions": "options",
    "pass_stem": "outputs",
    "region_dir": "outputs",
    "PassResult": "passes",
    "Monitor": "runner",
    "RunSummary": "runner",
    "run_monitor": "runner",
    "watch_region": "runner",
    "parse_every": "schedule",
    "SOURCES": "sources",
    "FolderSource": "sources",
    "Scene": "sources",
    "SceneSource": "sources",
    "StacSource": "sources",
    "make_source": "sources",
    "MonitorState": "state",
    "MonitorStatus": "status",
    "format_status": "status",
    "monitor_status": "status",
}
__all__ = [
    "SOURCES",
    "ChangeSet",
    "Detector",
    "FolderSource",
    "Monitor",
    "MonitorOptions",
    "MonitorState",
    "MonitorStatus",
    "PassResult",
    "RegionLock",
    "RunSummary",
    "Scene",
    "SceneSource",
    "StacSource",
    "detect_changes",
    "format_status",
    "make_source",
    "monitor_status",
    "parse_every",
    "pass_stem",
    "region_dir",
    "run_monitor",
    "scene_footprint",
    "watch_region",
]


def __getattr__(name: str) -> Any:
    """Import a public name's module on first use."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)
