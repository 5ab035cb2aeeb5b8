"""Pure arithmetic of ``geotl suggest``: pixel uncertainty and a greedy, diverse pick.

A candidate's **score** is the mean normalised entropy of the model's blended class
probabilities over its valid pixels (0: the model is sure of every pixel, 1: every pixel
is a coin toss between all classes). The pick is greedy: the first area is the most
uncertain; each next one maximises ``score x min(1, d / tau)``, where ``d`` is the distance
(in a z-scored appearance descriptor: per-band mean and spread, predicted class fractions)
to the nearest area already picked and ``tau`` half the median distance between
candidates. So the ``n`` suggestions do not pile up in one cloud shadow or one land cover.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["entropy", "pick_diverse", "standardise"]

FloatArray = npt.NDArray[np.float64]


def entropy(probs: npt.NDArray[np.floating], axis: int = 0) -> FloatArray:
    """Per-pixel entropy of class probabilities, normalised to [0, 1] by ``log(classes)``.

    Args:
        probs: probabilities with the classes (background included) along ``axis``.
        axis: the class axis.

    >>> entropy(np.array([[0.5, 1.0], [0.5, 0.0]])).round(3).tolist()
    [1.0, 0.0]
    """
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1.0)
    k = p.shape[axis]
    if k < 2:
        return np.zeros(np.delete(p.shape, axis), dtype=np.float64)
    h = -(p * np.log(p)).sum(axis=axis)
    out: FloatArray = np.clip(h / np.log(k), 0.0, 1.0)
    return out


def standardise(features: npt.ArrayLike) -> FloatArray:
    """Z-score each column (constant columns become 0).

    >>> standardise([[1.0, 5.0], [3.0, 5.0]]).tolist()
    [[-1.0, 0.0], [1.0, 0.0]]
    """
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or len(f) == 0:
        return f.reshape(len(f), -1)
    std = f.std(axis=0)
    return (f - f.mean(axis=0)) / np.where(std > 0, std, 1.0)


def pick_diverse(
    scores: npt.ArrayLike,
    features: npt.ArrayLike,
    n: int,
) -> list[int]:
    """Greedy pick of ``n`` candidates: uncertain first, discounted near earlier picks.

    Args:
        scores: uncertainty per candidate (higher: more to learn).
        features: ``(candidates, dims)`` descriptor, already standardised.
        n: how many to pick (at most the number of candidates).

    Returns:
        Candidate indices in pick order (rank 1 first).

    >>> pick_diverse([0.9, 0.85, 0.5], [[0.0], [0.01], [5.0]], 2)
    [0, 2]
    """
    s = np.asarray(scores, dtype=np.float64)
    m = len(s)
    if m == 0 or n <= 0:
        return []
    f = np.asarray(features, dtype=np.float64).reshape(m, -1)
    if m > 1 and f.shape[1]:
        sample = f if m <= 2000 else f[np.random.default_rng(0).choice(m, 2000, replace=False)]
        d = np.sqrt(((sample[:, None, :] - sample[None, :, :]) ** 2).sum(-1))
        off = d[~np.eye(len(sample), dtype=bool)]
        tau = float(np.median(off)) / 2 if off.size else 0.0
    else:
        tau = 0.0
    nearest = np.full(m, np.inf)
    allowed = np.ones(m, dtype=bool)
    picked: list[int] = []
    while len(picked) < n and allowed.any():
        factor = np.ones(m) if tau <= 0 else np.minimum(1.0, nearest / tau)
        value = np.where(allowed, s * factor, -np.inf)
        # ties (e.g. all factors 0) fall back to the raw score, then the lower index
        best = int(np.lexsort((np.arange(m), -np.where(allowed, s, -np.inf), -value))[0])
        picked.append(best)
        allowed[best] = False
        nearest = np.minimum(nearest, np.sqrt(((f - f[best]) ** 2).sum(-1)))
    return picked
