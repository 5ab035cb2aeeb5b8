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
"""

from __future__ import annotations

import contextlib
import logging
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


class _HarmlessFilter(logging.Filter):
    """Drops :data:`HARMLESS` GDAL warnings unless geotl logs at debug level."""

    def filter(self, record: logging.LogRecord) -> bool:
        if logging.getLogger("geotl").isEnabledFor(logging.DEBUG):
            return True
        message = record.getMessage()
        return not any(text in message for text in HARMLESS)


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
    would print the bare message. A caller that configured logging keeps its own.
    """
    import rasterio  # here, not at import: `geotl --help` answers without it

    logger = logging.getLogger(_RASTERIO)
    gdal = [logging.getLogger(name) for name in _GDAL_LOGGERS]
    harmless = _HarmlessFilter()
    borrowed = [] if _handled(logger) else list(logging.getLogger("geotl").handlers)
    for handler in borrowed:
        logger.addHandler(handler)
    for each in gdal:
        each.addFilter(harmless)
    try:
        with rasterio.Env():
            yield
    finally:
        for each in gdal:
            each.removeFilter(harmless)
        for handler in borrowed:
            logger.removeHandler(handler)
