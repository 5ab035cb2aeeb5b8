"""``task = "segmentation"``: areas; each connected region of a class is one object."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from affine import Affine
from rasterio.windows import Window

from geotl.predict.objects.base import ObjectExtractor, class_probabilities
from geotl.predict.vectorise import (
    EarlierRead,
    VectorObject,
    WindowExtractor,
    class_map_from_foreground,
    vectorise,
    vectorise_window,
)

if TYPE_CHECKING:
    import torch

__all__ = ["SegmentationExtractor"]


class SegmentationExtractor(ObjectExtractor):
    """Softmax over background + classes; planes: class map, score; connected regions."""

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Softmax, background dropped (:func:`~geotl.predict.objects.base.class_probabilities`)."""
        return class_probabilities(logits.float())

    def finalise(self, blended: np.ndarray, valid: np.ndarray, threshold: float) -> np.ndarray:
        """Class map and score of each pixel."""
        cm, sc = class_map_from_foreground(blended, threshold, valid)
        return np.stack([cm.astype(np.float32), sc])

    def extract(
        self, planes: np.ndarray, transform: Affine, *, simplify_px: float, min_pixels: int
    ) -> list[VectorObject]:
        """Connected regions of each class."""
        return vectorise(
            planes[0].astype(np.uint8),
            transform,
            scores=planes[1],
            simplify_px=simplify_px,
            min_pixels=min_pixels,
        )

    def window_extractor(
        self,
        scene_shape: tuple[int, int],
        transform: Affine,
        *,
        simplify_px: float,
        min_pixels: int,
    ) -> WindowExtractor:
        """:func:`geotl.predict.vectorise.vectorise_window` on the class map."""

        def extract(
            planes: np.ndarray,
            read_window: Window,
            core_window: Window,
            earlier: EarlierRead | None,
        ) -> tuple[list[VectorObject], list[tuple[int, int]]]:
            return vectorise_window(
                planes[0].astype(np.uint8),
                transform,
                read_window=read_window,
                core_window=core_window,
                scene_shape=scene_shape,
                scores=planes[1],
                simplify_px=simplify_px,
                min_pixels=min_pixels,
                earlier=earlier,
            )

        return extract
