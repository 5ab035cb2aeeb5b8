"""Pure grid arithmetic: where the chips of a scene lie.

Chips form a regular grid of ``size_px`` with ``stride_px`` steps. The last row and column
are shifted back so that they end at the scene's edge: every chip lies fully inside the
scene and no padding is ever needed. Scenes smaller than a chip give no chips.

A chip's window is rasterio's :class:`~rasterio.windows.Window` with integer offsets and
sizes (``Window(col_off, row_off, width, height)``), the one window type of geotl.
"""

from __future__ import annotations

from rasterio.windows import Window

__all__ = ["chip_windows", "grid_offsets"]


def grid_offsets(length_px: int, size_px: int, stride_px: int) -> list[int]:
    """Start offsets of chips along one axis, the last one shifted back to fit.

    Args:
        length_px: the scene's extent along the axis.
        size_px: the chip size.
        stride_px: the step between chips.

    Returns:
        Sorted, unique offsets; empty when the scene is smaller than a chip.

    >>> grid_offsets(400, 128, 128)
    [0, 128, 256, 272]
    >>> grid_offsets(256, 128, 128)
    [0, 128]
    >>> grid_offsets(300, 128, 64)
    [0, 64, 128, 172]
    >>> grid_offsets(100, 128, 128)
    []
    """
    if size_px <= 0 or stride_px <= 0:
        raise ValueError("size_px and stride_px must be positive")
    if length_px < size_px:
        return []
    last = length_px - size_px
    offsets = list(range(0, last + 1, stride_px))
    if offsets[-1] != last:
        offsets.append(last)
    return offsets


def chip_windows(width_px: int, height_px: int, size_px: int, stride_px: int) -> list[Window]:
    """All chip windows of a scene, row by row.

    >>> [(w.row_off, w.col_off) for w in chip_windows(300, 200, 128, 128)]
    [(0, 0), (0, 128), (0, 172), (72, 0), (72, 128), (72, 172)]
    >>> chip_windows(100, 500, 128, 128)
    []
    """
    rows = grid_offsets(height_px, size_px, stride_px)
    cols = grid_offsets(width_px, size_px, stride_px)
    return [Window(c, r, size_px, size_px) for r in rows for c in cols]
