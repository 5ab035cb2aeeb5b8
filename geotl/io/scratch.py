"""Scratch folders in the system's temporary folder, and those that killed runs left.

A run that is killed (SIGKILL, a systemd timeout, the kernel's out-of-memory killer, a Dask
worker lost mid-scene) cannot remove its scratch folder, and a large scene's planes there
take gigabytes. Every folder's name carries the host and the process id of its run:
``geotl-<kind>-<host>-<pid>-<random>``. Making a new one first removes the folders of this
host whose process is gone and that nothing has written to for :data:`STALE_AFTER_S`
(so a process in another PID namespace that shares the folder and the host name keeps its
own). ``TMPDIR`` chooses the folder, as for every program.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = ["STALE_AFTER_S", "remove_stale", "scratch_dir"]

log = logging.getLogger(__name__)

STALE_AFTER_S = 3600.0
"""A dead process's folder is removed once nothing in it has changed for this long."""


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname())[:64] or "host"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _last_change(path: Path) -> float:
    times = [path.stat().st_mtime]
    with contextlib.suppress(OSError), os.scandir(path) as entries:
        times += [e.stat(follow_symlinks=False).st_mtime for e in entries]
    return max(times)


def remove_stale(kind: str) -> list[Path]:
    """Remove this host's ``kind`` scratch folders of processes that are gone; those removed.

    Never fails a run: a folder that goes away meanwhile (its run ended) or cannot be
    removed is passed over.

    >>> remove_stale("doctest-nothing-here")
    []
    """
    pattern = re.compile(rf"geotl-{re.escape(kind)}-{re.escape(_host())}-(\d+)-")
    now = time.time()
    removed: list[Path] = []
    try:
        with os.scandir(tempfile.gettempdir()) as entries:
            candidates = [
                (Path(e.path), int(m.group(1)))
                for e in entries
                if (m := pattern.match(e.name)) is not None and e.is_dir(follow_symlinks=False)
            ]
    except OSError:
        return removed
    for path, pid in candidates:
        if pid == os.getpid() or _alive(pid):
            continue
        # another run may remove its own folder between the listing and here
        with contextlib.suppress(OSError):
            if path.stat().st_uid != os.getuid() or now - _last_change(path) < STALE_AFTER_S:
                continue
            shutil.rmtree(path)
            log.info("removed %s, left by a run that was killed (process %d)", path, pid)
            removed.append(path)
    return removed


@contextlib.contextmanager
def scratch_dir(kind: str) -> Iterator[Path]:
    """A new scratch folder for one run (``kind``: what it holds), removed on the way out.

    The folder's name is chosen before it is made, so that an interrupt (Ctrl-C, Cancel in
    QGIS) that lands just after it is made still removes it: with ``tempfile.mkdtemp`` the
    name came back only once the folder existed, and an interrupt in between left it (seen
    once in the QGIS plugin's cancel test). The name holds this process's id and 64 random
    bits. Stale folders of killed runs of the same kind go first.
    """
    remove_stale(kind)
    parent = Path(tempfile.gettempdir())
    path: Path | None = None
    try:
        while True:
            path = parent / f"geotl-{kind}-{_host()}-{os.getpid()}-{secrets.token_hex(8)}"
            try:
                os.mkdir(path, 0o700)
                break
            except FileExistsError:
                continue
        yield path
    finally:
        if path is not None:
            shutil.rmtree(path, ignore_errors=True)
