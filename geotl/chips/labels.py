"""Label rasterisation: polygons of one chip -> a uint8 mask.

Mask values: 0 background, ``i`` for ``classes[i - 1]``, 255 ignore (scene nodata, or
outside the areas where labelling is complete).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from affine import Affine
from rasterio.features import rasterize
from shapely.geometry.base import BaseGeometry

__all__ = ["IGNORE", "class_pixel_counts", "nodata_mask", "rasterize_chip"]

IGNORE = 255


def rasterize_chip(
    shapes: Sequence[tuple[BaseGeometry, int]],
    transform: Affine,
    height: int,
    width: int,
    ignore: npt.NDArray[np.bool_] | None = None,
    complete: Sequence[BaseGeometry] | None = None,
) -> npt.NDArray[np.uint8]:
    """Burn class ids into a chip's mask.

    Pixels whose centre lies in a polygon take its class id (``all_touched=False``); where
    polygons of different classes overlap, the higher class id wins.

    Args:
        shapes: (polygon, class id >= 1) pairs in the chip's CRS.
        transform: the chip's affine transform.
        height: mask height in pixels.
        width: mask width in pixels.
        ignore: pixels to mark 255 (e.g. scene nodata).
        complete: when given, pixels outside these polygons are 255 (labels are only
            exhaustive inside them); an empty sequence makes the whole chip 255.

    >>> from shapely.geometry import box
    >>> from affine import Affine
    >>> m = rasterize_chip([(box(0, -2, 2, 0), 1)], Affine(1, 0, 0, 0, -1, 0), 4, 4)
    >>> m.tolist()
    [[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    """
    mask = np.zeros((height, width), dtype=np.uint8)
    if shapes:
        ordered = sorted(shapes, key=lambda s: s[1])
        rasterize(
            ordered,
            out=mask,
            transform=transform,
            all_touched=False,
            dtype="uint8",
        )
    if complete is not None:
        inside = np.zeros((height, width), dtype=np.uint8)
        if complete:
            rasterize(
                [(g, 1) for g in complete],
                out=inside,
                transform=transform,
                all_touched=False,
                dtype="uint8",
            )
        mask[inside == 0] = IGNORE
    if ignore is not None:
        mask[ignore] = IGNORE
    return mask


def nodata_mask(data: npt.NDArray[np.generic], nodata: float | None) -> npt.NDArray[np.bool_]:
    """Pixels that are nodata in every band (NaN counts as nodata for float data).

    >>> import numpy as np
    >>> nodata_mask(np.array([[[0, 5]], [[0, 0]]]), 0).tolist()
    [[True, False]]
    """
    if data.ndim == 2:
        data = data[np.newaxis]
    nan = np.isnan(data) if np.issubdtype(data.dtype, np.floating) else None
    if nodata is None or (isinstance(nodata, float) and np.isnan(nodata)):
        if nan is None:
            return np.zeros(data.shape[1:], dtype=bool)
        return np.asarray(nan.all(axis=0))
    is_nd = data == nodata
    if nan is not None:
        is_nd |= nan
    return np.asarray(is_nd.all(axis=0))


def class_pixel_counts(mask: npt.NDArray[np.uint8], n_classes: int) -> list[int]:
    """Pixel counts ``[background, class 1, ..., class n, ignore]``.

    >>> import numpy as np
    >>> class_pixel_counts(np.array([[0, 1], [255, 1]], dtype=np.uint8), 1)
    [1, 2, 1]
    """
    counts = np.bincount(mask.ravel(), minlength=256)
    return [int(c) for c in counts[: n_classes + 1]] + [int(counts[IGNORE])]
