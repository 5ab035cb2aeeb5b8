from pathlib import Path

import pytest

from geotl.errors import GeotlInputError, OutputExistsError
from geotl.io.atomic import atomic_dir, atomic_path, atomic_write_text, check_output_file


def test_atomic_path_leaves_nothing_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_atomic_write_replaces(tmp_path: Path) -> None:
    target = tmp_path / "a.txt"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_atomic_dir_keeps_old_output_when_interrupted(tmp_path: Path) -> None:
    out = tmp_path / "chips"
    with atomic_dir(out, overwrite=False) as tmp:
        (tmp / "index").write_text("v1")
    with pytest.raises(KeyboardInterrupt), atomic_dir(out, overwrite=True) as tmp:
        (tmp / "index").write_text("partial")
        raise KeyboardInterrupt
    assert (out / "index").read_text() == "v1"
    assert [p.name for p in tmp_path.iterdir()] == ["chips"]


def test_atomic_dir_refuses_existing_without_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "chips"
    out.mkdir()
    (out / "x").write_text("keep")
    with pytest.raises(OutputExistsError, match="--overwrite"), atomic_dir(out, overwrite=False):
        pass
    assert (out / "x").read_text() == "keep"


def test_check_output_file_missing_parent(tmp_path: Path) -> None:
    with pytest.raises(GeotlInputError, match="does not exist"):
        check_output_file(tmp_path / "missing" / "out.geojson")


def test_files_get_the_usual_permissions_whatever_wrote_them(tmp_path: Path) -> None:
    import os

    import torch
    from safetensors.torch import save_file

    target = tmp_path / "model.safetensors"
    with atomic_path(target) as tmp:
        save_file({"w": torch.zeros(2)}, str(tmp))  # safetensors creates its file 0600
    mask = os.umask(0)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask


def test_atomic_dir_removes_what_killed_runs_left(tmp_path: Path) -> None:
    """A run killed outright (SIGKILL) left its whole temporary folder beside the output."""
    import os
    import socket
    import subprocess
    import sys

    out = tmp_path / "model"
    host = socket.gethostname()
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead = int(child.stdout)  # a process that has ended
    orphan = tmp_path / f".tmp-model.{dead}@{host}.abc123"
    running = tmp_path / f".tmp-model.{os.getpid()}@{host}.def456"
    elsewhere = tmp_path / f".tmp-model.{dead}@another-host.ghi789"
    other_output = tmp_path / f".tmp-chips.{dead}@{host}.jkl012"
    for d in (orphan, running, elsewhere, other_output):
        (d / "chips").mkdir(parents=True)
    with atomic_dir(out, overwrite=False) as tmp:
        (tmp / "model.json").write_text("{}")
        assert f".{os.getpid()}@{host}." in tmp.name
    assert not orphan.exists()
    assert running.exists() and elsewhere.exists() and other_output.exists()
    assert (out / "model.json").is_file()
