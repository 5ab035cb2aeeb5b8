"""What a scene source must provide: the protocol the pass runner talks to.

A source declares its ``[monitor]`` keys as ``Options`` (a :class:`~geotl.config.SourceOptions`
model: the region file is checked against it when it is loaded), is built from the region
(``cls(region)``, its keys then in ``self.options``) and answers four questions:

* :meth:`SceneSource.discover`: which scenes are new or changed (the state decides which of
  them still need processing);
* :meth:`SceneSource.band_names`: the bands of a scene, in file order (checked against the
  model's bands before anything runs);
* :meth:`SceneSource.refresh`: the scene again, read fresh before a retry (a catalogue may
  have fixed an item's assets); ``None`` when the source cannot or need not;
* :meth:`SceneSource.open_scene`: a path prediction can open, with the GDAL settings that
  reading it needs active (a local file as is; remote assets as a VRT read by range requests).

Only ``discover`` and ``band_names`` are abstract; the defaults of the other two handle local
files and HTTP assets, so most new sources only find scenes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import ClassVar, Literal

from geotl.config import MonitorConfig, Region, SourceOptions
from geotl.errors import ConfigError
from geotl.models.artefact import ModelCard
from geotl.monitor.sources.remote import remote_gdal_env, write_scene_vrt
from geotl.monitor.sources.scene import Scene

__all__ = ["RepublishedOptions", "SceneSource", "monitor_config"]


def monitor_config(region: Region) -> MonitorConfig:
    """The region's ``[monitor]`` table.

    Raises:
        ConfigError: the region has none.
    """
    if region.monitor is None:
        raise ConfigError(
            "no [monitor] table: add one with source = 'folder' and paths = ['incoming/*.tif']",
            region.path,
        )
    return region.monitor


class RepublishedOptions(SourceOptions):
    """The ``[monitor]`` key of sources whose passes can be published again.

    Attributes:
        republished: what to do with an item or file that re-publishes a pass already done
            (the same acquisition over the same ground under a new STAC item id, a STAC item
            updated in place, a re-delivered file with other bytes; see
            :mod:`geotl.monitor.republished`): ``"skip"`` records it and keeps the pass as
            it is; ``"replace"`` predicts the pass again from it, under the pass's name.
    """

    republished: Literal["skip", "replace"] = "skip"


class SceneSource(ABC):
    """Where a monitored region's new passes come from (``[monitor] source``).

    Attributes:
        kind: the ``source`` name in region files; also recorded with each scene in the state.
        Options: the model of the source's own ``[monitor]`` keys (strict: unknown keys fail).
        region: the region being watched.
        options: the region's ``[monitor]`` keys of this source (a subclass narrows the type).
    """

    kind: ClassVar[str]
    Options: ClassVar[type[SourceOptions]]
    options: SourceOptions

    def __init__(self, region: Region) -> None:
        """Keep the region and its source options.

        Raises:
            ConfigError: the region has no ``[monitor]`` table, or one for another source.
        """
        self.region = region
        options = monitor_config(region).options
        if not isinstance(options, self.Options):
            raise ConfigError(
                f"[monitor] source is '{monitor_config(region).source}', not '{self.kind}'",
                region.path,
            )
        self.options = options

    @abstractmethod
    def discover(self, known: Mapping[str, str], since: datetime | None) -> list[Scene]:
        """Scenes that are not in ``known`` (key -> fingerprint) or whose fingerprint changed.

        ``since`` is the acquisition time of the newest scene seen so far, or of an older one
        whose job is no longer retried (sources that search a catalogue use it to ask only for
        items from then on; folder sources ignore it).

        Raises:
            GeotlRuntimeError: the source cannot be searched (the run fails; ``--every`` retries).
        """

    @abstractmethod
    def band_names(self) -> list[str]:
        """The bands of an opened scene, in order."""

    def refresh(self, scene: Scene) -> Scene | None:
        """``scene`` read again before a retry; None when unchanged or unknown (the default)."""
        del scene
        return None

    @contextmanager
    def open_scene(
        self, scene: Scene, work_dir: Path, card: ModelCard | None = None
    ) -> Iterator[Path]:
        """Yield a path prediction can open, with the settings to read it active.

        A local scene is its file; a remote one becomes a VRT in ``work_dir`` (the runner
        deletes that folder after each pass) read under :func:`remote_gdal_env`; with the
        model's ``card``, the VRT applies the catalogue's scale and offset when the model
        was trained on values in those units (:mod:`geotl.monitor.sources.scaling`).

        Raises:
            SceneError: a remote asset is missing, unreachable or on another grid.
        """
        if not scene.is_remote:
            yield Path(scene.uri)
            return
        # the bands in the source's order (a state written by an older geotl kept the
        # assets sorted by band name)
        order = [b for b in self.band_names() if b in scene.assets]
        if sorted(order) == sorted(scene.assets):
            scene = replace(scene, assets={b: scene.assets[b] for b in order})
        with remote_gdal_env():
            yield write_scene_vrt(scene, work_dir / f"{scene.name}.vrt", card)
