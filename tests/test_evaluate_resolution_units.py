"""``geotl evaluate``'s resolution warning names ``gdalwarp -tr`` in the scenes' own units.

It said "resample the scenes to 0.1 m (gdalwarp -tr)": on a state plane in US survey
feet, ``-tr 0.1`` gives 3 cm pixels. The fix is predict's
(:func:`geotl.predict.scene.warp_fix`): the figures in the grid's units, the unit named.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

from geotl.chips import chip_region
from geotl.config import load_region
from geotl.evaluate.chips import warn_other_resolution

sys.path.insert(0, str(Path(__file__).resolve().parent))
from predict import data

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "regions" / "demo-osbs.toml"
SCENE = DEMO.parent / "demo-osbs" / "imagery" / "OSBS_029.tif"
FOOT_M = 1200 / 3937  # the US survey foot


@pytest.mark.parametrize(
    ("crs", "side", "tr"),
    [
        # NAD83 / Florida North (ftUS), where the plot is: 0.2 m pixels, 0.6562 ft
        ("EPSG:2238", 0.2 / FOOT_M, "-tr 0.3281 0.3281 -r bilinear"),
        ("EPSG:32617", 0.2, "-tr 0.1 0.1 -r bilinear"),
    ],
)
def test_the_warp_is_typed_in_the_scenes_units(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, crs: str, side: float, tr: str
) -> None:
    (tmp_path / "imagery").mkdir()
    data.warp(SCENE, tmp_path / "imagery" / "plot.tif", crs, (side, side), nodata=255)
    labels = DEMO.parent / "demo-osbs" / "labels"
    text = DEMO.read_text().replace('"demo-osbs/imagery/*.tif"', '"imagery/*.tif"')
    text = text.replace('"demo-osbs/labels/', f'"{labels}/').replace(
        "block_size_m = 24.0", "block_size_m = 12.8"
    )
    (tmp_path / "region.toml").write_text(text)
    region = load_region(tmp_path / "region.toml")
    chip_region(region, tmp_path / "chips", workers=1)
    with caplog.at_level(logging.WARNING, logger="geotl.evaluate.chips"):
        warn_other_resolution(data.card(), region, tmp_path / "chips", "train")
    said = [r.getMessage() for r in caplog.records if "did not learn" in r.getMessage()]
    assert len(said) == 1, caplog.text
    assert f"resample the scenes to 0.1 m (gdalwarp {tr} FILE OUT.tif" in said[0], said[0]
    in_feet = "in its CRS's unit, the US survey foot" in said[0]
    assert in_feet == (crs == "EPSG:2238"), said[0]
