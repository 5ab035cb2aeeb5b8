"""``geotl --progress json monitor``: a program driving the monitor sees its progress."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from monitor_helpers import deliver

from geotl.cli.main import cli
from geotl.progress import set_progress_format


@pytest.fixture
def bar_afterwards() -> Iterator[None]:
    """``--progress json`` sets a process-wide format: give later tests their bars back."""
    yield
    set_progress_format("bar")


def test_monitor_reports_windows_as_json_lines_through_a_pipe(
    naip_region: Path,
    naip_small: list[Path],
    naip_model: Path,
    tmp_path: Path,
    one_thread: None,
    bar_afterwards: None,
) -> None:
    # the windows' progress was shown only when stderr was a terminal, and a program that
    # asked for JSON lines reads stderr through a pipe: it got none, pass after pass
    deliver(naip_region, naip_small[:2])
    args = ["--progress", "json", "monitor", str(naip_region), "--model", str(naip_model)]
    res = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "out"), "--once"])
    assert res.exit_code == 0, res.output
    lines = [json.loads(ln) for ln in res.stderr.splitlines() if ln.startswith("{")]
    finals = {ln["progress"]: ln for ln in lines if ln["n"] == ln["total"]}
    assert sorted(finals) == [f"predict {s.name}" for s in naip_small[:2]], lines
    assert all(ln["unit"] == "win" and ln["total"] > 0 for ln in finals.values())
    assert res.stdout == ""
