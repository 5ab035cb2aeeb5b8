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

Radar backscatter in dB (Sentinel-1 VV/VH and the like) has negative means, so neither
rule above judges it; its two mistakes are judged apart, on the bands with a negative
training mean:

- **Linear power (or amplitude, or digital numbers) given to a dB model**
  (:func:`decibel_units`): every such band's mean turned positive and its spread is no
  longer the training's (power 0.01-1 spreads about 0.1, dB about 5): the model sees a
  scene of uniform brightness and finds no water, or water everywhere; and the reverse, dB
  given to a model of linear power (means turned negative).
- **A shift in dB** (:func:`decibel_offset`): a factor in linear power (a calibration
  constant left out, power x 10, another product's scaling) is a shift in dB that leaves
  the spread exactly as it was; so it is said when every dB band moved the same way,
  alike, by at least its training standard deviation and :data:`DB_SHIFT_MIN`, with the
  spread within :data:`DB_STD_RATIO` of the training's. A flood or a scene mostly of sea
  moves dB means down as far (-10.7 dB VV and VH on a Sentinel-1-like pass all under
  water, derived from the NAIP tile in ``tests/predict/radar.py``), but narrows the
  spread to the speckle of calm water (std 2.3 dB against 4.7) and is not said; nor is
  any of seven summers of that ground (2009-2017) judged against any other.
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
    "DB_SHIFT_MIN",
    "DB_STD_RATIO",
    "MIN_PIXELS",
    "OFFSET_SPREAD",
    "STD_RATIO",
    "decibel_offset",
    "decibel_units",
    "other_radiometry",
    "sample_scene",
    "scaling_fits",
    "unit_offset",
    "warn_other_radiometry",
]

log = logging.getLogger(__name__)

