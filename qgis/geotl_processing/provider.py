"""The geotl Processing provider: its algorithms and the ``geotl executable`` setting."""

from __future__ import annotations

from pathlib import Path

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from .algorithms import (
    MonitorStatusAlgorithm,
    PredictAlgorithm,
    SuggestAlgorithm,
    TrainAlgorithm,
    warm_base_models,
)
from .cli import default_executable
from .settings import GEOTL_EXECUTABLE, executable

ICON = Path(__file__).resolve().parent / "icon.svg"


class GeotlProvider(QgsProcessingProvider):
    """Algorithms that run the geotl command line."""

    def __init__(self, warm: bool = True) -> None:
        super().__init__()
        self._warm = warm

    def id(self) -> str:
        return "geotl"

    def name(self) -> str:
        return "geotl"

    def longName(self) -> str:
        return "geotl: adapt remote-sensing models to a region, predict, monitor"

    def icon(self) -> QIcon:
        return QIcon(str(ICON))

    def svgIconPath(self) -> str:
        return str(ICON)

    def load(self) -> bool:
        from processing.core.ProcessingConfig import ProcessingConfig, Setting

        ProcessingConfig.settingIcons[self.name()] = self.icon()
        ProcessingConfig.addSetting(
            Setting(
                self.name(),
                GEOTL_EXECUTABLE,
                "geotl executable",
                default_executable(),
                valuetype=Setting.FILE,
            )
        )
        ProcessingConfig.readSettings()
        self.refreshAlgorithms()
        if self._warm:  # the base-model list takes seconds (geotl imports torch)
            warm_base_models(executable())
        return True

    def unload(self) -> None:
        from processing.core.ProcessingConfig import ProcessingConfig

        ProcessingConfig.removeSetting(GEOTL_EXECUTABLE)

    def loadAlgorithms(self) -> None:
        for alg in (
            PredictAlgorithm(),
            SuggestAlgorithm(),
            TrainAlgorithm(),
            MonitorStatusAlgorithm(),
        ):
            self.addAlgorithm(alg)

    def supportedOutputVectorLayerExtensions(self) -> list:
        # predict writes GeoJSON; the monitor table may go anywhere OGR writes
        return ["geojson", "gpkg", "csv"]

    def defaultVectorFileExtension(self, hasGeometry: bool = True) -> str:
        return "geojson"

    def supportedOutputRasterLayerExtensions(self) -> list:
        return ["tif"]

    def defaultRasterFileExtension(self) -> str:
        return "tif"
