"""Scratch folders: removed on the way out, and those of killed runs by the next run."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from geotl.io import scratch
from geotl.io.scratch import STALE_AFTER_S, remove_stale, scratch_dir

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from predict import data


@pytest.fixture
def tmpdir_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    for p in [path, *path.iterdir()]:
        os.utime(p, (then, then))


def test_only_old_folders_of_dead_processes_on_this_host_go(tmpdir_env: Path) -> None:
    host, dead = scratch._host(), _dead_pid()
    made = {
        "stale": tmpdir_env / f"geotl-predict-{host}-{dead}-a1",
        "recent": tmpdir_env / f"geotl-predict-{host}-{dead}-b2",
        "alive": tmpdir_env / f"geotl-predict-{host}-{os.getppid()}-c3",
        "other host": tmpdir_env / f"geotl-predict-elsewhere-{dead}-d4",
        "other kind": tmpdir_env / f"geotl-eval-{host}-{dead}-e5",
        "not ours": tmpdir_env / "geotl-predict-x",
    }
    for path in made.values():
        path.mkdir()
        (path / "planes.raw").write_bytes(b"\0" * 16)
        if path.name != made["recent"].name:
            _age(path, STALE_AFTER_S + 60)
    assert remove_stale("predict") == [made["stale"]]
    assert sorted(p.name for p in tmpdir_env.iterdir()) == sorted(
        p.name for k, p in made.items() if k != "stale"
    )


def test_a_folder_that_goes_away_meanwhile_is_passed_over(
    tmpdir_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # another run ends (and removes its folder) between the listing and the checks
    gone = tmpdir_env / f"geotl-predict-{scratch._host()}-{_dead_pid()}-f6"
    gone.mkdir()
    listing = os.scandir

    def scandir_then_remove(path: str) -> object:
        entries = list(listing(path))
        gone.rmdir()
        return contextlib.nullcontext(iter(entries))

    monkeypatch.setattr(scratch.os, "scandir", scandir_then_remove)
    assert remove_stale("predict") == []


def test_scratch_dir_is_removed_on_error_and_names_its_process(tmpdir_env: Path) -> None:
    with pytest.raises(RuntimeError), scratch_dir("predict") as path:
        assert path.parent == tmpdir_env and f"-{os.getpid()}-" in path.name
        (path / "planes.raw").write_bytes(b"\0")
        raise RuntimeError("boom")
    assert not list(tmpdir_env.iterdir())


def test_an_interrupt_just_after_the_folder_is_made_leaves_nothing(
    tmpdir_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Cancel in QGIS sends SIGINT as predict starts: it can land once the folder exists
    made: list[str] = []
    mkdir = os.mkdir

    def mkdir_then_interrupt(path: str, mode: int = 0o777) -> None:
        mkdir(path, mode)
        made.append(str(path))
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "mkdir", mkdir_then_interrupt)
    with pytest.raises(KeyboardInterrupt), scratch_dir("predict"):
        pass
    monkeypatch.undo()
    assert len(made) == 1 and not list(tmpdir_env.iterdir())


@pytest.mark.slow
def test_a_killed_predict_leaves_scratch_that_the_next_run_removes(tmp_path: Path) -> None:
    model = tmp_path / "model"
    data.write_constant_model(model)
    scene = data.write_bands(tmp_path / "scene.tif", np.full((3, 140, 150), 120, dtype=np.uint8))
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp), "OMP_NUM_THREADS": "1"}
    args = [
        "predict",
        str(model),
        str(scene),
        "-o",
        str(tmp_path / "out.geojson"),
        "--no-progress",
        "--overwrite",
    ]
    # killed (as by the OOM killer or a systemd timeout) once the scene's planes exist
    killed = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os, signal, sys\n"
            "import geotl.predict.core as core\n"
            "def die(*a, **k):\n"
            "    os.kill(os.getpid(), signal.SIGKILL)\n"
            "core.infer_and_vectorise = die\n"
            "from geotl.cli.main import main\n"
            "sys.argv[0] = 'geotl'\n"
            "main()\n",
            *args,
        ],
        env=env,
        capture_output=True,
    )
    assert killed.returncode == -signal.SIGKILL
    left = list(tmp.glob("geotl-predict-*"))
    assert len(left) == 1 and not (tmp_path / "out.geojson").exists()
    geotl = [sys.executable, "-m", "geotl"]
    again = subprocess.run([*geotl, *args], env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert list(tmp.glob("geotl-predict-*")) == left  # changed just now: may be another's
    _age(left[0], STALE_AFTER_S + 60)
    again = subprocess.run([*geotl, *args], env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert not list(tmp.glob("geotl-*"))
    assert (tmp_path / "out.geojson").exists()
