"""A scene without georeferencing, as ``geotl`` (a real process) reports it: one line, exit 2.

Found driving geotl on regions it had not seen: a copy of a scene that lost its geotransform
(its CRS kept) was read as one-degree pixels, and ``geotl predict`` answered "ground
resolution 5.973e+04 m differs from the model's: pass --resample", which cannot help; and
before geotl's own line, rasterio's NotGeoreferencedWarning printed two more (its source).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import rasterio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from predict import data

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "regions" / "demo-osbs"


def _copy(dst: Path, keep_crs: bool) -> Path:
    """The demo plot (a real NEON GeoTIFF) without its geotransform (and maybe its CRS)."""
    with rasterio.open(DEMO / "imagery" / "OSBS_029.tif") as src:
        pixels = src.read()
        profile = {**src.profile}
    del profile["transform"]
    if not keep_crs:
        del profile["crs"]
    with (
        pytest.warns(rasterio.errors.NotGeoreferencedWarning),
        rasterio.open(dst, "w", **profile) as out,
    ):
        out.write(pixels)
    return dst


def _geotl(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "geotl", *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=300,
    )


@pytest.mark.parametrize("keep_crs", [True, False], ids=["crs-only", "nothing"])
def test_predict_refuses_a_scene_without_geotransform_in_one_line(
    tmp_path: Path, keep_crs: bool
) -> None:
    model = tmp_path / "model"
    data.write_constant_model(model)
    scene = _copy(tmp_path / "plain copy.tif", keep_crs)
    out = tmp_path / "o.geojson"

    proc = _geotl("predict", model, scene, "-o", out)

    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "plain copy.tif" in lines[0]
    assert ("geotransform" if keep_crs else "no CRS") in lines[0]
    assert "--resample" not in lines[0]
    assert not out.exists() and proc.stdout == ""


def test_chip_refuses_a_scene_without_geotransform_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "imagery").mkdir()
    _copy(tmp_path / "imagery" / "OSBS_029.tif", keep_crs=True)
    region = tmp_path / "region.toml"
    labels = DEMO / "labels" / "OSBS_029_crowns.geojson"
    region.write_text(
        'name = "plain"\nclasses = ["tree"]\n[imagery]\npaths = ["imagery/*.tif"]\n'
        'bands = ["red", "green", "blue"]\n'
        f'[labels]\npath = "{labels}"\nclass_field = "label"\nclass_map = {{ Tree = "tree" }}\n'
    )

    proc = _geotl("chip", region, "--out", tmp_path / "chips")

    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "OSBS_029.tif" in lines[0] and "geotransform" in lines[0]
    assert not (tmp_path / "chips").exists()
