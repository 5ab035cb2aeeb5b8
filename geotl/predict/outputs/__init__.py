"""Prediction outputs, one module per format, registered in :data:`WRITERS` by format name.

- ``geojson`` (:mod:`.geojson`): every detection, EPSG:4326;
- ``qml`` (:mod:`.qml`): the QGIS style beside it;
- ``gpkg`` (:mod:`.gpkg`): detections in each scene's CRS, styled for QGIS;
- ``quicklook`` (:mod:`.quicklook`): a PNG per scene with its detections;
- ``probabilities`` (:mod:`.cog`): the class probabilities as a COG, converted from the
  GeoTIFF the stream writes while it predicts (so not a :class:`OutputWriter`), and its
  QGIS style beside it.

Colours and the QML text live in :mod:`.style`. Every file is written atomically.
"""

from __future__ import annotations

from geotl.predict.outputs.base import OutputWriter, Prediction, ScenePrediction
from geotl.predict.outputs.cog import write_cog, write_probabilities_qml
from geotl.predict.outputs.geojson import GeoJSONWriter
from geotl.predict.outputs.gpkg import GpkgWriter, write_gpkg
from geotl.predict.outputs.qml import QmlWriter, write_qml
from geotl.predict.outputs.quicklook import QuicklookWriter, write_quicklook
from geotl.predict.outputs.style import CLASS_COLOURS, qml_style

__all__ = [
    "CLASS_COLOURS",
    "WRITERS",
    "OutputWriter",
    "Prediction",
    "ScenePrediction",
    "qml_style",
    "write_cog",
    "write_gpkg",
    "write_probabilities_qml",
    "write_qml",
    "write_quicklook",
]

#: Format name -> its writer.
WRITERS: dict[str, OutputWriter] = {
    GeoJSONWriter.format: GeoJSONWriter(),
    QmlWriter.format: QmlWriter(),
    GpkgWriter.format: GpkgWriter(),
    QuicklookWriter.format: QuicklookWriter(),
}
