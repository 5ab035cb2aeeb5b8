"""What chipping says about label files whose CRS does not fit the imagery (real NEON data)."""

from __future__ import annotations

import logging
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pytest
from shapely.geometry import box

from geotl.chips import chip_region
from geotl.config import load_region
from geotl.errors import LabelError

from .data import write_region

PLOTS = ("SJER_002", "SJER_003")


def _crowns(shared_data: Path) -> gpd.GeoDataFrame:
    crowns = gpd.read_file(shared_data / "neon-trees/SJER/SJER_tree_crowns.gpkg")
    return crowns[crowns["image"].str.startswith(PLOTS)][["label", "geometry"]]


def _region(tmp_path: Path, shared_data: Path, labels: Path, **label_keys: str) -> Path:
    scenes = [str(shared_data / f"neon-trees/SJER/images/{p}.tif") for p in PLOTS]
    return write_region(
        tmp_path / "sjer.toml", scenes, str(labels), labels=label_keys,
        chips={"size_px": 200, "stride_px": 200}, split={"block_size_m": 20},
    )  # fmt: skip


def test_degrees_tagged_with_the_utm_zone_are_named_as_longitude_latitude(
    tmp_path: Path, shared_data: Path
) -> None:
    # set_crs where to_crs was meant: lon/lat numbers tagged EPSG:32611 (the scenes' CRS),
    # so they sit a hundred metres from the zone's origin, far from every plot
    wrong = _crowns(shared_data).to_crs(4326).set_crs(32611, allow_override=True)
    labels = tmp_path / "crowns.gpkg"
    wrong.to_file(labels)
    with pytest.raises(LabelError) as info:
        chip_region(load_region(_region(tmp_path, shared_data, labels)), tmp_path / "chips")
    message = str(info.value)
    assert message.startswith(f"{labels}: declared EPSG:32611 but coordinates look like")
    assert "set [labels] crs = 'EPSG:4326'" in message
    assert not (tmp_path / "chips").exists()
    # the suggested fix works: every crown of the two plots is chipped
    fixed = _region(tmp_path, shared_data, labels, crs="EPSG:4326")
    assert chip_region(load_region(fixed), tmp_path / "chips").n_objects == len(wrong)


def test_labels_outside_every_scene_are_counted_against_their_file(
    tmp_path: Path, shared_data: Path, caplog: pytest.LogCaptureFixture
) -> None:
    crowns = _crowns(shared_data)
    x0, y0, _, _ = crowns.total_bounds
    stray = gpd.GeoDataFrame(
        {"label": ["Tree"]}, geometry=[box(x0 - 500, y0 - 500, x0 - 495, y0 - 495)], crs=crowns.crs
    )
    labels = tmp_path / "crowns.gpkg"
    pd.concat([crowns, stray]).to_file(labels)
    with caplog.at_level(logging.WARNING, logger="geotl.chips.scenes"):
        chip_region(load_region(_region(tmp_path, shared_data, labels)), tmp_path / "chips")
    assert f"{labels}: 1 of {len(crowns) + 1} polygon(s) lie outside every scene" in caplog.text


def test_labels_on_a_scene_smaller_than_a_chip_are_not_called_outside(
    tmp_path: Path, shared_data: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # SJER_061 is a plot clipped at a tile edge (400x212 px): 256 px chips skip it, and its
    # crowns are lost for a reason one setting undoes, not because no imagery covers them
    sjer = shared_data / "neon-trees/SJER"
    crowns = gpd.read_file(sjer / "SJER_tree_crowns.gpkg")
    crowns = crowns[crowns["image"].str.startswith(("SJER_002", "SJER_061"))]
    labels = tmp_path / "crowns.gpkg"
    crowns[["label", "geometry"]].to_file(labels)
    on_061 = int(crowns["image"].str.startswith("SJER_061").sum())
    scenes = [str(sjer / "images/SJER_002.tif"), str(sjer / "images/SJER_061.tif")]
    region = write_region(
        tmp_path / "sjer.toml", scenes, str(labels),
        chips={"size_px": 256, "stride_px": 256}, split={"block_size_m": 20},
    )  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="geotl.chips.scenes"):
        chip_region(load_region(region), tmp_path / "chips")
    assert "lie outside every scene" not in caplog.text
    assert (
        f"{on_061} of {len(crowns)} polygon(s) lie only on scenes smaller than a chip "
        "(skipped): lower [chips] size_px to 192"
    ) in caplog.text


def test_labels_only_on_a_scene_smaller_than_a_chip_say_which_setting_fixes_it(
    tmp_path: Path, shared_data: Path
) -> None:
    sjer = shared_data / "neon-trees/SJER"
    crowns = gpd.read_file(sjer / "SJER_tree_crowns.gpkg")
    labels = tmp_path / "crowns.gpkg"
    crowns[crowns["image"].str.startswith("SJER_061")][["label", "geometry"]].to_file(labels)
    scenes = [str(sjer / "images/SJER_002.tif"), str(sjer / "images/SJER_061.tif")]
    region = write_region(
        tmp_path / "sjer.toml", scenes, str(labels),
        chips={"size_px": 256, "stride_px": 256}, split={"block_size_m": 20},
    )  # fmt: skip
    with pytest.raises(LabelError, match=r"crowns\.gpkg: the labels lie only on scenes smaller"):
        chip_region(load_region(region), tmp_path / "chips")
    assert not (tmp_path / "chips").exists()


def test_web_mercator_read_as_longitude_latitude_is_named(
    tmp_path: Path, shared_data: Path
) -> None:
    """An old GeoJSON in Web Mercator whose ``crs`` member names a code GDAL does not know:
    GDAL reads it as EPSG:4326 with numbers in the millions of metres. Chipping must say
    which CRS the numbers are in (EPSG:3857), and the fix it names must work."""
    crowns = _crowns(shared_data)
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
