"""Whole scenes to seam-free detection polygons.

``predict_scene(artefact, scene_path, options)`` streams a scene through the model by
overlapping windows (bounded memory, IO overlapped with compute), blends the windows with
smooth weights and vectorises the class map window by window with an ownership rule, so
the polygons equal whole-scene vectorisation. ``predict_scenes`` runs a job over several
scenes and writes the GeoJSON, GeoPackage, QGIS style and quicklooks.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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


def __getattr__(name: str) -> Any:
    # imported on first use: the vectorising pool's processes import this package for
    # geotl.predict.strips alone, and must not load torch and the models (4 s of CPU)
    if name in __all__:
        from geotl.predict import core

        return getattr(core, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
