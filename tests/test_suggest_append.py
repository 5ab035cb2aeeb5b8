"""``geotl suggest --append-to``: the areas appended to a complete_within file of any format."""

from pathlib import Path

import geopandas as gpd
import pytest
from shapely.geometry import box

from geotl.suggest.outputs import append_areas


def _areas() -> gpd.GeoDataFrame:
    squares = [box(404212, 3285103, 404220, 3285110), box(404230, 3285103, 404240, 3285110)]
    return gpd.GeoDataFrame({"rank": [1, 2]}, geometry=squares, crs=32617)


@pytest.mark.parametrize("suffix", [".shp", ".parquet", ".geojson", ".gpkg"])
def test_areas_are_appended_to_a_complete_within_file_of_any_format(
    tmp_path: Path, suffix: str
) -> None:
    # a Shapefile failed ('Unable to open .tmp-c.shp...shx': its copy lacked the index) and
    # a GeoParquet file raised a traceback (GDAL without its Parquet driver)
    done = gpd.GeoDataFrame(geometry=[box(404212, 3285123, 404252, 3285143)], crs=32617)
    path = tmp_path / f"complete{suffix}"
    if suffix == ".parquet":
        done.to_crs(4326).to_parquet(path)
    else:
        done.to_crs(4326).to_file(path)
    assert append_areas(path, _areas()) == 2
    grown = gpd.read_parquet(path) if suffix == ".parquet" else gpd.read_file(path)
    assert len(grown) == 3 and grown.crs.to_epsg() == 4326
    last = grown.to_crs(32617).geometry.iloc[2]
    assert last.symmetric_difference(_areas().geometry.iloc[1]).area < 1e-3
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_a_second_append_keeps_rank_and_source_in_the_file_it_created(tmp_path: Path) -> None:
    # the second round's rows had rank and source empty (only geometry was appended)
    path = tmp_path / "areas.gpkg"
    assert append_areas(path, _areas()) == 2
    assert append_areas(path, _areas().iloc[::-1]) == 2
    grown = gpd.read_file(path, layer="areas")
    assert grown["rank"].tolist() == [1, 2, 2, 1]
    assert grown["source"].tolist() == ["geotl suggest"] * 4


def test_append_to_another_file_than_complete_within_is_warned(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # appended elsewhere, the squares stay unknown to the region: suggested again next round
    from geotl.config import load_region
    from geotl.suggest.core import _warn_append_not_complete_within

    demo = Path(__file__).parents[1] / "regions" / "demo-osbs.toml"
    text = demo.read_text().replace('paths = ["demo-osbs/', f'paths = ["{demo.parent}/demo-osbs/')
    text = text.replace('path = "demo-osbs/', f'path = "{demo.parent}/demo-osbs/')
    (tmp_path / "region.toml").write_text(
        text.replace("[chips]", 'complete_within = "done.gpkg"\n\n[chips]', 1)
    )
    assert append_areas(tmp_path / "done.gpkg", _areas()) == 2
    region = load_region(tmp_path / "region.toml")
    with caplog.at_level("WARNING", logger="geotl.suggest.core"):
        _warn_append_not_complete_within(region, tmp_path / "done.gpkg")
        assert not caplog.records
        _warn_append_not_complete_within(region, tmp_path / "areas.gpkg")
    assert len(caplog.records) == 1
    message = caplog.records[0].getMessage()
    assert "not the region's [labels] complete_within (done.gpkg)" in message
    assert 'set complete_within = "' in message
