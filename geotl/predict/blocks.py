"""Blocks of window rows: one large scene predicted in parts that join into the whole.

A block owns the scene rows ``[start, stop)`` (whole rows of vectoriser core windows). It
is predicted from a crop of the scene that adds two margins on each side:

* a *vectorising* margin (``margin_px``): the block's core windows (the vectoriser's
  ownership rule: an object belongs to the core window holding its first pixel) are read
  with their halos from the *reliable* rows ``[start - margin_px, stop + margin_px)``; a
  halo that needs rows beyond them raises :class:`BlockMarginError` and the caller retries
  with a larger margin;
* an *inference* margin of one window: a reliable row is covered only by ground-anchored
  windows that lie inside the crop, so its blended probabilities, class map and scores
  equal those of the whole scene.

Objects are traced in the scene's global pixel grid with its transform, so an owned
object is the same object, with the same id and the same coordinates, as whole-scene
prediction gives; concatenating the blocks in row order gives the whole scene's objects
in its order. :func:`plan_blocks` is the arithmetic; :class:`RowBlock` wires a block into
:func:`geotl.predict.predict_scene`.

>>> plan_blocks(1000, 3, 128)
[(0, 384), (384, 768), (768, 1000)]
>>> plan_blocks(300, 4, 128)
[(0, 128), (128, 256), (256, 300)]
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from affine import Affine
from rasterio.windows import Window

from geotl.errors import GeotlRuntimeError
from geotl.predict.objects import ObjectExtractor
from geotl.predict.objects.base import PlaneReader
from geotl.predict.vectorise import VectorObject, WindowExtractor, core_windows

if TYPE_CHECKING:
    import torch

__all__ = ["BlockMarginError", "RowBlock", "plan_blocks"]


class BlockMarginError(GeotlRuntimeError):
    """An object owned by a block reaches past the block's reliable rows: widen the margin.

    Attributes:
        rows: the scene rows ``[first, stop)`` the object's read needed
            (:meth:`RowBlock.widened` covers them at once).
    """

    def __init__(self, message: str, rows: tuple[int, int] = (0, 0)) -> None:
        super().__init__(message)
        self.rows = rows


def plan_blocks(height_px: int, blocks: int, core_px: int) -> list[tuple[int, int]]:
    """Split ``height_px`` rows into at most ``blocks`` row ranges of whole core windows.

    Args:
        height_px: scene height.
        blocks: wanted number of blocks.
        core_px: the vectoriser's core window (block edges are multiples of it).

    Returns:
        ``[(start, stop), ...]`` covering ``[0, height_px)`` in order.
    """
    core_rows = max(1, math.ceil(height_px / core_px))
    per = math.ceil(core_rows / max(1, min(blocks, core_rows))) * core_px
    return [(r, min(r + per, height_px)) for r in range(0, height_px, per)]


class _CropSource:
    """Rows ``[row0, row1)`` of an open dataset, read like a dataset of its own."""

    def __init__(self, source: Any, row0: int, row1: int) -> None:
        self._source = source
        self._row0 = row0
        self.height = row1 - row0
        self.width = source.width
        self.transform = source.transform @ Affine.translation(0, row0)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._source, name)  # crs, nodata, dtypes, count, ...

    def _shift(self, window: Window) -> Window:
        return Window(window.col_off, window.row_off + self._row0, window.width, window.height)

    def read(self, indexes: Any = None, window: Window | None = None, **kw: Any) -> np.ndarray:
        win = self._shift(window) if window is not None else Window(0, 0, self.width, self.height)
        return np.asarray(self._source.read(indexes, window=win, **kw))

    def read_masks(
        self, indexes: Any = None, window: Window | None = None, **kw: Any
    ) -> np.ndarray:
        win = self._shift(window) if window is not None else Window(0, 0, self.width, self.height)
        return np.asarray(self._source.read_masks(indexes, window=win, **kw))


class _BlockExtractor(ObjectExtractor):
    """The task's extractor, restricted to the core windows a block owns, in global pixels."""

    def __init__(
        self,
        inner: ObjectExtractor,
        scene_shape: tuple[int, int],
        transform: Affine,
        crop_row0: int,
        owned: tuple[int, int],
        reliable: tuple[int, int],
    ) -> None:
        super().__init__(inner.n_classes)
        self.inner = inner
        self.planes = inner.planes
        self.scene_shape = scene_shape
        self.transform = transform
        self.crop_row0 = crop_row0
        self.owned = owned
        self.reliable = reliable

    @property
    def reach_px(self) -> int | None:
        return self.inner.reach_px

    @property
    def channels(self) -> int:
        return self.inner.channels

    @property
    def outputs(self) -> int:
        return self.inner.outputs

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return self.inner.probabilities(logits)

    def probability_names(self, classes: list[str]) -> list[str]:
        return self.inner.probability_names(classes)

    def probability_planes(self, blended: np.ndarray) -> np.ndarray:
        return self.inner.probability_planes(blended)

    def finalise(self, blended: np.ndarray, valid: np.ndarray, threshold: float) -> np.ndarray:
        return self.inner.finalise(blended, valid, threshold)

    def extract(
        self, planes: np.ndarray, transform: Affine, *, simplify_px: float, min_pixels: int
    ) -> list[VectorObject]:
        raise NotImplementedError("a block is vectorised by windows")

    def window_extractor(
        self,
        scene_shape: tuple[int, int],
        transform: Affine,
        *,
        simplify_px: float,
        min_pixels: int,
    ) -> WindowExtractor:
        return self.inner.window_extractor(
            scene_shape, transform, simplify_px=simplify_px, min_pixels=min_pixels
        )

    def reading_window_extractor(
        self,
        read: PlaneReader,
        scene_shape: tuple[int, int],
        transform: Affine,
        *,
        simplify_px: float,
        min_pixels: int,
    ) -> WindowExtractor:
        return self.inner.reading_window_extractor(
            read, scene_shape, transform, simplify_px=simplify_px, min_pixels=min_pixels
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
        """The objects of the block's core windows; ``read`` and the rest are the crop's."""
        height = self.scene_shape[0]
        o0, o1 = self.owned
        v0, v1 = self.reliable

        def read_global(r: int, c: int, h: int, w: int) -> np.ndarray:
            if (r < v0 and v0 > 0) or (r + h > v1 and v1 < height):
                raise BlockMarginError(
                    f"rows {o0}-{o1}: an object needs rows {r}-{r + h}, beyond the margin "
                    f"{v0}-{v1}",
                    (r, r + h),
                )
            return read(r - self.crop_row0, c, h, w)

        owned = [
            core
            for row in core_windows(self.scene_shape, window_px)
            for core in row
            if o0 <= core.row_off < o1
        ]
        return self.inner.extract_by_windows(
            read_global,
            self.scene_shape,
            self.transform,
            window_px=window_px,
            halo_px=halo_px,
            simplify_px=simplify_px,
            min_pixels=min_pixels,
            cores=owned,
        )


@dataclass(frozen=True)
class RowBlock:
    """Rows ``[start, stop)`` of a scene to predict alone (see the module docstring).

    Attributes:
        start: first owned row (a multiple of the vectoriser's core window).
        stop: end of the owned rows (exclusive; a multiple of it, or the scene height).
        margin_px: vectorising margin on each side.
    """

    start: int
    stop: int
    margin_px: int

    def crop(self, height_px: int, window_px: int) -> tuple[int, int]:
        """The scene rows read for this block: reliable rows plus one window each side."""
        v0, v1 = self.reliable(height_px)
        return max(v0 - window_px, 0), min(v1 + window_px, height_px)

    def reliable(self, height_px: int) -> tuple[int, int]:
        """Rows whose planes equal the whole scene's."""
        return max(self.start - self.margin_px, 0), min(self.stop + self.margin_px, height_px)

    def widened(self, needed: tuple[int, int]) -> RowBlock:
        """This block with a margin that covers the rows ``needed`` (at least twice as wide).

        Every retry predicts the whole block again, so the margin jumps straight to the
        rows the object was seen to need: on a closed canopy (NEON OSBS plots side by side,
        5,600 rows in 2 blocks) doubling alone took 4 passes per block, this 3.

        >>> RowBlock(1024, 2048, 128).widened((512, 2200))
        RowBlock(start=1024, stop=2048, margin_px=512)
        >>> RowBlock(1024, 2048, 128).widened((1000, 2100))
        RowBlock(start=1024, stop=2048, margin_px=256)
        """
        reach = max(self.start - needed[0], needed[1] - self.stop)
        return RowBlock(self.start, self.stop, max(2 * self.margin_px, reach))

    def wrap(
        self,
        source: Any,
        extractor: ObjectExtractor,
        window_px: int,
        open_source: Callable[[], contextlib.AbstractContextManager[Any]],
    ) -> tuple[Any, ObjectExtractor, Callable[[], contextlib.AbstractContextManager[Any]]]:
        """The crop to stream, the extractor that keeps the block's objects, a crop opener.

        Args:
            source: the open scene (at the model's resolution).
            extractor: the task's object extractor.
            window_px: the inference window.
            open_source: opens another handle on the scene (for reading threads).
        """
        height = source.height
        row0, row1 = self.crop(height, window_px)

        @contextlib.contextmanager
        def open_crop() -> Iterator[Any]:
            with open_source() as ds:
                yield _CropSource(ds, row0, row1)

        block_extractor = _BlockExtractor(
            extractor,
            (height, source.width),
            source.transform,
            row0,
            (self.start, self.stop),
            self.reliable(height),
        )
        return _CropSource(source, row0, row1), block_extractor, open_crop
