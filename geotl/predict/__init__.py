"""Whole scenes to seam-free detection polygons.

``predict_scene(artefact, scene_path, options)`` streams a scene through the model by
overlapping windows (bounded memory, IO overlapped with compute), blends the windows with
smooth weights and vectorises the class map window by window with an ownership rule, so
the polygons equal whole-scene vectorisation. ``predict_scenes`` runs a job over several
scenes and writes the GeoJSON, GeoPackage, QGIS style and quicklooks.
"""

from geotl.predict.core import (
    COLUMNS,
    PredictOptions,
    PredictSummary,
    SceneDetections,
    predict_scene,
    predict_scenes,
)

__all__ = [
    "COLUMNS",
    "PredictOptions",
    "PredictSummary",
    "SceneDetections",
    "predict_scene",
    "predict_scenes",
]
