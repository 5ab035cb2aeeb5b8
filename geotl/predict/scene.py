"""Fit a scene to a model card: band mapping by name, ground resolution, acquisition date."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from pathlib import Path

from geotl.bands import canonical_band, is_known_band
from geotl.errors import BandMismatchError, RasterError

__all__ = ["acquired_from", "check_resolution", "map_bands", "scene_band_names"]

log = logging.getLogger(__name__)

RESOLUTION_TOLERANCE = 0.1  # relative difference accepted without resampling


def scene_band_names(
    descriptions: tuple[str | None, ...], count: int, declared: list[str] | None = None
) -> list[str] | None:
    """The scene's band names, canonical, or None when unknown.

    Sources: ``declared`` (``--bands`` / region), else the file's band descriptions when
    they are all known band names.

    >>> scene_band_names(("Red", "Green", "Blue"), 3)
    ['red', 'green', 'blue']
    >>> scene_band_names((None, None), 2) is None
    True
    """
    if declared:
        return [canonical_band(b) for b in declared]
    if len(descriptions) == count and all(d and is_known_band(d) for d in descriptions):
        return [canonical_band(str(d)) for d in descriptions]
    return None


def map_bands(
    scene_bands: list[str] | None, count: int, model_bands: list[str], path: str | Path
) -> list[int]:
    """1-based scene band indexes, in the model's band order.

    Names are compared as canonical names (``B04`` = ``red``). Without names, a scene with
    as many bands as the model is assumed to be in the model's order.

    Raises:
        BandMismatchError: a model band is missing, or the scene's bands are unknown and
            their number differs; the message names both band sets.

    >>> map_bands(["blue", "green", "red", "nir"], 4, ["red", "green", "blue"], "s.tif")
    [3, 2, 1]
    >>> map_bands(None, 3, ["red", "green", "blue"], "s.tif")
    [1, 2, 3]
    """
    wanted = [canonical_band(b) if is_known_band(b) else b for b in model_bands]
    if scene_bands is None:
        if count == len(wanted):
            log.info("%s: band names unknown, assuming the model's order %s", path, model_bands)
            return list(range(1, count + 1))
        raise BandMismatchError(
            f"the scene has {count} unnamed band(s) but the model needs {model_bands}: "
            "name them with --bands (file order) or set band descriptions",
            path,
        )
    if len(scene_bands) != count:
        raise BandMismatchError(
            f"{len(scene_bands)} band name(s) {scene_bands} given for a {count}-band scene: "
            "list every band in file order",
            path,
        )
    missing = [b for b in wanted if b not in scene_bands]
    if missing:
        raise BandMismatchError(
            f"scene bands {scene_bands} lack {missing} that the model needs (model bands "
            f"{model_bands}): use imagery with those bands or a model trained on these",
            path,
        )
    return [scene_bands.index(b) + 1 for b in wanted]


def check_resolution(scene_m: float, model_m: float, resample: bool, path: str | Path) -> bool:
    """Whether the scene must be resampled to the model's ground resolution.

    Raises:
        RasterError: resolutions differ by more than 10 % and ``resample`` is false.

    >>> check_resolution(0.1, 0.1, False, "s.tif")
    False
    >>> check_resolution(0.3, 0.1, True, "s.tif")
    True
    """
    if abs(scene_m - model_m) <= RESOLUTION_TOLERANCE * model_m:
        return False
    if not resample:
        raise RasterError(
            f"ground resolution {scene_m:.4g} m differs from the model's {model_m:.4g} m: "
            "pass --resample to resample on the fly, or use imagery at the model's resolution",
            path,
        )
    return True


_TIFF_DT = re.compile(r"^(\d{4}):(\d{2}):(\d{2})[ T](\d{2}):(\d{2}):(\d{2})")
_NAME_DATES = (
    re.compile(r"(?<!\d)(\d{4})-(\d{2})-(\d{2})(?!\d)"),
    re.compile(r"(?<!\d)(\d{4})(\d{2})(\d{2})(?!\d)"),
)


def _valid_date(y: str, m: str, d: str) -> datetime | None:
    try:
        dt = datetime(int(y), int(m), int(d), tzinfo=UTC)
    except ValueError:
        return None
    return dt if 1950 <= dt.year <= 2100 else None


def acquired_from(
    tags: dict[str, str], path: str | Path, datetime_regex: str | None = None
) -> str | None:
    """The scene's acquisition time as ISO 8601, or None when unknown.

    Sources, in order: the TIFF ``TIFFTAG_DATETIME`` tag, ``datetime_regex`` (one capture
    group) on the file name, a ``YYYY-MM-DD`` or ``YYYYMMDD`` date in the file name.

    >>> acquired_from({"TIFFTAG_DATETIME": "2021:06:03 10:20:30"}, "x.tif")
    '2021-06-03T10:20:30+00:00'
    >>> acquired_from({}, "LC08_L2SP_027031_20200712_02_T1.tif")
    '2020-07-12'
    >>> acquired_from({}, "OSBS_029.tif") is None
    True
    """
    raw = tags.get("TIFFTAG_DATETIME", "").strip()
    m = _TIFF_DT.match(raw)
    if m:
        try:
            y, mo, d, h, mi, sec = (int(g) for g in m.groups())
            return datetime(y, mo, d, h, mi, sec, tzinfo=UTC).isoformat()
        except ValueError:
            pass
    name = Path(path).name
    if datetime_regex:
        found = re.search(datetime_regex, name)
        if found:
            digits = re.sub(r"\D", "", found.group(1))
            if len(digits) >= 8:
                day = _valid_date(digits[:4], digits[4:6], digits[6:8])
                if day is not None:
                    return day.date().isoformat()
    for pattern in _NAME_DATES:
        for found in pattern.finditer(name):
            day = _valid_date(*found.groups())
            if day is not None:
                return day.date().isoformat()
    return None
