"""Progress on stderr: a tqdm bar for people, or JSON lines for programs.

Every long step makes its bar with :func:`progress_bar`. ``geotl --progress json`` (or
``GEOTL_PROGRESS=json``) turns each bar into one JSON object per update, on stderr, for
programs that drive the CLI (the QGIS plugin)::

    {"progress": "chips", "n": 120, "total": 480, "unit": "chip", "elapsed_s": 3.2}

``total`` is null when unknown. Bars follow the log level: drawn when ``geotl`` logs INFO
(the CLI without ``-q``), hidden for library callers that did not configure logging. JSON
lines, asked for explicitly, are written whatever the log level.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any, Literal

from tqdm import tqdm

__all__ = ["ProgressFormat", "progress_bar", "progress_seen", "set_phase", "set_progress_format"]

ProgressFormat = Literal["bar", "json"]

_format: ProgressFormat = "bar"


def set_progress_format(fmt: ProgressFormat) -> None:
    """Choose how every later progress bar of this process reports (the CLI's ``--progress``)."""
    global _format
    _format = fmt


class _JsonLines(tqdm):  # type: ignore[type-arg]
    """A tqdm whose every refresh is one JSON line instead of a redrawn bar."""

    # no monitor thread: a JSON stream needs no redraw of stalled bars, and a live thread
    # would stop the chip cutter from forking its workers
    monitor_interval = 0

    _shown_n: float | None = None

    def display(self, msg: str | None = None, pos: int | None = None) -> None:
        if msg is not None:  # tqdm clearing its line: a JSON stream has nothing to clear
            return
        d = self.format_dict
        self._shown_n = d["n"]
        line = {
            "progress": d["prefix"] or "",
            "n": d["n"],
            "total": d["total"],
            "unit": d["unit"],
            "elapsed_s": round(d["elapsed"], 2),
        }
        if d.get("postfix"):
            line["phase"] = d["postfix"]
        self.fp.write(json.dumps(line) + "\n")
        self.fp.flush()

    def close(self) -> None:
        if not self.disable and self.n != self._shown_n:
            self.display()  # the final count, however recent the last update
        self.leave = False  # nothing to leave on a terminal
        super().close()


def set_phase(bar: tqdm[Any], phase: str) -> None:
    """Say what a step does once its count has stopped moving, e.g. after the last window.

    A bar at 100 % for the minutes a large scene's last rows, its probabilities file and
    its objects take looks hung; the phase is shown after the count (``predict s.tif:
    100%|...| 441/441 [00:52, writing the probabilities]``), and as ``"phase"`` in JSON
    lines (a new line each time it changes).
    """
    if not bar.disable:
        bar.set_postfix_str(phase, refresh=True)


def progress_seen() -> bool:
    """Whether a progress bar on stderr reaches anyone: a terminal, or a program reading JSON.

    A bar redrawn into a log file (cron, the journal) is noise, so steps that run
    unattended as often as not (``geotl monitor``) show theirs only where this holds; JSON
    lines always do, since a program that asked for them reads stderr through a pipe.
    """
    if _format == "json":
        return True
    try:
        return bool(sys.stderr.isatty())
    except (AttributeError, ValueError):  # a closed or replaced stream
        return False


def progress_bar(
    *,
    total: int | None,
    desc: str,
    unit: str,
    enabled: bool = True,
    terminal: bool = True,
    leave: bool = True,
) -> tqdm[Any]:
    """A progress bar on stderr in the format chosen by :func:`set_progress_format`.

    Args:
        total: the number of steps (None: unknown).
        desc: what is counted, e.g. ``"chips"`` or ``"predict plot.tif"``.
        unit: the unit of one step.
        enabled: False hides it in every format (e.g. ``--no-progress``).
        terminal: False shows it only as JSON lines (the step already logs a line per
            update for people, e.g. an epoch).
        leave: keep the finished bar on the terminal.
    """
    if _format == "json":
        return _JsonLines(total=total, desc=desc, unit=unit, disable=not enabled, mininterval=0.25)
    shown = enabled and terminal and logging.getLogger("geotl").isEnabledFor(logging.INFO)
    return tqdm(
        total=total, desc=desc, unit=unit, dynamic_ncols=True, disable=not shown, leave=leave
    )
