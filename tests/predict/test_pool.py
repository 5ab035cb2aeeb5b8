"""The process pool that vectorises row strips, and reading ahead in threads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from rasterio.windows import Window

from geotl.io.geojson import write_geojson
from geotl.predict import PredictOptions, predict_scene
from geotl.predict.strips import StripTask, extract_strip

from . import data


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return data.write_scene(tmp_path_factory.mktemp("pool") / "scene.tif", data.blobs(300, 260, 3))


def test_pool_and_read_threads_equal_serial_byte_for_byte(scene: Path, tmp_path: Path) -> None:
    # small vector windows and halos: many strips, objects across strips, halo retries
    base = PredictOptions(
        window_px=64, overlap_px=16, vector_window_px=37, halo_px=2, batch_size=3, progress=False
    )
    serial = predict_scene(data.threshold_artefact(), scene, base)
    pooled = predict_scene(
        data.threshold_artefact(),
        scene,
        PredictOptions(**{**vars(base), "workers": 2, "read_threads": 3}),
    )
    assert serial.stats.extra["workers"] == 1
    assert pooled.stats.extra["workers"] == 2 and pooled.stats.extra["read_threads"] == 3
    assert len(serial.features) > 10
    a = write_geojson(tmp_path / "serial.geojson", serial.features).read_bytes()
    b = write_geojson(tmp_path / "pool.geojson", pooled.features).read_bytes()
    assert a == b


def test_strip_stops_at_rows_not_final(tmp_path: Path) -> None:
    from geotl.predict.objects import SegmentationExtractor
    from geotl.predict.strips import RawRaster

    planes = np.zeros((20, 10, 2), np.float32)
    planes[2:18, 3, 0] = 1.0  # one object from row 2 to row 17
    planes[2:18, 3, 1] = 0.9
    raw = RawRaster(tmp_path / "planes.raw", 20, 10, 2, np.float32)
    raw.write(0, 0, planes)
    task = StripTask(
        extractor=SegmentationExtractor(1),
        planes_path=raw.path,
        scene_shape=(20, 10),
        planes=2,
        cores=(Window(0, 0, 5, 5), Window(5, 0, 5, 5)),
        transform=data.ORIGIN,
        window_px=5,
        halo_px=1,
        simplify_px=0.0,
        min_pixels=1,
        rows_ready=6,
    )
    early = extract_strip(task)
    assert early.cores_done == 0 and early.need_rows > 6 and not early.objects
    done = extract_strip(StripTask(**{**vars(task), "rows_ready": 20}))
    assert done.cores_done == 2 and len(done.objects) == 1
    assert done.objects[0].pixel_count == 16
    raw.close()
