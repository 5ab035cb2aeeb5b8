"""From per-chip counts to reported numbers: bootstrap intervals, count ratios, rounding.

Confidence intervals are percentile bootstraps over test chips: chips are resampled with
replacement and each metric is recomputed from the summed counts (95 % by default).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

__all__ = ["bootstrap_ci", "count_ratio", "fold_confusion", "rounded"]


def count_ratio(counts: np.ndarray) -> np.ndarray:
    """Predicted / labelled objects from summed ``(..., 2, classes)`` counts."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(counts[:, 1] > 0, counts[:, 0] / counts[:, 1], np.nan)


def fold_confusion(conf: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """``(..., K, K)`` confusion matrices with class ``i`` counted as class ``lut[i]``.

    How a class the region does not label is scored as background (``lut`` 0): on both
    axes, so truth and prediction stay in the same classes.

    >>> conf = np.array([[5, 0, 2], [1, 3, 1], [0, 0, 0]])  # truth rows; class 2 unlabelled
    >>> fold_confusion(conf, np.array([0, 1, 0])).tolist()
    [[7, 0], [2, 3]]
    """
    lut = np.asarray(lut)
    onto = np.zeros((len(lut), int(lut.max()) + 1), dtype=conf.dtype)
    onto[np.arange(len(lut)), lut] = 1
    return np.asarray(onto.T @ conf @ onto)


def bootstrap_ci(
    per_chip: np.ndarray, stat: Any, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap over chips of ``stat(sum of resampled per-chip counts)``.

    Args:
        per_chip: ``(n_chips, ...)`` additive counts per chip.
        stat: function of the summed counts (vectorised over a leading resample axis).
        n_boot: number of resamples.
        seed: seed of the resampling.
        level: confidence level of the interval.
    """
    n = per_chip.shape[0]
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n)) if n else None
    alpha = (1 - level) / 2
    with warnings.catch_warnings():
        # a resample without any pixel of a class (or of every class) has no score: NaN,
        # left out of the interval, not a warning on the user's terminal
        warnings.simplefilter("ignore", RuntimeWarning)
        if idx is None:
            nan = np.full(np.shape(stat(per_chip.sum(0)[None]))[1:], np.nan)
            return nan, nan
        values = stat(np.stack([per_chip[row].sum(0) for row in idx]))
        return np.nanquantile(values, alpha, axis=0), np.nanquantile(values, 1 - alpha, axis=0)


def rounded(v: Any) -> float | None:
    """A score for the JSON report: 6 decimals, None for NaN (no score)."""
    v = float(v)
    return None if np.isnan(v) else round(v, 6)
