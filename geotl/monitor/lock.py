"""The region lock: only one monitor writes a region at a time.

:class:`RegionLock` holds an exclusive ``flock`` on ``<region dir>/.lock`` for the whole run;
the OS releases it when the process dies, even by SIGKILL. The file records who holds it, so
that a second monitor and ``geotl monitor status`` can say so; whether it is held at all is
asked of the OS (a killed holder's record stays in the file).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from geotl.errors import ConfigError, LockedError
from geotl.monitor.storage import storage_error

__all__ = ["LOCK_FILE", "RegionLock"]

LOCK_FILE = ".lock"


def _flock_exclusive(fd: int, probe_s: float = 0.2) -> None:
    """Take ``fd``'s exclusive lock at once, or after ``probe_s`` once, or fail.

    :meth:`RegionLock.is_held` (``monitor status``) holds a shared lock for an instant; a
    monitor starting then tries once more instead of refusing to run. Another monitor is
    refused ``probe_s`` later.

    Raises:
        BlockingIOError: another process holds the lock.
    """
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        time.sleep(probe_s)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


class RegionLock:
    """An exclusive, non-blocking ``flock`` on ``<region dir>/.lock``.

    The lock file records the holder's pid, host and start time so that the second monitor
    can say who holds it. The OS drops the lock when its holder exits or is killed.
    """

    def __init__(self, region_dir: Path, region_name: str) -> None:
        self.path = Path(region_dir) / LOCK_FILE
        self.region_name = region_name
        self._fd: int | None = None

    def acquire(self, holder: Mapping[str, Any] | None = None) -> None:
        """Take the lock or fail at once.

        Raises:
            LockedError: another process holds it.
            ConfigError: the folder cannot be written.
        """
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:  # a read-only disk or share, another user's folder
            raise ConfigError(
                f"cannot write the monitor's output folder ({exc.strerror or exc}): choose a "
                "writable --out folder or fix its permissions",
                self.path.parent,
            ) from exc
        try:
            _flock_exclusive(fd)
        except BlockingIOError:
            os.close(fd)
            info = self.holder()
            who = f"pid {info.get('pid', '?')} on {info.get('host', '?')} since {info.get('since', '?')}"
            raise LockedError(
                f"another geotl monitor is already running on region '{self.region_name}' ({who}): "
                "wait for it to finish or stop it",
                self.path,
            ) from None
        payload = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": datetime.now(UTC).isoformat(timespec="seconds"),
            **(holder or {}),
        }
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(payload).encode("utf-8"), 0)
        except OSError as exc:  # a full disk: the run could write nothing else either
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
            raise storage_error(exc, self.path.parent) or ConfigError(
                f"cannot write the monitor's lock ({exc.strerror or exc}): choose a writable "
                "--out folder or fix its permissions",
                self.path,
            ) from exc
        self._fd = fd

    def holder(self) -> dict[str, Any]:
        """What the lock file says about its holder (pid, host, since, ...); empty when free."""
        try:
            info = json.loads(self.path.read_text(encoding="utf-8") or "{}")
        except (OSError, ValueError):
            return {}
        return info if isinstance(info, dict) else {}

    def is_held(self) -> bool | None:
        """Whether a process holds the lock now, as the OS says (None: it cannot say).

        The file alone cannot say: a monitor killed by SIGKILL leaves its pid there, and
        that pid alive again (reused, or pid 1 in a container run by cron) read as a
        monitor still running. A shared lock tried and dropped at once answers instead; a
        monitor starting in that instant waits for it (:func:`_flock_exclusive`).
        """
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return False
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        except OSError:  # a file system without flock
            return None
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return False
        finally:
            os.close(fd)

    def holder_pid(self) -> int | None:
        """The pid of the process holding the lock, else None (readable without locking).

        Where the OS cannot say whether the lock is held, a live process of the recorded
        pid on this host counts.
        """
        held = self.is_held()
        info = self.holder()
        pid = info.get("pid")
        if held is False or not isinstance(pid, int):
            return None
        if held or info.get("host", socket.gethostname()) != socket.gethostname():
            return pid
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        return pid

    def release(self) -> None:
        """Release the lock (the file stays; its content is cleared)."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RegionLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
