"""``geotl chip`` through click's CliRunner: stdout, stderr, exit codes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from click.testing import CliRunner

from geotl.chips import read_chip_index
from geotl.cli.main import cli

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "regions" / "demo-osbs.toml"


def _scene(path: Path, count: int = 3) -> None:
    with rasterio.open(
        path, "w", driver="GTiff", width=64, height=64, count=count, dtype="uint8",
        crs="EPSG:32618", transform=Affine(1, 0, 500_000, 0, -1, 4_000_000),
    ) as dst:  # fmt: skip
        dst.write(np.ones((count, 64, 64), dtype=np.uint8))


def _region(tmp_path: Path, labels_geojson: str) -> Path:
    (tmp_path / "l.geojson").write_text(labels_geojson)
    path = tmp_path / "r.toml"
    path.write_text(
        'name = "t"\nclasses = ["tree"]\n[imagery]\npaths = ["*.tif"]\n'
        'bands = ["red", "green", "blue"]\n[labels]\npath = "l.geojson"\n'
        "[chips]\nsize_px = 32\n"
    )
    return path


LABELS_32618 = (
    '{"type": "FeatureCollection", "crs": {"type": "name", "properties": {"name": '
    '"urn:ogc:def:crs:EPSG::32618"}}, "features": [{"type": "Feature", "properties": {}, '
    '"geometry": {"type": "Polygon", "coordinates": [[[500001, 3999990], [500010, 3999990], '
    "[500010, 3999999], [500001, 3999999], [500001, 3999990]]]}}]}"
)


def test_chip_demo_prints_folder_and_summary(tmp_path: Path) -> None:
    out = tmp_path / "chips"
    result = CliRunner().invoke(cli, ["chip", str(DEMO), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(out)  # stdout carries only the folder
    assert "labelled objects" in result.stderr and "guard bands of" in result.stderr
    assert "train" in result.stderr and "chips:" in result.stderr  # summary and progress
    index = read_chip_index(out)
    assert len(index.frame) > 0 and index.meta["region"] == "demo-osbs"

    again = CliRunner().invoke(cli, ["chip", str(DEMO), "--out", str(out)])
    assert again.exit_code == 2
    assert "--overwrite" in again.stderr and len(again.stderr.strip().splitlines()) == 1

    over = CliRunner().invoke(cli, ["chip", str(DEMO), "--out", str(out), "--overwrite"])
    assert over.exit_code == 0, over.output


def test_bad_input_exit_2_one_line_nothing_written(tmp_path: Path) -> None:
    _scene(tmp_path / "s.tif", count=1)
    region = _region(tmp_path, LABELS_32618)
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["chip", str(region), "--out", str(out)])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "s.tif" in lines[0] and "bands" in lines[0]
    assert "Traceback" not in result.output and result.stdout == ""
    assert not out.exists()


def test_label_file_in_wrong_crs_exit_2(tmp_path: Path) -> None:
    _scene(tmp_path / "s.tif")
    region = _region(tmp_path, LABELS_32618.replace("EPSG::32618", "EPSG::32617"))
    result = CliRunner().invoke(cli, ["chip", str(region), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "l.geojson" in result.stderr and "crs = 'EPSG:32618'" in result.stderr


def test_small_region_succeeds(tmp_path: Path) -> None:
    _scene(tmp_path / "s.tif")
    region = _region(tmp_path, LABELS_32618)
    result = CliRunner().invoke(cli, ["chip", str(region), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert read_chip_index(tmp_path / "out").meta["counts"]["objects"] == 1


def test_out_holding_the_region_inputs_is_refused(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """`--out` the region's own folder (or one above it) with --overwrite deleted the scenes,
    labels and region file when the chips were swapped in; `--out .` was a traceback."""
    project = tmp_path / "project"
    project.mkdir()
    _scene(project / "s.tif")
    region = _region(project, LABELS_32618)
    inputs = sorted(p.name for p in project.iterdir())
    for out in (project, tmp_path):
        result = CliRunner().invoke(cli, ["chip", str(region), "--out", str(out), "--overwrite"])
        assert result.exit_code == 2, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and f"{out}: holds this region's input" in lines[0]
        assert "choose an --out folder outside" in lines[0]
    assert sorted(p.name for p in project.iterdir()) == inputs

    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.chdir(empty)
    result = CliRunner().invoke(cli, ["chip", str(region), "--out", "."])
    assert result.exit_code == 0, result.output
    assert read_chip_index(empty).meta["counts"]["objects"] == 1
