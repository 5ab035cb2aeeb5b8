"""Atomic writes: write to a temporary name beside the target, then rename.

A reader never sees a half-written file, and an interrupted run leaves at most a
``.tmp-*`` file or folder that later runs ignore. An output folder is built as
``.tmp-NAME.PID@HOST.XXXX``: a run killed outright (SIGKILL, out of memory, power) leaves it
behind, and the next run that builds ``NAME`` on that host removes it once that process is
gone (chips and a partial model can take gigabytes).
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from geotl.errors import GeotlInputError, OutputExistsError, error_text

__all__ = [
    "atomic_dir",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_output_file",
    "check_writable",
    "prepare_output_dir",
]

TMP_PREFIX = ".tmp-"


def check_output_file(path: Path, overwrite: bool = True) -> None:
    """Fail early, before any work, when ``path`` cannot be written.

    Raises:
        GeotlInputError: the parent folder does not exist, or ``path`` is a folder.
        OutputExistsError: the file exists and ``overwrite`` is false.
    """
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise GeotlInputError(f"folder '{parent}' does not exist: create it first", path)
    if path.is_dir():  # --overwrite cannot replace a folder with a file
        raise GeotlInputError(
            f"is a folder: name the file to write, e.g. '{path / ('out' + path.suffix)}'", path
        )
    if path.exists() and not overwrite:
        raise OutputExistsError("exists: pass --overwrite to replace it", path)


def check_writable(outputs: Iterable[Path]) -> None:
    """Fail before any work when a file cannot be created in an output's folder.

    Raises:
        GeotlInputError: a folder is read-only (permissions, a read-only disk or share).
    """
    seen: set[Path] = set()
    for path in outputs:
        parent = path.parent if str(path.parent) else Path(".")
        if parent in seen:
            continue
        seen.add(parent)
        try:
            fd, probe = tempfile.mkstemp(prefix=TMP_PREFIX, dir=parent)
        except OSError as exc:
            raise GeotlInputError(
                f"cannot write in folder '{parent}' ({exc.strerror or error_text(exc)}): "
                "choose a writable folder or fix its permissions",
                path,
            ) from None
        os.close(fd)
        os.unlink(probe)


@contextlib.contextmanager
def atomic_path(path: Path, suffix: str | None = None, *, optional: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    On an exception the temporary file is removed and ``path`` is untouched. ``optional``:
    nothing written under the temporary name is no error (``path`` is left as it is).
    """
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f"{TMP_PREFIX}{path.name}.", suffix=suffix or path.suffix, dir=path.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()
    try:
        yield tmp
        if optional and not tmp.exists():
            return
        if tmp.exists():
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            if tmp.is_file():  # a file like any other (safetensors writes 0600)
                tmp.chmod(0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


@functools.cache
def _umask() -> int:
    """The process's umask, read once (reading it sets it: not while threads create files)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def prepare_output_dir(path: Path, overwrite: bool) -> None:
    """Check that ``path`` may be written as a whole output folder.

    Raises:
        OutputExistsError: the folder exists, is not empty and ``overwrite`` is false.
        GeotlInputError: ``path`` exists and is a file.
    """
    if path.exists() and not path.is_dir():
        raise GeotlInputError("exists and is a file: choose a folder for --out", path)
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise OutputExistsError("output folder exists: pass --overwrite to replace it", path)


@contextlib.contextmanager
def atomic_dir(path: Path, overwrite: bool) -> Iterator[Path]:
    """Build a folder under a temporary name and swap it into place on success.

    The old folder (with ``overwrite``) is only removed once the new one is complete, so an
    interrupted run leaves the previous output intact.
    """
    path = Path(path)
    prepare_output_dir(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    host = socket.gethostname()
    _remove_orphans(path, host)
    tmp = Path(
        tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{path.name}.{os.getpid()}@{host}.", dir=path.parent)
    )
    tmp.chmod(0o777 & ~_umask())  # a folder like any other once renamed, not mkdtemp's 0700
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old: Path | None = None
    if path.exists():
        old = path.parent / f"{TMP_PREFIX}{path.name}.old"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(path, old)
    os.replace(tmp, path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _remove_orphans(path: Path, host: str) -> None:
    """Remove the folders that killed runs of this host left while building ``path``.

    Only ``.tmp-NAME.PID@HOST.XXXX`` folders of this host whose process is gone: a run still
    going (here or on another machine sharing the disk) keeps its folder.
    """
    pattern = re.compile(
        rf"{re.escape(TMP_PREFIX + path.name)}\.(\d+)@{re.escape(host)}\.[A-Za-z0-9_]+"
    )
    for cand in path.parent.glob(f"{TMP_PREFIX}{path.name}.*@*"):
        match = pattern.fullmatch(cand.name)
        if match and cand.is_dir() and not _alive(int(match.group(1))):
            shutil.rmtree(cand, ignore_errors=True)


def _alive(pid: int) -> bool:
    """Whether a process ``pid`` runs on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's
        return True
    return True
