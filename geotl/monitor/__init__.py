"""Watch a region pass by pass: scene sources, SQLite state, change detection, the pass loop.

``run_monitor(region, options)`` processes every new pass once; ``watch_region`` repeats it
every interval; ``monitor_status`` reads the state without disturbing a running monitor.
"""

from geotl.monitor.changes import ChangeSet, detect_changes, scene_footprint
from geotl.monitor.runner import (
    Monitor,
    MonitorOptions,
    MonitorStatus,
    PassResult,
    RunSummary,
    format_status,
    monitor_status,
    parse_every,
    region_dir,
    run_monitor,
    watch_region,
)
from geotl.monitor.sources import FolderSource, Scene, StacSource, make_source
from geotl.monitor.state import MonitorState, RegionLock

__all__ = [
    "ChangeSet",
    "FolderSource",
    "Monitor",
    "MonitorOptions",
    "MonitorState",
    "MonitorStatus",
    "PassResult",
    "RegionLock",
    "RunSummary",
    "Scene",
    "StacSource",
    "detect_changes",
    "format_status",
    "make_source",
    "monitor_status",
    "parse_every",
    "region_dir",
    "run_monitor",
    "scene_footprint",
    "watch_region",
]
