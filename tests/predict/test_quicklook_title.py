"""A segmentation quicklook counts areas per class, not detections."""

from __future__ import annotations

import sys
from pathlib import Path

import geopandas as gpd
import numpy as np
from shapely.geometry import box

from geotl.predict.outputs.quicklook import write_quicklook

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from predict import data


def _water_and_forest(tmp_path: Path) -> tuple[Path, gpd.GeoDataFrame]:
    scene = data.write_scene(tmp_path / "lake.tif", np.full((40, 50), 120, dtype=np.uint8))
    x, y = data.ORIGIN.c, data.ORIGIN.f
    frame = gpd.GeoDataFrame(
        {"class": ["water", "forest", "water"]},
        geometry=[
            box(x + 1, y - 2, x + 2, y - 1),
            box(x + 3, y - 3, x + 4, y - 2),
            box(x + 5, y - 5, x + 6, y - 4),
        ],
        crs=data.UTM17,
    )
    return scene, frame


def test_a_segmentation_quicklook_counts_areas_per_class(tmp_path: Path, titles: list[str]) -> None:
    scene, frame = _water_and_forest(tmp_path)
    classes = ["forest", "water", "urban"]
    write_quicklook(tmp_path / "s.png", scene, frame, [1, 2, 3], classes, task="segmentation")
    write_quicklook(tmp_path / "d.png", scene, frame, [1, 2, 3], classes)
    write_quicklook(tmp_path / "i.png", scene, frame, [1, 2, 3], classes, task="instances")
    assert titles == [
        "lake.tif: 3 areas (1 forest, 2 water)",
        "lake.tif: 3 detection(s)",
        "lake.tif: 3 object(s)",
    ]
