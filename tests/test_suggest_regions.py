"""``geotl suggest`` driven on a region that is not the demo: SpaceNet Atlanta buildings.

One WorldView-2 panchromatic band at 0.5 m, ``task = "instances"``: another sensor, task
and class than the demo plot, through the command line as a user runs it.
"""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import pytest
from click.testing import CliRunner

from geotl.cli.main import cli


def _write_region(folder: Path, shared_data: Path) -> Path:
    data = shared_data / "spacenet-atlanta"
    if not (data / "sample_geotiff.tif").is_file():
        pytest.skip(f"{data} not found")
    region = folder / "atl.toml"
    region.write_text(
        f"""name = "atl-buildings"
task = "instances"
classes = ["building"]

[imagery]
paths = ["{data / "sample_geotiff.tif"}"]
bands = ["pan"]

[labels]
path = "{data / "geotiff_labels.geojson"}"

[chips]
size_px = 64
stride_px = 64

[split]
block_size_m = 64
val_fraction = 0.15
test_fraction = 0.2
seed = 0

[model]
base = "pkg:efficientnet-lite0"
freeze = "partial"
steps = 4
val_every = 2
batch_size = 4
"""
    )
    return region


@pytest.fixture(scope="module")
def atlanta(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> tuple[Path, Path]:
    """The Atlanta region file and a model trained a few steps on it."""
    folder = tmp_path_factory.mktemp("atlanta")
    region = _write_region(folder, shared_data)
    model = folder / "model"
    res = CliRunner().invoke(cli, ["-q", "train", str(region), "--out", str(model)])
    assert res.exit_code == 0, res.output
    return region, model


def test_unreadable_append_to_leaves_no_areas_behind(
    tmp_path: Path, atlanta: tuple[Path, Path], one_thread: None
) -> None:
    # the file was read only after every scene was predicted: the error came with exit 2,
    # yet AREAS.gpkg, .qml and .png were already written (half the outputs of a failure)
    region, model = atlanta
    bad = tmp_path / "areas.gpkg"
    bad.write_text("not a GeoPackage\n")
    out = tmp_path / "to_label.gpkg"
    args = ["-q", "suggest", str(region), "--model", str(model), "-n", "2", "--size-m", "26"]
    res = CliRunner().invoke(cli, [*args, "-o", str(out), "--append-to", str(bad)])
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and str(bad) in lines[0] and "--append-to" in lines[0], lines
    assert sorted(p.name for p in tmp_path.iterdir()) == ["areas.gpkg"]
    assert bad.read_text() == "not a GeoPackage\n"

    good = tmp_path / "complete.gpkg"
    res = CliRunner().invoke(cli, [*args, "-o", str(out), "--append-to", str(good)])
    assert res.exit_code == 0, res.output
    areas = gpd.read_file(out, layer="areas")
    assert list(areas["rank"]) == [1, 2]
    assert len(gpd.read_file(good, layer="areas")) == 2
