"""Window plans and blending weights for overlapping inference: pure arithmetic.

>>> plan = plan_windows((500, 300), window_px=256, overlap_px=64)
>>> [w.row_off for w in plan.windows[:: plan.n_cols]], [w.col_off for w in plan.windows[: plan.n_cols]]
([0, 192, 244], [0, 44])
>>> anchored = plan_windows((500, 300), window_px=256, overlap_px=64, anchor=(1000, 37))
>>> anchored.row_offsets, anchored.col_offsets
((-40, 152, 344), (-37, 155))
>>> [round(float(v), 3) for v in blend_weights_1d(6, 2)]
[0.146, 0.854, 1.0, 1.0, 0.854, 0.146]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from affine import Affine
from rasterio.windows import Window

from geotl.chips.windows import grid_offsets

__all__ = [
    "WindowPlan",
    "blend_weights",
    "blend_weights_1d",
    "clip_window",
    "ground_anchor",
    "plan_windows",
]


def clip_window(window: Window, scene_shape: tuple[int, int]) -> Window:
    """The part of ``window`` inside the scene, with integer offsets and sizes.

    A ground-anchored window may reach past the scene (negative offsets, or past the far
    edge); this is what is read of it.

    >>> clip_window(Window(5, -3, 10, 10), (6, 12))
    Window(col_off=5, row_off=0, width=7, height=6)
    """
    row0, col0 = max(int(window.row_off), 0), max(int(window.col_off), 0)
    row1 = min(int(window.row_off + window.height), scene_shape[0])
    col1 = min(int(window.col_off + window.width), scene_shape[1])
    return Window(col0, row0, col1 - col0, row1 - row0)


@dataclass(frozen=True)
class WindowPlan:
    """Overlapping windows covering a scene, in raster (row-major) order.

    ``windows[k]`` sits in row ``k // n_cols`` and column ``k % n_cols`` of the grid.
    """

    scene_shape: tuple[int, int]
    window_px: int
    overlap_px: int
    windows: tuple[Window, ...]
    row_offsets: tuple[int, ...]
    col_offsets: tuple[int, ...]

    @property
    def n_rows(self) -> int:
        """Number of window rows."""
        return len(self.row_offsets)

    @property
    def n_cols(self) -> int:
        """Number of window columns."""
        return len(self.col_offsets)

    def grid_position(self, index: int) -> tuple[int, int]:
        """``(grid_row, grid_col)`` of ``windows[index]``.

        >>> plan_windows((500, 300), 256, 64).grid_position(3)
        (1, 1)
        """
        return divmod(index, self.n_cols)

    def final_rows_after(self, grid_row: int) -> int:
        """Scene rows that no later window row touches once ``grid_row`` is done.

        >>> plan_windows((500, 300), 256, 64).final_rows_after(0)
        192
        """
        if grid_row + 1 >= self.n_rows:
            return self.scene_shape[0]
        return max(0, min(self.row_offsets[grid_row + 1], self.scene_shape[0]))


def _offsets(length: int, window_px: int, stride_px: int) -> tuple[int, ...]:
    # the chip grid (last window flush with the scene edge), or one window when the scene
    # is smaller than a window
    return tuple(grid_offsets(length, window_px, stride_px)) or (0,)


def _anchored_offsets(length: int, window_px: int, stride_px: int, anchor: int) -> tuple[int, ...]:
    # windows start where the global pixel index (anchor + offset) is a multiple of the
    # stride; the first starts at or before 0, the last ends at or after ``length``
    off = -(anchor % stride_px)
    out = [off]
    while off + window_px < length:
        off += stride_px
        out.append(off)
    return tuple(out)


def plan_windows(
    scene_shape: tuple[int, int],
    window_px: int,
    overlap_px: int,
    anchor: tuple[int, int] | None = None,
) -> WindowPlan:
    """Plan windows of ``window_px`` with at least ``overlap_px`` overlap over a scene.

    Without ``anchor``, windows never extend past the scene (the last one in a row or
    column is shifted to end at the edge); a scene smaller than a window gets one window of
    the scene's size, which the reader pads.

    With ``anchor`` (the scene's first row and column in a grid fixed to the ground, e.g.
    its origin in the CRS divided by the pixel size), windows sit on that ground grid: a
    window starts wherever the ground-grid index is a multiple of the stride, so two scenes
    of the same ground cropped differently get the same windows over their common ground,
    and the same predictions there. Windows then reach past the scene edges (offsets may be
    negative, every window is ``window_px`` square); the reader pads them.

    Args:
        scene_shape: ``(height, width)`` in pixels.
        window_px: window size.
        overlap_px: overlap between neighbouring windows (``< window_px``).
        anchor: ``(row, col)`` of the scene's first pixel in the ground grid.

    Returns:
        The plan.
    """
    if window_px <= 0 or not 0 <= overlap_px < window_px:
        raise ValueError("need window_px > 0 and 0 <= overlap_px < window_px")
    height, width = scene_shape
    stride = window_px - overlap_px
    if anchor is None:
        rows, cols = _offsets(height, window_px, stride), _offsets(width, window_px, stride)
        win_h, win_w = min(window_px, height), min(window_px, width)
    else:
        rows = _anchored_offsets(height, window_px, stride, anchor[0])
        cols = _anchored_offsets(width, window_px, stride, anchor[1])
        win_h = win_w = window_px
    windows = tuple(Window(c, r, win_w, win_h) for r in rows for c in cols)
    return WindowPlan(scene_shape, window_px, overlap_px, windows, rows, cols)


def ground_anchor(transform: Affine) -> tuple[int, int] | None:
    """``(row, col)`` of a scene's first pixel in the grid of its pixel size from the CRS origin.

    None for rotated or sheared grids (their windows start at the scene's corner).

    >>> ground_anchor(Affine(0.1, 0, 404_003.7, 0, -0.1, 3_285_000.0))
    (-32850000, 4040037)
    """
    if transform.b != 0 or transform.d != 0 or transform.a == 0 or transform.e == 0:
        return None
    return round(transform.f / transform.e), round(transform.c / transform.a)


def blend_weights_1d(size_px: int, ramp_px: int) -> np.ndarray:
    """Raised-cosine ramp up over ``ramp_px`` pixels, flat 1, ramp down: never zero.

    Overlapping predictions are averaged with these weights, so a window's edge (where a
    CNN sees least context) counts least and the blend changes smoothly: no seam.
    """
    w = np.ones(size_px, dtype=np.float32)
    ramp_px = min(ramp_px, size_px // 2)
    if ramp_px > 0:
        x = (np.arange(ramp_px, dtype=np.float32) + 0.5) / ramp_px
        up = 0.5 - 0.5 * np.cos(np.pi * x)
        w[:ramp_px] = up
        w[size_px - ramp_px :] = up[::-1]
    return w


def blend_weights(height_px: int, width_px: int, ramp_px: int) -> np.ndarray:
    """2-D blending weights: the outer product of two :func:`blend_weights_1d`.

    >>> w = blend_weights(8, 8, 3)
    >>> bool((w > 0).all()), float(w.max()), w.shape
    (True, 1.0, (8, 8))
    """
    return np.outer(blend_weights_1d(height_px, ramp_px), blend_weights_1d(width_px, ramp_px))
