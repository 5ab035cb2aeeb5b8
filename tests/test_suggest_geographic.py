"""``geotl suggest`` on a scene in degrees (EPSG:4326): areas square on the ground.

The scene is real: part of the Flanders Sentinel-2 composite (10 m, EPSG:32631, 51 N)
warped to longitude/latitude with square pixels in degrees, so each pixel is about 7 m
east-west and 11 m north-south. Sized by one mean resolution, a "640 m square" came out
about 500 x 790 m on the ground.
"""

from __future__ import annotations

import math
import re
import sys
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from click.testing import CliRunner
from rasterio.crs import CRS
from rasterio.warp import Resampling, calculate_default_transform, reproject
from rasterio.windows import Window

from geotl.cli.main import cli
from geotl.io.rasters import ground_pixel_size_m, read_scene_info

sys.path.insert(0, str(Path(__file__).resolve().parent))
from predict import data

FLANDERS = (
    Path(__file__).resolve().parents[2]
    / "shared/data/s2-fields-flanders/BEFL-TEST-s2_2023-05-01_2023-07-01_B08-B04-B03_min_byte.tif"
)
UTM31 = CRS.from_epsg(32631)  # the source's own zone: the local metric CRS to measure in
SIZE_M = 640.0

pytestmark = pytest.mark.skipif(not FLANDERS.exists(), reason="shared data not present")


