"""``geotl evaluate`` says what it ignored in the labels once.

Found on the Flanders fields (s2-fields-flanders), whose polygons GeoPackage holds one
empty geometry: evaluating a model whose chips were not beside it logged "labels: ignored
1 feature(s) that are empty or not polygons" twice, once when cutting the chips and once
when reading the labels again to score the fields as objects.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
import rasterio
from rasterio.windows import Window

from geotl.config import load_region
from geotl.evaluate import evaluate_model
from geotl.train import TrainOptions, train_model

FLANDERS = "s2-fields-flanders"
SCENE = "BEFL-TEST-s2_2023-05-01_2023-07-01_B08-B04-B03_min_byte.tif"
IGNORED = "labels: ignored 1 feature(s) that are empty or not polygons"


def _region(shared_data: Path, tmp_path: Path) -> Path:
    """A 256 x 256 px crop of the 10 m scene, labelled by the real GeoPackage."""
    src = shared_data / FLANDERS
    if not (src / SCENE).is_file():
        pytest.skip(f"{src} not found")
    win = Window(0, 300, 256, 256)
    with rasterio.open(src / SCENE) as ds:
        pixels = ds.read(window=win)
        profile = {**ds.profile, "width": 256, "height": 256}
        profile["transform"] = ds.window_transform(win)
    profile.pop("blockxsize", None), profile.pop("blockysize", None)
    scene = tmp_path / "fields.tif"
    with rasterio.open(scene, "w", **profile) as out:
        out.write(pixels)
    labels = src / "fields_BEFL-s2-fields-2023_polygons.gpkg"
    path = tmp_path / "fields.toml"
    path.write_text(
        f'name = "fields"\nclasses = ["field"]\n[imagery]\npaths = ["{scene}"]\n'
        'bands = ["nir", "red", "green"]\n'
        f'[labels]\npath = "{labels}"\nlayer = "polygons"\nclass_field = "label_name"\n'
        "[chips]\nsize_px = 64\nstride_px = 64\n"
        "[split]\nblock_size_m = 700\nval_fraction = 0.2\ntest_fraction = 0.2\n"
        '[model]\nbase = "none"\nsteps = 2\nval_every = 1\nbatch_size = 4\n'
    )
    return path


def test_ignored_labels_are_said_once(
    shared_data: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    region = load_region(_region(shared_data, tmp_path))
    model = tmp_path / "m"
    train_model([region], model, TrainOptions(pixel_model=False))
    shutil.rmtree(model / "chips", ignore_errors=True)  # evaluate cuts them again
    caplog.clear()
    with caplog.at_level(logging.INFO):
        metrics = evaluate_model(model, region, n_boot=10)
    assert metrics["chips"] > 0
    said = [r.getMessage() for r in caplog.records if IGNORED in r.getMessage()]
    assert len(said) == 1, caplog.text
    # the filter is gone after the command: a second evaluation says it again, once
    caplog.clear()
    with caplog.at_level(logging.INFO):
        evaluate_model(model, region, n_boot=10)
    assert len([r for r in caplog.records if IGNORED in r.getMessage()]) == 1, caplog.text
