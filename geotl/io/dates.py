"""A pass's acquisition date: the one function that reads it, for prediction and monitoring.

:func:`read_acquired` looks, in this order, at:

1. ``datetime_regex`` (one capture group) on the file name: the user said where the date is;
2. the file's ``ACQUISITIONDATETIME`` tag;
3. its ``TIFFTAG_DATETIME`` / ``DATETIME`` tag, unless the file name holds a sensing time or
   a date of another day: that tag is when the file was written (TIFF's "date and time of
   image creation"), which a pass re-saved in a GIS moves to the day of the save, so the
   name's day wins then (with a warning);
4. a sensing time ``YYYYMMDDTHHMMSS`` in the file name (Sentinel-1/2 and other ESA
   products): two passes of one day stay two;
5. a ``YYYY-MM-DD`` or ``YYYYMMDD`` date in the file name (the day only).

It returns None when none of them gives a date; the monitor then falls back to the file's
modification time (and says so), prediction leaves ``acquired`` empty.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

__all__ = ["Acquired", "acquired_text", "parse_datetime_text", "read_acquired"]

log = logging.getLogger(__name__)

_DIGIT_FORMATS = {
    4: "%Y",
    6: "%Y%m",
    8: "%Y%m%d",
    10: "%Y%m%d%H",
    12: "%Y%m%d%H%M",
    14: "%Y%m%d%H%M%S",
}
_TAGS = ("ACQUISITIONDATETIME", "TIFFTAG_DATETIME", "DATETIME")
#: tags of when the file was written, which can be long after the acquisition
_WRITE_TAGS = ("TIFFTAG_DATETIME", "DATETIME")
#: a sensing time in a file name (Sentinel-1/2 and ESA products: ``..._20140720T003000_...``)
_NAME_TIME = re.compile(r"(?<!\d)(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})(?!\d)")
_NAME_DATES = (
    re.compile(r"(?<!\d)(\d{4})-(\d{2})-(\d{2})(?!\d)"),
    re.compile(r"(?<!\d)(\d{4})(\d{2})(\d{2})(?!\d)"),
)


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


@dataclass(frozen=True)
class Acquired:
    """An acquisition time and where it came from."""

    when: datetime
    source: Literal["regex", "tiff-tag", "file-name"]
    date_only: bool = False


def _name_date(name: str) -> datetime | None:
    """The first date in a file name (midnight UTC), or None."""
    for pattern in _NAME_DATES:
        for found in pattern.finditer(name):
            try:
                y, m, d = (int(g) for g in found.groups())
                day = datetime(y, m, d, tzinfo=UTC)
            except ValueError:
                continue
            if 1950 <= day.year <= 2100:
                return day
    return None


def _name_time(name: str) -> datetime | None:
    """The first sensing time in a file name (``YYYYMMDDTHHMMSS``, UTC), or None.

    Two passes of one day (Sentinel-1A at 00:30 and 1B at 17:15) are two acquisitions: a
    date alone would make them one.

    >>> _name_time("S1A_IW_GRDH_1SDV_20140720T003000_20140720T003025_001.tif").isoformat()
    '2014-07-20T00:30:00+00:00'
    >>> _name_time("LC08_L2SP_027031_20200712_02_T1.tif") is None
    True
    """
    for found in _NAME_TIME.finditer(name):
        try:
            y, mo, d, h, mi, sec = (int(g) for g in found.groups())
            when = datetime(y, mo, d, h, mi, sec, tzinfo=UTC)
        except ValueError:
            continue
        if 1950 <= when.year <= 2100:
            return when
    return None


def _file_tags(path: Path) -> Mapping[str, str]:
    import rasterio
    from rasterio.errors import RasterioError

    try:
        with rasterio.open(path) as ds:
            return dict(ds.tags())
    except (RasterioError, OSError):
        return {}  # unreadable: the scene fails (and says why) when it is read for prediction


def read_acquired(
    path: str | Path, tags: Mapping[str, str] | None = None, datetime_regex: str | None = None
) -> Acquired | None:
    r"""A scene's acquisition time, or None when unknown (see the module's order).

    Args:
        path: the scene file (its name is searched; its tags read when ``tags`` is None).
        tags: the file's GDAL metadata tags, when already open.
        datetime_regex: a regular expression with one capture group for the file name.

    >>> read_acquired("x.tif", {"TIFFTAG_DATETIME": "2021:06:03 10:20:30"}).when.isoformat()
    '2021-06-03T10:20:30+00:00'
    >>> a = read_acquired("LC08_L2SP_027031_20200712_02_T1.tif", {})
    >>> a.source, a.date_only, a.when.date().isoformat()
    ('file-name', True, '2020-07-12')
    >>> s1 = "S1B_IW_GRDH_1SDV_20140720T171500_20140720T171525_001.tif"
    >>> read_acquired(s1, {"TIFFTAG_DATETIME": "2014:07:20 19:02:11"}).when.isoformat()
    '2014-07-20T17:15:00+00:00'
    >>> read_acquired("s_2019-01-02_20200101.tif", {}, r"_(\d{8})").source
    'regex'
    >>> read_acquired("OSBS_029.tif", {}) is None
    True
    """
    name = Path(path).name
    if datetime_regex:
        match = re.search(datetime_regex, name)
        if match:
            text = match.group(1)
            try:
                when = parse_datetime_text(text)
                return Acquired(when, "regex", date_only=len(re.sub(r"\D", "", text)) <= 8)
            except ValueError:
                log.warning("%s: datetime_regex matched %r, which is not a date", name, text)
    tags = _file_tags(Path(path)) if tags is None else tags
    day, sensed = _name_date(name), _name_time(name)
    for tag in _TAGS:
        value = tags.get(tag)
        if not value or (tag in _WRITE_TAGS and sensed is not None):
            continue  # a sensing time in the name beats when the file was written
        try:
            when = parse_datetime_text(value)
        except ValueError:
            log.debug("%s: tag %s=%r is not a date", name, tag, value)
            continue
        if tag in _WRITE_TAGS and day is not None and when.date() != day.date():
            log.warning(
                "%s: %s says %s, the file name %s: taking the name's day (the tag is when "
                "the file was written; set [imagery] datetime_regex to choose)",
                name,
                tag,
                when.date().isoformat(),
                day.date().isoformat(),
            )
            break
        return Acquired(when, "tiff-tag")
    if sensed is not None:
        return Acquired(sensed, "file-name")
    return Acquired(day, "file-name", date_only=True) if day is not None else None


def acquired_text(acquired: Acquired | None) -> str | None:
    """ISO 8601 text of an acquisition time: a date alone when only the day is known.

    >>> acquired_text(read_acquired("a_20200712.tif", {}))
    '2020-07-12'
    """
    if acquired is None:
        return None
    return acquired.when.date().isoformat() if acquired.date_only else acquired.when.isoformat()
