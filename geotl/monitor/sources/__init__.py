"""Scene sources: where a monitored region's new passes come from, by ``[monitor] source``.

Each source is one module holding one :class:`SceneSource` subclass with its ``Options`` (its
own ``[monitor]`` keys), registered in :data:`SOURCES` under its ``kind``: a new source is
that module and one line here.

* ``folder`` (:mod:`.folder`): GeoTIFFs matched by ``[monitor] paths`` globs;
* ``stac`` (:mod:`.stac`): items of a STAC API collection, read remotely by window.

A source only discovers and opens scenes; the state database decides which ones are new.
"""

from __future__ import annotations

from geotl.config import Region
from geotl.monitor.sources.base import SceneSource, monitor_config
from geotl.monitor.sources.folder import FolderOptions, FolderSource
from geotl.monitor.sources.remote import (
    REMOTE_GDAL_OPTIONS,
    ItemError,
    remote_gdal_env,
    write_scene_vrt,
)
from geotl.monitor.sources.scene import AcquiredFrom, Scene, parse_datetime_text, safe_scene_name
from geotl.monitor.sources.stac import StacOptions, StacSource, region_aoi

__all__ = [
    "REMOTE_GDAL_OPTIONS",
    "SOURCES",
    "AcquiredFrom",
    "FolderOptions",
    "FolderSource",
    "ItemError",
    "Scene",
    "SceneSource",
    "StacOptions",
    "StacSource",
    "make_source",
    "monitor_config",
    "parse_datetime_text",
    "region_aoi",
    "remote_gdal_env",
    "safe_scene_name",
    "write_scene_vrt",
]

#: ``[monitor] source`` name -> the class that finds and opens its scenes.
SOURCES: dict[str, type[SceneSource]] = {
    FolderSource.kind: FolderSource,
    StacSource.kind: StacSource,
}


def make_source(region: Region) -> SceneSource:
    """Build the source that ``[monitor] source`` names.

    The name is in :data:`SOURCES`: the region file was checked against it when loaded.

    Raises:
        ConfigError: the region has no ``[monitor]`` table.
    """
    return SOURCES[monitor_config(region).source](region)
