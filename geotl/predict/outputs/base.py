"""What an output writer gets, and what it must provide."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Protocol

import geopandas as gpd

__all__ = ["OutputWriter", "Prediction", "ScenePrediction", "scene_file_part"]


class ScenePrediction(Protocol):
    """One predicted scene, as writers see it (:class:`geotl.predict.SceneDetections`)."""

    @property
    def scene(self) -> Path:
        """The scene file."""
        ...

    @property
    def name(self) -> str:
        """What the outputs call it (unique among the job's scenes)."""
        ...

    @property
    def features(self) -> gpd.GeoDataFrame:
        """Its detections in EPSG:4326."""
        ...

    @property
    def native(self) -> gpd.GeoDataFrame:
        """The same detections in the scene's CRS."""
        ...

    @property
    def rgb_indexes(self) -> list[int]:
        """1-based scene bands to show as red, green, blue."""
        ...

    @property
    def mask_bands(self) -> tuple[int, ...]:
        """The bands whose GDAL masks told prediction which pixels hold data."""
        ...

    @property
    def nodata(self) -> float | None:
        """The nodata value prediction read the scene with (None: the file's)."""
        ...


@dataclass(frozen=True)
class Prediction:
    """What a job predicted: everything an output may be written from.

    Attributes:
        features: all detections, EPSG:4326 (the GeoJSON's content).
        scenes: the scenes predicted (one for per-scene outputs).
        classes: the model's classes (styles and colours).
        task: the model's task (what its polygons are: detections, objects, areas).
    """

    features: gpd.GeoDataFrame
    scenes: Sequence[ScenePrediction]
    classes: list[str]
    task: str = "detection"


class OutputWriter(ABC):
    """One output format (registered in :data:`geotl.predict.outputs.WRITERS`).

    Attributes:
        format: the registry key (``geojson``, ``gpkg``...).
        per_scene: written once per scene (its :class:`Prediction` holds that scene only)
            instead of once per job.
    """

    format: ClassVar[str]
    per_scene: ClassVar[bool] = False

    @abstractmethod
    def write(self, path: Path, prediction: Prediction) -> Path:
        """Write ``prediction`` to ``path`` atomically (temporary name, then rename)."""


def scene_file_part(name: str) -> str:
    """A scene's name as part of a file or layer name: without its suffix, ``/`` as ``_``.

    A subdataset's ``:`` and ``"`` too (``GTIFF_DIR:2:mp.tif``): a file named with them is
    invalid on Windows, and GDAL would read it as a subdataset's name.

    >>> scene_file_part("2023/plot.tif"), scene_file_part("plot.tif")
    ('2023_plot', 'plot')
    >>> scene_file_part("GTIFF_DIR:2:mp.tif"), scene_file_part('netCDF:"s.nc":Band1')
    ('GTIFF_DIR_2_mp', 'netCDF_s.nc_Band1')
    """
    path = Path(name)
    stem = name if re.search(r'[:"]', path.suffix) else str(path.with_suffix(""))
    return re.sub(r"[:/]", "_", stem.replace('"', ""))
