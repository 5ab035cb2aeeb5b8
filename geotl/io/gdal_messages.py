"""GDAL's own messages, as log lines like geotl's.

GDAL prints a warning as ``Warning 1: ...`` on stderr itself unless a rasterio environment
is active: rasterio routes GDAL's messages to Python logging (logger ``rasterio._env``)
only inside ``rasterio.Env``, and its ``open`` leaves the environment it enters once the
file is open. A mask or overview directory read later (``mask_flag_enums`` re-reads the
TIFF directory) then warned straight on stderr, bare, without the UTC time every other
line of a cron log or the journal starts with, and past ``-q`` and the QGIS plugin's reading
of lines by their level. The CLI therefore runs every command inside one environment
(:func:`gdal_messages_logged`, entered once in ``geotl.cli.main``), and the monitor's pass
runner enters it too for callers of the library.

Within it each GDAL warning is said once: a scene with corrupt JPEG tiles made libjpeg warn
once per tile and per read (the band sample, each window, each of ``--read-threads``), 64
lines differing only in a byte count. Warnings that differ only in their numbers (a tile,
a byte count, an offset) are one message; their repeats are counted and said once when
the command ends. Errors are said once per exact text: two files' failures both reach the
user, and a failed read still raises (:func:`geotl.io.rasters.read_failure`).
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections import Counter
from collections.abc import Iterator

__all__ = ["HARMLESS", "gdal_messages_logged"]

#: GDAL warnings that say nothing an operator can act on, kept at debug level (``-vv``).
#: libtiff on 4-band (RGB + NIR) files written without an ExtraSamples tag, such as
#: Landsat or NAIP bands stacked by many tools: it reads the fourth band as an extra
#: sample, which is what geotl does with it anyway (bands are taken by [imagery] bands).
HARMLESS = ("Defining non-color channels as ExtraSamples",)

_RASTERIO = "rasterio"
#: the loggers rasterio sends GDAL's messages to (its handler, its chained errors)
_GDAL_LOGGERS = ("rasterio._env", "rasterio._err")


_NUMBER = re.compile(r"\b\d+\b")


def message_shape(level: int, message: str) -> tuple[int, str]:
    """What makes two GDAL messages one: a warning's words, an error's exact text.

    >>> message_shape(30, "Corrupt JPEG data: 15504 extraneous bytes before marker 0xd9")
    (30, 'Corrupt JPEG data: # extraneous bytes before marker 0xd9')
    >>> message_shape(40, "scene_2019.tif: read failed")
    (40, 'scene_2019.tif: read failed')
    """
    return (level, message if level >= logging.ERROR else _NUMBER.sub("#", message))


#: the filters of the environments entered, innermost last: only it counts repeats, so a
#: monitor's run within the CLI's command (``--every``: for days) says its own at its end
_ENTERED: list[_GdalFilter] = []
#: a record attribute that lets the count of repeats through every filter
_REPEATS = "gdal_repeats"


class _GdalFilter(logging.Filter):
    """Drops :data:`HARMLESS` GDAL warnings (unless geotl logs at debug level) and repeats.

    Called from GDAL's reading threads at once: the count is kept under a lock.
    """

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self.first: dict[tuple[int, str], logging.LogRecord] = {}
        self.repeats: Counter[tuple[int, str]] = Counter()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        debug = logging.getLogger("geotl").isEnabledFor(logging.DEBUG)
        if not debug and any(text in message for text in HARMLESS):
            return False
        if getattr(record, _REPEATS, False) or _ENTERED[-1:] != [self]:
            return True  # a count of repeats, or an inner environment counts
        key = message_shape(record.levelno, message)
        with self._lock:
            if key in self.first:
                self.repeats[key] += 1
                return False
            self.first[key] = record
        return True

    def say_repeats(self) -> None:
        """One line for each message said again, with how many more times.

        Under the logger that said it first (``rasterio._env``), as GDAL's other lines.
        """
        for key, count in self.repeats.items():
            record = self.first[key]
            logging.getLogger(record.name).log(
                record.levelno,
                "GDAL said %d more time(s)%s: %s",
                count,
                "" if key[0] >= logging.ERROR else " (numbers may differ)",
                record.getMessage(),
                extra={_REPEATS: True},
            )


def _handled(logger: logging.Logger) -> bool:
    """Whether a record of ``logger`` reaches a handler that writes it somewhere.

    rasterio gives its logger a NullHandler, so ``hasHandlers`` is always true.
    """
    current: logging.Logger | None = logger
    while current is not None:
        if any(not isinstance(h, logging.NullHandler) for h in current.handlers):
            return True
        current = current.parent if current.propagate else None
    return False


@contextlib.contextmanager
def gdal_messages_logged() -> Iterator[None]:
    """Within: GDAL's messages go through logging, stamped and named as geotl's lines.

    When nothing handles rasterio's logger (a library caller configured only ``geotl``'s), it
    borrows the ``geotl`` logger's handlers for the duration; Python's last-resort handler
    would print the bare message. A caller that configured logging keeps its own. Each
    message is said once within (:class:`_GdalFilter`); repeats are counted, said at the end.
    """
    import rasterio  # here, not at import: `geotl --help` answers without it

    logger = logging.getLogger(_RASTERIO)
    gdal = [logging.getLogger(name) for name in _GDAL_LOGGERS]
    said = _GdalFilter()
    borrowed = [] if _handled(logger) else list(logging.getLogger("geotl").handlers)
    for handler in borrowed:
        logger.addHandler(handler)
    for each in gdal:
        each.addFilter(said)
    _ENTERED.append(said)
    try:
        with rasterio.Env():
            yield
    finally:
        _ENTERED.remove(said)
        for each in gdal:
            each.removeFilter(said)
        try:
            said.say_repeats()
        finally:
            for handler in borrowed:
                logger.removeHandler(handler)
