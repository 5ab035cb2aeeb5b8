"""Training on a UTM region and a degree-grid region says that their pixel shapes differ.

Found driving geotl on Sentinel-2 fields of Flanders (UTM 31N, 10 m) beside the same scene
warped to EPSG:4326 with square-degree pixels (7.7 x 12.3 m on the ground at 51 N, a mean
of 10 m): ``geotl train utm.toml deg.toml`` said nothing, the card recorded the UTM
region's square pixels, and predict then refused the degree-grid region's imagery.
"""

from __future__ import annotations

import logging
from pathlib import Path

import geopandas as gpd
import pytest
import rasterio
from predict import data
from rasterio.windows import Window

from geotl.config import load_region
from geotl.evaluate import evaluate_model
from geotl.train import TrainOptions, train_model

FLANDERS = "s2-fields-flanders"
SCENE = "BEFL-TEST-s2_2023-05-01_2023-07-01_B08-B04-B03_min_byte.tif"
DEG = 1.103e-4  # square-degree pixels at 51 N: 7.7 m east-west, 12.3 m north-south


def _crop(src: Path, dst: Path) -> Path:
    """A 256 x 256 px crop of the real 10 m scene (EPSG:32631), fields in it."""
    win = Window(0, 300, 256, 256)
    with rasterio.open(src) as ds:
        pixels = ds.read(window=win)
        profile = {**ds.profile, "width": 256, "height": 256}
        profile["transform"] = ds.window_transform(win)
    profile.pop("blockxsize", None), profile.pop("blockysize", None)
    with rasterio.open(dst, "w", **profile) as out:
        out.write(pixels)
    return dst


def _region(tmp_path: Path, name: str, scene: Path, labels: Path) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(
        f'name = "{name}"\nclasses = ["field"]\n[imagery]\npaths = ["{scene}"]\n'
        'bands = ["nir", "red", "green"]\n'
        f'[labels]\npath = "{labels}"\nclass_field = "label_name"\n'
        "[chips]\nsize_px = 64\nstride_px = 64\n"
        "[split]\nblock_size_m = 700\nval_fraction = 0.2\ntest_fraction = 0.2\n"
        '[model]\nbase = "none"\nsteps = 2\nval_every = 1\nbatch_size = 4\n'
    )
    return path


@pytest.fixture
def utm_and_degrees(shared_data: Path, tmp_path: Path) -> tuple[Path, Path]:
    src = shared_data / FLANDERS
    utm = _crop(src / SCENE, tmp_path / "fields_utm.tif")
    deg = data.warp(utm, tmp_path / "fields_deg.tif", "EPSG:4326", (DEG, DEG))
    labels = tmp_path / "fields.geojson"
    frame = gpd.read_file(src / "fields_BEFL-s2-fields-2023_polygons.gpkg", layer="polygons")
    frame.to_crs(4326).to_file(labels)  # GeoJSON in EPSG:4326 over both grids
    return (
        _region(tmp_path, "fields-utm", utm, labels),
        _region(tmp_path, "fields-deg", deg, labels),
    )


def test_regions_of_other_pixel_shapes_are_warned(
    utm_and_degrees: tuple[Path, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    utm, deg = (load_region(p) for p in utm_and_degrees)
    with caplog.at_level(logging.WARNING, logger="geotl.train.loop"):
        card = train_model([utm, deg], tmp_path / "m", TrainOptions(pixel_model=False))
    said = [r.getMessage() for r in caplog.records if "regions differ" in r.getMessage()]
    assert len(said) == 1, caplog.text
    assert "regions differ in ground pixel shape (fields-utm 10 m, fields-deg 7.7" in said[0]
    assert "-t_srs EPSG:32631" in said[0]
    assert card.pixel_aspect == 1.0  # the first region's, as the warning says
    # scored on its second region: it learnt those pixels, but predict holds them to the card
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="geotl.evaluate.chips"):
        evaluate_model(tmp_path / "m", deg, n_boot=10)
    said = [r.getMessage() for r in caplog.records if "on the ground" in r.getMessage()]
    assert len(said) == 1, caplog.text
    assert "fields-deg.toml: the test chips' pixels are 7.7" in said[0]
    assert "the model card's 10 m (fields-utm's, the first region it was trained on)" in said[0]
    assert "did not learn" not in said[0]


def test_regions_of_one_pixel_shape_say_nothing(
    utm_and_degrees: tuple[Path, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    utm_path, _ = utm_and_degrees
    twin = tmp_path / "twin.toml"
    twin.write_text(utm_path.read_text().replace('"fields-utm"', '"fields-twin"'))
    with caplog.at_level(logging.WARNING, logger="geotl.train.loop"):
        train_model(
            [load_region(utm_path), load_region(twin)],
            tmp_path / "m",
            TrainOptions(pixel_model=False),
        )
    assert "regions differ" not in caplog.text


def test_one_region_of_both_grids_is_said_when_chipped(
    utm_and_degrees: tuple[Path, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Both scenes in one region: the card records one shape, predict refuses the other."""
    from geotl.chips import chip_region

    utm_path, deg_path = utm_and_degrees
    [deg_scene] = load_region(deg_path).imagery.paths
    both = tmp_path / "both.toml"
    both.write_text(
        utm_path.read_text()
        .replace('"fields-utm"', '"fields-both"')
        .replace("paths = [", f'paths = ["{deg_scene}", ')
    )
    with caplog.at_level(logging.WARNING, logger="geotl.chips.scenes"):
        chip_region(load_region(both), tmp_path / "chips")
    said = [r.getMessage() for r in caplog.records if "pixel shape" in r.getMessage()]
    assert len(said) == 1, caplog.text
    assert "fields_deg.tif 7.7" in said[0] and "a degree grid at 51 N" in said[0]
    assert "fields_utm.tif 10 x 10 m" in said[0] and "-t_srs EPSG:32631 -tr 10 10" in said[0]
