"""How a monitor run behaves, and the detector it calls on each scene."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd

from geotl.models.artefact import Artefact
from geotl.monitor.sources import Scene

__all__ = ["Detector", "MonitorOptions"]

#: A function that turns one scene into detections (EPSG:4326, predict's columns).
Detector = Callable[[Artefact, Path, Scene], gpd.GeoDataFrame]


@dataclass(frozen=True)
class MonitorOptions:
    """How a monitor run behaves.

    Attributes:
        out_dir: the output folder; the region's files go to ``out_dir/<region name>``.
        model_dir: the model artefact (default: ``[monitor] model`` of the region).
        reprocess: redo scenes already processed by another model with this model.
        retry_failed: retry failed scenes now, ignoring their backoff.
        device: torch device for prediction.
        retry_base_s: backoff after the first failure; doubles with each further failure.
        retry_max_s: longest backoff.
        max_attempts: after this many failures a scene is no longer retried automatically.
        cluster: predict the passes on Dask workers (``local:N`` or ``tcp://HOST:PORT``,
            :mod:`geotl.cluster`); the state, the lock and every output stay here.
        resample: passes at another ground resolution are resampled to the model's.
    """

    out_dir: Path
    model_dir: Path | None = None
    reprocess: bool = False
    retry_failed: bool = False
    device: str = "cpu"
    retry_base_s: float = 600.0
    retry_max_s: float = 86_400.0
    max_attempts: int = 8
    cluster: str | None = None
    resample: bool = False
