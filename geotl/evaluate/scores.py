"""From per-chip counts to reported numbers: bootstrap intervals, count ratios, rounding.

Confidence intervals are percentile bootstraps over test chips: chips are resampled with
replacement and each metric is recomputed from the summed counts (95 % by default). An
object score the resampling cannot move (0 or 1 in every chip: none of 3 objects found)
gets the exact binomial interval over its objects instead of a point
(:func:`object_score_ci`).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

__all__ = [
    "binomial_ci",
    "bootstrap_ci",
    "count_ratio",
    "exact_ci_note",
    "fold_confusion",
    "object_score_ci",
    "rounded",
]


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


def binomial_ci(k: np.ndarray, n: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Exact (Clopper-Pearson) interval of a proportion ``k / n``; NaN where ``n`` is 0.

    >>> [round(float(v), 3) for v in binomial_ci(np.array(0), np.array(3))]
    [0.0, 0.708]
    """
    from scipy.stats import beta

    k, n = np.asarray(k, dtype=np.float64), np.asarray(n, dtype=np.float64)
    alpha = (1 - level) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        lo = np.where(k > 0, beta.ppf(alpha, k, n - k + 1), 0.0)
        hi = np.where(k < n, beta.ppf(1 - alpha, k + 1, n - k), 1.0)
    return np.where(n > 0, lo, np.nan), np.where(n > 0, hi, np.nan)


def object_score_ci(
    per_chip: np.ndarray, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Intervals of object precision, recall and F1 from per-chip ``(tp, fp, fn)`` counts.

    The percentile bootstrap over chips, except where it collapses to a point: with none
    of 3 labelled objects found, every resample scores 0 and the bootstrap says
    "[0.00, 0.00]", as if the model were known to fail. There the interval is the exact
    binomial one over the objects (precision: tp of the predicted, recall: tp of the
    labelled), and F1's spans F1 at both ends of those (F1 grows with each); a score
    backed by many objects keeps a near-point interval. Intervals that vary are unchanged.

    Args:
        per_chip: ``(chips, 3, ...)`` counts.
        n_boot: number of resamples.
        seed: seed of the resampling.
        level: confidence level of the interval.

    Returns:
        ``lo`` and ``hi``, each ``(3, ...)`` (precision, recall, F1), and a boolean
        ``(3, ...)`` array, True where the interval is the binomial one.

    >>> lo, hi, exact = object_score_ci(np.array([[0, 0, 2], [0, 1, 1]]), n_boot=50)
    >>> np.round(hi, 3).tolist(), exact.tolist()
    ([0.975, 0.708, 0.82], [True, True, True])
    """
    from geotl.metrics import precision_recall_f1

    lo, hi = bootstrap_ci(
        per_chip,
        lambda s: np.stack(precision_recall_f1(s[:, 0], s[:, 1], s[:, 2]), axis=1),
        n_boot,
        seed,
        level,
    )
    tp, fp, fn = per_chip.sum(0).astype(np.float64)
    exact = np.isfinite(lo) & (lo == hi)
    for k, n in ((0, tp + fp), (1, tp + fn)):
        b_lo, b_hi = binomial_ci(tp, n, level)
        lo[k] = np.where(exact[k], np.fmin(lo[k], b_lo), lo[k])
        hi[k] = np.where(exact[k], np.fmax(hi[k], b_hi), hi[k])

    def f1(p: np.ndarray, r: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(p + r > 0, 2 * p * r / (p + r), 0.0)

    # a score with nothing to count (no predictions, no labels) may be anything in [0, 1]
    p_lo, p_hi = np.nan_to_num(lo[0], nan=0.0), np.nan_to_num(hi[0], nan=1.0)
    r_lo, r_hi = np.nan_to_num(lo[1], nan=0.0), np.nan_to_num(hi[1], nan=1.0)
    lo[2] = np.where(exact[2], np.fmin(lo[2], f1(p_lo, r_lo)), lo[2])
    hi[2] = np.where(exact[2], np.fmax(hi[2], f1(p_hi, r_hi)), hi[2])
    return lo, hi, exact


def exact_ci_note(exact: np.ndarray, labelled: int, predicted: int) -> dict[str, str]:
    """The report's word on intervals :func:`object_score_ci` made binomial (else nothing).

    >>> exact_ci_note(np.array([False, True, True]), 3, 0)["ci95_note"][:37]
    'recall, f1: the same in (nearly) ever'
    """
    names = [n for n, e in zip(("precision", "recall", "f1"), exact.tolist(), strict=True) if e]
    if not names:
        return {}
    return {
        "ci95_note": (
            f"{', '.join(names)}: the same in (nearly) every resample of the test chips "
            f"({labelled} labelled, {predicted} predicted objects), so the interval is the exact "
            "binomial one over the objects, not the bootstrap's single point"
        )
    }


def rounded(v: Any) -> float | None:
    """A score for the JSON report: 6 decimals, None for NaN (no score)."""
    v = float(v)
    return None if np.isnan(v) else round(v, 6)
