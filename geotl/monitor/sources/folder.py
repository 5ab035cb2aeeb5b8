"""``source = "folder"``: GeoTIFFs arriving in folders, matched by ``[monitor] paths`` globs.

Keys (:class:`FolderOptions`): ``paths`` (globs, relative to the region file),
``datetime_regex`` (default: ``[imagery] datetime_regex``) and ``republished`` (a file that
delivers a done pass's acquisition again: ``"skip"`` or ``"replace"``,
:mod:`geotl.monitor.republished`). A pass's acquisition time comes from :func:`geotl.io.dates.read_acquired` (``datetime_regex``
on the file name, else the file's TIFF date tag, else a date in the file name), else its
modification time (logged as such).
"""

from __future__ import annotations

import glob
import logging
import os
import re
import stat
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

from pydantic import Field, field_validator

from geotl.config import SIDECAR_SUFFIXES, Region, check_datetime_regex
from geotl.errors import ConfigError
from geotl.io.band_names import split_band_file
from geotl.io.dates import read_acquired
from geotl.monitor.sources.base import RepublishedOptions, SceneSource
from geotl.monitor.sources.scene import AcquiredFrom, Scene, safe_scene_name

__all__ = ["FolderOptions", "FolderSource"]

log = logging.getLogger(__name__)


class FolderOptions(RepublishedOptions):
    """``source = "folder"``'s keys in ``[monitor]``."""

    paths: list[str] = Field(min_length=1)  # globs, relative to the region file
    datetime_regex: str | None = None

    @field_validator("datetime_regex")
    @classmethod
    def _valid_regex(cls, value: str | None) -> str | None:
        return check_datetime_regex(value)


class FolderSource(SceneSource):
    """GeoTIFFs matched by the ``[monitor] paths`` globs."""

    kind = "folder"
    Options = FolderOptions
    options: FolderOptions

    def __init__(self, region: Region) -> None:
        super().__init__(region)
        regex = self.options.datetime_regex or region.imagery.datetime_regex
        self._regex = re.compile(regex) if regex else None

    def band_names(self) -> list[str]:
        """The region's ``[imagery] bands`` (monitored files share the imagery's bands)."""
        return list(self.region.imagery.bands)

    def discover(self, known: Mapping[str, str], since: datetime | None = None) -> list[Scene]:
        """Files that are new or changed since they were last seen.

        Known, unchanged files cost one ``stat`` each: their time stamps are not read again.
        """
        found: list[Scene] = []
        paths = self.scene_paths()
        self._refuse_band_files(paths)
        for path in paths:
            if path.name.startswith(".tmp-") or path.name.lower().endswith(SIDECAR_SUFFIXES):
                continue  # being written, or GDAL's and QGIS's files beside a scene
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
            acquired, origin, day_only = self.acquisition_time(path, st.st_mtime)
            found.append(
                Scene(
                    key=key,
                    name=safe_scene_name(path.stem),
                    acquired=acquired,
                    acquired_from=origin,
                    day_only=day_only,
                    uri=str(path),
                    fingerprint=fingerprint,
                )
            )
        return found

    def scene_paths(self) -> list[Path]:
        """Files the ``paths`` globs match now, sorted (may be none).

        Raises:
            ConfigError: the folder a glob looks in does not exist (a typo would otherwise
                watch nothing, run after run, and say all is well).
        """
        found: set[Path] = set()
        for pattern in self.options.paths:
            resolved = self.region.resolve(pattern)
            folder = _fixed_folder(resolved)
            if not folder.is_dir():
                raise ConfigError(
                    f"[monitor] paths: '{pattern}' looks in {folder}, which does not exist: "
                    "create the folder new passes arrive in, or fix the path",
                    self.region.path,
                )
            found.update(Path(p) for p in glob.glob(str(resolved), recursive=True))
        return sorted(found)

    def _refuse_band_files(self, paths: list[Path]) -> None:
        """Refuse a folder that holds scenes one file per band, before any pass fails.

        USGS (EarthExplorer, bulk download) delivers Landsat Collection 2 as one GeoTIFF per
        band (``..._SR_B2.TIF``, ``..._SR_B3.TIF``), Copernicus Sentinel-2 as one JPEG 2000
        per band. A folder pass is one file holding ``[imagery] bands``: each band file
        would be a pass of its own that fails for its bands, run after run. Files of one
        scene are told by their names: the same first part, then two bands or more.

        Raises:
            ConfigError: names the folder, two files of one scene and the stacking command.
        """
        if len(self.region.imagery.bands) < 2:
            return
        scenes: dict[tuple[Path, str], dict[str, Path]] = {}
        for path in paths:
            split = split_band_file(path.name)
            if split is not None:
                scenes.setdefault((path.parent, split[0]), {})[split[1]] = path
        for (folder, stem), files in scenes.items():
            if len(files) < 2:
                continue
            names = sorted(p.name for p in files.values())
            raise ConfigError(
                f"[monitor] paths: {folder} holds scene {stem or '?'} as one file per band "
                f"({names[0]}, {names[1]}, ...); a pass is one file with all of "
                f"[imagery] bands: stack each scene in that order (gdalbuildvrt -separate "
                f"{stem or 'SCENE'}.vrt FILES..., one file per band) into another folder and "
                "watch that one",
                self.region.path,
            )

    def acquisition_time(self, path: Path, mtime: float) -> tuple[datetime, AcquiredFrom, bool]:
        """Acquisition time of a file (:func:`geotl.io.dates.read_acquired`), else its mtime.

        With where it came from, and whether only its day is known.
        """
        acquired = read_acquired(path, None, self._regex.pattern if self._regex else None)
        if acquired is not None:
            return acquired.when, acquired.source, acquired.date_only
        when = datetime.fromtimestamp(mtime, tz=UTC)
        log.warning(
            "%s: acquisition time taken from the file's modification time (%s): no datetime_regex "
            "match, no TIFF DateTime tag and no date in the file name",
            path,
            when.isoformat(timespec="seconds"),
        )
        return when, "mtime", False


def _fixed_folder(pattern: Path) -> Path:
    """The folder a glob starts in: its leading parts without wildcards.

    >>> _fixed_folder(Path("/data/incoming/*.tif")), _fixed_folder(Path("/data/*/x.tif"))
    (PosixPath('/data/incoming'), PosixPath('/data'))
    """
    parts = pattern.parts
    fixed = next((i for i, part in enumerate(parts) if glob.has_magic(part)), len(parts) - 1)
    return Path(*parts[:fixed]) if fixed else Path(".")
