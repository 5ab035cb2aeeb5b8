"""``geotl suggest``'s contact sheet reads each square in its own scene's CRS.

Found driving a Sentinel-2 region across a UTM zone boundary (tiles in EPSG:32631 and
EPSG:32632): the areas are written in the CRS most of them share, so a square of the zone-32
tile came to the contact sheet in zone-31 metres and was read as a window of the zone-32
file: "Access window out of range in RasterIO()", and no GeoPackage was written.
"""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import pytest
import rasterio
from matplotlib.image import imread
from rasterio.windows import Window
from shapely.geometry import box
from zones import FLANDERS, SCENE, warped_window

from geotl.predict.outputs.quicklook import ScenePicture
from geotl.suggest.outputs import write_contact_sheet


def _zone32_scene(shared_data: Path, tmp_path: Path) -> Path:
    """300 x 256 px of the real 10 m Flanders composite, warped from EPSG:32631 to 32632."""
    src = shared_data / FLANDERS / SCENE
    if not src.is_file():
        pytest.skip(f"{src} not found")
    return warped_window(src, Window(500, 250, 300, 256), "EPSG:32632", tmp_path / "T32.tif")


def test_square_of_a_scene_in_another_zone(shared_data: Path, tmp_path: Path) -> None:
    scene = _zone32_scene(shared_data, tmp_path)
    with rasterio.open(scene) as ds:
        cx, cy = (ds.bounds.left + ds.bounds.right) / 2, (ds.bounds.bottom + ds.bounds.top) / 2
    square = box(cx - 640, cy - 640, cx + 640, cy + 640)  # EPSG:32632, inside the scene
    field = box(cx - 300, cy - 200, cx + 200, cy + 300)
    areas = gpd.GeoDataFrame(
        {"rank": [1], "score": [0.5], "scene": ["T32.tif"], "expected_objects": [3]},
        geometry=gpd.GeoSeries([square], crs="EPSG:32632").to_crs("EPSG:32631"),
    )
    detections = {"T32.tif": gpd.GeoDataFrame(geometry=[field], crs="EPSG:32632")}

    png = write_contact_sheet(
        tmp_path / "areas.png", areas, {"T32.tif": ScenePicture(scene, [1, 2, 3])}, detections
    )

    img = imread(png)[..., :3]
    yellow = (img[..., 0] > 0.8) & (img[..., 1] > 0.8) & (img[..., 2] < 0.3)
    assert yellow.sum() > 50  # the model's outline drawn where it lies in the square
