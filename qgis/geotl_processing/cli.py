"""Run the ``geotl`` executable: find it, follow its progress, cancel it, report its errors.

Plain Python (no QGIS import): the feedback object only needs ``isCanceled``,
``setProgress``, ``setProgressText``, ``pushInfo`` and ``pushWarning`` (QGIS's
``QgsProcessingFeedback`` has them). geotl writes its logs and, with ``--progress json``,
one JSON object per progress update to stderr; stdout carries its data.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple

HERE = Path(__file__).resolve().parent
SETTING_HINT = (
    "set its path in Processing > Options > Providers > geotl > geotl executable "
    "(make venv in the geotl repository installs it as .venv/bin/geotl)"
)
ERROR_PREFIX = "geotl: error: "
#: seconds geotl gets to clean up after Cancel before it is terminated
CANCEL_GRACE_S = 60.0
#: the oldest geotl this plugin runs (``--progress json``, predict's ``--window``, ``--nodata``...)
MIN_GEOTL_VERSION = (0, 1, 0)
UPDATE_HINT = (
    "update geotl (in its repository: git pull, then make venv) and reinstall this plugin "
    "from the same checkout (make qgis-plugin), or " + SETTING_HINT.replace("set its", "set the")
)


class GeotlCliError(Exception):
    """geotl failed, or could not be run; the message is one line for the user.

    Attributes:
        returncode: geotl's exit code (None when it could not be run).
        stdout: what geotl printed on stdout before it failed (the files it wrote).
    """

    def __init__(self, message: str, returncode: Optional[int] = None, stdout: str = "") -> None:
        super().__init__(message)
        self.returncode = returncode
        self.stdout = stdout


class GeotlCancelled(GeotlCliError):
    """The user cancelled the run; geotl stopped and removed what it had started."""


def _venv_candidates(repo: Path) -> List[Path]:
    return [repo / ".venv" / "bin" / "geotl", repo / ".venv" / "Scripts" / "geotl.exe"]


def default_executable() -> str:
    """Where geotl probably is: on PATH, else the ``.venv`` of the repository the plugin came from.

    The zip built by ``make qgis-plugin`` records that repository in ``build.json``; a
    plugin folder linked from the repository finds it two folders up.
    """
    found = shutil.which("geotl")
    if found:
        return found
    candidates: List[Path] = []
    build = HERE / "build.json"
    if build.is_file():
        with contextlib.suppress(ValueError, KeyError, TypeError):
            candidates += _venv_candidates(Path(json.loads(build.read_text())["repository"]))
    candidates += _venv_candidates(HERE.parents[1])
    for path in candidates:
        if path.is_file():
            return str(path)
    return "geotl"


_checked: dict = {}


def version_of(said: str) -> Optional[Tuple[int, ...]]:
    """The version ``geotl --version`` states, as a tuple of ints (None when it states none).

    >>> version_of("geotl, version 0.1.0")
    (0, 1, 0)
    >>> version_of("geotl, version 0.2.0.dev3+g1234") is None, version_of("geotl") is None
    (False, True)
    """
    found = re.search(r"version (\d+)\.(\d+)(?:\.(\d+))?", said)
    return tuple(int(g or 0) for g in found.groups()) if found else None


def check_executable(exe: str) -> str:
    """The absolute path of ``exe`` once it answers ``--version`` as geotl.

    Raises:
        GeotlCliError: not found, not runnable, or not geotl; the message says where to set it.
    """
    exe = (exe or "").strip()
    if not exe:
        raise GeotlCliError(f"no geotl executable set: {SETTING_HINT}")
    if exe in _checked:
        return _checked[exe]
    path = exe if os.path.sep in exe else (shutil.which(exe) or exe)
    if not os.path.isfile(path):
        raise GeotlCliError(f"geotl executable not found at '{exe}': {SETTING_HINT}")
    try:
        res = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=60, env=_child_env()
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise GeotlCliError(f"cannot run '{path}' ({exc}): {SETTING_HINT}") from exc
    said = (res.stdout or res.stderr).strip().splitlines()
    if res.returncode != 0 or not said or not said[0].startswith("geotl"):
        first = said[0][:120] if said else f"exit code {res.returncode}"
        raise GeotlCliError(f"'{path}' is not the geotl executable ({first}): {SETTING_HINT}")
    version = version_of(said[0])
    if version is not None and version < MIN_GEOTL_VERSION:
        need = ".".join(map(str, MIN_GEOTL_VERSION))
        raise GeotlCliError(
            f"'{path}' is geotl {'.'.join(map(str, version))}, older than this plugin needs "
            f"({need} or newer): {UPDATE_HINT}"
        )
    _checked[exe] = path
    return path


def _child_env() -> dict:
    # QGIS's own Python settings must not leak into geotl's interpreter
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "PYTHONPATH")}
    env["PYTHONIOENCODING"] = "utf-8"
    env.pop("GEOTL_PROGRESS", None)
    return env


def progress_of(line: str) -> Optional[dict]:
    """The progress update a stderr line carries, or None for a log line.

    >>> progress_of('{"progress": "chips", "n": 3, "total": 4, "unit": "chip"}')["n"]
    3
    >>> progress_of("INFO geotl.train: epoch 1/2") is None
    True
    """
    if not line.startswith('{"progress"'):
        return None
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


def _show_progress(update: dict, feedback: Any) -> None:
    n, total = update.get("n") or 0, update.get("total")
    what = update.get("progress") or "geotl"
    # after the count: what the step does once it stops moving (geotl.progress.set_phase)
    phase = f", {update['phase']}" if update.get("phase") else ""
    if total:
        feedback.setProgress(min(100.0, 100.0 * n / total))
        text = f"{what}: {int(n)}/{int(total)} {update.get('unit', '')}".rstrip()
    else:
        text = f"{what}: {int(n)} {update.get('unit', '')}".rstrip()
    feedback.setProgressText(text + phase)


#: click's usage errors for what a geotl of another version lacks (after "Error: " in older
#: versions, after geotl's own error prefix in newer ones)
_UNKNOWN_TO_GEOTL = ("No such option", "No such command", "Got unexpected extra")


def error_message(stderr_lines: Sequence[str], returncode: int) -> str:
    """The one-line error geotl printed, or the end of its output when it died without one.

    >>> error_message(["INFO x", "geotl: error: model.json: not found: train first"], 2)
    'model.json: not found: train first'
    >>> error_message(["Traceback ...", "MemoryError"], 1)
    'geotl failed (exit code 1): MemoryError'
    """
    for line in reversed(stderr_lines):
        if line.startswith(ERROR_PREFIX):
            said = line[len(ERROR_PREFIX) :].strip()
            return _unknown_to_geotl(said) or said
    for line in reversed(stderr_lines):
        # click's own usage text (geotl before one-line usage errors)
        if line.startswith("Error: ") and (known := _unknown_to_geotl(line[len("Error: ") :])):
            return known
    tail = [ln for ln in stderr_lines if ln.strip() and progress_of(ln) is None][-1:]
    return f"geotl failed (exit code {returncode})" + (f": {tail[0].strip()}" if tail else "")


def _unknown_to_geotl(said: str) -> str | None:
    """The message for a usage error about an option or command this geotl lacks, else None.

    >>> _unknown_to_geotl("No such option: --window (geotl predict --help says more)")[:37]
    'this geotl does not match the plugin '
    """
    said = said.strip()
    if said.startswith(_UNKNOWN_TO_GEOTL):
        return f"this geotl does not match the plugin ({said}): {UPDATE_HINT}"
    return None


def _default_sigint() -> None:
    # a QGIS started in the background ignores SIGINT, and so would geotl (Python installs
    # its KeyboardInterrupt handler only where SIGINT is not ignored): Cancel needs it
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _interrupt(proc: subprocess.Popen[str]) -> None:
    """Ask geotl to stop as Ctrl+C would: it removes its temporary files and exits 130."""
    if sys.platform == "win32":
        proc.terminate()
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGINT)


def _kill(proc: subprocess.Popen[str]) -> None:
    """Kill geotl and every process it started (workers hold its stderr open: no EOF else)."""
    if sys.platform == "win32":
        proc.kill()
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def run_geotl(exe: str, args: Sequence[str], feedback: Any, cwd: Optional[str] = None) -> str:
    """Run ``geotl --progress json ARGS``; return its stdout.

    Progress lines move the feedback's bar, log lines go to its log. Cancel sends geotl an
    interrupt (what Ctrl+C does: it stops and removes its temporary files); a geotl that
    has not exited :data:`CANCEL_GRACE_S` seconds later is killed, with the processes it started.

    Raises:
        GeotlCancelled: the feedback was cancelled.
        GeotlCliError: geotl could not run or failed; its one-line error as the message.
    """
    path = check_executable(exe)
    cmd = [path, "--progress", "json", *[str(a) for a in args]]
    feedback.pushInfo("geotl: " + " ".join(cmd[1:]))
    lines: queue.Queue[Optional[str]] = queue.Queue()
    stdout_parts: List[str] = []
    try:
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            encoding="utf-8",
            errors="replace",
            env=_child_env(),
            cwd=cwd,
            # its own process group: Cancel interrupts geotl and its workers, not QGIS
            start_new_session=sys.platform != "win32",
            preexec_fn=None if sys.platform == "win32" else _default_sigint,
        )
    except OSError as exc:
        raise GeotlCliError(f"cannot run '{path}' ({exc}): {SETTING_HINT}") from exc

    def pump_stderr() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.put(line.rstrip("\r\n"))
        lines.put(None)

    def pump_stdout() -> None:
        assert proc.stdout is not None
        stdout_parts.append(proc.stdout.read())

    readers = [threading.Thread(target=f, daemon=True) for f in (pump_stderr, pump_stdout)]
    for t in readers:
        t.start()
    stderr_lines: List[str] = []
    cancelled_at: Optional[float] = None
    killed = False
    stderr_open = True
    while stderr_open or proc.poll() is None:
        if cancelled_at is None and feedback.isCanceled():
            cancelled_at = time.monotonic()
            feedback.pushInfo("geotl: cancelling (removing what was started)")
            _interrupt(proc)
        overdue = cancelled_at is not None and time.monotonic() - cancelled_at > CANCEL_GRACE_S
        if overdue and not killed:
            _kill(proc)
            killed = True
        try:
            line = lines.get(timeout=0.1)
        except queue.Empty:
            continue
        if line is None:
            stderr_open = False
            continue
        stderr_lines.append(line)
        update = progress_of(line)
        if update is not None:
            _show_progress(update, feedback)
        elif line.startswith(ERROR_PREFIX) or line.startswith("WARNING"):
            feedback.pushWarning(line)
        elif line.strip():
            feedback.pushInfo(line)
    code = proc.wait()
    for t in readers:
        t.join(timeout=10)
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()
    if code != 0 and cancelled_at is not None:
        raise GeotlCancelled("cancelled: geotl stopped and wrote nothing")
    if code != 0:  # (code 0 after Cancel: geotl finished first, its outputs are complete)
        raise GeotlCliError(error_message(stderr_lines, code), code, "".join(stdout_parts))
    return "".join(stdout_parts)
