"""Pure arithmetic of ``geotl suggest``: pixel uncertainty and a greedy, diverse pick.

A candidate's **score** is the mean over its valid pixels of a per-pixel uncertainty in
[0, 1] (0: the model is sure of every pixel, 1: every pixel a coin toss):

- segmentation: the normalised entropy of the blended class probabilities;
- separated instances: the same, or the binary entropy of the border and contact maps
  where that is higher (where the model cannot tell whether two objects meet);
- detection: the detector gives every box down to its own score floor, far below the
  region's threshold; the best box over a pixel decides whether an object is there, and
  its score, *centred on the threshold* (:func:`box_uncertainty`: a box scored exactly at
  the threshold is a coin toss, 1), gives the pixel's binary entropy; 0 where no box is.
  Clutter under a confident box does not count, and the many low-score boxes of a young
  detector count no more than the area they cover.

The pick is greedy: the first area is the most uncertain; each next one maximises
``score x min(1, d / tau)``, where ``d`` is the distance (in a z-scored appearance
descriptor: per-band mean and spread, predicted class fractions) to the nearest area
already picked and ``tau`` half the median distance between candidates. So the ``n``
suggestions do not pile up in one cloud shadow or one land cover.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

__all__ = [
    "binary_entropy",
    "box_uncertainty",
    "entropy",
    "hesitation",
    "pick_diverse",
    "standardise",
]

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


def binary_entropy(p: npt.ArrayLike) -> FloatArray:
    """Entropy of yes/no probabilities ``p``, in [0, 1] (1 at ``p = 0.5``).

    >>> binary_entropy([0.5, 0.0, 0.9]).round(3).tolist()
    [1.0, 0.0, 0.469]
    """
    p = np.asarray(p, dtype=np.float64)
    return entropy(np.stack([p, 1.0 - p]))


def box_uncertainty(scores: npt.ArrayLike, threshold: float) -> FloatArray:
    """Binary entropy of box scores, centred on the score ``threshold`` boxes are kept at.

    The score is moved in log-odds by the threshold's log-odds, so a box scored exactly at
    the threshold counts as a coin toss (1) whatever the threshold, and the further a score
    lies from the threshold on either side, the surer the decision.

    >>> box_uncertainty([0.3, 0.9, 0.05], 0.3).round(2).tolist()
    [1.0, 0.27, 0.5]
    """
    s = np.clip(np.asarray(scores, dtype=np.float64), 1e-9, 1.0 - 1e-9)
    t = min(max(float(threshold), 1e-9), 1.0 - 1e-9)
    return binary_entropy(s * (1.0 - t) / (s * (1.0 - t) + t * (1.0 - s)))


def hesitation(u: npt.ArrayLike, probs: npt.ArrayLike, names: Sequence[str]) -> str:
    """Why a square is uncertain, in words: the two classes its pixels hesitate between.

    ``score`` alone says how unsure the model is, not about what; the analyst who opens the
    square in QGIS wants to know what to look for. The classes are ranked by their mean
    probability weighted by each pixel's uncertainty, so sure pixels do not decide. How
    unsure is the ``score``'s to say: a share of "unsure" pixels would hang on a cut-off
    that means little with eight classes (normalised entropy seldom reaches 0.5 there).

    Args:
        u: per-pixel uncertainty, ``(pixels,)``.
        probs: per-class probabilities (background first), ``(classes + 1, pixels)``.
        names: the classes' names, background first.

    >>> hesitation([0.9, 0.1], [[0.5, 0.9], [0.4, 0.1], [0.1, 0.0]], ["background", "a", "b"])
    'background or a?'
    >>> hesitation([0.0], [[1.0], [0.0]], ["background", "a"])
    'sure everywhere'
    """
    w = np.asarray(u, dtype=np.float64)
    p = np.asarray(probs, dtype=np.float64).reshape(len(names), -1)
    if w.size == 0 or w.sum() <= 0:
        return "sure everywhere"
    first, second = np.argsort(-(p * w).sum(axis=1), kind="stable")[:2]
    return f"{names[first]} or {names[second]}?"


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
    same_ground: Sequence[Iterable[int]] | None = None,
) -> list[int]:
    """Greedy pick of ``n`` candidates: uncertain first, discounted near earlier picks.

    Args:
        scores: uncertainty per candidate (higher: more to learn).
        features: ``(candidates, dims)`` descriptor, already standardised.
        n: how many to pick (at most the number of candidates).
        same_ground: per candidate, the candidates that cover its ground (the same square
            in another pass of the area); they leave the pool once it is picked, since one
            label layer serves every scene and a square is labelled once.

    Returns:
        Candidate indices in pick order (rank 1 first).

    >>> pick_diverse([0.9, 0.85, 0.5], [[0.0], [0.01], [5.0]], 2)
    [0, 2]
    >>> pick_diverse([0.9, 0.85, 0.5], [[0.0], [5.0], [9.0]], 2, [[1], [0], []])
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
        if same_ground is not None:
            allowed[list(same_ground[best])] = False
        nearest = np.minimum(nearest, np.sqrt(((f - f[best]) ** 2).sum(-1)))
    return picked
