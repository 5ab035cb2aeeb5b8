"""``source = "folder"``: GeoTIFFs arriving in folders, matched by ``[monitor] paths`` globs.

A pass's acquisition time comes from ``datetime_regex`` on the file name, else the file's
TIFF ``DateTime`` tag, else its modification time (logged as such).
"""

from __future__ import annotations

import logging
import os
import re
import stat
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import rasterio
from rasterio.errors import RasterioError

from geotl.config import Region
from geotl.monitor.sources.base import SceneSource
from geotl.monitor.sources.scene import AcquiredFrom, Scene, parse_datetime_text, safe_scene_name

__all__ = ["FolderSource"]

log = logging.getLogger(__name__)


class FolderSource(SceneSource):
    """GeoTIFFs matched by the ``[monitor] paths`` globs."""

    kind = "folder"

    def __init__(self, region: Region) -> None:
        super().__init__(region)
        regex = region.monitor_datetime_regex
        self._regex = re.compile(regex) if regex else None

    def band_names(self) -> list[str]:
        """The region's ``[imagery] bands`` (monitored files share the imagery's bands)."""
        return list(self.region.imagery.bands)

    def discover(self, known: Mapping[str, str], since: datetime | None = None) -> list[Scene]:
        """Files that are new or changed since they were last seen.

        Known, unchanged files cost one ``stat`` each: their time stamps are not read again.
        """
        found: list[Scene] = []
        for path in self.region.monitor_paths():
            if path.name.startswith(".tmp-"):
                continue
            try:
                st = path.stat()
            except OSError:
                continue  # vanished between glob and stat (or a dangling link)
            if not stat.S_ISREG(st.st_mode):
                continue
            key = os.path.abspath(path)  # not resolved: two links to one file are two passes
            fingerprint = f"{st.st_size}:{st.st_mtime_ns}"
            if known.get(key) == fingerprint:
                continue
            acquired, origin = self.acquisition_time(path, st.st_mtime)
            found.append(
                Scene(
                    key=key,
                    name=safe_scene_name(path.stem),
                    acquired=acquired,
                    acquired_from=origin,
                    uri=str(path),
                    fingerprint=fingerprint,
                )
            )
        return found

    def acquisition_time(self, path: Path, mtime: float) -> tuple[datetime, AcquiredFrom]:
        """Acquisition time of a file: name regex, else TIFF DateTime tag, else mtime."""
        if self._regex is not None:
            match = self._regex.search(path.name)
            if match:
                try:
                    return parse_datetime_text(match.group(1)), "regex"
                except ValueError:
                    log.warning(
                        "%s: datetime_regex matched %r, which is not a date; trying the TIFF tag",
                        path,
                        match.group(1),
                    )
        tag = _tiff_datetime(path)
        if tag is not None:
            return tag, "tiff-tag"
        when = datetime.fromtimestamp(mtime, tz=UTC)
        log.warning(
            "%s: acquisition time taken from the file's modification time (%s): no datetime_regex "
            "match and no TIFF DateTime tag",
            path,
            when.isoformat(timespec="seconds"),
        )
        return when, "mtime"


def _tiff_datetime(path: Path) -> datetime | None:
    try:
        with rasterio.open(path) as ds:
            tags = ds.tags()
    except (RasterioError, OSError):
        return None  # unreadable: the scene fails (and is retried) when processed
    for name in ("TIFFTAG_DATETIME", "ACQUISITIONDATETIME", "DATETIME"):
        value = tags.get(name)
        if value:
            try:
                return parse_datetime_text(value)
            except ValueError:
                log.debug("%s: tag %s=%r is not a date", path, name, value)
    return None
