"""``geojson``: all detections in EPSG:4326 (the output every job writes)."""

from __future__ import annotations

from pathlib import Path

from geotl.io.geojson import write_geojson
from geotl.predict.outputs.base import OutputWriter, Prediction

__all__ = ["GeoJSONWriter"]


class GeoJSONWriter(OutputWriter):
    """RFC 7946 GeoJSON (see :func:`geotl.io.geojson.write_geojson`)."""

    format = "geojson"

    def write(self, path: Path, prediction: Prediction) -> Path:
        """Write every detection of the job."""
        write_geojson(path, prediction.features)
        return path
