"""A remote scene GDAL cannot read by parts is refused with what to do, not "replace the file".

``python -m http.server`` sends whole files only (no HTTP range requests), so GDAL's
``/vsicurl/`` refuses it; the file itself is a valid GeoTIFF.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from geotl.errors import RasterError
from geotl.io.rasters import open_raster


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    """``python -m http.server`` (no range requests) over ``tmp_path``; its /vsicurl/ base.

    A process, not a thread: GDAL holds the GIL while it waits for the answer.
    """
    with rasterio.open(
        tmp_path / "scene.tif", "w", driver="GTiff", width=1024, height=1024, count=1,
        dtype="uint8", crs="EPSG:32617", transform=from_origin(400000, 3300000, 0.1, 0.1),
    ) as ds:  # fmt: skip
        # 1 MB: GDAL fetches a small file whole, a larger one by parts
        ds.write(np.random.default_rng(0).integers(0, 255, (1, 1024, 1024), dtype=np.uint8))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):  # until it listens
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)):
                break
            time.sleep(0.05)
        yield f"/vsicurl/http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait()


def test_a_server_without_range_requests_is_named(served: str) -> None:
    refused = pytest.raises(RasterError, match=r"does not answer HTTP range requests; download")
    with refused, open_raster(f"{served}/scene.tif"):
        pass


def test_a_missing_remote_file_says_check_the_url(served: str) -> None:
    with (
        pytest.raises(RasterError, match=r"404.*check the URL") as got,
        open_raster(f"{served}/missing.tif"),
    ):
        pass
    assert "valid GeoTIFF" not in str(got.value)
