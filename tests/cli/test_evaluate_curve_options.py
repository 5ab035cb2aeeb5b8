"""``geotl evaluate --curve`` takes ``--no-pixel-model``, as its warning tells the user to.

Found driving a label-efficiency curve on Sentinel-2 fields: with few steps every row kept
the per-pixel model (the same scores for both bases), and the warning said "train with
--no-pixel-model", an option ``geotl evaluate`` refused. Options that only shape the curve's
models were silently ignored without ``--curve``.
"""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from geotl.cli.main import cli

DEMO = Path(__file__).resolve().parents[2] / "regions" / "demo-osbs.toml"


def _region_file(tmp_path: Path) -> Path:
    path = tmp_path / "region.toml"
    path.write_text(DEMO.read_text().replace('"demo-osbs/', f'"{DEMO.parent}/demo-osbs/'))
    return path


def test_curve_without_the_pixel_model_trains_networks(
    demo_chips: Path, tmp_path: Path, one_thread: None
) -> None:
    out = tmp_path / "curve.json"
    args = ["evaluate", str(tmp_path / "models"), str(_region_file(tmp_path)), "--curve", "5"]
    args += ["--bases", "none", "--steps", "2", "--no-pixel-model", "--chips", str(demo_chips)]
    result = CliRunner().invoke(cli, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    [row] = json.loads(out.read_text())["rows"]
    assert row["kept"] != "pixel model"
    assert json.loads(out.read_text())["settings"]["options"]["pixel_model"] is False


def test_curve_options_without_curve_are_refused(demo_model: Path, tmp_path: Path) -> None:
    region = _region_file(tmp_path)
    result = CliRunner().invoke(
        cli, ["evaluate", str(demo_model), str(region), "--steps", "3", "--no-pixel-model"]
    )
    assert result.exit_code == 2, result.output
    said = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(said) == 1 and "--steps, --pixel-model only apply with --curve" in said[0]
