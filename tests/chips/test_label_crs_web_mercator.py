"""An old GeoJSON in Web Mercator whose ``crs`` member names a code GDAL does not
know (real NEON data).

GDAL then reads the file as EPSG:4326, numbers in the millions of metres: chipping must
say which CRS the numbers are in (EPSG:3857), and the fix it names must work.
"""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import pytest

from geotl.chips import chip_region
from geotl.config import load_region
from geotl.errors import LabelError

from .data import write_region

PLOTS = ("SJER_002", "SJER_003")


def _region(tmp_path: Path, shared_data: Path, labels: Path, **label_keys: str) -> Path:
    scenes = [str(shared_data / f"neon-trees/SJER/images/{p}.tif") for p in PLOTS]
    return write_region(
        tmp_path / "sjer.toml", scenes, str(labels), labels=label_keys,
        chips={"size_px": 200, "stride_px": 200}, split={"block_size_m": 20},
    )  # fmt: skip


def test_web_mercator_read_as_longitude_latitude_is_named(
    tmp_path: Path, shared_data: Path
) -> None:
    crowns = gpd.read_file(shared_data / "neon-trees/SJER/SJER_tree_crowns.gpkg")
    crowns = crowns[crowns["image"].str.startswith(PLOTS)][["label", "geometry"]]
    labels = tmp_path / "crowns.geojson"
    crowns.to_crs(3857).to_file(labels, driver="GeoJSON", RFC7946="NO")
    text = labels.read_text()
    assert "urn:ogc:def:crs:EPSG::3857" in text  # the old GeoJSON crs member
    labels.write_text(text.replace("urn:ogc:def:crs:EPSG::3857", "urn:ogc:def:crs:EPSG::999999"))
    with pytest.raises(LabelError) as info:
        chip_region(load_region(_region(tmp_path, shared_data, labels)), tmp_path / "chips")
    message = str(info.value)
    assert message.startswith(f"{labels}: declared EPSG:4326 but coordinates look like Web")
    assert "set [labels] crs = 'EPSG:3857'" in message
    assert not (tmp_path / "chips").exists()
    fixed = _region(tmp_path, shared_data, labels, crs="EPSG:3857")
    summary = chip_region(load_region(fixed), tmp_path / "chips")
    assert summary.n_objects == len(crowns)
