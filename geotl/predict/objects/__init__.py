"""One object extractor per task: network outputs -> per-pixel planes -> objects.

The streaming inference (:mod:`geotl.predict.stream`) is the same for every task; what
differs is which probabilities are blended, which planes the blended probabilities become
and how the planes become objects. :func:`extractor_for` picks the task's extractor.
"""

from __future__ import annotations

from geotl.models.artefact import SEED_THRESHOLD
from geotl.predict.objects.base import ObjectExtractor
from geotl.predict.objects.instances import InstanceExtractor
from geotl.predict.objects.segmentation import SegmentationExtractor

__all__ = ["InstanceExtractor", "ObjectExtractor", "SegmentationExtractor", "extractor_for"]


def extractor_for(
    task: str, n_classes: int, *, seed_threshold: float = SEED_THRESHOLD
) -> ObjectExtractor:
    """The object extractor of a model card's ``task``.

    ``seed_threshold``: instance models' watershed seed threshold (the card's
    ``seed_threshold``, or a region's ``[predict] seed_threshold``).

    >>> type(extractor_for("instances", 1)).__name__
    'InstanceExtractor'
    """
    if task == "instances":
        return InstanceExtractor(n_classes, seed_threshold)
    # "detection" models trained as segmentation of filled boxes are read as segmentation
    return SegmentationExtractor(n_classes)
