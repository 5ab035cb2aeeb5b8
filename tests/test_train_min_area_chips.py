"""The card's default ``min_area_m2`` comes from the labels over the region's chips.

It read the whole label file: a national layer (100k features) cost a second and its
memory, and its 5th percentile was the nation's objects', not those the model is trained
on. Here the label file is the demo plot's 61 crowns plus 300 small sheds 5 km away,
outside the imagery: the sheds pulled the default from 1.5 m² down to under 0.1 m², so
predict kept specks of a few pixels as crowns.
"""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from shapely.geometry import box

from geotl.chips import chip_region, read_chip_index
from geotl.config import load_region
from geotl.train.loop import _with_min_area
from geotl.train.tasks.base import default_min_area_m2

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "regions" / "demo-osbs"
CROWNS = DEMO / "labels" / "OSBS_029_crowns.geojson"


def test_the_default_is_the_labels_over_the_chips(tmp_path: Path) -> None:
    crowns = gpd.read_file(CROWNS).to_crs(32617)
    x0, y0 = crowns.total_bounds[2] + 5000, crowns.total_bounds[3]
    sheds = gpd.GeoDataFrame(
        {"label": ["Tree"] * 300},
        geometry=[box(x0 + 3 * i, y0, x0 + 3 * i + 0.25, y0 + 0.25) for i in range(300)],
        crs=32617,
    )
    layer = gpd.GeoDataFrame(
        pd.concat([crowns[["label", "geometry"]], sheds], ignore_index=True), crs=32617
    )
    layer.to_file(tmp_path / "national.gpkg")
    text = (REPO / "regions" / "demo-osbs.toml").read_text().replace("min_area_m2 = 0.5\n", "")
    text = text.replace('"demo-osbs/imagery/', f'"{DEMO}/imagery/').replace(
        '"demo-osbs/labels/OSBS_029_crowns.geojson"', '"national.gpkg"'
    )
    (tmp_path / "region.toml").write_text(text)
    region = load_region(tmp_path / "region.toml")
    assert region.predict.given("min_area_m2") is None
    chip_region(region, tmp_path / "chips", workers=1)

    over_chips = 0.25 * float(np.quantile(crowns.area, 0.05))  # the crowns alone
    card_region = _with_min_area(region, [region], [tmp_path / "chips"])
    assert card_region.predict.min_area_m2 == pytest.approx(over_chips, rel=0.01)
    assert default_min_area_m2(region, read_chip_index(tmp_path / "chips").frame) == (
        card_region.predict.min_area_m2
    )
    assert default_min_area_m2(region) < 0.1 < over_chips  # the whole file's: the sheds'
