"""The ``--out`` folder's storage failing under a monitor run: a full or read-only disk.

A disk that fills up (or is remounted read-only) mid-run is not a fault of the scene being
processed: recording that scene as failed would put it on a retry backoff and run on into
every other pass, each failing the same way. The run stops instead, with one line that
names the folder and the fix (exit code 2, like a folder that cannot be written at all);
SQLite rolls back the transaction it could not write, every output is written to a
temporary name first, so the next run, once there is room, completes this one.
"""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

from geotl.errors import ConfigError

__all__ = ["storage_error"]

#: errors of a full disk or quota, whichever file they hit
_FULL = {errno.ENOSPC, errno.EDQUOT}
#: errors of a folder that cannot be written; a permission error counts only under --out (an
#: unreadable scene is the scene's failure)
_READ_ONLY = {errno.EROFS}
_DENIED = {errno.EACCES, errno.EPERM}
#: SQLite's names for the same (``sqlite3.Error.sqlite_errorname``)
_SQLITE_FULL = "SQLITE_FULL"
_SQLITE_READ_ONLY = "SQLITE_READONLY"


def storage_error(exc: BaseException, out_dir: Path) -> ConfigError | None:
    """A one-line error for ``exc`` when it is ``out_dir``'s disk that failed; else None.

    Args:
        exc: what a write under ``out_dir`` (or anything else in the run) raised.
        out_dir: the region's output folder.

    >>> import errno
    >>> storage_error(OSError(errno.ENOSPC, "No space left on device"), Path("out/r"))
    ConfigError('out/r: the disk is full (No space left on device): free space on it or choose another --out folder; the next run completes this one')
    >>> storage_error(OSError(errno.EACCES, "Permission denied", "scenes/a.tif"), Path("out/r")) is None
    True
    >>> storage_error(ValueError("no"), Path("out/r")) is None
    True
    """
    reason: str | None = None
    if isinstance(exc, sqlite3.Error):
        name = getattr(exc, "sqlite_errorname", "") or ""
        if name.startswith(_SQLITE_FULL):
            reason = "full"
        elif name.startswith(_SQLITE_READ_ONLY):
            reason = "read-only"
    elif isinstance(exc, OSError) and exc.errno is not None:
        if exc.errno in _FULL:
            reason = "full"
        elif exc.errno in _READ_ONLY or (exc.errno in _DENIED and _under(exc.filename, out_dir)):
            reason = "read-only"
    if reason is None:
        return None
    detail = getattr(exc, "strerror", None) or str(exc).strip().splitlines()[0]
    if reason == "full":
        what, fix = "the disk is full", "free space on it or choose another --out folder"
    else:
        what, fix = (
            "cannot be written",
            "fix its permissions or mount, or choose another --out folder",
        )
    return ConfigError(f"{what} ({detail}): {fix}; the next run completes this one", out_dir)


def _under(filename: object, folder: Path) -> bool:
    if not isinstance(filename, str | bytes) or not filename:
        return False
    path = Path(filename.decode() if isinstance(filename, bytes) else filename)
    try:
        return path.resolve().is_relative_to(folder.resolve())
    except (OSError, ValueError):
        return False
