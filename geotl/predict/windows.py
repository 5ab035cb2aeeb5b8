"""Window plans and blending weights for overlapping inference: pure arithmetic.

>>> plan = plan_windows((500, 300), window_px=256, overlap_px=64)
>>> [w.row_off for w in plan.windows[:: plan.n_cols]], [w.col_off for w in plan.windows[: plan.n_cols]]
([0, 192, 244], [0, 44])
>>> [round(float(v), 3) for v in blend_weights_1d(6, 2)]
[0.146, 0.854, 1.0, 1.0, 0.854, 0.146]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from geotl.chips.windows import grid_offsets

__all__ = ["PixelWindow", "WindowPlan", "blend_weights", "blend_weights_1d", "plan_windows"]


@dataclass(frozen=True)
class PixelWindow:
    """A window of the scene grid: offsets and size in pixels, and its grid position."""

    row_off: int
    col_off: int
    height: int
    width: int
    grid_row: int
    grid_col: int


@dataclass(frozen=True)
class WindowPlan:
    """Overlapping windows covering a scene, in raster (row-major) order."""

    scene_shape: tuple[int, int]
    window_px: int
    overlap_px: int
    windows: tuple[PixelWindow, ...]
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

    def final_rows_after(self, grid_row: int) -> int:
        """Scene rows that no later window row touches once ``grid_row`` is done.

        >>> plan_windows((500, 300), 256, 64).final_rows_after(0)
        192
        """
        if grid_row + 1 >= self.n_rows:
            return self.scene_shape[0]
        return self.row_offsets[grid_row + 1]


def _offsets(length: int, window_px: int, stride_px: int) -> tuple[int, ...]:
    # the chip grid (last window flush with the scene edge), or one window when the scene
    # is smaller than a window
    return tuple(grid_offsets(length, window_px, stride_px)) or (0,)


def plan_windows(scene_shape: tuple[int, int], window_px: int, overlap_px: int) -> WindowPlan:
    """Plan windows of ``window_px`` with at least ``overlap_px`` overlap over a scene.

    Windows never extend past the scene (the last one in a row or column is shifted to end
    at the edge); a scene smaller than a window gets one window of the scene's size, which
    the reader pads.

    Args:
        scene_shape: ``(height, width)`` in pixels.
        window_px: window size.
        overlap_px: overlap between neighbouring windows (``< window_px``).

    Returns:
        The plan.
    """
    if window_px <= 0 or not 0 <= overlap_px < window_px:
        raise ValueError("need window_px > 0 and 0 <= overlap_px < window_px")
    height, width = scene_shape
    stride = window_px - overlap_px
    rows, cols = _offsets(height, window_px, stride), _offsets(width, window_px, stride)
    windows = tuple(
        PixelWindow(r, c, min(window_px, height), min(window_px, width), i, j)
        for i, r in enumerate(rows)
        for j, c in enumerate(cols)
    )
    return WindowPlan(scene_shape, window_px, overlap_px, windows, rows, cols)


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
