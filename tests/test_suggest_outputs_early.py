"""``geotl suggest`` and ``geotl export`` refuse an unwritable output before loading anything.

A mistyped ``-o`` folder was said after ``geotl suggest`` had imported its scorer (about 8 s,
and torch's import on a busy machine is longer); a read-only folder only once the areas were
written, after every scene's prediction.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REGION = REPO / "regions" / "demo-osbs.toml"

_PROBE = """
import sys
from click.testing import CliRunner
from geotl.cli.main import cli
res = CliRunner().invoke(cli, sys.argv[1:])
print(res.exit_code)
print(res.stderr.strip())
print(sorted(m for m in ("torch", "geotl.suggest.core") if m in sys.modules))
"""


def _refused(*args: str) -> tuple[int, str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    run = subprocess.run(
        [sys.executable, "-c", _PROBE, *args], capture_output=True, text=True, env=env, check=True
    )
    code, stderr, loaded = run.stdout.strip().splitlines()[-3:]
    return int(code), stderr, loaded


def test_suggest_missing_folder_is_said_before_loading(tmp_path: Path) -> None:
    out = tmp_path / "nope" / "areas.gpkg"
    code, stderr, loaded = _refused(
        "suggest", str(REGION), "--model", str(tmp_path / "m"), "-n", "3", "-o", str(out)
    )
    assert code == 2 and f"folder '{out.parent}' does not exist" in stderr, stderr
    assert loaded == "[]", loaded


def test_export_missing_folder_is_said_before_loading(tmp_path: Path) -> None:
    out = tmp_path / "nope" / "m.onnx"
    code, stderr, loaded = _refused("export", str(tmp_path / "m"), "--onnx", str(out))
    assert code == 2 and f"folder '{out.parent}' does not exist" in stderr, stderr
    assert loaded == "[]", loaded


def test_suggest_unwritable_folder_is_said_before_loading(tmp_path: Path) -> None:
    # /proc takes no new files, even from root (a chmod'ed folder would not stop root)
    code, stderr, loaded = _refused(
        "suggest", str(REGION), "--model", str(tmp_path / "m"), "-n", "3", "-o", "/proc/areas.gpkg"
    )
    assert code == 2 and "cannot write in folder '/proc'" in stderr, stderr
    assert loaded == "[]", loaded
