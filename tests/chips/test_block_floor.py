"""Blocks narrower than a few chips are widened so guard chips cannot eat a split."""

import logging
from pathlib import Path

import geopandas as gpd
import pytest

from geotl.chips import chip_region
from geotl.config import load_region

REPO = Path(__file__).resolve().parents[2]


def _demo_with_block(tmp_path: Path, block_size_m: float) -> Path:
    text = (REPO / "regions" / "demo-osbs.toml").read_text()
    text = text.replace("block_size_m = 24.0", f"block_size_m = {block_size_m}")
    text = text.replace('"demo-osbs/', f'"{REPO}/regions/demo-osbs/')
    path = tmp_path / "demo.toml"
    path.write_text(text)
    return path


def test_tiny_blocks_are_widened_and_train_keeps_chips(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    region = load_region(_demo_with_block(tmp_path, 1.0))
    with caplog.at_level(logging.WARNING, logger="geotl.chips.pipeline"):
        chip_region(region, tmp_path / "chips")
    assert "under 3 chip widths" in caplog.text
    per_split = gpd.read_parquet(tmp_path / "chips" / "chips.parquet")["split"].value_counts()
    assert per_split.get("train", 0) > per_split.get("val", 0)
    assert per_split.get("train", 0) > per_split.get("test", 0)


def test_wide_enough_blocks_are_kept(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    region = load_region(_demo_with_block(tmp_path, 24.0))
    with caplog.at_level(logging.WARNING, logger="geotl.chips.pipeline"):
        chip_region(region, tmp_path / "chips")
    assert "chip widths" not in caplog.text
