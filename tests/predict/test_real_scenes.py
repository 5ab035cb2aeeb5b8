"""predict_scene on real scenes from ../shared/data with the pointwise band-threshold model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from rasterio.features import rasterize
from rasterio.windows import Window

from geotl.predict import PredictOptions, predict_scene
from geotl.predict.vectorise import vectorise

from . import data


def _artefact(bands: list[str], mean: float, std: float, resolution_m: float):  # type: ignore[no-untyped-def]
    art = data.threshold_artefact(bands, resolution_m=resolution_m)
    norm = art.card.normalisation.model_copy(
        update={"mean": [mean] * len(bands), "std": [std] * len(bands)}
    )
    art.card = art.card.model_copy(update={"normalisation": norm})
    return art


def test_neon_plot_equals_whole_scene_vectorisation(shared_data: Path) -> None:
    scene = shared_data / "neon-trees" / "OSBS" / "images" / "OSBS_022.tif"
    with rasterio.open(scene) as ds:
        red = ds.read(1)
        valid = (ds.read_masks() > 0).any(axis=0)
        transform = ds.transform
    mean = float(np.median(red[valid])) + 0.5
    art = _artefact(["red", "green", "blue"], mean, 30.0, 0.1)
    cm = (red.astype(np.float32) > mean).astype(np.uint8)
    cm[~valid] = 255
    expected = {shapely.to_wkb(o.geometry) for o in vectorise(cm, transform, simplify_px=1.0)}
    for window_px, vector_window_px in ((64, 50), (160, 128)):
        det = predict_scene(
            art,
            scene,
            PredictOptions(
                window_px=window_px, vector_window_px=vector_window_px, halo_px=8, progress=False
            ),
        )
        got = [shapely.to_wkb(g) for g in det.native.geometry]
        assert len(got) == len(expected) > 50
        assert set(got) == expected


def test_landsat_geographic_with_nodata_stripes(shared_data: Path, tmp_path: Path) -> None:
    src = shared_data / "landsat-pivots" / "nebraska_landsat5_with_nodata_wgs84.tif"
    crop = tmp_path / "nebraska_crop.tif"
    win = Window(800, 3600, 400, 400)  # scan-gap stripes and the scene edge
    with rasterio.open(src) as ds:
        arr = ds.read(1, window=win)
        profile = ds.profile | {"width": 400, "height": 400, "transform": ds.window_transform(win)}
        res_m = None
    profile.pop("blockxsize", None), profile.pop("blockysize", None), profile.update(tiled=False)
    with rasterio.open(crop, "w", **profile) as out:
        out.write(arr, 1)
    nodata = arr == -9999
    assert 0.005 < nodata.mean() < 0.5  # the crop has scan-gap stripes
    from geotl.io.rasters import read_scene_info

    res_m = read_scene_info(crop).resolution_m
    mean = float(np.median(arr[~nodata])) + 0.5
    art = _artefact(["nir"], mean, 200.0, res_m)
    det = predict_scene(
        art,
        crop,
        PredictOptions(window_px=128, vector_window_px=100, simplify_px=0, progress=False),
    )
    assert len(det.features) > 5
    assert det.features.crs.to_epsg() == 4326
    # no detection covers a nodata pixel
    covered = rasterize(
        [(g, 1) for g in det.native.geometry],
        out_shape=arr.shape,
        transform=profile["transform"],
        all_touched=False,
    ).astype(bool)
    assert not (covered & nodata).any()
    assert (covered & ~nodata).any()
    # geodesic area ~= pixel count x pixel area (30 m pixels, about 27 m x 36 m here)
    px_area = (profile["transform"].a * 111_320 * np.cos(np.radians(det.footprint.centroid.y))) * (
        -profile["transform"].e * 111_000
    )
    assert det.features["area_m2"].sum() == pytest.approx(covered.sum() * px_area, rel=0.02)
    minx, miny, maxx, maxy = det.footprint.bounds
    b = det.features.total_bounds
    assert minx <= b[0] and miny <= b[1] and b[2] <= maxx and b[3] <= maxy


def test_albers_without_epsg_code(shared_data: Path) -> None:
    scene = shared_data / "landsat-pivots" / "sample_geotiff_custom_proj.tif"
    with rasterio.open(scene) as ds:
        assert ds.crs.to_epsg() is None
        b1 = ds.read(1)
    valid = b1 != -9999
    mean = float(np.median(b1[valid])) + 0.5
    art = _artefact(["red", "green", "blue"], mean, 300.0, 30.0)
    det = predict_scene(art, scene, PredictOptions(progress=False))
    assert len(det.features) > 0
    assert det.features.crs.to_epsg() == 4326
    lon, lat = det.features.geometry.union_all().centroid.coords[0]
    assert -105 < lon < -103 and 41 < lat < 43  # NE Colorado / Nebraska panhandle
