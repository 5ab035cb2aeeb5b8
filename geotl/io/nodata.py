"""Which pixels hold data: the one rule that chips, training and prediction share.

A pixel has **no data** when

* every band holds the nodata value (compared in the data's own type), or
* any band is NaN or infinite (float data: a network cannot use such a value), or
* GDAL's masks (``read_masks``: per-band nodata, an alpha band, an internal mask), when
  the caller read them, mask it in every band; or, for the masks of a stack whose bands
  have nodata values of their own (``per_band``: ``gdalbuildvrt -separate`` over files),
  in any band: that band has no value there, and its nodata number is no reflectance.

Chips mark such pixels ignore in their masks, training leaves them out of the loss and the
normalisation statistics, prediction gives them no weight and never an object.

>>> import numpy as np
>>> nodata_mask(np.array([[[0, 5, 0]], [[0, 0, 3]]], dtype=np.uint8), 0).tolist()
[[True, False, False]]
>>> nodata_mask(np.array([[[1.0, np.nan]], [[2.0, 2.0]]]), None).tolist()
[[False, True]]
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["holds_value", "mask_fill_value", "nodata_mask", "valid_mask"]


def holds_value(dtype: np.dtype[Any], value: float) -> bool:
    """Whether a pixel of ``dtype`` can hold ``value`` (a nodata value, say).

    >>> holds_value(np.dtype("uint8"), -9999), holds_value(np.dtype("int16"), -9999)
    (False, True)
    """
    if dtype.kind not in "iu":
        return True
    info = np.iinfo(dtype)
    return float(value).is_integer() and info.min <= value <= info.max


def _all_bands_equal(data: npt.NDArray[np.generic], nodata: float | None) -> npt.NDArray[np.bool_]:
    none = np.zeros(data.shape[1:], dtype=bool)
    if nodata is None or (isinstance(nodata, float) and np.isnan(nodata)):
        return none  # NaN: the non-finite test covers it
    value: Any = nodata
    if data.dtype.kind in "iu":
        # compare in the data's own type (a float nodata would cast every pixel to float64)
        if not holds_value(data.dtype, value):
            return none  # no pixel can hold this value
        value = data.dtype.type(int(value))
    # band by band (cheaper than a (bands, h, w) comparison followed by all(axis=0))
    out = np.asarray(data[0] == value, dtype=bool)
    for band in data[1:]:
        if not out.any():
            break
        out &= np.asarray(band == value)
    return out


def nodata_mask(
    data: npt.NDArray[np.generic],
    nodata: float | None,
    masks: npt.NDArray[np.generic] | None = None,
    per_band: bool = False,
) -> npt.NDArray[np.bool_]:
    """Pixels without data (see the module's rule): ``(H, W)`` bool.

    Args:
        data: ``(bands, H, W)`` or ``(H, W)`` pixel values.
        nodata: the nodata value (None: none; NaN: only non-finite values).
        masks: optional GDAL masks of the same bands (``(bands, H, W)``, 0 = no data).
        per_band: ``masks`` are the bands' own nodata values (a stack of files with
            different ones): a pixel that any band's mask hides has no data.

    >>> data = np.array([[[1, 2]], [[-32768, 3]]], dtype=np.int16)
    >>> masks = np.array([[[255, 255]], [[0, 255]]], dtype=np.uint8)
    >>> nodata_mask(data, None, masks).tolist(), nodata_mask(data, None, masks, per_band=True).tolist()
    ([[False, False]], [[True, False]])
    """
    if data.ndim == 2:
        data = data[np.newaxis]
    out = _all_bands_equal(data, nodata)
    if np.issubdtype(data.dtype, np.floating):
        out |= ~np.isfinite(data).all(axis=0)
    if masks is not None:
        m = masks[np.newaxis] if masks.ndim == 2 else masks
        hidden = np.asarray(m == 0)
        out |= hidden.any(axis=0) if per_band else hidden.all(axis=0)
    return out


def valid_mask(
    data: npt.NDArray[np.generic],
    nodata: float | None,
    masks: npt.NDArray[np.generic] | None = None,
    per_band: bool = False,
) -> npt.NDArray[np.bool_]:
    """Pixels with data: the complement of :func:`nodata_mask`."""
    return ~nodata_mask(data, nodata, masks, per_band)


def mask_fill_value(dtype: str) -> float:
    """The nodata value that marks masked pixels (an alpha band's) in a file without one.

    NaN for floats, 0 for unsigned integers (the usual nodata of 8- and 16-bit imagery),
    the smallest value for signed ones.

    >>> mask_fill_value("uint8"), mask_fill_value("int16"), mask_fill_value("float32")
    (0.0, -32768.0, nan)
    """
    dt = np.dtype(dtype)
    if dt.kind == "f":
        return float("nan")
    return 0.0 if dt.kind == "u" else float(np.iinfo(dt).min)
