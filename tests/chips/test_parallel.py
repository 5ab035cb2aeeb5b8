"""Strips cut in forked worker processes: same output as the serial path, clean failures."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest

import geotl.chips.cut as cut
import geotl.chips.execute as execute
import geotl.chips.scenes as scenes_mod
from geotl.chips import ChipSummary, chip_region, read_chip_index
from geotl.config import load_region
from geotl.predict.strips import close_pools

from .data import write_boxes, write_region, write_scene

X0, Y0 = 500_000.0, 4_000_000.0

pytestmark = pytest.mark.skipif(
    execute.pick_workers(2, [], None) == 1,  # type: ignore[arg-type]
    reason="no fork start method here: chipping stays serial",
)


@pytest.fixture
def region_file(tmp_path: Path) -> Path:
    """Two scenes with nodata, 80 boxes of two classes, complete_within and test_within."""
    rng = np.random.default_rng(5)
    data = rng.integers(1, 200, size=(3, 90, 120)).astype(np.uint8)
    data[:, :20, :30] = 0  # a mostly-nodata corner
    write_scene(tmp_path / "a.tif", width=120, height=90, nodata=0, fill=data)
    write_scene(tmp_path / "b.tif", width=64, height=64, origin=(X0 + 300, Y0))
    xy = rng.uniform(0, 360, size=(80, 2)) * [1, 0.25]
    wh = rng.uniform(1, 10, size=(80, 2))
    boxes = [
        (X0 + x, Y0 - y - h, X0 + x + w, Y0 - y) for (x, y), (w, h) in zip(xy, wh, strict=True)
    ]
    labels = ["Tree" if i % 4 else "Shrub" for i in range(80)]
    write_boxes(tmp_path / "l.gpkg", boxes, labels=labels)
    write_boxes(
        tmp_path / "complete.gpkg", [(X0, Y0 - 70, X0 + 100, Y0), (X0 + 300, Y0 - 64, X0 + 364, Y0)]
    )
    write_boxes(tmp_path / "test.gpkg", [(X0 + 60, Y0 - 40, X0 + 100, Y0)])
    return write_region(
        tmp_path / "r.toml",
        ["a.tif", "b.tif"],
        "l.gpkg",
        classes=["tree", "shrub"],
        labels={
            "class_map": {"Tree": "tree", "Shrub": "shrub"},
            "complete_within": "complete.gpkg",
        },
        chips={"size_px": 16, "stride_px": 12, "max_nodata_fraction": 0.5},
        split={"test_within": "test.gpkg"},
    )


def _tree(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_parallel_output_equals_serial(
    region_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    region = load_region(region_file)
    # narrow strips: several strips per chip row, many more strips than workers
    monkeypatch.setattr(cut, "STRIP_MAX_BYTES", 40 * 16 * 3)
    serial = chip_region(region, tmp_path / "serial", workers=1)
    parallel = chip_region(region, tmp_path / "parallel", workers=2)
    assert parallel == ChipSummary(**{**serial.__dict__, "out_dir": parallel.out_dir})
    assert serial.n_chips > 20 and serial.n_skipped_nodata and serial.n_skipped_incomplete
    # each class's labelled pixels per split add up to the split's, and the line says them
    by_class = serial.class_pixels_per_split
    assert list(by_class) == ["tree", "shrub"]
    for split, total in serial.pixels_per_split.items():
        assert sum(by_class[c][split] for c in by_class) == total
    shrub = " / ".join(str(by_class["shrub"][s]) for s in ("train", "val", "test"))
    assert "per class (train / val / test): tree " in serial.line()
    assert f"shrub {shrub}" in serial.line()
    meta = json.loads((tmp_path / "serial" / "chipset.json").read_text())
    assert meta["counts"]["pixels_per_class_per_split"] == by_class
    assert _tree(tmp_path / "serial") == _tree(tmp_path / "parallel")
    frame = read_chip_index(tmp_path / "parallel").frame
    assert sorted(p.name for p in (tmp_path / "parallel" / "images").iterdir()) == sorted(
        f"{c}.tif" for c in frame["chip_id"]
    )


def test_large_jobs_pick_workers_small_jobs_stay_serial(
    region_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    close_pools()  # a strip pool kept by an earlier predict test holds a thread
    region = load_region(region_file)
    scenes = scenes_mod.scan_scenes(region)
    n_chips = sum(len(s.windows) for s in scenes)
    monkeypatch.setattr(execute, "PARALLEL_MIN_CHIPS", n_chips + 1)
    assert execute.pick_workers(None, scenes, region) == 1  # enough strips, too few chips
    monkeypatch.setattr(execute, "PARALLEL_MIN_CHIPS", n_chips)
    expected = min(execute.MAX_WORKERS, len(os.sched_getaffinity(0)))
    assert execute.pick_workers(None, scenes, region) == expected
    assert execute.pick_workers(1, scenes, region) == 1
    # no fork while a Python thread runs (fork + threads can deadlock)
    stop = threading.Event()
    t = threading.Thread(target=stop.wait)
    t.start()
    try:
        assert execute.pick_workers(2, scenes, region) == 1
    finally:
        stop.set()
        t.join()
    # the automatic choice gives the same output as the serial path
    chip_region(region, tmp_path / "auto")
    chip_region(region, tmp_path / "serial", workers=1)
    assert _tree(tmp_path / "auto") == _tree(tmp_path / "serial")


def _boom(*args: object) -> None:
    raise RuntimeError("worker failed")


def test_worker_failure_leaves_nothing(
    region_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    region = load_region(region_file)
    monkeypatch.setattr(execute, "cut_strip", _boom)  # inherited by the forked workers
    with pytest.raises(RuntimeError, match="worker failed"):
        chip_region(region, tmp_path / "chips", workers=2)
    assert not (tmp_path / "chips").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
