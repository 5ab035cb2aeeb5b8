"""``geotl monitor`` and ``geotl monitor status`` through click's CliRunner."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "monitor"))

from monitor_helpers import NAIP_BANDS, NAIP_REGEX, deliver, write_region
from tinymodel import build_tiny_model, water_rule

from geotl.cli.main import cli


@pytest.fixture(scope="module")
def small_scenes(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    import rasterio
    from rasterio.windows import Window

    folder = tmp_path_factory.mktemp("cli-naip")
    out = []
    for scene in sorted((shared_data / "naip-landsat-timeseries" / "naip").glob("m_*.tif"))[:3]:
        with rasterio.open(scene) as src:
            window = Window(100, 100, 128, 128)
            profile = {
                **src.profile,
                "width": 128,
                "height": 128,
                "transform": src.window_transform(window),
                "blockxsize": 128,
                "blockysize": 128,
                "tiled": True,
            }
            with rasterio.open(folder / scene.name, "w", **profile) as dst:
                dst.write(src.read(window=window))
        out.append(folder / scene.name)
    return out


@pytest.fixture(scope="module")
def model(small_scenes: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli-model") / "m"
    build_tiny_model(out, small_scenes, NAIP_BANDS, 5.0, "water", water_rule, steps=10, crop_px=64)
    return out


def _region(tmp_path: Path, scenes: list[Path], extra: str = "") -> Path:
    return write_region(
        tmp_path / "region",
        "cli-test",
        scenes[:1],
        NAIP_BANDS,
        ["water"],
        f'source = "folder"\npaths = ["incoming/*.tif"]\n{extra}',
        datetime_regex=NAIP_REGEX,
    )


def test_monitor_once_then_status(tmp_path: Path, small_scenes: list[Path], model: Path) -> None:
    region = _region(tmp_path, small_scenes)
    deliver(region, small_scenes)
    out = tmp_path / "out"
    runner = CliRunner()
    never = runner.invoke(cli, ["monitor", "status", str(region), "--out", str(out)])
    assert never.exit_code == 0 and "never run" in never.output

    result = runner.invoke(
        cli, ["monitor", str(region), "--model", str(model), "--out", str(out), "--once"]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == ""  # logs go to stderr
    assert (out / "cli-test" / "history.csv").exists() and (
        out / "cli-test" / "latest.geojson"
    ).exists()

    status = runner.invoke(cli, ["monitor", "status", str(region), "--out", str(out)])
    assert status.exit_code == 0
    assert "processed: 3" in status.stdout and "failed: 0" in status.stdout
    assert "next run due:" in status.stdout
    as_json = json.loads(
        runner.invoke(cli, ["monitor", "status", str(region), "--out", str(out), "--json"]).stdout
    )
    assert (
        as_json["by_status"] == {"done": 3} and as_json["latest"]["scene"] == small_scenes[-1].stem
    )

    # nothing new: exit 0, nothing processed
    again = runner.invoke(cli, ["monitor", str(region), "--model", str(model), "--out", str(out)])
    assert again.exit_code == 0, again.output


def test_failed_scene_gives_exit_1_and_status_lists_it(
    tmp_path: Path, small_scenes: list[Path], model: Path
) -> None:
    region = _region(tmp_path, small_scenes, extra='every = "6h"')
    deliver(region, small_scenes[:1])
    (region.parent / "incoming" / "broken_20200101.tif").write_bytes(b"not a tiff")
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli, ["monitor", str(region), "--model", str(model), "--out", str(out), "--once"]
    )
    assert result.exit_code == 1
    assert "broken_20200101 failed" in result.stderr
    status = CliRunner().invoke(cli, ["monitor", "status", str(region), "--out", str(out)])
    assert (
        "failed: 1" in status.stdout
        and "broken_20200101: 1 attempt(s), next retry" in status.stdout
    )
    assert "next run due: 20" in status.stdout  # from [monitor] every


def test_model_from_the_region_file(tmp_path: Path, small_scenes: list[Path], model: Path) -> None:
    region = _region(tmp_path, small_scenes, extra=f"model = '{model}'")
    deliver(region, small_scenes[:1])
    result = CliRunner().invoke(cli, ["monitor", str(region), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--once", "--every", "6h"], "exclude each other"),
        (["--every", "soon"], "not an interval"),
    ],
)
def test_bad_options_exit_2(
    tmp_path: Path, small_scenes: list[Path], model: Path, args: list[str], needle: str
) -> None:
    region = _region(tmp_path, small_scenes)
    result = CliRunner().invoke(
        cli, ["monitor", str(region), "--model", str(model), "--out", str(tmp_path), *args]
    )
    assert result.exit_code == 2 and needle in result.output


def test_input_errors_are_one_line_exit_2(tmp_path: Path, small_scenes: list[Path]) -> None:
    region = _region(tmp_path, small_scenes)
    no_model = CliRunner().invoke(cli, ["monitor", str(region), "--out", str(tmp_path / "out")])
    assert no_model.exit_code == 2
    assert no_model.stderr.strip().count("\n") == 0 and "--model" in no_model.stderr
    missing = CliRunner().invoke(
        cli,
        ["monitor", str(region), "--model", str(tmp_path / "nope"), "--out", str(tmp_path / "o")],
    )
    assert missing.exit_code == 2 and "model folder not found" in missing.stderr
    # an exported .onnx is taken as the model (this one is broken: geotl's line, not click's)
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"junk")
    broken = CliRunner().invoke(
        cli, ["monitor", str(region), "--model", str(onnx), "--out", str(tmp_path / "o")]
    )
    assert broken.exit_code == 2 and "not a readable ONNX file" in broken.stderr
    no_region = CliRunner().invoke(
        cli, ["monitor", "status", str(tmp_path / "none.toml"), "--out", str(tmp_path)]
    )
    assert no_region.exit_code == 2 and "region file not found" in no_region.stderr


def test_help_shows_both_forms() -> None:
    result = CliRunner().invoke(cli, ["monitor", "--help"])
    assert result.exit_code == 0
    assert (
        "REGION.toml --out DIR" in result.output and "status REGION.toml --out DIR" in result.output
    )


def test_two_region_files_of_one_name_cannot_share_an_out_folder(
    tmp_path: Path, small_scenes: list[Path], model: Path
) -> None:
    first = write_region(
        tmp_path / "a",
        "cli-test",
        small_scenes[:1],
        NAIP_BANDS,
        ["water"],
        'source = "folder"\npaths = ["incoming/*.tif"]',
        datetime_regex=NAIP_REGEX,
    )
    second = write_region(
        tmp_path / "b",
        "cli-test",
        small_scenes[:1],
        NAIP_BANDS,
        ["water"],
        'source = "folder"\npaths = ["incoming/*.tif"]',
        datetime_regex=NAIP_REGEX,
    )
    deliver(first, small_scenes[:2])
    deliver(second, small_scenes[2:])
    out = tmp_path / "out"
    runner = CliRunner()
    args = ["--model", str(model), "--out", str(out), "--once"]
    assert runner.invoke(cli, ["monitor", str(first), *args]).exit_code == 0
    history = (out / "cli-test" / "history.csv").read_text()

    # the second file's pass was compared against the first's objects, its run exit 0
    refused = runner.invoke(cli, ["monitor", str(second), *args])
    assert refused.exit_code == 2
    line = refused.stderr.strip()
    assert line.count("\n") == 0 and str(second) in line and str(first) in line
    assert "another name or another --out" in line
    assert (out / "cli-test" / "history.csv").read_text() == history
    for sub in (["status"], ["report"], ["ack", "a1"]):
        other = runner.invoke(cli, ["monitor", sub[0], str(second), "--out", str(out), *sub[1:]])
        assert other.exit_code == 2 and str(first) in other.stderr, sub

    # the first file still runs; moved elsewhere (the old path gone) it is the same region
    assert runner.invoke(cli, ["monitor", str(first), *args]).exit_code == 0
    moved = first.with_name("renamed.toml")
    first.rename(moved)
    again = runner.invoke(cli, ["monitor", str(moved), *args])
    assert again.exit_code == 0, again.output
    # ... and now the file of the same name at the old path is the other one
    first.write_text(moved.read_text())
    assert runner.invoke(cli, ["monitor", "status", str(first), "--out", str(out)]).exit_code == 2

    # a copy of the whole folder (the state moved) belongs to whichever file runs it
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    status = runner.invoke(cli, ["monitor", "status", str(second), "--out", str(copy)])
    assert status.exit_code == 0, status.output
