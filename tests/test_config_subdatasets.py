"""``[imagery] paths`` may name a subdataset: a page of a multi-page TIFF, a NetCDF variable.

Its file part is found from the region file (GDAL alone would look in the working
folder), never globbed, and GDAL's name is kept round it. Real files: the NEON HARV plot
written by GDAL as page 2 of a TIFF whose page 1 is all zeros, with its real crowns.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
from click.testing import CliRunner
from rasterio.shutil import copy

from geotl.cli.main import cli
from geotl.config import load_region
from geotl.errors import ConfigError

NAME = "Étang page.tif"


def _region(folder: Path, paths: list[str]) -> Path:
    listed = ", ".join(f"'{p}'" for p in paths)  # TOML literal strings: netCDF's quotes
    path = folder / "region.toml"
    path.write_text(
        f'name = "etang"\nclasses = ["tree"]\n[imagery]\npaths = [{listed}]\n'
        'bands = ["red", "green", "blue"]\n[labels]\npath = "crowns.gpkg"\n'
        'class_field = "label"\nclass_map = { Tree = "tree" }\n'
        "[chips]\nsize_px = 100\nstride_px = 100\n"
        "[split]\nblock_size_m = 20.0\nval_fraction = 0.0\ntest_fraction = 0.0\n"
    )
    return path


def _pages(folder: Path, shared_data: Path, name: str = NAME) -> Path:
    """The HARV plot as page 2 of ``name`` (page 1: zeros), and its crowns beside it."""
    harv = shared_data / "neon-trees" / "HARV"
    image = harv / "images" / "HARV_022.tif"
    with rasterio.open(image) as src:
        profile, zeros = src.profile, np.zeros((src.count, src.height, src.width), src.dtypes[0])
    folder.mkdir(parents=True, exist_ok=True)
    with rasterio.open(folder / "zeros.tif", "w", **profile) as dst:
        dst.write(zeros)
    copy(folder / "zeros.tif", folder / name, driver="GTiff")
    copy(image, folder / name, driver="GTiff", APPEND_SUBDATASET="YES")
    (folder / "zeros.tif").unlink()
    crowns = gpd.read_file(harv / "HARV_tree_crowns.geojson")
    crowns = crowns[crowns["image"] == "HARV_022.tif"].assign(label="Tree")
    crowns[["label", "geometry"]].to_file(folder / "crowns.gpkg")
    return folder / name


def test_a_page_named_in_the_region_is_chipped_from_that_page(
    tmp_path: Path, shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "région"
    pages = _pages(folder, shared_data)
    region = _region(folder, [f"GTIFF_DIR:2:{NAME}"])
    monkeypatch.chdir(tmp_path)  # GDAL would look for the relative file here
    (scene,) = load_region(region).scene_paths()
    assert os.fspath(scene) == f"GTIFF_DIR:2:{pages}"
    result = CliRunner().invoke(cli, ["chip", str(region), "--out", str(tmp_path / "chips")])
    assert result.exit_code == 0, result.output
    frame = pd.read_parquet(tmp_path / "chips" / "chips.parquet")
    assert set(frame["scene"]) == {f"GTIFF_DIR:2:{pages}"}
    assert frame["chip_id"].str.startswith("Étang page_").all()
    assert frame["px_tree"].sum() > 0
    with rasterio.open(tmp_path / "chips" / frame["image"].iloc[0]) as chip:
        assert chip.read().mean() > 10  # page 2, the plot; page 1 is all zeros


def test_a_netcdf_variable_and_a_file_with_brackets_are_not_globbed(
    tmp_path: Path, shared_data: Path
) -> None:
    pages = _pages(tmp_path, shared_data, "plot[1].tif")  # a glob would match 'plot1.tif'
    copy(pages, tmp_path / "plot.nc", driver="netCDF")  # page 1 of it: one variable per band
    region = load_region(_region(tmp_path, ["GTIFF_DIR:2:plot[1].tif", 'netCDF:"plot.nc":Band1']))
    assert sorted(os.fspath(p) for p in region.scene_paths()) == [
        f"GTIFF_DIR:2:{pages}",
        f'netCDF:"{tmp_path / "plot.nc"}":Band1',
    ]
    # the containers are the region's inputs: an --out folder holding them is refused
    assert {pages, tmp_path / "plot.nc"} <= set(region.input_paths())


def test_a_page_of_a_missing_file_names_the_file(tmp_path: Path, shared_data: Path) -> None:
    _pages(tmp_path, shared_data)
    shutil.move(tmp_path / NAME, tmp_path / "moved.tif")
    with pytest.raises(ConfigError) as caught:
        load_region(_region(tmp_path, [f"GTIFF_DIR:2:{NAME}"]))
    text = str(caught.value)
    assert "\n" not in text and f"'GTIFF_DIR:2:{NAME}' names file '{NAME}'" in text
    assert "not found" in text and "region.toml" in text


def test_two_pages_of_one_file_are_two_scenes(tmp_path: Path, shared_data: Path) -> None:
    """Before: 'several scenes share the name', which no renaming could fix."""
    folder = tmp_path / "two"
    _pages(folder, shared_data)
    region = _region(folder, [f"GTIFF_DIR:1:{NAME}", f"GTIFF_DIR:2:{NAME}"])
    result = CliRunner().invoke(cli, ["chip", str(region), "--out", str(tmp_path / "chips")])
    assert result.exit_code == 0, result.output
    frame = pd.read_parquet(tmp_path / "chips" / "chips.parquet")
    prefixes = {c.rsplit("_r", 1)[0] for c in frame["chip_id"]}
    assert prefixes == {"Étang page_GTIFF_DIR_1", "Étang page_GTIFF_DIR_2"}
    assert frame["chip_id"].is_unique
