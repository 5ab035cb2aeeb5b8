"""Time in the monitor: the ``--every`` interval, retry backoff, and "now"."""

from __future__ import annotations

import re
from datetime import UTC, datetime

__all__ = ["backoff_s", "parse_every", "utc_now"]

_EVERY = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_every(text: str) -> float:
    """Parse an interval such as ``6h``, ``30m``, ``1d`` or ``1h30m`` into seconds.

    >>> parse_every("6h"), parse_every("1h30m"), parse_every("45s")
    (21600.0, 5400.0, 45.0)

    Raises:
        ValueError: the text is not an interval.
    """
    cleaned = text.strip().lower().replace(" ", "")
    if not cleaned or _EVERY.sub("", cleaned):
        raise ValueError(f"'{text}' is not an interval: use e.g. 30m, 6h, 1d or 1h30m")
    total = sum(float(n) * _UNIT_S[u] for n, u in _EVERY.findall(cleaned))
    if total <= 0:
        raise ValueError(f"interval '{text}' must be longer than 0 s")
    return total


def backoff_s(attempts: int, base_s: float, max_s: float) -> float:
    """Wait before retrying a scene that failed ``attempts`` times: doubling, capped.

    >>> [backoff_s(n, 600.0, 3000.0) for n in (1, 2, 3, 4)]
    [600.0, 1200.0, 2400.0, 3000.0]
    """
    return min(base_s * 2.0 ** (attempts - 1), max_s)


def utc_now() -> datetime:
    """The current time, in UTC."""
    return datetime.now(UTC)
