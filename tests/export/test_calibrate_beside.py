"""``--calibrate REGION`` when the model folder keeps chips cut for another region file."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from geotl.export.quantise import region_calibration

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "regions" / "demo-osbs"


def test_chips_beside_the_model_that_do_not_fit_are_cut_again(
    demo_model: Path,
    demo_chips: Path,
    tmp_path: Path,
    one_thread: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # MODEL_DIR/chips (as geotl train keeps them) of the region's name, cut at 64 px; the
    # region passed has 32 px chips. Without --chips the export said "these chips no longer
    # fit ...: chip again (geotl chip --overwrite) or drop --chips" and wrote nothing
    model = tmp_path / "model"
    shutil.copytree(demo_model, model)
    shutil.copytree(demo_chips, model / "chips")
    text = (REPO / "regions" / "demo-osbs.toml").read_text().replace('"demo-osbs/', f'"{DEMO}/')
    region = tmp_path / "demo-32.toml"
    region.write_text(
        text.replace("size_px = 64", "size_px = 32").replace("stride_px = 64", "stride_px = 32")
    )
    assert "size_px = 32" in region.read_text()
    with caplog.at_level(logging.WARNING):
        calib = region_calibration(model, 64, region_path=region)
    assert calib.tiles.shape[1:] == (3, 64, 64) and "demo-osbs" in calib.source
    said = " ".join(r.getMessage() for r in caplog.records)
    assert f"the chips in {model / 'chips'} are not used" in said
