"""A multi-page TIFF is read as its page 1, and said; a page given by name is read as given.

Real files: two GeoTIFFs of one grid written as the two pages of one TIFF by GDAL itself
(``APPEND_SUBDATASET=YES``), as tifffile or a time stack exported page by page would be.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from rasterio.shutil import copy

from geotl.cli.main import cli
from geotl.io.rasters import open_raster, read_scene_info

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from predict import data


def _two_pages(folder: Path) -> Path:
    """Page 1 all no data (0), page 2 all valid: which page was read shows in the polygons."""
    pages = folder / "pages.tif"
    for i, value in enumerate((0, 120)):
        page = data.write_bands(
            folder / f"p{i}.tif", np.full((3, 140, 150), value, np.uint8), nodata=0
        )
        copy(page, pages, driver="GTiff", **({"APPEND_SUBDATASET": "YES"} if i else {}))
    return pages


def _pages_said(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "multi-page TIFF" in r.getMessage()]


def test_a_multi_page_tiff_is_said_once_naming_how_to_read_another(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pages = _two_pages(tmp_path)
    with caplog.at_level(logging.WARNING):
        read_scene_info(pages)
        read_scene_info(pages)  # chipping describes a scene more than once: said once
    (line,) = _pages_said(caplog)
    assert "2 pages" in line and "page 1 is read" in line and f"'GTIFF_DIR:2:{pages}'" in line
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        info = read_scene_info(f"GTIFF_DIR:2:{pages}")  # the page asked for: nothing to say
    assert not _pages_said(caplog) and info.count == 3
    with open_raster(f"GTIFF_DIR:2:{pages}") as ds:
        assert int(ds.read(1, window=((0, 1), (0, 1)))[0, 0]) == 120


def test_a_single_page_tiff_is_not_said(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    scene = data.write_bands(tmp_path / "one.tif", np.full((3, 64, 64), 9, np.uint8))
    with rasterio.open(scene, "r+") as ds:
        ds.build_overviews([2, 4])  # overviews are pages GDAL does not list: not said
    with caplog.at_level(logging.WARNING):
        read_scene_info(scene)
    assert not _pages_said(caplog)


def test_predict_of_a_page_given_by_name_reads_it_and_names_it_as_given(tmp_path: Path) -> None:
    pages = _two_pages(tmp_path)
    model = tmp_path / "model"
    data.write_constant_model(model)
    out = tmp_path / "out.geojson"
    first, second = f"GTIFF_DIR:1:{pages}", f"GTIFF_DIR:2:{pages}"
    res = CliRunner().invoke(
        cli, ["-q", "predict", str(model), first, second, "-o", str(out), "--no-progress"]
    )
    assert res.exit_code == 0, res.stderr
    features = json.loads(out.read_text())["features"]
    # page 1 is all no data, page 2 all valid: one polygon, from page 2, under its own name
    assert [f["properties"]["scene"] for f in features] == ["GTIFF_DIR:2:pages.tif"]
    assert "multi-page" not in res.stderr  # the pages asked for: nothing to say
    res = CliRunner().invoke(
        cli, ["-q", "predict", str(model), str(pages), "-o", str(out), "--overwrite"]
    )
    assert res.exit_code == 0 and "multi-page TIFF of 2 pages" in res.stderr
