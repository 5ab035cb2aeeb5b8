"""``geotl export --calibrate`` on a region that is not the demo: Landsat 7 land cover.

Five Landsat bands at 28.5 m with three classes (water, forest, developed) from the
North Carolina sample data: another sensor, resolution and class list than the demo.
"""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
from click.testing import CliRunner

from geotl.cli.main import cli


def _write_region(folder: Path, shared_data: Path) -> Path:
    data = shared_data / "nc-landsat-landcover"
    if not (data / "landsat_multiband.tif").is_file():
        pytest.skip(f"{data} not found")
    polygons = data / "landsat96_polygons.shp"
    region = folder / "nc.toml"
    region.write_text(
        f"""name = "nc-landcover"
task = "segmentation"
classes = ["water", "forest", "developed"]

[imagery]
paths = ["{data / "landsat_multiband.tif"}"]
bands = ["blue", "green", "red", "nir08", "swir16"]

[labels]
path = "{polygons}"
class_field = "label"
unmapped = "skip"
complete_within = "{polygons}"

[chips]
size_px = 32
stride_px = 32

[split]
block_size_m = 1000
val_fraction = 0.15
test_fraction = 0.2
seed = 0

[model]
base = "pkg:efficientnet-lite0"
freeze = "partial"
steps = 4
val_every = 2
batch_size = 4
"""
    )
    return region


def test_calibrate_without_int8_is_refused_not_ignored(
    tmp_path: Path, shared_data: Path, one_thread: None
) -> None:
    # --calibrate without --int8 wrote an fp32 file with exit 0: a forgotten --int8 went
    # unnoticed until the model ran at fp32 speed
    region = _write_region(tmp_path, shared_data)
    model = tmp_path / "model"
    res = CliRunner().invoke(cli, ["-q", "train", str(region), "--out", str(model)])
    assert res.exit_code == 0, res.output
    out = tmp_path / "exports" / "nc.onnx"
    out.parent.mkdir()
    export = ["-q", "export", str(model), "--onnx", str(out), "--calibrate", str(region)]
    res = CliRunner().invoke(cli, export)
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and str(region) in lines[0] and "--int8" in lines[0], lines
    assert list(out.parent.iterdir()) == []

    res = CliRunner().invoke(cli, [*export, "--int8"])
    assert res.exit_code == 0, res.output
    meta = {p.key: p.value for p in onnx.load(out, load_external_data=False).metadata_props}
    card = json.loads(meta["geotl_card"])
    assert card["classes"] == ["water", "forest", "developed"]
    assert "training chips of nc-landcover" in card["quantisation"]
