"""A scene as sources find it, and the time stamps and names they derive from files and items."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

__all__ = ["AcquiredFrom", "Scene", "parse_datetime_text", "safe_scene_name"]

AcquiredFrom = Literal["regex", "tiff-tag", "mtime", "stac"]


@dataclass(frozen=True)
class Scene:
    """One pass a source found.

    Attributes:
        key: unique within the region: the absolute file path, or ``stac:<collection>/<id>``.
        name: short name used in output file names (file stem or STAC item id).
        acquired: acquisition time (UTC).
        acquired_from: where ``acquired`` came from: regex, tiff-tag, mtime or stac.
        uri: the file path or the STAC item's URL.
        fingerprint: changes when the file or item changes (size + mtime, item ``updated``).
        footprint_wkt: the pass's footprint in EPSG:4326 when the source knows it.
        assets: band name -> ``href`` or ``href#band`` (STAC sources).
        cloud_cover: ``eo:cloud_cover`` in percent, when known.
    """

    key: str
    name: str
    acquired: datetime
    acquired_from: AcquiredFrom
    uri: str
    fingerprint: str
    footprint_wkt: str | None = None
    assets: dict[str, str] = field(default_factory=dict)
    cloud_cover: float | None = None

    @property
    def is_remote(self) -> bool:
        """True when the scene is read over HTTP (STAC assets)."""
        return bool(self.assets)


_DIGIT_FORMATS = {
    4: "%Y",
    6: "%Y%m",
    8: "%Y%m%d",
    10: "%Y%m%d%H",
    12: "%Y%m%d%H%M",
    14: "%Y%m%d%H%M%S",
}


def parse_datetime_text(text: str) -> datetime:
    """Parse a date or time stamp as found in file names and TIFF tags; naive means UTC.

    >>> parse_datetime_text("20190904").isoformat()
    '2019-09-04T00:00:00+00:00'
    >>> parse_datetime_text("2020").isoformat()
    '2020-01-01T00:00:00+00:00'
    >>> parse_datetime_text("2021:05:04 10:30:00").isoformat()
    '2021-05-04T10:30:00+00:00'
    >>> parse_datetime_text("20210504T103000").isoformat()
    '2021-05-04T10:30:00+00:00'

    Raises:
        ValueError: the text is no date this function knows.
    """
    raw = text.strip()
    digits = raw.replace("T", "").replace("Z", "")
    if digits.isdigit() and len(digits) in _DIGIT_FORMATS:
        return datetime.strptime(digits, _DIGIT_FORMATS[len(digits)]).replace(tzinfo=UTC)
    tiff = re.fullmatch(r"(\d{4}):(\d{2}):(\d{2})[ T](\d{2}):(\d{2}):(\d{2})", raw)
    if tiff:
        y, mo, d, h, mi, s = (int(g) for g in tiff.groups())
        return datetime(y, mo, d, h, mi, s, tzinfo=UTC)
    value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def safe_scene_name(text: str) -> str:
    """A file-name-safe version of a scene name.

    >>> safe_scene_name("LC08 L2SP/044034")
    'LC08_L2SP_044034'
    """
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._")
    return cleaned[:120] or "scene"
