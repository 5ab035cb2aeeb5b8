"""A full disk while the probabilities are written is an error, not a GeoTIFF missing tiles.

GDAL writes tiles when its cache fills or the file closes, and rasterio raises for neither:
``ulimit -f`` (as a full disk does) left ``--probabilities`` with an empty band and exit 0.
The file-size limit stands in for a full disk (Python ignores SIGXFSZ, so writes fail with
EFBIG as they would with ENOSPC).
"""

from __future__ import annotations

import contextlib
import resource
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from geotl.errors import GeotlInputError
from geotl.io.rasters import gdal_write_errors
from geotl.predict.outputs.cog import write_cog

_PROFILE = {
    "driver": "GTiff",
    "width": 1024,
    "height": 1024,
    "count": 3,
    "dtype": "float32",
    "tiled": True,
    "blockxsize": 512,
    "blockysize": 512,
    "compress": "deflate",
}


@contextlib.contextmanager
def _file_size_limit(n_bytes: int) -> Iterator[None]:
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (n_bytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def _noise() -> np.ndarray:  # incompressible: 12 MB whatever deflate does
    return np.random.default_rng(0).random((3, 1024, 1024), dtype=np.float32)


def test_tiles_that_cannot_be_written_raise(tmp_path: Path) -> None:
    path = tmp_path / "p.tif"
    ds = rasterio.open(path, "w", **_PROFILE)
    with (
        pytest.raises(GeotlInputError, match=r"p\.tif: could not be written .*free space"),
        _file_size_limit(2 * 2**20),
    ):
        for row in range(0, 1024, 192):  # strips of rows, as the stream finishes them: the
            with gdal_write_errors(path):  # tiles wait in GDAL's cache, and these pass
                strip = _noise()[:, row : row + 192]
                ds.write(strip, window=Window(0, row, 1024, strip.shape[1]))
        with gdal_write_errors(path):  # the tiles go out here
            ds.close()


def test_writes_that_succeed_raise_nothing(tmp_path: Path) -> None:
    path = tmp_path / "p.tif"
    with gdal_write_errors(path), rasterio.open(path, "w", **_PROFILE) as ds:
        ds.write(_noise())
    with rasterio.open(path) as ds:
        assert ds.read(3)[1000, 1000] == _noise()[2, 1000, 1000]


def test_a_cog_that_cannot_be_written_leaves_nothing(tmp_path: Path) -> None:
    src = tmp_path / "src.tif"
    with rasterio.open(src, "w", **_PROFILE) as ds:
        ds.write(_noise())
    out = tmp_path / "out"
    out.mkdir()
    with _file_size_limit(src.stat().st_size // 2), pytest.raises(GeotlInputError, match="out"):
        write_cog(src, out / "p.tif")
    assert list(out.iterdir()) == []
