"""GDAL's messages are said once per command, whatever the reading threads; repeats counted.

A real JPEG-tiled GeoTIFF whose tiles are cut short: libjpeg warns once per tile and per
read, with a byte count that differs from tile to tile.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.windows import Window

from geotl.io.gdal_messages import gdal_messages_logged

_GRID = {
    "driver": "GTiff",
    "width": 512,
    "height": 512,
    "count": 3,
    "dtype": "uint8",
    "crs": "EPSG:32617",
    "transform": Affine(0.1, 0, 404_200.0, 0, -0.1, 3_285_140.0),
}


def _corrupt_jpeg_tiles(path: Path) -> Path:
    """JPEG tiles of 128 px, the second half of each one's data zeroed (its end kept)."""
    rng = np.random.default_rng(0)
    with rasterio.open(
        path, "w", compress="jpeg", tiled=True, blockxsize=128, blockysize=128, **_GRID
    ) as dst:
        dst.write(rng.integers(0, 255, (3, 512, 512), dtype=np.uint8))
    with rasterio.open(path) as ds:
        blocks = [
            (int(ds.get_tag_item(f"BLOCK_OFFSET_{c}_{r}", "TIFF", bidx=1)),
             int(ds.get_tag_item(f"BLOCK_SIZE_{c}_{r}", "TIFF", bidx=1)))
            for r in range(4)
            for c in range(4)
        ]  # fmt: skip
    raw = bytearray(path.read_bytes())
    for offset, size in blocks:
        raw[offset + size // 2 : offset + size - 2] = bytes(size - size // 2 - 2)
    path.write_bytes(raw)
    return path


def _read_all(path: Path, threads: int) -> None:
    """Every tile, twice (a sample, then the windows), by ``threads`` reading threads."""

    def read(window: Window) -> None:
        with rasterio.open(path) as ds:
            ds.read(window=window)

    windows = [Window(c * 128, r * 128, 128, 128) for r in range(4) for c in range(4)] * 2
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(read, windows))


@pytest.mark.parametrize("threads", [1, 4])
def test_a_repeated_gdal_warning_is_said_once_and_counted_at_the_end(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, threads: int
) -> None:
    scene = _corrupt_jpeg_tiles(tmp_path / "corrupt.tif")
    with caplog.at_level(logging.WARNING), gdal_messages_logged():
        _read_all(scene, threads)
    said = [r.getMessage() for r in caplog.records if "Corrupt JPEG data" in r.getMessage()]
    first, *rest = said
    assert first.endswith("extraneous bytes before marker 0xd9") and "more time" not in first
    (summary,) = rest  # 32 reads of 16 tiles: the others counted, said once at the end
    assert summary.startswith("GDAL said 31 more time(s)") and first in summary


def test_distinct_gdal_errors_are_each_said(caplog: pytest.LogCaptureFixture) -> None:
    """Errors that differ only in numbers are other files or places: each reaches the user."""
    gdal = logging.getLogger("rasterio._env")
    with caplog.at_level(logging.WARNING), gdal_messages_logged():
        for text in ("scene_2019.tif: read failed", "scene_2020.tif: read failed"):
            gdal.error(text)
            gdal.error(text)
    said = [r.getMessage() for r in caplog.records]
    assert said[:2] == ["scene_2019.tif: read failed", "scene_2020.tif: read failed"]
    assert said[2:] == [f"GDAL said 1 more time(s): scene_20{y}.tif: read failed" for y in (19, 20)]


def test_a_run_within_a_command_says_its_own_once_and_counts_them_at_its_end(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``monitor --every`` runs for days within one command: each run's repeats end with it."""
    gdal = logging.getLogger("rasterio._env")
    with caplog.at_level(logging.WARNING), gdal_messages_logged():
        for _ in range(2):  # two rounds of the monitor's loop
            with gdal_messages_logged():
                for tile in (3, 4, 5):
                    gdal.warning("JPEGLib:Corrupt JPEG data at tile %d", tile)
    said = [r.getMessage() for r in caplog.records]
    round_ = [
        "JPEGLib:Corrupt JPEG data at tile 3",
        "GDAL said 2 more time(s) (numbers may differ): JPEGLib:Corrupt JPEG data at tile 3",
    ]
    assert said == round_ * 2
