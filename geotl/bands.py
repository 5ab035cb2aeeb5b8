"""Band vocabulary: common names and sensor band ids, matched by name.

A region declares its files' bands in file order and a base model declares the bands it
was trained on, both in this vocabulary, so the adapter can match them by name:

>>> canonical_band("B04")
'red'
>>> canonical_band("SR_B5")
'nir08'
>>> canonical_band("Red")
'red'
>>> canonical_band("VH")
'vh'

One-digit ids (``B4``, ``B8``) are no names: Earth Engine spells Sentinel-2's bands so
(``B8`` the near infrared), Landsat Level-1 products its own (``B8`` the panchromatic
band), and they part from ``B5`` on. Write ``B08``, ``SR_B5`` or the common name.

A band of one's own (an index, an elevation model, one date of a stacked time series) is
written ``custom:<name>``: never mistaken for a typo, matched by that name between regions
and models, and new to every pretrained base:

>>> canonical_band("custom:NDVI"), canonical_band("swir1"), canonical_band("nir2")
('custom:ndvi', 'swir16', 'nir09')

Radar bands as SNAP and the ESA toolboxes write them in a GeoTIFF's band descriptions
(calibrated backscatter, linear or in dB) are their polarisation: whether a scene is in dB
or linear power is the values' business, judged at prediction
(:mod:`geotl.predict.radiometry`), not the name's:

>>> canonical_band("Sigma0_VV_db"), canonical_band("Gamma0_VH"), canonical_band("beta0_hh_dB")
('vv', 'vh', 'hh')

A region on bands no base model knows (radar, thermal, custom) still adapts a pretrained
base: the first layer is new, the rest of the network pretrained (:mod:`geotl.models.adapt`).
"""

from __future__ import annotations

import re

__all__ = [
    "COMMON_NAMES",
    "CUSTOM_PREFIX",
    "SENSOR_IDS",
    "band_key",
    "band_keys",
    "canonical_band",
    "canonical_bands",
    "is_known_band",
]

COMMON_NAMES: tuple[str, ...] = (
    "coastal",
    "blue",
    "green",
    "red",
    "rededge1",
    "rededge2",
    "rededge3",
    "nir",
    "nir08",
    "nir09",
    "yellow",
    "rededge",
    "watervapour",
    "cirrus",
    "swir16",
    "swir22",
    "pan",
    # thermal infrared (STAC eo:common_name)
    "lwir",
    "lwir11",
    "lwir12",
    # synthetic-aperture radar polarisations (Sentinel-1 and the like; STAC sar:polarizations)
    "vv",
    "vh",
    "hh",
    "hv",
)

# Sentinel-2 MSI and Landsat 8/9 OLI Collection 2 ids, mapped to the common name of the
# wavelength range they measure (STAC eo:common_name).
SENSOR_IDS: dict[str, str] = {
    "B01": "coastal",
    "B02": "blue",
    "B03": "green",
    "B04": "red",
    "B05": "rededge1",
    "B06": "rededge2",
    "B07": "rededge3",
    "B08": "nir",
    "B8A": "nir08",
    "B09": "watervapour",
    "B10": "cirrus",
    "B11": "swir16",
    "B12": "swir22",
    "SR_B1": "coastal",
    "SR_B2": "blue",
    "SR_B3": "green",
    "SR_B4": "red",
    "SR_B5": "nir08",
    "SR_B6": "swir16",
    "SR_B7": "swir22",
    "ST_B10": "lwir11",
    # no one-digit "B8": Earth Engine's Sentinel-2 B8 is nir, Landsat Level-1's B8 pan
}

# other spellings users write (Landsat community names, WorldView-2/3, PlanetScope)
_ALIASES: dict[str, str] = {
    "water_vapour": "watervapour",
    "watervapor": "watervapour",
    "coastal_blue": "coastal",
    "coastal_aerosol": "coastal",
    "red_edge": "rededge",
    "nir1": "nir",
    "nir2": "nir09",
    "swir1": "swir16",
    "swir2": "swir22",
}
CUSTOM_PREFIX = "custom:"
"""How a band outside the vocabulary is declared: ``custom:ndvi``."""

# SNAP's calibrated radar bands: Sigma0_VV, Gamma0_VH_db, Beta0_HH (uncalibrated
# Amplitude_VV / Intensity_VV are no backscatter: not named so)
_RADAR_CALIBRATED = re.compile(r"(?:sigma|gamma|beta)0_(vv|vh|hh|hv)(?:_db)?")


def canonical_band(name: str) -> str:
    """Return the common name for a band name or sensor band id.

    Args:
        name: a common name (any case), a Sentinel-2 / Landsat band id, or ``custom:<name>``.

    Returns:
        The common name.

    Raises:
        KeyError: if the name is not in the vocabulary.
    """
    upper = name.strip().upper()
    if upper in SENSOR_IDS:
        return SENSOR_IDS[upper]
    lower = name.strip().lower()
    if lower.startswith(CUSTOM_PREFIX) and lower[len(CUSTOM_PREFIX) :].strip():
        return CUSTOM_PREFIX + lower[len(CUSTOM_PREFIX) :].strip()
    lower = _ALIASES.get(lower, lower)
    if lower in COMMON_NAMES:
        return lower
    if radar := _RADAR_CALIBRATED.fullmatch(lower):
        return radar.group(1)
    raise KeyError(name)


def is_known_band(name: str) -> bool:
    """Whether ``name`` is a common band name or a known sensor band id."""
    try:
        canonical_band(name)
    except KeyError:
        return False
    return True


def canonical_bands(names: list[str] | tuple[str, ...]) -> list[str]:
    """Canonical names of a band list, in order (see :func:`canonical_band`)."""
    return [canonical_band(n) for n in names]


def band_key(name: str) -> str:
    """The spelling a band is compared by: one rule wherever two band lists meet.

    A known name compares as its common name (:func:`canonical_band`: ``B04``, ``Red`` and
    ``RED`` are all ``red``); a name outside the vocabulary (a torchgeo band id geotl does
    not map, an old chip index's band) compares as written, stripped and lower-case. Chips,
    base models and prediction each spelled that fallback their own way, so a name could
    match at chip time and be refused at predict time.

    >>> band_key("B04"), band_key(" NIR "), band_key("custom:DEM"), band_key(" Elevation")
    ('red', 'nir', 'custom:dem', 'elevation')

    One-digit ids stay themselves (no alias: ``B4`` is red for Sentinel-2 and Landsat 8/9
    but near infrared for Landsat 4-7), so they never match ``red``:

    >>> band_key("B4")
    'b4'
    """
    try:
        return canonical_band(name)
    except KeyError:
        return name.strip().lower()


def band_keys(names: list[str] | tuple[str, ...]) -> list[str]:
    """:func:`band_key` of each name, in order."""
    return [band_key(str(n)) for n in names]
