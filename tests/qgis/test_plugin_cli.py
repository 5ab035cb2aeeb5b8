"""The plugin's runner (qgis/geotl_processing/cli.py) without QGIS: a real child process.

A fake ``geotl`` (a shell script) stands for the real one so that progress, errors and
Cancel are checked in a second each; the real geotl in real QGIS is test_qgis_plugin.py.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "qgis"))
from geotl_processing import cli  # the plugin imports QGIS only in its other modules

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX shell scripts")


class Feedback:
    """The part of QgsProcessingFeedback the runner uses."""

    def __init__(self, cancel_after_s: float | None = None) -> None:
        self.t0 = time.monotonic()
        self.cancel_after_s = cancel_after_s
        self.progress: list[float] = []
        self.texts: list[str] = []
        self.info: list[str] = []
        self.warnings: list[str] = []

    def isCanceled(self) -> bool:
        return self.cancel_after_s is not None and time.monotonic() - self.t0 > self.cancel_after_s

    def setProgress(self, value: float) -> None:
        self.progress.append(value)

    def setProgressText(self, text: str) -> None:
        self.texts.append(text)

    def pushInfo(self, text: str) -> None:
        self.info.append(text)

    def pushWarning(self, text: str) -> None:
        self.warnings.append(text)


def _fake_geotl(tmp_path: Path, body: str) -> str:
    exe = tmp_path / "geotl"
    exe.write_text(
        '#!/bin/sh\nif [ "$1" = "--version" ]; then echo "geotl, version 0.1.0"; exit 0; fi\n'
        + body
    )
    exe.chmod(0o755)
    return str(exe)


def test_progress_log_and_stdout(tmp_path: Path) -> None:
    exe = _fake_geotl(
        tmp_path,
        'echo "$@" >&2\n'
        'echo \'{"progress": "chips", "n": 0, "total": 4, "unit": "chip"}\' >&2\n'
        "echo 'INFO geotl.chips: cut' >&2\n"
        'echo \'{"progress": "chips", "n": 4, "total": 4, "unit": "chip"}\' >&2\n'
        'echo \'{"progress": "chips", "n": 4, "total": 4, "unit": "chip", "phase": "last rows"}\' >&2\n'
        "echo /out/chips\n",
    )
    fb = Feedback()
    assert cli.run_geotl(exe, ["chip", "r.toml"], fb) == "/out/chips\n"
    assert fb.progress == [0.0, 100.0, 100.0]
    assert fb.texts == ["chips: 0/4 chip", "chips: 4/4 chip", "chips: 4/4 chip, last rows"]
    assert "--progress json chip r.toml" in fb.info  # the global option comes first
    assert "INFO geotl.chips: cut" in fb.info


def test_one_line_error(tmp_path: Path) -> None:
    exe = _fake_geotl(
        tmp_path, "echo 'geotl: error: m/model.json: missing: train first' >&2\nexit 2\n"
    )
    with pytest.raises(cli.GeotlCliError, match=r"^m/model.json: missing: train first$"):
        cli.run_geotl(exe, ["predict"], Feedback())


def test_cancel_interrupts_and_waits_for_cleanup(tmp_path: Path) -> None:
    # like geotl: on Ctrl+C (SIGINT) remove the temporary file, then exit 130
    exe = _fake_geotl(
        tmp_path,
        f"trap 'rm -f {tmp_path}/.tmp-out; echo \"geotl: interrupted\" >&2; exit 130' INT\n"
        f"touch {tmp_path}/.tmp-out\n"
        'echo \'{"progress": "predict", "n": 0, "total": 9, "unit": "win"}\' >&2\n'
        "while true; do sleep 0.05; done\n",
    )
    fb = Feedback(cancel_after_s=0.5)
    t0 = time.monotonic()
    with pytest.raises(cli.GeotlCancelled):
        cli.run_geotl(exe, ["predict"], fb)
    assert time.monotonic() - t0 < 10
    assert not (tmp_path / ".tmp-out").exists()


def test_cancel_kills_geotl_and_its_workers_when_overdue(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a geotl stuck where Ctrl+C cannot reach it: only geotl itself was killed after the
    # grace time, and the worker it started kept its stderr open, so Cancel hung as long
    # as the worker ran
    monkeypatch.setattr(cli, "CANCEL_GRACE_S", 0.5)
    exe = _fake_geotl(
        tmp_path,
        "trap '' INT\n"
        f"sleep 30 &\necho $! > {tmp_path}/worker\n"
        'echo \'{"progress": "predict", "n": 0, "total": 9, "unit": "win"}\' >&2\n'
        "wait\n",
    )
    t0 = time.monotonic()
    with pytest.raises(cli.GeotlCancelled):
        cli.run_geotl(exe, ["predict"], Feedback(cancel_after_s=0.5))
    assert time.monotonic() - t0 < 10
    stat = Path(f"/proc/{int((tmp_path / 'worker').read_text())}/stat")
    time.sleep(0.2)
    if stat.exists():  # killed, not yet reaped by whoever adopted it
        assert stat.read_text().split(")")[-1].split()[0] == "Z"


def test_missing_or_wrong_executable(tmp_path: Path) -> None:
    hint = "Processing > Options > Providers > geotl > geotl executable"
    with pytest.raises(cli.GeotlCliError, match="not found") as exc:
        cli.run_geotl(str(tmp_path / "nowhere" / "geotl"), ["predict"], Feedback())
    assert hint in str(exc.value)
    with pytest.raises(cli.GeotlCliError, match="not the geotl executable") as exc:
        cli.run_geotl("/bin/echo", ["predict"], Feedback())
    assert hint in str(exc.value)


def test_older_geotl_is_refused_with_the_fix(tmp_path: Path) -> None:
    # a geotl older than the plugin failed on the first option it lacks, as
    # "geotl failed (exit code 2): Error: No such option: --progress"
    old = tmp_path / "old"
    old.mkdir()
    exe = old / "geotl"
    exe.write_text(
        '#!/bin/sh\nif [ "$1" = "--version" ]; then echo "geotl, version 0.0.3"; exit 0; fi\n'
        "echo 'Error: No such option: --progress' >&2\nexit 2\n"
    )
    exe.chmod(0o755)
    with pytest.raises(cli.GeotlCliError) as exc:
        cli.run_geotl(str(exe), ["predict"], Feedback())
    message = str(exc.value)
    assert "geotl 0.0.3, older than this plugin needs (0.1.0 or newer)" in message
    assert "make venv" in message and "Processing > Options > Providers > geotl" in message
    # a geotl that states a version and still lacks an option the plugin passes
    newer = _fake_geotl(tmp_path, "echo \"Error: No such option '--window'.\" >&2\nexit 2\n")
    with pytest.raises(cli.GeotlCliError) as exc:
        cli.run_geotl(newer, ["predict", "--window", "128"], Feedback())
    message = str(exc.value)
    assert message.startswith("this geotl does not match the plugin (No such option '--window'.)")
    assert "make qgis-plugin" in message and "\n" not in message
    # geotl's own one-line usage error (since 0.1.x) says the same
    (tmp_path / "one").mkdir()
    one_line = _fake_geotl(
        tmp_path / "one",
        'echo "geotl: error: No such option: --window (geotl predict --help says more)" >&2\n'
        "exit 2\n",
    )
    with pytest.raises(cli.GeotlCliError) as exc:
        cli.run_geotl(one_line, ["predict", "--window", "128"], Feedback())
    assert str(exc.value).startswith("this geotl does not match the plugin (No such option")


def test_default_executable_from_build_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = tmp_path / "repo"
    (repo / ".venv" / "bin").mkdir(parents=True)
    (repo / ".venv" / "bin" / "geotl").write_text("#!/bin/sh\n")
    plugin = tmp_path / "plugins" / "geotl_processing"
    plugin.mkdir(parents=True)
    (plugin / "build.json").write_text(f'{{"repository": "{repo}"}}')
    monkeypatch.setattr(cli, "HERE", plugin)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert cli.default_executable() == str(repo / ".venv" / "bin" / "geotl")


def test_doctests() -> None:
    import doctest

    assert doctest.testmod(cli).failed == 0
