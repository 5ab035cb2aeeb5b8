"""The interface every task's object extractor implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

import numpy as np
from affine import Affine
from rasterio.windows import Window

from geotl.predict.vectorise import VectorObject, WindowExtractor, objects_by_windows

if TYPE_CHECKING:  # imported where logits are: the strip workers (no logits) never load torch
    import torch

__all__ = ["ObjectExtractor", "PlaneReader", "class_probabilities"]

PlaneReader = Callable[[int, int, int, int], np.ndarray]
"""``read(row_off, col_off, height, width) -> planes (P, height, width) float32``."""


def class_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """Softmax over background + classes ``(B, 1 + n, H, W)``, background dropped.

    One class is ``sigmoid(class - background)``, the same number: a two-way softmax over
    the channel axis took 2.3x as long on the CPU (its strided reductions), a cost the
    CPU pays for every window of a scene. Several classes take the softmax.

    >>> import torch
    >>> x = torch.tensor([[[[0.5]], [[2.0]]]])
    >>> round(float(class_probabilities(x)), 6) == round(float(torch.softmax(x, 1)[0, 1]), 6)
    True
    """
    import torch

    if logits.shape[1] == 2:
        return torch.sigmoid(logits[:, 1:] - logits[:, :1])
    return torch.softmax(logits, dim=1)[:, 1:]


class ObjectExtractor(ABC):
    """How one task turns network logits into objects.

    Three steps, each a pure function of its input so that window-by-window processing
    equals whole-scene processing:

    1. :meth:`probabilities`: logits -> the ``channels`` probabilities blended across
       overlapping windows;
    2. :meth:`finalise`: blended probabilities of a pixel -> its ``planes`` (class, score,
       ...), pixel by pixel;
    3. :meth:`extract` / :meth:`extract_by_windows`: planes -> objects.

    Attributes:
        n_classes: foreground classes of the model.
    """

    planes: int = 2

    def __init__(self, n_classes: int) -> None:
        self.n_classes = n_classes

    @property
    def reach_px(self) -> int | None:
        """How far around a core window its reads need to grow at most (None: unbounded).

        Objects are read whole, so the halo grows until they are; a task that splits wider
        objects otherwise (an instance model's tiles) says where its reads stop.
        """
        return None

    @property
    def channels(self) -> int:
        """How many probability channels are blended."""
        return self.n_classes

    @property
    def outputs(self) -> int:
        """How many logits the network gives per pixel."""
        return self.n_classes + 1

    @abstractmethod
    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """``(B, outputs, H, W)`` logits -> ``(B, channels, H, W)`` probabilities."""

    def probability_names(self, classes: list[str]) -> list[str]:
        """Names of the bands :meth:`probability_planes` gives: the foreground classes."""
        return list(classes)

    def probability_planes(self, blended: np.ndarray) -> np.ndarray:
        """What ``--probabilities`` writes of blended channels: ``(bands, H, W)``.

        The foreground class probabilities first (``n_classes`` bands), then any maps of
        the task's own (named by :meth:`probability_names`).
        """
        return blended[: self.n_classes]

    @abstractmethod
    def finalise(self, blended: np.ndarray, valid: np.ndarray, threshold: float) -> np.ndarray:
        """Blended ``(channels, H, W)`` -> ``(planes, H, W)`` float32 (plane 0: class map)."""

    @abstractmethod
    def extract(
        self, planes: np.ndarray, transform: Affine, *, simplify_px: float, min_pixels: int
    ) -> list[VectorObject]:
        """Objects of a whole array of planes (a chip, or a small scene)."""

    @abstractmethod
    def window_extractor(
        self,
        scene_shape: tuple[int, int],
        transform: Affine,
        *,
        simplify_px: float,
        min_pixels: int,
    ) -> WindowExtractor:
        """The objects a core window owns, from its planes read with a halo.

        The returned function takes ``(planes, read_window, core_window)`` and gives
        ``(owned objects, complete)`` (see :func:`geotl.predict.vectorise.objects_by_windows`).
        """

    def reading_window_extractor(
        self,
        read: PlaneReader,
        scene_shape: tuple[int, int],
        transform: Affine,
        *,
        simplify_px: float,
        min_pixels: int,
    ) -> WindowExtractor:
        """:meth:`window_extractor`, for a task that may read more of the scene (``read``).

        An instance model splits a cluster wider than a window's reach by tiles of the
        scene grid, read on their own; the other tasks read only the window they are given.
        """
        return self.window_extractor(
            scene_shape, transform, simplify_px=simplify_px, min_pixels=min_pixels
        )

    def extract_by_windows(
        self,
        read: PlaneReader,
        scene_shape: tuple[int, int],
        transform: Affine,
        *,
        window_px: int,
        halo_px: int,
        simplify_px: float,
        min_pixels: int,
        cores: Iterable[Window] | None = None,
    ) -> Iterator[VectorObject]:
        """Objects of a scene, window by window; equal to :meth:`extract` on the whole scene.

        ``cores``: only the objects these core windows own (default: every core window).
        """
        extract = self.reading_window_extractor(
            read, scene_shape, transform, simplify_px=simplify_px, min_pixels=min_pixels
        )
        return objects_by_windows(
            read,
            extract,
            scene_shape,
            window_px=window_px,
            halo_px=halo_px,
            cores=cores,
            reach_px=self.reach_px,
        )
