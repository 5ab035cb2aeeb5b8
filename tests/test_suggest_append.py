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
