"""Earlier geotl trees for the upgrade tests, taken from this repository's own history.

A team upgrades geotl over chips, models and monitor states that an earlier geotl wrote.
The tests make those files with the earlier geotl itself (``git archive`` of a fixed commit,
run by this virtual environment), not by editing today's files into an older shape: only
the earlier code knows everything it wrote differently.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

#: the last geotl whose monitor state is schema 1 (schema 2 added the pass areas); its
#: chips are cut as today's are
SCHEMA_1 = "d46f638d8d810fd9311ad32c96c8413b541304dc"
#: a geotl before chipset.json's cut rules 2: its chips list objects the guard bands hid
CUT_RULES_1 = "8a60abe4342c98238c70a98fcc918aff4c0483a0"


@dataclass(frozen=True)
class Geotl:
    """A geotl tree run as a user runs it: ``python -m geotl`` in a fresh process."""

    root: Path

    def run(self, *args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
        """Run ``geotl ARGS`` from ``cwd`` (one thread, no GPU); never raises on its exit code."""
        env = {
            **os.environ,
            "PYTHONPATH": str(self.root),
            "OMP_NUM_THREADS": "1",
            "CUDA_VISIBLE_DEVICES": "",
        }
        return subprocess.run(
            [sys.executable, "-m", "geotl", *map(str, args)],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )


#: this checkout's geotl, in a process of its own like the earlier ones
TODAY = Geotl(REPO)


def old_geotl(commit: str, dest: Path) -> Geotl:
    """The ``geotl`` package of ``commit``, extracted into ``dest``.

    Skipped outside a git checkout (an sdist has no history) and in a clone without the
    commit (a shallow one: ``git fetch --unshallow`` brings it), saying which.
    """
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout: the earlier geotl trees come from its history")
    found = subprocess.run(
        ["git", "-C", str(REPO), "cat-file", "-e", f"{commit}^{{commit}}"], capture_output=True
    )
    if found.returncode != 0:
        pytest.skip(f"commit {commit} is not in this clone (shallow?): git fetch --unshallow")
    dest.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", commit, "geotl"], capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return Geotl(dest)


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    """``result`` of a command that must succeed (its stderr's end in the failure)."""
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def one_line_error(result: subprocess.CompletedProcess[str], code: int) -> str:
    """The single ``geotl: error:`` line of a refused command, checked for ``code``."""
    assert result.returncode == code, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("geotl: error:")]
    assert len(errors) == 1, result.stderr[-3000:]
    return errors[0]
