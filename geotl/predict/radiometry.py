"""Whether a scene's pixel values are in the units the model was trained on (radiometry).

The card's normalisation (per-band mean and standard deviation of the training chips, in
the files' raw units) is the only record of those units, so a scene's values are compared
with it, from the nine small windows of :func:`geotl.io.rasters.scene_band_sample` (cheap
at any scene size). Two mistakes are common and give no error anywhere else, only no
objects or objects everywhere:

- **Another scale** (8- vs 16-bit, 0-1 reflectance vs reflectance x 10000, digital numbers
  vs scaled reflectance): band means over 10x off in most bands
  (:func:`geotl.io.rasters.other_units`, the rule chipping and training use too).
- **An offset**: Sentinel-2 L2A from processing baseline 04.00 (25 January 2022) stores
  reflectance x 10000 + 1000 (``BOA_ADD_OFFSET = -1000``), so the same ground reads 1000
  higher than older passes; a model trained on either sees the other shifted. A shift
  that large is said when every band moved the same way by at least its training
  standard deviation, by about the same amount in every band (within
  :data:`OFFSET_SPREAD`), and the spread of the values stayed within :data:`STD_RATIO` of
  the training's.

Legitimate content differences move bands by different amounts: brighter soil, cloud or
snow multiplies reflectance, which moves a bright band (nir) several times further than a
dark one (red), and a scene of one land cover (all forest, all water) narrows the spread
without moving every band alike. On the repository's real scenes (NAIP over 10 years,
Landsat over Peru 1985-2020, Sentinel-2 over Flanders, the Albers Landsat tile), 4,400
windows of 128 px each judged against every scene of their set gave no offset, while
+1000 and -1000 added to the Albers tile's windows were all found. Both cases are warnings,
not refusals: a scene that happens to differ (one fully under cloud) must not stop a
monitor's pass, and predict's polygons on it are still what the model makes of it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from geotl.io.rasters import other_units, scene_band_sample
from geotl.models.artefact import Normalisation

__all__ = [
    "MIN_PIXELS",
    "OFFSET_SPREAD",
    "STD_RATIO",
    "other_radiometry",
    "sample_scene",
    "unit_offset",
    "warn_other_radiometry",
]

log = logging.getLogger(__name__)

MIN_PIXELS = 1000  # fewer valid sampled pixels than this (a scene mostly nodata): not judged
OFFSET_SPREAD = 1.3  # an offset moves every band alike: the largest shift over the smallest
STD_RATIO = (0.4, 2.5)  # ... and keeps the spread: scene std over training std, every band


def sample_scene(
    ds: Any, indexes: Sequence[int], mask_bands: Sequence[int] = (), nodata: float | None = None
) -> tuple[Normalisation, int] | None:
    """Per-band mean and std of a scene's sampled valid pixels, and their count.

    :func:`geotl.io.rasters.scene_band_sample`'s nine windows, as a normalisation to
    compare with the card's. None when they hold no valid pixel.
    """
    sample = scene_band_sample(ds, indexes, mask_bands, nodata)
    if sample is None:
        return None
    return Normalisation(mean=sample.mean, std=sample.std), sample.count


def unit_offset(scene: Normalisation, trained: Normalisation) -> float | None:
    """The offset between ``scene`` and ``trained`` values when they look to differ by one.

    Judged on the bands with a positive training mean (radar in dB is not), at least two:
    with one, an offset cannot be told from a brighter scene. Returns the median shift
    (scene minus training, raw units), else None.

    >>> trained = Normalisation(mean=[807.0, 1168.0, 1285.0], std=[248.0, 333.0, 439.0])
    >>> unit_offset(Normalisation(mean=[1807, 2168, 2285], std=[250, 330, 440]), trained)
    1000.0
    >>> # 30 % brighter (soil, haze, cloud): nir-like bands move further, no offset
    >>> unit_offset(Normalisation(mean=[1049, 1518, 1670], std=[322, 433, 570]), trained)
    """
    at = [i for i, m in enumerate(trained.mean) if m > 0]
    if len(at) < 2:
        return None
    shift = np.array([scene.mean[i] - trained.mean[i] for i in at])
    size = np.abs(shift)
    std = np.array([trained.std[i] for i in at])
    ratio = np.array([scene.std[i] for i in at]) / std
    if not ((shift > 0).all() or (shift < 0).all()):
        return None
    if (size < std).any() or size.max() > OFFSET_SPREAD * size.min():
        return None
    if ((ratio < STD_RATIO[0]) | (ratio > STD_RATIO[1])).any():
        return None
    return float(np.median(shift))


def other_radiometry(
    scene: Normalisation, trained: Normalisation, bands: Sequence[str], whose: str = "its"
) -> str | None:
    """What looks wrong with ``scene``'s values against the training's, or None.

    ``bands``: the card's band names, in the order of both normalisations; ``whose``: who
    owns the values in the message ("its": the scene named before it).
    """
    if said := other_units(scene.mean, trained.mean):
        return (
            f"{whose} {said}, those of the imagery the model was trained on: other units? Rescale "
            "the scene to theirs (or train on imagery like it)"
        )
    offset = unit_offset(scene, trained)
    if offset is None:
        return None
    return (
        f"bands {', '.join(bands)} read about {abs(offset):,.4g} {'higher' if offset > 0 else 'lower'} "
        f"than the imagery the model was trained on, by about as much in every band (means "
        f"{_listed(scene.mean)} against {_listed(trained.mean)}, spread alike): an offset? "
        "Sentinel-2 L2A from processing baseline 04.00 (25 Jan 2022) adds 1000 "
        "(BOA_ADD_OFFSET = -1000); subtract the scene's offset or add the model's (gdal_calc.py, "
        "rio calc), or adapt a model on imagery of this processing"
    )


def warn_other_radiometry(
    scene: tuple[Normalisation, int] | None,
    trained: Normalisation,
    bands: Sequence[str],
    path: str | Path,
    doing: str = "predicting as it is",
    whose: str = "its",
) -> str | None:
    """Log :func:`other_radiometry`'s finding as one warning naming ``path``; return it.

    ``scene``: :func:`sample_scene`'s answer. Too few valid pixels (a scene mostly nodata)
    are not judged: a debug line says so.
    """
    name = Path(path).name
    if scene is None or scene[1] < MIN_PIXELS:
        log.debug(
            "%s: %d valid pixels sampled, too few to compare its values with the model's",
            name,
            0 if scene is None else scene[1],
        )
        return None
    said = other_radiometry(scene[0], trained, bands, whose)
    if said is None:
        return None
    message = f"{name}: {said}; {doing}"
    log.warning("%s", message)
    return message


def _listed(values: Sequence[float]) -> str:
    return "[" + ", ".join(f"{v:.4g}" for v in values) + "]"
