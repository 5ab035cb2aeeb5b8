"""Lossy-compressed and undecodable scenes are said once; lossless ones are not.

Real files written with rasterio/GDAL: GeoPackage rasters with JPEG, WebP and PNG tiles,
GeoTIFFs with JPEG and DEFLATE compression, and a GeoPackage one of whose tiles is in a
format GDAL cannot decode (it reads it as no data, silently).
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.shutil import copy

from geotl.errors import RasterError
from geotl.io.compression import gpkg_tile_formats, lossy_compression, say_compression
from geotl.io.rasters import open_raster, read_scene_info

_GRID = {
    "width": 300,
    "height": 300,
    "dtype": "uint8",
    "crs": "EPSG:32617",
    "transform": Affine(0.1, 0, 404_200.0, 0, -0.1, 3_285_140.0),
}


def _pixels(count: int = 3) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(20, 230, (count, 300, 300), dtype=np.uint8)


def _gpkg(path: Path, tile_format: str) -> Path:
    with rasterio.open(
        path, "w", driver="GPKG", count=3, TILE_FORMAT=tile_format, **_GRID
    ) as dst:  # fmt: skip
        dst.write(_pixels())
    return path


def _gtiff(path: Path, **options: object) -> Path:
    with rasterio.open(path, "w", driver="GTiff", count=3, **_GRID, **options) as dst:
        dst.write(_pixels())
    return path


@pytest.mark.parametrize(
    ("make", "said"),
    [
        (lambda d: _gpkg(d / "jpeg.gpkg", "JPEG"), "JPEG tiles in a GeoPackage"),
        (lambda d: _gpkg(d / "webp.gpkg", "WEBP"), "WEBP tiles in a GeoPackage"),
        (lambda d: _gpkg(d / "auto.gpkg", "AUTO"), "JPEG tiles in a GeoPackage"),  # GDAL's default
        (
            lambda d: _gtiff(d / "jpeg.tif", compress="jpeg", tiled=True),
            "a JPEG-compressed GeoTIFF",
        ),
        (lambda d: _gpkg(d / "png.gpkg", "PNG"), None),
        (lambda d: _gtiff(d / "deflate.tif", compress="deflate"), None),
        (lambda d: _gtiff(d / "webp_ll.tif", compress="webp", webp_lossless=True), None),
    ],
)
def test_lossy_compression_is_named_lossless_is_not(
    tmp_path: Path, make: object, said: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    path = make(tmp_path)  # type: ignore[operator]
    with rasterio.open(path) as ds:
        assert lossy_compression(ds) == said
    with caplog.at_level(logging.WARNING, logger="geotl.io.compression"):
        read_scene_info(path)  # chipping: the training imagery is what it is, not said
        assert not caplog.records
        with rasterio.open(path) as ds:
            say_compression(ds, path)
            say_compression(ds, path)  # suggest and predict's blocks open a scene again
    lines = [r.getMessage() for r in caplog.records if r.name == "geotl.io.compression"]
    if said is None:
        assert lines == []
    else:
        assert len(lines) == 1, lines
        assert lines[0].startswith(f"{path.name}: its pixels are lossy-compressed ({said})")
        assert "training imagery" in lines[0] and "\n" not in lines[0]


def test_undecodable_gpkg_tile_is_said(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = _gpkg(tmp_path / "broken.gpkg", "PNG")
    with sqlite3.connect(path) as db:
        (first,) = db.execute("SELECT id FROM broken ORDER BY id LIMIT 1").fetchone()
        db.execute("UPDATE broken SET tile_data = ? WHERE id = ?", (b"GIF89a" + bytes(64), first))
    db.close()
    formats = gpkg_tile_formats(path)
    assert formats["unknown"] == 1 and formats["PNG"] == sum(formats.values()) - 1
    with rasterio.open(path) as ds:  # GDAL itself says nothing and reads it as no data
        assert ds.read_masks(1)[:256, :256].max() == 0
        assert lossy_compression(ds) is None
    with caplog.at_level(logging.WARNING, logger="geotl.io.compression"):
        read_scene_info(path)
    (line,) = [r.getMessage() for r in caplog.records if r.name == "geotl.io.compression"]
    assert line.startswith("broken.gpkg: 1 of the") and "no data" in line


@pytest.mark.filterwarnings("ignore:Dataset has no geotransform")  # the container itself
def test_a_container_of_subdatasets_names_one_and_it_opens(tmp_path: Path) -> None:
    nc = tmp_path / "scene.nc"  # one variable per band: Band1, Band2, Band3
    copy(_gtiff(tmp_path / "s.tif"), nc, driver="netCDF")  # rasterio writes NetCDF by copy
    with pytest.raises(RasterError) as caught, open_raster(nc):
        pass
    text = str(caught.value)
    assert "3 subdatasets" in text and f'"{nc}":Band1' in text and "no CRS" not in text
    with open_raster(f'netCDF:"{nc}":Band2') as ds:  # the file system does not know it
        assert ds.count == 1 and ds.crs.to_epsg() == 32617
    info = read_scene_info(f'netCDF:"{nc}":Band2')
    assert info.count == 1 and abs(info.resolution_m - 0.1) < 1e-9
    gone = f'netCDF:"{tmp_path / "gone.nc"}":Band1'
    with (
        pytest.raises(RasterError, match="cannot be read as a raster") as caught,
        open_raster(gone),
    ):
        pass
    assert "subdataset's name" in str(caught.value) and "valid GeoTIFF" not in str(caught.value)
