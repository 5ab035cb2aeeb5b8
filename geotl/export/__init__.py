"""Portable models: ONNX export (+ int8, Deepness metadata) and STAC MLM items.

``export_onnx(model_dir, out)`` writes a graph with the normalisation folded in and the
model card (and the Deepness QGIS plugin's keys) as metadata; ``read_onnx(path)`` verifies
one (graph sha256) and returns its card. ``geotl.export.quantise`` calibrates int8 on the
region's training chips; ``geotl.export.stac`` describes a model as a STAC item with the
Machine Learning Model extension.
"""

from geotl.export.onnx import ExportResult, OnnxModel, export_onnx, read_onnx

__all__ = ["ExportResult", "OnnxModel", "export_onnx", "read_onnx"]
