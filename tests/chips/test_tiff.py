"""The chip GeoTIFF writer: files GDAL reads back exactly like the ones it writes itself."""

from __future__ import annotations

import hashlib
import logging
import zlib
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS

from geotl.chips.tiff import ChipTiffWriter

ALBERS = "+proj=aea +lat_1=29.5 +lat_2=45.5 +lat_0=23 +lon_0=-96 +datum=WGS84 +units=m"
CASES = [
    # dtype, bands, crs, nodata, band names, transform
    ("uint8", 3, "EPSG:32618", 0, ("red", "green", "blue"), Affine(0.1, 0, 5e5, 0, -0.1, 4e6)),
    ("uint16", 1, "EPSG:4326", None, None, Affine(0.001, 0, 10, 0, -0.001, 50)),
    ("float32", 4, "EPSG:5070", float("nan"), ("a", "b", "c", "d"), Affine(30, 1, 1e5, 2, -30, 2e6)),
    ("int16", 13, ALBERS, -9999, tuple(f"b{i}" for i in range(13)), Affine(10, 0, 0, 0, 10, 0)),
    ("float64", 2, "EPSG:3857", -1.5, None, Affine(2.5, 0, -1e6, 0, -2.5, 3e6)),
]  # fmt: skip


@pytest.mark.parametrize("compress", ["none", "deflate"])
@pytest.mark.parametrize(("dtype", "count", "crs", "nodata", "names", "transform"), CASES)
def test_round_trip_through_gdal(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    compress: str,
    dtype: str,
    count: int,
    crs: str,
    nodata: float | None,
    names: tuple[str, ...] | None,
    transform: Affine,
) -> None:
    rng = np.random.default_rng(0)
    data = (rng.normal(size=(count, 37, 45)) * 50).astype(dtype)
    writer = ChipTiffWriter(dtype, count, crs, nodata, names, compress=compress)  # type: ignore[arg-type]
    path = tmp_path / "chip.tif"
    with caplog.at_level(logging.WARNING):
        writer.write(path, data if count > 1 else data[0], transform)
        with rasterio.open(path) as ds:
            assert ds.driver == "GTiff" and (ds.count, ds.height, ds.width) == (count, 37, 45)
            assert ds.dtypes[0] == dtype
            assert np.array_equal(ds.read(), data)
            assert ds.transform == transform
            assert ds.crs == CRS.from_user_input(crs)
            if nodata is None:
                assert ds.nodata is None
            elif np.isnan(nodata):
                assert ds.nodata is not None and np.isnan(ds.nodata)
            else:
                assert ds.nodata == nodata
            assert ds.descriptions == (names or (None,) * count)
            assert (ds.compression is not None) == (compress == "deflate")
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]  # GDAL is content


def test_same_as_rasterio_for_what_gdal_reports(tmp_path: Path) -> None:
    """georeferencing, nodata and band names as GDAL itself writes them (gdalinfo view)."""
    data = np.arange(3 * 16 * 16, dtype=np.uint8).reshape(3, 16, 16)
    t = Affine(0.1, 0, 407000.0, 0, -0.1, 3285000.0)
    ChipTiffWriter("uint8", 3, "EPSG:32617", 255, ("red", "green", "blue")).write(
        tmp_path / "ours.tif", data, t
    )
    with rasterio.open(
        tmp_path / "gdal.tif", "w", driver="GTiff", width=16, height=16, count=3,
        dtype="uint8", crs="EPSG:32617", transform=t, nodata=255,
    ) as dst:  # fmt: skip
        dst.write(data)
        dst.descriptions = ("red", "green", "blue")
    with rasterio.open(tmp_path / "ours.tif") as a, rasterio.open(tmp_path / "gdal.tif") as b:
        assert a.crs.to_wkt() == b.crs.to_wkt()
        assert a.transform == b.transform and a.res == b.res and a.bounds == b.bounds
        assert a.nodata == b.nodata and a.descriptions == b.descriptions
        assert a.tags() == b.tags() and a.colorinterp == b.colorinterp
        assert np.array_equal(a.read(), b.read())


def test_deterministic_bytes_and_rle_masks(tmp_path: Path) -> None:
    mask = np.zeros((64, 64), dtype=np.uint8)
    mask[10:30, 5:50] = 1
    mask[60:, :] = 255
    t = Affine(1, 0, 0, 0, -1, 64)
    w = ChipTiffWriter("uint8", 1, "EPSG:32618", 255, compress="deflate", strategy=zlib.Z_RLE)
    w.write(tmp_path / "a.tif", mask, t)
    w.write(tmp_path / "b.tif", mask.copy(), t)
    digest = [hashlib.sha256((tmp_path / n).read_bytes()).hexdigest() for n in ("a.tif", "b.tif")]
    assert digest[0] == digest[1]
    assert (tmp_path / "a.tif").stat().st_size < mask.nbytes // 4
    with rasterio.open(tmp_path / "a.tif") as ds:
        assert np.array_equal(ds.read(1), mask)


def test_wrong_band_count_is_refused(tmp_path: Path) -> None:
    w = ChipTiffWriter("uint8", 3, "EPSG:32618", None)
    with pytest.raises(ValueError, match="3 band"):
        w.write(tmp_path / "x.tif", np.zeros((2, 4, 4), np.uint8), Affine.identity())
