"""Progress bars: JSON lines for programs (``geotl --progress json``), bars for people."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from geotl import progress
from geotl.progress import _JsonLines, progress_bar, set_progress_format


@pytest.fixture
def json_progress() -> Iterator[None]:
    set_progress_format("json")
    yield
    set_progress_format("bar")


def test_json_lines_on_stderr(json_progress: None, capsys: pytest.CaptureFixture[str]) -> None:
    with progress_bar(total=3, desc="chips", unit="chip") as bar:
        for _ in range(3):
            bar.update(1)
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = [json.loads(ln) for ln in captured.err.splitlines()]
    assert lines[0] == {"progress": "chips", "n": 0, "total": 3, "unit": "chip", "elapsed_s": 0}
    assert lines[-1]["n"] == 3 and lines[-1]["total"] == 3
    assert [ln["n"] for ln in lines] == sorted(ln["n"] for ln in lines)
    assert len({ln["n"] for ln in lines}) == len(lines)  # the final count once
    # no thread left behind (it would keep the chip cutter from forking workers)
    assert vars(_JsonLines).get("monitor") is None  # (tqdm's own bars may have one)


def test_json_lines_whatever_the_terminal(
    json_progress: None, capsys: pytest.CaptureFixture[str]
) -> None:
    # terminal=False: JSON for programs only; --no-progress hides both
    with progress_bar(total=2, desc="train", unit="epoch", terminal=False) as bar:
        bar.update(2)
    with progress_bar(total=2, desc="predict", unit="win", enabled=False) as bar:
        bar.update(2)
    err = capsys.readouterr().err
    assert '"progress": "train"' in err and "predict" not in err


def test_bars_hidden_for_library_callers(capsys: pytest.CaptureFixture[str]) -> None:
    assert progress._format == "bar"
    # a library caller leaves geotl's logger unconfigured; an earlier in-process CLI run of
    # this test session may have set it to INFO, so put it back to the library default here
    logger = logging.getLogger("geotl")
    level = logger.level
    logger.setLevel(logging.NOTSET)
    try:
        with progress_bar(total=2, desc="chips", unit="chip") as bar:
            bar.update(2)
    finally:
        logger.setLevel(level)
    assert capsys.readouterr().err == ""


def test_cli_option(monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from geotl.cli.main import cli

    monkeypatch.setattr(progress, "_format", "bar")
    res = CliRunner().invoke(cli, ["--progress", "json", "models", "--help"])
    assert res.exit_code == 0 and progress._format == "json"
    res = CliRunner().invoke(cli, ["--progress", "xml", "models", "--help"])
    assert res.exit_code == 2 and "xml" in res.output


def test_predict_says_what_it_does_after_the_last_window(
    json_progress: None, demo_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bar at 100 % through a large scene's tail, COG and objects looked hung (stop 47)."""
    from geotl.models.artefact import load_artefact
    from geotl.predict import PredictOptions, predict_scene

    scene = Path(__file__).parent.parent / "regions" / "demo-osbs" / "imagery" / "OSBS_029.tif"
    opts = PredictOptions(probabilities_path=tmp_path / "p.tif", workers=1)
    predict_scene(load_artefact(demo_model, "cpu"), scene, opts)
    lines = [json.loads(ln) for ln in capsys.readouterr().err.splitlines() if ln.startswith("{")]
    bars = [ln for ln in lines if ln["progress"].startswith("predict")]
    phases = [ln.get("phase") for ln in bars]
    total = bars[0]["total"]
    # no phase while windows are counted; then the tail, then the probabilities file
    assert all(ln.get("phase") is None for ln in bars if ln["n"] < total)
    assert phases.index("last rows") < phases.index("writing the probabilities")
