"""A scene as sources find it, and the time stamps and names they derive from files and items."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from geotl.io.dates import parse_datetime_text  # re-exported: the sources' one date parser

__all__ = ["AcquiredFrom", "Scene", "parse_datetime_text", "safe_scene_name"]

AcquiredFrom = Literal["regex", "tiff-tag", "file-name", "mtime", "stac"]


@dataclass(frozen=True)
class Scene:
    """One pass a source found.

    Attributes:
        key: unique within the region: the absolute file path, or ``stac:<collection>/<id>``.
        name: short name used in output file names (file stem or STAC item id).
        acquired: acquisition time (UTC).
        acquired_from: where ``acquired`` came from: regex, tiff-tag, file-name, mtime or stac.
        uri: the file path or the STAC item's URL.
        fingerprint: changes when the file or item changes (size + mtime, item ``updated``).
        footprint_wkt: the pass's footprint in EPSG:4326 when the source knows it.
        assets: band name -> ``href`` or ``href#band`` (STAC sources).
        cloud_cover: ``eo:cloud_cover`` in percent, when known.
        day_only: only the day of the acquisition is known (a date in the file name or a
            ``datetime_regex`` without a time): two passes of that day (Sentinel-1A in the
            morning, 1B in the evening) cannot be told apart by their time.
    """

    key: str
    name: str
    acquired: datetime
    acquired_from: AcquiredFrom
    uri: str
    fingerprint: str
    footprint_wkt: str | None = None
    assets: dict[str, str] = field(default_factory=dict)
    cloud_cover: float | None = None
    day_only: bool = False

    @property
    def is_remote(self) -> bool:
        """True when the scene is read over HTTP (STAC assets)."""
        return bool(self.assets)


def safe_scene_name(text: str) -> str:
    """A file-name-safe version of a scene name.

    >>> safe_scene_name("LC08 L2SP/044034")
    'LC08_L2SP_044034'
    """
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._")
    return cleaned[:120] or "scene"
