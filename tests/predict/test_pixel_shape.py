"""Pixels whose ground shape is not the model's: a degree grid (EPSG:4326) and its UTM twin.

Found driving geotl on a Sentinel-2 scene of Flanders (UTM 31N, 51 N) warped to EPSG:4326
with square-degree pixels: 7.7 x 12.3 m on the ground, a mean of 10 m, so predict ran a
model trained on 10 x 10 m UTM chips on it as it was, the ground squeezed north-south by
cos(51 N); ``--resample`` scaled both axes alike and could not undo it. The card now records
the chips' pixel shape (``pixel_aspect``) and predict compares each side of a pixel.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from rasterio.windows import Window

from geotl.chips import ChipIndex
from geotl.errors import ResolutionError
from geotl.io.rasters import ground_pixel_size_m, read_scene_info
from geotl.models.artefact import Artefact, write_artefact
from geotl.predict import PredictOptions, predict_scene
from geotl.predict.scene import model_pixel_size_m
from geotl.train.loop import chips_pixel_aspect

from . import data

FLANDERS = "s2-fields-flanders/BEFL-TEST-s2_2023-05-01_2023-07-01_B08-B04-B03_min_byte.tif"
DEG = 1.103e-4  # square-degree pixels at 51 N: 7.7 m east-west, 12.3 m north-south, mean 10 m


def _utm_crop(shared_data: Path, dst: Path) -> Path:
    """A 300 x 300 px crop of the real 10 m Flanders scene (EPSG:32631)."""
    win = Window(600, 250, 300, 300)
    with rasterio.open(shared_data / FLANDERS) as ds:
        pixels = ds.read(window=win)
        profile = ds.profile | {"width": 300, "height": 300, "transform": ds.window_transform(win)}
    profile.pop("blockxsize", None), profile.pop("blockysize", None), profile.update(tiled=False)
    with rasterio.open(dst, "w", **profile) as out:
        out.write(pixels)
        out.descriptions = ("nir", "red", "green")
    return dst


def _model(scene: Path, pixel_aspect: float | None = 1.0) -> Artefact:
    """The pointwise threshold model (fields: nir above its median), trained on 10 m pixels."""
    with rasterio.open(scene) as ds:
        nir = ds.read(1)
    art = data.threshold_artefact(["nir", "red", "green"], resolution_m=10.0)
    norm = art.card.normalisation.model_copy(
        update={"mean": [float(np.median(nir)) + 0.5] * 3, "std": [20.0] * 3}
    )
    art.card = art.card.model_copy(update={"normalisation": norm, "pixel_aspect": pixel_aspect})
    return art


def _options(**kw: object) -> PredictOptions:
    return PredictOptions(window_px=128, simplify_px=0, min_area_m2=0, progress=False, **kw)  # type: ignore[arg-type]


@pytest.fixture
def twins(shared_data: Path, tmp_path: Path) -> tuple[Path, Path]:
    utm = _utm_crop(shared_data, tmp_path / "flanders_utm.tif")
    return utm, data.warp(utm, tmp_path / "flanders 4326.tif", "EPSG:4326", (DEG, DEG))


def test_degree_grid_is_refused_without_resample(twins: tuple[Path, Path]) -> None:
    utm, deg = twins
    info = read_scene_info(deg)
    assert info.resolution_m == pytest.approx(10.0, rel=0.02)  # the mean alone matches
    assert info.pixel_aspect == pytest.approx(0.63, abs=0.01)
    with pytest.raises(ResolutionError) as err:
        predict_scene(_model(utm), deg, _options())
    said = str(err.value)
    assert "flanders 4326.tif" in said and "--resample" in said
    assert "7.738 x 12.27 m on the ground (a degree grid at 51 N)" in said
    assert "the model's 10 m" in said


def test_degree_grid_resampled_per_axis_gives_the_utm_objects(
    twins: tuple[Path, Path], tmp_path: Path
) -> None:
    utm, deg = twins
    art = _model(utm)
    on_utm = predict_scene(art, utm, _options())
    probs = tmp_path / "seen.tif"
    on_deg = predict_scene(art, deg, _options(resample=True, probabilities_path=probs))
    # the model saw 10 x 10 m pixels, not 7.7 x 12.3 m ones
    with rasterio.open(probs) as ds:
        seen = ground_pixel_size_m(ds.crs, ds.transform, ds.width, ds.height)
    assert seen == pytest.approx((10.0, 10.0), rel=0.02)
    # ... and the objects are where they are on the UTM scene, in both CRSs
    a, b = on_utm.features, on_deg.features
    assert b["area_m2"].sum() == pytest.approx(a["area_m2"].sum(), rel=0.03)
    ua, ub = shapely.union_all(a.geometry.to_numpy()), shapely.union_all(b.geometry.to_numpy())
    assert (
        shapely.area(shapely.intersection(ua, ub)) / shapely.area(shapely.union(ua, ub)) > 0.85
    )  # two bilinear passes
    assert on_deg.native.crs.to_epsg() == 4326


def test_model_trained_on_a_degree_grid_sees_utm_at_its_own_shape(
    twins: tuple[Path, Path], tmp_path: Path
) -> None:
    utm, deg = twins
    art = _model(utm, pixel_aspect=read_scene_info(deg).pixel_aspect)
    predict_scene(art, deg, _options())  # its own grid: as it is
    with pytest.raises(ResolutionError, match=r"10 m on the ground, the model's 7\.7\d* x 12\.2"):
        predict_scene(art, utm, _options())
    probs = tmp_path / "seen.tif"
    predict_scene(art, utm, _options(resample=True, probabilities_path=probs))
    with rasterio.open(probs) as ds:
        seen = ground_pixel_size_m(ds.crs, ds.transform, ds.width, ds.height)
    assert seen == pytest.approx(model_pixel_size_m(10.0, art.card.pixel_aspect or 1), rel=0.02)


def test_older_card_keeps_the_mean_rule(
    twins: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    """A card without ``pixel_aspect`` may have been trained on this very grid: not refused."""
    utm, deg = twins
    with caplog.at_level(logging.WARNING):
        det = predict_scene(_model(utm, pixel_aspect=None), deg, _options())
    assert len(det.features) > 0
    assert "does not record the shape of the pixels" in caplog.text


def test_cli_refuses_in_one_line(twins: tuple[Path, Path], tmp_path: Path) -> None:
    _, deg = twins
    model = tmp_path / "model"
    card = data.card(["nir", "red", "green"], resolution_m=10.0)
    card = card.model_copy(update={"pixel_aspect": 1.0})
    write_artefact(model, data.BandThreshold().eval(), card)
    out = tmp_path / "o.geojson"
    proc = subprocess.run(
        [sys.executable, "-m", "geotl", "predict", str(model), str(deg), "-o", str(out)],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.strip().splitlines() if "error" in ln]
    assert len(lines) == 1 and "degree grid at 51 N" in lines[0] and "--resample" in lines[0]
    assert not out.exists()


def test_card_records_the_chips_pixel_shape(twins: tuple[Path, Path], tmp_path: Path) -> None:
    utm, deg = twins
    frame = gpd.GeoDataFrame(
        {"scene": [str(deg), str(deg), str(utm)], "image": ["deg.tif", "deg.tif", "utm.tif"]},
        geometry=gpd.points_from_xy([0, 0, 0], [0, 0, 0]),
        crs=4326,
    )
    (tmp_path / "deg.tif").symlink_to(deg)
    (tmp_path / "utm.tif").symlink_to(utm)
    aspect = read_scene_info(deg).pixel_aspect
    # chips written before the chipset recorded it: measured on the chip images
    assert chips_pixel_aspect(ChipIndex(tmp_path, frame, {})) == pytest.approx(aspect, abs=1e-3)
    meta = {"scenes": [{"path": str(deg), "pixel_aspect": 1.0}]}
    assert chips_pixel_aspect(ChipIndex(tmp_path, frame, meta)) == 1.0


def test_chipset_records_a_degree_scene_pixel_shape(shared_data: Path, tmp_path: Path) -> None:
    """Chipping a real square-degree scene (Nebraska Landsat, 41 N) records cos(41 N)."""
    from geotl.chips import chip_region, read_chip_index
    from geotl.config import load_region

    pivots = shared_data / "landsat-pivots"
    region = tmp_path / "pivots.toml"
    region.write_text(
        'name = "pivots"\nclasses = ["pivot"]\n[imagery]\n'
        f'paths = ["{pivots / "nebraska_landsat5_with_nodata_wgs84.tif"}"]\nbands = ["nir"]\n'
        f'[labels]\npath = "{pivots / "nebraska_wgs84_with_nodata_labels.geojson"}"\n'
        "[chips]\nsize_px = 128\nstride_px = 128\n[split]\nblock_size_m = 8000\n"
    )
    chip_region(load_region(region), tmp_path / "chips")
    index = read_chip_index(tmp_path / "chips")
    [scene] = index.meta["scenes"]
    assert scene["pixel_aspect"] == pytest.approx(0.755, abs=0.01)
    assert chips_pixel_aspect(index) == scene["pixel_aspect"]