@pytest.fixture(scope="module")
def scene_4326(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6.4 x 4 km of the composite, warped to EPSG:4326 (square pixels in degrees)."""
    out = tmp_path_factory.mktemp("geo") / "imagery" / "flanders_4326.tif"
    out.parent.mkdir()
    with rasterio.open(FLANDERS) as src:
        win = Window(0, 0, 640, 400)
        img = src.read(window=win)
        src_transform = src.window_transform(win)
        left, bottom, right, top = src.window_bounds(win)
        # 1e-4 degrees: 7.0 m east-west and 11.1 m north-south at 51 N
        dst_transform, width, height = calculate_default_transform(
            src.crs, "EPSG:4326", 640, 400, left, bottom, right, top, resolution=1e-4
        )
        profile = {
            "driver": "GTiff",
            "crs": "EPSG:4326",
            "transform": dst_transform,
            "width": width,
            "height": height,
            "count": 3,
            "dtype": "uint8",
            "nodata": 0,
        }
        with rasterio.open(out, "w", **profile) as dst:
            for b in range(3):
                band = np.zeros((height, width), np.uint8)
                reproject(
                    img[b], band, src_transform=src_transform, src_crs=src.crs,
                    dst_transform=dst_transform, dst_crs="EPSG:4326", dst_nodata=0,
                    resampling=Resampling.bilinear,
                )  # fmt: skip
                dst.write(band, b + 1)
    return out


@pytest.fixture(scope="module")
def geo_model(scene_4326: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny untrained network for the scene's bands, at its (mean) ground resolution."""
    import torch

    from geotl.models.artefact import write_artefact
    from geotl.models.network import build_network

    card = data.card(["nir", "red", "green"], read_scene_info(scene_4326).resolution_m)
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("geomodel")
    write_artefact(out, build_network(card.network), card)
    return out


def _region(tmp: Path, scene: Path) -> Path:
    path = tmp / "flanders.toml"
    path.write_text(
        'name = "flanders-4326"\ntask = "segmentation"\nclasses = ["tree"]\n\n'
        f'[imagery]\npaths = ["{scene.parent}/*.tif"]\nbands = ["nir", "red", "green"]\n\n'
        "[chips]\nsize_px = 32\nstride_px = 32\n"
    )
    return path


def _suggest(region: Path, model: Path, out: Path, *extra: str) -> tuple[int, str]:
    res = CliRunner().invoke(
        cli, ["-q", "suggest", str(region), "--model", str(model), "-o", str(out), *extra]
    )
    return res.exit_code, res.stderr


def _sides_m(geom: shapely.Geometry) -> list[float]:
    """The four side lengths of a (reprojected) window outline, in metres."""
    xy = np.asarray(shapely.get_coordinates(shapely.segmentize(geom, 1e9)))[:5]
    return [float(np.hypot(*(xy[i + 1] - xy[i]))) for i in range(4)]


def test_pixels_in_degrees_are_measured_per_axis(scene_4326: Path) -> None:
    with rasterio.open(scene_4326) as ds:
        x_m, y_m = ground_pixel_size_m(ds.crs, ds.transform, ds.width, ds.height)
        # one pixel at the centre, measured in the local UTM zone
        c, r = ds.width // 2, ds.height // 2
        corners = [ds.transform @ p for p in ((c, r), (c + 1, r), (c, r + 1))]
    utm = gpd.GeoSeries(gpd.points_from_xy(*zip(*corners, strict=True)), crs=4326).to_crs(UTM31)
    assert x_m == pytest.approx(utm.iloc[0].distance(utm.iloc[1]), rel=0.01)
    assert y_m == pytest.approx(utm.iloc[0].distance(utm.iloc[2]), rel=0.01)
    assert x_m / y_m == pytest.approx(0.63, abs=0.01)  # cos(51 degrees)


def test_areas_in_degrees_are_square_on_the_ground(
    tmp_path: Path, scene_4326: Path, geo_model: Path
) -> None:
    region = _region(tmp_path, scene_4326)
    out = tmp_path / "areas.gpkg"
    done = tmp_path / "done.gpkg"
    code, stderr = _suggest(
        region, geo_model, out, "-n", "3", "--size-m", f"{SIZE_M:g}", "--append-to", str(done)
    )
    assert code == 0, stderr
    areas = gpd.read_file(out, layer="areas")
    assert areas.crs.to_epsg() == 4326 and len(areas) == 3
    assert (areas["size_m"] == SIZE_M).all()
    # square on the ground within a pixel's rounding (7 m, 11 m of 640 m) and the
    # approximate length of a degree: each side 640 m and the two axes alike
    for geom in areas.to_crs(UTM31).geometry:
        sides = _sides_m(geom)
        assert sides == pytest.approx([SIZE_M] * 4, rel=0.02), sides
        assert max(sides) / min(sides) < 1.03
        assert geom.area == pytest.approx(SIZE_M**2, rel=0.03)
    assert shapely.union_all(areas.to_crs(UTM31).geometry.values).area == pytest.approx(
        areas.to_crs(UTM31).area.sum()
    )  # no two overlap
    # --append-to: the same rectangles in degrees, square in metres
    appended = gpd.read_file(done).to_crs(UTM31)
    assert len(appended) == 3
    assert all(
        a.symmetric_difference(b).area < 1.0
        for a, b in zip(appended.geometry, areas.to_crs(UTM31).geometry, strict=True)
    )
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_smaller_size_hint_fits_windows_in_degrees(
    tmp_path: Path, scene_4326: Path, geo_model: Path
) -> None:
    """The hint and the 16-pixel floor use each axis's pixel (no prediction: fast)."""
    region = _region(tmp_path, scene_4326)
    out = tmp_path / "areas.gpkg"
    x_m, y_m = ground_pixel_size_m(*_grid(scene_4326))
    with rasterio.open(scene_4326) as ds:
        across = min(ds.width * x_m, ds.height * y_m)
    code, stderr = _suggest(region, geo_model, out, "-n", "1", "--size-m", "50000")
    assert code == 2
    widest = float(re.search(r"the widest is ([\d.]+) m across", stderr)[1])  # type: ignore[index]
    assert widest == pytest.approx(across, rel=1e-3)
    # 60 areas at 640 m: the smaller size suggested does give them
    code, stderr = _suggest(region, geo_model, out, "-n", "100", "--size-m", f"{SIZE_M:g}")
    assert code == 2
    have = int(re.search(r"but only (\d+) candidate", stderr)[1])  # type: ignore[index]
    smaller = float(re.search(r"--size-m ([\d.]+) gives 100", stderr)[1])  # type: ignore[index]
    assert have < 100 and 16 * y_m <= smaller < SIZE_M
    code, stderr = _suggest(region, geo_model, out, "-n", "100000", "--size-m", f"{smaller:g}")
    assert int(re.search(r"but only (\d+) candidate", stderr)[1]) >= 100  # type: ignore[index]
    # no hint below 16 pixels along the coarser (north-south) axis: 210 m squares are
    # too few for 700, and 170 m ones (enough) would have 15 rows, though their 16 px of
    # the mean resolution fit
    code, stderr = _suggest(region, geo_model, out, "-n", "700", "--size-m", "210")
    assert code == 2 and "but only" in stderr and "gives 700" not in stderr, stderr
    assert 16 * (x_m + y_m) / 2 <= 170 < 16 * y_m
    # and asked for, 170 m is refused as under 16 pixels of the coarser axis
    code, stderr = _suggest(region, geo_model, out, "-n", "1", "--size-m", "170")
    assert code == 2 and "--size-m 170 is under 16 pixels" in stderr, stderr
    assert f"use --size-m {math.ceil(16 * y_m)} or more" in stderr


def _grid(path: Path) -> tuple[CRS, rasterio.Affine, int, int]:
    with rasterio.open(path) as ds:
        return ds.crs, ds.transform, ds.width, ds.height
