"""A split that leaves val or test without a labelled object is said, with settings that work."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from geotl.chips import chip_region, read_chip_index
from geotl.config import load_region

from .data import write_boxes, write_region, write_scene


def test_no_labelled_object_in_val_or_test_is_said(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    x0, y0 = 500_000.0, 4_000_000.0  # the scene's top-left corner (1 m pixels)
    write_scene(tmp_path / "s.tif", width=128, height=128, origin=(x0, y0))
    labels = tmp_path / "l.gpkg"
    write_boxes(labels, [(x0 + 1, y0 - 2, x0 + 2, y0 - 1)])
    region_file = write_region(tmp_path / "r.toml", ["s.tif"], "l.gpkg")
    region = load_region(region_file)
    # the split depends on the blocks, not on the labels: find a train chip first
    chip_region(region, tmp_path / "first")
    frame = read_chip_index(tmp_path / "first").frame
    train = frame.loc[frame["split"] == "train"]
    blocks = (train["row_off"] // 32) * 100 + train["col_off"] // 32  # 32 m blocks, 1 m pixels
    chips = train.groupby(blocks).head(1).head(3)  # train chips of three blocks
    assert len(chips) == 3
    # ... then put one object in the middle of each (clear of the guard bands)
    write_boxes(
        labels,
        [
            (x0 + c + 5, y0 - r - 11, x0 + c + 11, y0 - r - 5)
            for r, c in zip(chips["row_off"], chips["col_off"], strict=True)
        ],
    )
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="geotl.chips.assemble"):
        summary = chip_region(region, tmp_path / "chips")
    assert summary.objects_per_split == {"train": 3, "val": 0, "test": 0}
    # the advice was found by trying: another seed or block size spreads the three blocks
    said = [
        r.getMessage() for r in caplog.records if "left no labelled object in" in r.getMessage()
    ]
    assert len(said) == 1 and "left no labelled object in val or test" in said[0]
    assert str(region_file) in said[0] and "use [split] block_size_m = " in said[0]
    # the advice, followed, gives every split a labelled object
    advice = said[0].split("use [split] ")[1].split(" (one chip")[0]
    settings = dict(kv.split(" = ") for kv in advice.split(", "))
    text = region_file.read_text()
    for key, value in settings.items():
        text = re.sub(rf"^{key} = .*$", f"{key} = {value}", text, flags=re.M)
    region_file.write_text(text)
    followed = chip_region(load_region(region_file), tmp_path / "followed")
    assert all(followed.objects_per_split[s] > 0 for s in ("train", "val", "test")), advice
