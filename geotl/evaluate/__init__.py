"""Evaluate a model on a region's test split; label-efficiency curves.

One module per concept:

- :mod:`.core`: :func:`evaluate_model`, ``geotl evaluate``'s entry point (chips found or
  cut, the task's scorer, the metrics JSON);
- :mod:`.segmentation`: segmentation and instance models, pixel IoU/F1 per class and
  object P/R/F1 with count ratios (polygons of the task's object extractor);
- :mod:`.detection`: detection models, object P/R/F1 at IoU 0.4 and 0.5 on boxes and COCO
  AP50;
- :mod:`.matching`: one-to-one pairing of predicted and labelled polygons or boxes;
- :mod:`.scores`: per-chip counts to reported numbers (bootstrap CIs over chips, 95 % by
  default; count ratios; rounding);
- :mod:`.curve`: label-efficiency curves (train and evaluate per label budget and base).
"""

from __future__ import annotations

from geotl.evaluate.chips import find_chips
from geotl.evaluate.core import evaluate_model, headline
from geotl.evaluate.curve import label_curve, plot_curve
from geotl.evaluate.detection import (
    AP_RESAMPLES,
    DETECTION_IOUS,
    average_precision_50,
    detect_chips,
    detection_scores,
)
from geotl.evaluate.matching import MATCH_IOU, match_boxes, match_objects
from geotl.evaluate.scores import bootstrap_ci
from geotl.evaluate.segmentation import evaluate_chips

# the name scripts/bench_predict.py and bench_int8.py import (they score an engine, not a
# model folder)
_evaluate_chips = evaluate_chips

__all__ = [
    "AP_RESAMPLES",
    "DETECTION_IOUS",
    "MATCH_IOU",
    "average_precision_50",
    "bootstrap_ci",
    "detect_chips",
    "detection_scores",
    "evaluate_chips",
    "evaluate_model",
    "find_chips",
    "headline",
    "label_curve",
    "match_boxes",
    "match_objects",
    "plot_curve",
]
