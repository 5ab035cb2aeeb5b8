"""Guard bands replace guard chips: small blocks are honoured and no chip is dropped."""

from pathlib import Path

import geopandas as gpd
import pytest

from geotl.chips import chip_region
from geotl.config import load_region

from .leak import assert_leak_free

REPO = Path(__file__).resolve().parents[2]


def _demo_with(tmp_path: Path, block_size_m: float, guard_px: int) -> Path:
    text = (REPO / "regions" / "demo-osbs.toml").read_text()
    text = text.replace("block_size_m = 24.0", f"block_size_m = {block_size_m}")
    text = text.replace("guard_px = 16", f"guard_px = {guard_px}")
    text = text.replace('"demo-osbs/', f'"{REPO}/regions/demo-osbs/')
    path = tmp_path / "demo.toml"
    path.write_text(text)
    return path


def test_tiny_blocks_keep_every_chip_and_stay_leak_free(tmp_path: Path) -> None:
    region = load_region(_demo_with(tmp_path, 1.0, 8))
    summary = chip_region(region, tmp_path / "chips")
    per_split = gpd.read_parquet(tmp_path / "chips" / "chips.parquet")["split"].value_counts()
    assert summary.n_chips == 49  # 7 x 7 chips of 64 px (400 px scene, last shifted back)
    assert per_split.get("train", 0) > per_split.get("val", 0) > 0
    assert summary.guard.pixels.get("train", 0) > 0
    assert "guard bands of 8 px took" in summary.line()
    assert assert_leak_free(tmp_path / "chips") > 0


def test_wider_band_takes_more(tmp_path: Path) -> None:
    narrow = chip_region(load_region(_demo_with(tmp_path, 24.0, 4)), tmp_path / "a")
    wide = chip_region(load_region(_demo_with(tmp_path, 24.0, 16)), tmp_path / "b")
    assert wide.guard.total_pixels() > narrow.guard.total_pixels() > 0
    assert wide.counts == narrow.counts  # same split: only the bands differ
    assert_leak_free(tmp_path / "b")


def test_a_guard_band_wider_than_a_scene_names_a_band_that_fits(tmp_path: Path) -> None:
    from geotl.errors import ConfigError

    with pytest.raises(ConfigError, match=r"\(400 px\) would cover .* use guard_px = 199 or less"):
        chip_region(load_region(_demo_with(tmp_path, 24.0, 200)), tmp_path / "a")
    assert not (tmp_path / "a").exists()
    # the advice, taken, chips
    assert chip_region(load_region(_demo_with(tmp_path, 24.0, 199)), tmp_path / "b").n_chips > 0


def test_a_stride_beyond_the_chip_says_what_is_left_out(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    region_file = _demo_with(tmp_path, 24.0, 16)
    region_file.write_text(region_file.read_text().replace("stride_px = 64", "stride_px = 96"))
    with caplog.at_level("WARNING", logger="geotl"):
        chip_region(load_region(region_file), tmp_path / "c")
    assert "stride_px = 96 is larger than size_px = 64: the 32 px between chips" in caplog.text


def test_guard_bands_that_take_every_val_object_pixel_are_said(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from types import SimpleNamespace

    from geotl.chips.assemble import check_split
    from geotl.chips.guard import GuardReport

    region = load_region(_demo_with(tmp_path, 24.0, 64))
    rows = [SimpleNamespace(forced=None)] * 3
    with caplog.at_level("WARNING", logger="geotl"):
        advice = check_split(
            region,
            rows,  # type: ignore[arg-type]
            ["train", "val", "test"],
            {"train": 20, "val": 4, "test": 5},
            {"train": 900, "val": 0, "test": 300},  # val's objects, all inside bands
            GuardReport(guard_px=64),
        )
    assert advice is None  # training can go on; validation would score nothing
    assert "took every object pixel of val" in caplog.text and "guard_px = 16" in caplog.text
