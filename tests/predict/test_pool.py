"""The process pool that vectorises row strips, and reading ahead in threads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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


def _first_row_task(
    tmp_path: Path, extractor: Any, planes: np.ndarray, core_px: int, rows_ready: int
) -> tuple[StripTask, Any]:
    """A strip of the first two core windows over ``planes`` (bands first), and its file."""
    from geotl.predict.strips import RawRaster

    bands, height, width = planes.shape
    raw = RawRaster(tmp_path / "planes.raw", height, width, bands, np.float32)
    raw.write(0, 0, np.moveaxis(planes, 0, -1))
    return StripTask(
        extractor=extractor,
        planes_path=raw.path,
        scene_shape=(height, width),
        planes=bands,
        cores=(Window(0, 0, core_px, core_px), Window(core_px, 0, core_px, core_px)),
        transform=data.ORIGIN,
        window_px=core_px,
        halo_px=1,
        simplify_px=0.0,
        min_pixels=1,
        rows_ready=rows_ready,
    ), raw


def test_strip_stops_at_rows_not_final(tmp_path: Path) -> None:
    from geotl.predict.objects import SegmentationExtractor

    planes = np.zeros((2, 20, 10), np.float32)
    planes[0, 2:18, 3] = 1.0  # one object from row 2 to row 17
    planes[1, 2:18, 3] = 0.9
    task, raw = _first_row_task(tmp_path, SegmentationExtractor(1), planes, 5, rows_ready=6)
    early = extract_strip(task)
    assert early.cores_done == 0 and early.need_rows > 6 and not early.objects
    done = extract_strip(StripTask(**{**vars(task), "rows_ready": 20}))
    assert done.cores_done == 2 and len(done.objects) == 1
    assert done.objects[0].pixel_count == 16
    raw.close()


def test_strip_measures_its_objects_as_the_scene_frame_would(tmp_path: Path) -> None:
    # a pool worker measures geodesic areas beside the model; predict keeps its figures,
    # so they must be the ones the predicting process would compute, to the bit
    from geotl.io.lonlat import crs_wkt, geodesic_areas_m2, lonlat
    from geotl.predict.objects import SegmentationExtractor

    planes = np.zeros((2, 20, 10), np.float32)
    planes[:, 1:9, 1:4] = np.array([1.0, 0.8])[:, None, None]  # owned by the first core
    planes[:, 2:8, 6:9] = np.array([1.0, 0.7])[:, None, None]  # and by the second
    task, raw = _first_row_task(tmp_path, SegmentationExtractor(1), planes, 5, rows_ready=20)
    plain = extract_strip(task)
    assert [(o.lonlat, o.area_m2) for o in plain.objects] == [(None, None)] * 2  # predict will
    done = extract_strip(StripTask(**{**vars(task), "crs": crs_wkt(data.UTM17)}))
    wgs = lonlat(np.array([o.geometry for o in done.objects], dtype=object), data.UTM17)
    here = geodesic_areas_m2(wgs).tolist()
    assert [o.area_m2 for o in done.objects] == here
    assert [o.lonlat.wkb for o in done.objects] == [g.wkb for g in wgs]
    assert 0.23 < here[0] < 0.25 and 0.17 < here[1] < 0.19  # 8 x 3 and 6 x 3 px of 0.1 m
    raw.close()


def test_strip_resumed_where_it_stopped_gives_the_whole_scene_objects(tmp_path: Path) -> None:
    # two touching objects in one tall component, owned by the first core: the first run
    # stops at rows not final; a run resumed from where it stopped equals one from scratch
    # and the whole scene at once
    from geotl.predict.objects import InstanceExtractor

    planes = np.zeros((3, 40, 12), np.float32)
    planes[0, 2:38, 3:7] = 1.0  # class 1
    planes[1, 2:38, 3:7] = 0.9  # score
    planes[2, 2:38, 3:7] = 0.2  # seed score: two interiors, low where they meet
    planes[2, 5:15, 4:6] = 0.9
    planes[2, 25:35, 4:6] = 0.9
    planes[:, 1:3, 0:2] = np.array([1.0, 0.9, 0.9])[:, None, None]  # small, whole at once
    ex = InstanceExtractor(1)
    whole = ex.extract(planes, data.ORIGIN, simplify_px=0.0, min_pixels=1)
    assert len(whole) == 3
    task, raw = _first_row_task(tmp_path, ex, planes, 6, rows_ready=12)
    early = extract_strip(task)
    assert early.cores_done == 0 and 12 < early.need_rows <= 40
    assert early.resume is not None and early.resume.earlier is not None
    assert len(early.resume.owned) == 1  # the small object: kept, not made again
    assert early.resume.halo_px == early.need_rows - 6  # the read that could not be made
    ready = {**vars(task), "rows_ready": 40}
    again = extract_strip(StripTask(**{**ready, "resume": early.resume}))
    fresh = extract_strip(StripTask(**ready))
    assert again.cores_done == fresh.cores_done == 2
    assert again.objects == fresh.objects == whole
    raw.close()


def test_pool_processes_yield_the_cores_to_the_model() -> None:
    import os

    from geotl.predict.strips import POOL_NICENESS, strip_pool

    pool = strip_pool(2)
    assert pool is not None
    here = os.nice(0)
    there = pool.submit(os.nice, 0).result()
    assert there == min(here + POOL_NICENESS, 19)


def test_pool_processes_do_not_load_torch() -> None:
    # a worker needs numpy, GDAL, GEOS and scipy; torch and the model libraries take 4 s
    # of CPU to import, from the model's cores, when a scene starts the pool
    import subprocess
    import sys

    from geotl.predict.strips import strip_pool

    pool = strip_pool(2)
    assert pool is not None
    loaded = "[m for m in ('torch', 'geopandas') if m in __import__('sys').modules]"
    assert pool.submit(eval, loaded).result() == []
    # what a worker imports to run a task: the strips module and the task's extractor
    code = f"import geotl.predict.strips, geotl.predict.objects; print({loaded})"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_read_threads_follow_the_storage(monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    import geotl.cores
    from geotl.predict.stream import _read_threads_default

    monkeypatch.setattr(geotl.cores, "usable_cores", lambda: 16)
    assert _read_threads_default(SimpleNamespace(name="/data/scene.tif")) == 4  # CPU-bound
    assert _read_threads_default(SimpleNamespace(name="/vsicurl/https://x/s.tif")) == 16
    monkeypatch.setattr(geotl.cores, "usable_cores", lambda: 2)
    assert _read_threads_default(SimpleNamespace(name="/data/scene.tif")) == 1
