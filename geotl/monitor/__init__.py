"""Watch a region pass by pass: scene sources, SQLite state, change detection, the pass loop.

``run_monitor(region, options)`` processes every new pass once; ``watch_region`` repeats it
every interval; ``monitor_status`` reads the state without disturbing a running monitor.

Modules, one concept each: ``sources/`` (where scenes come from: one module per
``[monitor] source``), ``state`` (the SQLite database), ``lock`` (one monitor per region),
``runner`` (the run loop), ``passes`` (one job from detection to its recorded outputs),
``sequence`` (which pass precedes which over the same area), ``changes`` (new and gone
objects between two passes), ``outputs`` (the region folder and ``history.csv`` /
``latest.geojson``), ``schedule`` (intervals, backoff) and ``status``.
"""

from geotl.monitor.changes import ChangeSet, detect_changes, scene_footprint
from geotl.monitor.lock import RegionLock
from geotl.monitor.options import Detector, MonitorOptions
from geotl.monitor.outputs import pass_stem, region_dir
from geotl.monitor.passes import PassResult
from geotl.monitor.runner import Monitor, RunSummary, run_monitor, watch_region
from geotl.monitor.schedule import parse_every
from geotl.monitor.sources import SOURCES, FolderSource, Scene, SceneSource, StacSource, make_source
from geotl.monitor.state import MonitorState
from geotl.monitor.status import MonitorStatus, format_status, monitor_status

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
