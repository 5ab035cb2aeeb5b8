"""A monitor refused at start (exit 2) leaves nothing behind: no folder, lock or state.

cron runs ``geotl monitor`` with a mistake in it every few hours; each refusal left
``<out>/<region>/.lock`` (and, past the model, an empty ``state.sqlite``) that ``monitor
status`` then read as a region that had run.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from alert_helpers import add_alerts
from click.testing import CliRunner

from geotl.cli.main import cli


def _monitor(region_file: Path, model: Path, out: Path) -> str:
    result = CliRunner().invoke(
        cli, ["monitor", str(region_file), "--model", str(model), "--out", str(out), "--once"]
    )
    assert result.exit_code == 2, result.output
    assert len(result.stderr.splitlines()) == 1, result.stderr
    return result.stderr


@pytest.mark.parametrize("mistake", ["missing model", "bands", "reference layer"])
def test_a_refused_first_run_creates_nothing(
    naip_region: Path, naip_model: Path, tmp_path: Path, mistake: str
) -> None:
    model = naip_model
    if mistake == "missing model":
        model = tmp_path / "no-such-model"
    elif mistake == "bands":  # the model needs nir
        text = naip_region.read_text()
        naip_region.write_text(text.replace('"nir"]', '"swir16"]', 1))
    else:  # refused after the state was opened
        (naip_region.parent / "permits.gpkg").write_text("not a GeoPackage\n")
        add_alerts(
            naip_region,
            '[monitor.alerts]\n[[monitor.alerts.rule]]\nclass = "water"\noutside = "permits.gpkg"\n',
        )
    out = tmp_path / "out"
    said = _monitor(naip_region, model, out)
    assert {"missing model": "no-such-model", "bands": "swir16", "reference layer": "permits"}[
        mistake
    ] in said
    assert not out.exists()
    # a folder that was there keeps what it held, and gains no region folder
    (out / "notes").mkdir(parents=True)
    _monitor(naip_region, model, out)
    assert [p.name for p in out.iterdir()] == ["notes"]


def test_a_refusal_after_the_first_run_keeps_the_region_folder(
    naip_region: Path, naip_model: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    args = ["monitor", str(naip_region), "--model", str(naip_model), "--out", str(out), "--once"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    kept = sorted(p.name for p in (out / "naip-nd").iterdir())
    assert "state.sqlite" in kept
    _monitor(naip_region, tmp_path / "no-such-model", out)
    assert sorted(p.name for p in (out / "naip-nd").iterdir()) == kept
