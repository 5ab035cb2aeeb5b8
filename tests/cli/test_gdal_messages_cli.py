"""GDAL's own messages reach stderr through geotl's logging, for every command.

GDAL prints ``Warning 1: ...`` to the process's stderr itself outside a rasterio
environment, so these run geotl as a program (click's CliRunner sees only Python's
stderr). The scene is a real 4-band (RGB + NIR) GeoTIFF whose ExtraSamples tag is empty,
as many stacking tools write it: libtiff warns each time the TIFF directory is read.
"""

from __future__ import annotations

import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from click.testing import CliRunner

from geotl.cli.main import cli

_EXTRA_SAMPLES = 338  # the TIFF tag
_LABELS = (
    '{"type": "FeatureCollection", "crs": {"type": "name", "properties": {"name": '
    '"urn:ogc:def:crs:EPSG::32618"}}, "features": [{"type": "Feature", "properties": {}, '
    '"geometry": {"type": "Polygon", "coordinates": [[[500004, 3999970], [500030, 3999970], '
    "[500030, 3999996], [500004, 3999996], [500004, 3999970]]]}}]}"
)
_GRID = {
    "width": 64,
    "height": 64,
    "dtype": "uint8",
    "crs": "EPSG:32618",
    "transform": Affine(1, 0, 500_000, 0, -1, 4_000_000),
}


def _without_extra_samples(path: Path) -> Path:
    """An RGB + NIR GeoTIFF whose ExtraSamples tag lists no sample (libtiff warns)."""
    pixels = np.random.default_rng(0).integers(1, 250, (4, 64, 64), dtype=np.uint8)
    with rasterio.open(
        path, "w", driver="GTiff", count=4, photometric="RGB", alpha="unspecified", nodata=0,
        **_GRID,
    ) as dst:  # fmt: skip
        dst.write(pixels)
    raw = bytearray(path.read_bytes())
    assert raw[:4] == b"II*\x00"
    ifd = struct.unpack_from("<I", raw, 4)[0]
    entries = struct.unpack_from("<H", raw, ifd)[0]
    tags = [struct.unpack_from("<H", raw, ifd + 2 + 12 * i)[0] for i in range(entries)]
    struct.pack_into("<I", raw, ifd + 2 + 12 * tags.index(_EXTRA_SAMPLES) + 4, 0)  # count 0
    path.write_bytes(bytes(raw))
    return path


def _region(folder: Path, scene: str, bands: str) -> Path:
    (folder / "l.geojson").write_text(_LABELS)
    path = folder / "r.toml"
    path.write_text(
        f'name = "t"\nclasses = ["tree"]\n[imagery]\npaths = ["{scene}"]\n'
        f'bands = [{bands}]\n[labels]\npath = "l.geojson"\n[chips]\nsize_px = 32\n'
    )
    return path


def _chip(region: Path, out: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "geotl", *flags, "chip", str(region), "--out", str(out)],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""},
        timeout=300,
        check=False,
    )


def test_gdal_warnings_go_through_geotls_log_lines_not_bare(tmp_path: Path) -> None:
    _without_extra_samples(tmp_path / "s.tif")
    region = _region(tmp_path, "s.tif", '"red", "green", "blue", "nir"')
    bare = re.compile(r"^(Warning|ERROR) \d+: ", re.MULTILINE)

    quiet = _chip(region, tmp_path / "a")
    assert quiet.returncode == 0, quiet.stderr
    # GDAL printed "Warning 1: TIFFReadDirectory: ... Defining non-color channels as
    # ExtraSamples." itself, once per reading of the directory, unstamped
    assert not bare.search(quiet.stderr), quiet.stderr
    assert "ExtraSamples" not in quiet.stderr  # harmless: kept for -vv

    loud = _chip(region, tmp_path / "b", "-vv")
    assert loud.returncode == 0, loud.stderr
    assert not bare.search(loud.stderr), loud.stderr
    said = [line for line in loud.stderr.splitlines() if "ExtraSamples" in line]
    assert said, loud.stderr
    # stamped (stderr is no terminal) and named as every other log line
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ WARNING rasterio\._env: "
    assert all(re.match(stamp, line) for line in said), said


def test_predict_says_once_that_a_geopackage_scene_is_jpeg_chip_does_not(
    tmp_path: Path, demo_model: Path
) -> None:
    pixels = np.random.default_rng(1).integers(1, 250, (3, 64, 64), dtype=np.uint8)
    with rasterio.open(
        tmp_path / "s.gpkg", "w", driver="GPKG", count=3, TILE_FORMAT="JPEG",
        **{**_GRID, "transform": Affine(0.1, 0, 500_000, 0, -0.1, 4_000_000)},  # the demo's
    ) as dst:  # fmt: skip
        dst.write(pixels)
    region = _region(tmp_path, "s.gpkg", '"red", "green", "blue"')
    chipped = CliRunner().invoke(cli, ["chip", str(region), "--out", str(tmp_path / "out")])
    assert chipped.exit_code == 0, chipped.output
    assert "lossy-compressed" not in chipped.stderr  # the training imagery is what it is
    result = CliRunner().invoke(
        cli,
        ["predict", str(demo_model), str(tmp_path / "s.gpkg"), "-o", str(tmp_path / "p.geojson")],
    )
    assert result.exit_code == 0, result.output
    said = [line for line in result.stderr.splitlines() if "lossy-compressed" in line]
    assert len(said) == 1, result.stderr
    assert "s.gpkg: its pixels are lossy-compressed (JPEG tiles in a GeoPackage)" in said[0]
