"""A watched folder holding Landsat Collection 2 as USGS delivers it: one GeoTIFF per band.

Each band file would be a pass of its own failing for its bands, run after run; the folder
is refused once, before any pass, in one line naming it and the way to stack the scenes.
The stack that line asks for (``gdalbuildvrt -separate``) is then monitored.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from landsat_c2 import BANDS, write_band_files
from monitor_helpers import write_region
from tinymodel import build_tiny_model

from geotl.cli.main import cli

ORDER = ["red", "green", "blue", "nir08"]
SCENE = "LC08_L2SP_016035_20230415_20230417_02_T1"


def _water(raw: np.ndarray) -> np.ndarray:
    return (raw[3] > 0) & (raw[3] < 12000)  # dark near infrared (Landsat C2 numbers)


@pytest.fixture(scope="module")
def delivery(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The per-band files of one scene, and a model of their four bands (their numbers)."""
    root = tmp_path_factory.mktemp("usgs")
    files = write_band_files(shared_data, root / "incoming", SCENE)
    stack = root / "training.tif"
    with rasterio.open(files["red"]) as ds:
        profile = ds.profile
    profile.update(count=4)
    with rasterio.open(stack, "w", **profile) as out:
        for i, band in enumerate(ORDER, start=1):
            with rasterio.open(files[band]) as ds:
                out.write(ds.read(1), i)
    build_tiny_model(root / "model", [stack], ORDER, 28.5, "water", _water, steps=2, crop_px=64)
    return root, stack


def _monitor(region: Path, model: Path, out: Path) -> object:
    return CliRunner().invoke(
        cli, ["monitor", str(region), "--out", str(out), "--model", str(model), "--once"]
    )


def test_a_folder_of_band_files_is_refused_once(
    delivery: tuple[Path, Path], tmp_path: Path
) -> None:
    root, stack = delivery
    region = write_region(
        tmp_path,
        "usgs",
        [stack],
        ORDER,
        ["water"],
        f'source = "folder"\npaths = ["{root / "incoming"}/*.TIF"]',
    )
    out = tmp_path / "out"
    result = _monitor(region, root / "model", out)
    assert result.exit_code == 2, result.output  # type: ignore[attr-defined]
    stderr = result.stderr  # type: ignore[attr-defined]
    assert len(stderr.splitlines()) == 1, stderr
    assert str(root / "incoming") in stderr and str(region) in stderr
    assert f"{SCENE}_SR_B2.TIF" in stderr and "gdalbuildvrt -separate" in stderr
    assert not list(out.rglob("passes/*.geojson"))


@pytest.mark.skipif(shutil.which("gdalbuildvrt") is None, reason="GDAL's command-line tools")
def test_the_stacked_scene_is_monitored(delivery: tuple[Path, Path], tmp_path: Path) -> None:
    root, stack = delivery
    stacks = tmp_path / "stacks"
    stacks.mkdir()
    files = [str(root / "incoming" / f"{SCENE}_{BANDS[band][1]}.TIF") for band in ORDER]
    subprocess.run(
        ["gdalbuildvrt", "-q", "-separate", str(stacks / f"{SCENE}.vrt"), *files], check=True
    )
    region = write_region(
        tmp_path,
        "usgs",
        [stack],
        ORDER,
        ["water"],
        f'source = "folder"\npaths = ["{stacks}/*.vrt"]',
    )
    out = tmp_path / "out"
    result = _monitor(region, root / "model", out)
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    assert len(list(out.rglob("passes/*.geojson"))) == 1
