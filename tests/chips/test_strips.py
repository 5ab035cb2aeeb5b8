"""Strip-wise cutting: masks equal per-chip rasterisation, output independent of strip size."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from affine import Affine
from rasterio.transform import array_bounds

import geotl.chips.cut as cut
from geotl.chips import chip_region, read_chip_index
from geotl.chips.labels import IGNORE, rasterize_chip
from geotl.config import load_region
from geotl.io.vectors import read_labels

from .data import write_boxes, write_region, write_scene

X0, Y0 = 500_000.0, 4_000_000.0


@pytest.fixture
def overlapping(tmp_path: Path) -> Path:
    """A 100 x 70 px scene with nodata corners, 60 boxes (two classes), 16 px chips, stride 10."""
    data = np.random.default_rng(3).integers(1, 200, size=(3, 70, 100)).astype(np.uint8)
    data[:, :6, :9] = 0
    write_scene(tmp_path / "s.tif", width=100, height=70, nodata=0, fill=data)
    rng = np.random.default_rng(4)
    xy = rng.uniform(0, 95, size=(60, 2)) * [1, 0.7]
    wh = rng.uniform(0.6, 12, size=(60, 2))
    boxes = [
        (X0 + x, Y0 - y - h, X0 + x + w, Y0 - y) for (x, y), (w, h) in zip(xy, wh, strict=True)
    ]
    labels = ["Tree" if i % 3 else "Shrub" for i in range(60)]
    write_boxes(tmp_path / "l.gpkg", boxes, labels=labels)
    return write_region(
        tmp_path / "r.toml",
        ["s.tif"],
        "l.gpkg",
        classes=["tree", "shrub"],
        labels={"class_map": {"Tree": "tree", "Shrub": "shrub"}},
        chips={"size_px": 16, "stride_px": 10},
        split={"val_fraction": 0.0, "test_fraction": 0.0},
    )


def _tree(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_masks_equal_per_chip_rasterisation(overlapping: Path, tmp_path: Path) -> None:
    region = load_region(overlapping)
    chip_region(region, tmp_path / "out")
    index = read_chip_index(tmp_path / "out")
    labels = read_labels(region)
    class_ids = {"tree": 1, "shrub": 2}
    shapes_all = [(g, class_ids[c]) for g, c in zip(labels.geometry, labels["class"], strict=True)]
    assert len(index.frame) > 40
    burnt = 0
    for row in index.frame.itertuples():
        with rasterio.open(index.path / row.mask) as m, rasterio.open(index.path / row.image) as im:
            mask, image = m.read(1), im.read()
            t = m.transform
        assert t == Affine(1, 0, X0 + row.col_off, 0, -1, Y0 - row.row_off)
        chip_box = shapely.box(*array_bounds(16, 16, t))
        shapes = [(g, v) for g, v in shapes_all if g.intersects(chip_box)]
        expected = rasterize_chip(shapes, t, 16, 16, ignore=(image == 0).all(axis=0))
        assert np.array_equal(mask, expected), row.chip_id
        burnt += int((mask == 1).sum() + (mask == 2).sum())
        assert row.px_tree == int((mask == 1).sum()) and row.px_ignore == int(
            (mask == IGNORE).sum()
        )
    assert burnt > 0


def test_output_does_not_depend_on_strip_size(
    overlapping: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    region = load_region(overlapping)
    chip_region(region, tmp_path / "wide")
    monkeypatch.setattr(cut, "STRIP_MAX_BYTES", 1)  # one chip per strip
    chip_region(region, tmp_path / "narrow")
    assert _tree(tmp_path / "wide") == _tree(tmp_path / "narrow")


def test_strips_group_runs_of_one_chip_row() -> None:
    from geotl.chips.windows import chip_windows

    windows = chip_windows(100, 40, 16, 10)
    groups = cut.strips(windows, 40)
    assert [w for g in groups for w in g] == windows
    for g in groups:
        assert len({w.row_off for w in g}) == 1
        assert g[-1].col_off + 16 - g[0].col_off <= 40
    assert len(cut.strips(windows, 1)) == len(windows)
