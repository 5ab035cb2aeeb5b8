"""``qml``: the QGIS style beside the GeoJSON (QGIS loads ``NAME.qml`` with ``NAME.geojson``)."""

from __future__ import annotations

from pathlib import Path

from geotl.io.atomic import atomic_write_text
from geotl.predict.outputs.base import OutputWriter, Prediction
from geotl.predict.outputs.style import qml_style

__all__ = ["QmlWriter", "write_qml"]


def write_qml(path: Path, classes: list[str]) -> Path:
    """Write the QGIS style file (``.qml``) for detections of ``classes``."""
    atomic_write_text(path, qml_style(classes))
    return path


class QmlWriter(OutputWriter):
    """Fill coloured by class, label showing the score."""

    format = "qml"

    def write(self, path: Path, prediction: Prediction) -> Path:
        """Write the style for the model's classes."""
        return write_qml(path, prediction.classes)