MIN_PIXELS = 1000  # fewer valid sampled pixels than this (a scene mostly nodata): not judged
OFFSET_SPREAD = 1.3  # an offset moves every band alike: the largest shift over the smallest
STD_RATIO = (0.4, 2.5)  # ... and keeps the spread: scene std over training std, every band
DB_SHIFT_MIN = 3.0  # dB: a shift smaller than a factor 2 in power is weather, soil moisture
DB_STD_RATIO = (0.7, 1.4)  # a shift in dB keeps the spread; calm water (flood, sea) halves it


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

    Judged on the bands with a positive training mean (radar in dB: :func:`decibel_offset`),
    at least two: with one, an offset cannot be told from a brighter scene. Returns the
    median shift (scene minus training, raw units), else None.

    >>> trained = Normalisation(mean=[807.0, 1168.0, 1285.0], std=[248.0, 333.0, 439.0])
    >>> unit_offset(Normalisation(mean=[1807, 2168, 2285], std=[250, 330, 440]), trained)
    1000.0
    >>> # 30 % brighter (soil, haze, cloud): nir-like bands move further, no offset
    >>> unit_offset(Normalisation(mean=[1049, 1518, 1670], std=[322, 433, 570]), trained)
    """
    at = [i for i, m in enumerate(trained.mean) if m > 0]
    if len(at) < 2:
        return None
    return _shared_shift(scene, trained, at, STD_RATIO)


def decibel_offset(scene: Normalisation, trained: Normalisation) -> float | None:
    """The shift in dB between ``scene`` and ``trained``, when they look to differ by one.

    Judged on the bands with a negative training mean (radar backscatter in dB): every one
    moved the same way by at least its training std and :data:`DB_SHIFT_MIN`, alike, with
    the spread kept (:data:`DB_STD_RATIO`). Returns the median shift in dB, else None.

    >>> trained = Normalisation(mean=[-11.3, -18.4], std=[4.9, 5.0])
    >>> decibel_offset(Normalisation(mean=[-1.4, -8.5], std=[4.8, 5.0]), trained)
    9.9
    >>> # a flooded scene: as far down, but the spread of calm water only
    >>> decibel_offset(Normalisation(mean=[-20.5, -27.6], std=[2.4, 2.5]), trained)
    """
    at = [i for i, m in enumerate(trained.mean) if m < 0]
    shift = _shared_shift(scene, trained, at, DB_STD_RATIO) if at else None
    if shift is None or abs(shift) < DB_SHIFT_MIN:
        return None
    return round(shift, 4)


def decibel_units(
    scene: Normalisation, trained: Normalisation, whose: str = "the training's"
) -> str | None:
    """What sets ``scene`` apart from ``trained`` when one is in dB and the other is not.

    ``whose``: who owns ``trained``'s values in the message.

    A dB model's bands have negative means; linear power, amplitude or digital numbers
    have positive ones, with a spread unlike 5 dB (0.1 in power, hundreds in numbers). Said
    when every band of one sign in training changed sign with the spread outside
    :data:`STD_RATIO` (a bright city in dB can read above 0 dB, but spreads alike).

    >>> trained = Normalisation(mean=[-11.3, -18.4], std=[4.9, 5.0])
    >>> print(decibel_units(Normalisation(mean=[0.09, 0.017], std=[0.11, 0.02]), trained))
    band means [0.09, 0.017] are positive where the training's in dB are negative ([-11.3, -18.4]): linear power, amplitude or digital numbers? Convert the scene to dB: 10 * log10(power)
    >>> decibel_units(Normalisation(mean=[1.2, -4.1], std=[5.5, 5.2]), trained) is None
    True
    """
    for sign, units, fix in (
        (
            -1,
            "in dB",
            "linear power, amplitude or digital numbers? Convert the scene to dB: "
            "10 * log10(power)",
        ),
        (1, "in linear power", "dB? Convert the scene to linear power: 10 ** (dB / 10)"),
    ):
        at = [i for i, m in enumerate(trained.mean) if np.sign(m) == sign]
        if sign == 1:  # linear power: small means (reflectance x 10000 and DN models are not)
            at = [i for i in at if trained.mean[i] < 1]
        if not at or any(np.sign(scene.mean[i]) != -sign for i in at):
            continue
        ratio = [scene.std[i] / trained.std[i] if trained.std[i] else 1.0 for i in at]
        if all(STD_RATIO[0] <= r <= STD_RATIO[1] for r in ratio):
            continue
        return (
            f"band means {_listed([scene.mean[i] for i in at])} are "
            f"{'positive' if sign < 0 else 'negative'} where {whose} {units} are "
            f"{'negative' if sign < 0 else 'positive'} ({_listed([trained.mean[i] for i in at])}): "
            f"{fix}"
        )
    return None


def _shared_shift(
    scene: Normalisation, trained: Normalisation, at: Sequence[int], std_ratio: tuple[float, float]
) -> float | None:
    """The median shift of bands ``at`` when all moved alike, by their std, spread kept."""
    shift = np.array([scene.mean[i] - trained.mean[i] for i in at])
    size = np.abs(shift)
    std = np.array([trained.std[i] for i in at])
    ratio = np.array([scene.std[i] for i in at]) / std
    if not ((shift > 0).all() or (shift < 0).all()):
        return None
    if (size < std).any() or size.max() > OFFSET_SPREAD * size.min():
        return None
    if ((ratio < std_ratio[0]) | (ratio > std_ratio[1])).any():
        return None
    return float(np.median(shift))


def other_radiometry(
    scene: Normalisation,
    trained: Normalisation,
    bands: Sequence[str],
    whose: str = "its",
    scaling: Sequence[tuple[float, float]] | None = None,
) -> str | None:
    """What looks wrong with ``scene``'s values against the training's, or None.

    ``bands``: the card's band names, in the order of both normalisations; ``whose``: who
    owns the values in the message ("its": the scene named before it); ``scaling``: the
    scene's GDAL scale and offset per band, in the same order (Landsat Collection 2 digital
    numbers carry 2.75e-05 and -0.2 to reflectance; geotl reads the raw numbers).

    >>> trained = Normalisation(mean=[0.05, 0.08, 0.3], std=[0.02, 0.03, 0.1])
    >>> dn = Normalisation(mean=[9091.0, 10182.0, 18182.0], std=[700.0, 1000.0, 3600.0])
    >>> print(other_radiometry(dn, trained, ["red", "green", "nir08"], scaling=[(2.75e-5, -0.2)] * 3))
    its band means [9091, 1.018e+04, 1.818e+04] are about 127,275x [0.05, 0.08, 0.3], those of the imagery the model was trained on: other units? Its bands carry a GDAL scale and offset (2.75e-05 and -0.2), which give means [0.05, 0.08, 0.3], the model's units: geotl reads the raw numbers, so write the scaled values first (gdal_translate -unscale -ot Float32 IN OUT)
    """
    if said := other_units(scene.mean, trained.mean):
        scaled = _scaled_means(scene, scaling)
        if scaled is not None and scaling_fits(scene, trained, scaling or ()):
            pairs = sorted({(float(a), float(b)) for a, b in scaling or ()})
            given = "; ".join(f"{a:.4g} and {b:.4g}" for a, b in pairs)
            return (
                f"{whose} {said}, those of the imagery the model was trained on: other units? "
                f"Its bands carry a GDAL scale and offset ({given}), which give means "
                f"{_listed(scaled)}, the model's units: geotl reads the raw numbers, so write "
                "the scaled values first (gdal_translate -unscale -ot Float32 IN OUT)"
            )
        return (
            f"{whose} {said}, those of the imagery the model was trained on: other units? Rescale "
            "the scene to theirs (or train on imagery like it)"
        )
    if said := decibel_units(scene, trained):
        return f"{whose} {said} (gdal_calc.py, rio calc), or train on imagery in its units"
    if (shift := decibel_offset(scene, trained)) is not None:
        at = [i for i, m in enumerate(trained.mean) if m < 0]
        return (
            f"bands {', '.join(bands[i] for i in at)} read about {abs(shift):.3g} dB "
            f"{'higher' if shift > 0 else 'lower'} than the imagery the model was trained on, "
            f"alike in every band with the spread kept (means {_listed([scene.mean[i] for i in at])} "
            f"against {_listed([trained.mean[i] for i in at])}): a factor of "
            f"{10 ** (shift / 10):.3g} in power? Check the calibration (sigma0 of the same "
            "processing as the training scenes, power not amplitude) and subtract the shift "
            "(gdal_calc.py, rio calc), or adapt a model on imagery of this processing"
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
    scaling: Sequence[tuple[float, float]] | None = None,
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
    said = other_radiometry(scene[0], trained, bands, whose, scaling)
    if said is None:
        return None
    message = f"{name}: {said}; {doing}"
    log.warning("%s", message)
    return message


def scaling_fits(
    scene: Normalisation, trained: Normalisation, scaling: Sequence[tuple[float, float]]
) -> bool:
    """Whether a scale and offset turn ``scene``'s other units into the training's.

    True when the raw numbers are other units than the training's and the scale and offset
    (GDAL's, or a STAC catalogue's ``raster:bands``) give the training's units. The rule behind predict's advice to unscale a scene and the monitor's choice to read a
    STAC pass through its catalogue's scale and offset.

    >>> trained = Normalisation(mean=[0.05, 0.08, 0.3], std=[0.02, 0.03, 0.1])
    >>> dn = Normalisation(mean=[9091.0, 10182.0, 18182.0], std=[700.0, 1000.0, 3600.0])
    >>> scaling_fits(dn, trained, [(2.75e-5, -0.2)] * 3), scaling_fits(dn, dn, [(2.75e-5, -0.2)] * 3)
    (True, False)
    """
    scaled = _scaled_means(scene, scaling)
    return (
        scaled is not None
        and other_units(scene.mean, trained.mean) is not None
        and other_units(scaled, trained.mean) is None
    )


def _scaled_means(
    scene: Normalisation, scaling: Sequence[tuple[float, float]] | None
) -> list[float] | None:
    """``scene``'s means through its GDAL scale and offset; None when it carries none."""
    if not scaling or all((a, b) == (1.0, 0.0) for a, b in scaling):
        return None
    return [m * a + b for m, (a, b) in zip(scene.mean, scaling, strict=True)]


def _listed(values: Sequence[float]) -> str:
    return "[" + ", ".join(f"{v:.4g}" for v in values) + "]"
