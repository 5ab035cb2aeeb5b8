"""``geotl suggest`` driven as an analyst on the Flanders Sentinel-2 fields.

Two passes of one area (long Sentinel-2 file names), labels complete only inside the 16
windows of ``_locations.gpkg``, a tiny model: the squares say why they were picked, the
contact sheet stays readable, and a second round with the first squares appended to a
``complete_within`` file in another CRS and format proposes none of them again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import geopandas as gpd
import pytest
import rasterio
from click.testing import CliRunner
from rasterio.windows import Window
from shapely.geometry import Polygon, box

from geotl.cli.main import cli
from geotl.io.rasters import window_bounds
from geotl.predict.outputs.quicklook import ScenePicture
from geotl.suggest.outputs import TITLE_CHARS, write_contact_sheet

SCENE = Path(__file__).resolve().parents[1] / "regions" / "demo-osbs" / "imagery" / "OSBS_029.tif"
PASSES = [
    "BEFL-TEST_s2_2023-06-05_2023-06-11_B08-B04-B03.tif",
    "BEFL-TEST-s2_2023-05-01_2023-07-01_B08-B04-B03_min_byte.tif",
]


@pytest.fixture(scope="module")
def flanders(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> tuple[Path, Path]:
    """The Flanders region (complete_within: the locations as GeoJSON in EPSG:4326) and a
    model trained a few steps on it."""
    data = shared_data / "s2-fields-flanders"
    if not (data / PASSES[0]).is_file():
        pytest.skip(f"{data} not found")
    folder = tmp_path_factory.mktemp("flanders")
    locations = gpd.read_file(data / "fields_BEFL-s2-fields-2023_locations.gpkg", layer="locations")
    # another CRS and format than the labels' GeoPackage in EPSG:32631
    locations.to_crs(4326).to_file(folder / "areas.geojson")
    region = folder / "flanders.toml"
    paths = ", ".join(f'"{data / p}"' for p in PASSES)
    region.write_text(
        f"""name = "flanders-fields"
task = "segmentation"
classes = ["field"]

[imagery]
paths = [{paths}]
bands = ["nir", "red", "green"]

[labels]
path = "{data / "fields_BEFL-s2-fields-2023_polygons.gpkg"}"
layer = "polygons"
complete_within = "areas.geojson"

[chips]
size_px = 64
stride_px = 64

[split]
block_size_m = 640
val_fraction = 0.2
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
    model = folder / "model"
    res = CliRunner().invoke(cli, ["-q", "train", str(region), "--out", str(model)])
    assert res.exit_code == 0, res.output
    return region, model


def _suggest(region: Path, model: Path, out: Path, *extra: str) -> gpd.GeoDataFrame:
    args = ["-q", "suggest", str(region), "--model", str(model), "-n", "4", "-o", str(out)]
    res = CliRunner().invoke(cli, [*args, *extra])
    assert res.exit_code == 0, res.output
    return gpd.read_file(out, layer="areas")


def test_squares_say_why_and_a_second_round_avoids_the_first(
    tmp_path: Path, flanders: tuple[Path, Path], titles: list[str], one_thread: None
) -> None:
    region, model = flanders
    areas_file = region.parent / "areas.geojson"
    first = _suggest(region, model, tmp_path / "r1.gpkg", "--append-to", str(areas_file))
    assert first.crs.to_epsg() == 32631
    assert list(first["rank"]) == [1, 2, 3, 4]
    # the score says how unsure, `why` about what: a QGIS user reads it in the attribute table
    assert first["why"].isin(["field or background?", "background or field?"]).all()
    # the contact sheet: titles no wider than a thumbnail (they overprinted each other),
    # and the two passes still told apart
    shown = [t.splitlines()[1] for t in titles if t.startswith("#")]
    assert len(shown) == 4 and all(len(s) <= TITLE_CHARS for s in shown), shown
    assert len(set(shown)) == len(set(first["scene"]))

    # the analyst labels the squares; the appended areas (EPSG:4326 GeoJSON) take them out
    appended = gpd.read_file(areas_file)
    assert len(appended) == 16 + 4 and appended.crs.to_epsg() == 4326
    second = _suggest(region, model, tmp_path / "r2.gpkg")
    done = first.union_all()
    shared = second.intersection(done).area / second.area
    assert (shared <= 0.1).all(), shared.tolist()


def test_contact_sheet_titles_fit_and_outlines_draw_no_dots(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, titles: list[str]
) -> None:
    """A 60-character scene name ran into its neighbours' titles; a predicted polygon
    touching a square's edge clipped to a point, drawn as a yellow dot."""
    from matplotlib.axes import Axes

    dots: list[int] = []
    scatter = Axes.scatter

    def record(self: Axes, *args: Any, **kwargs: Any) -> Any:
        dots.append(1)
        return scatter(self, *args, **kwargs)

    monkeypatch.setattr(Axes, "scatter", record)
    with rasterio.open(SCENE) as ds:
        t, crs = ds.transform, ds.crs
    square = box(*window_bounds(t, Window(0, 0, 64, 64)))
    _, y0, x1, y1 = square.bounds
    ym = (y0 + y1) / 2
    touching = Polygon([(x1, ym), (x1 + 2, ym - 1), (x1 + 2, ym + 1)])  # its tip on the edge
    crossing = box(x1 - 1, y0 - 1, x1 + 1, y0 + 1)
    name = PASSES[1]  # the scene's name in the outputs
    areas = gpd.GeoDataFrame(
        {"rank": [1], "score": [0.5], "scene": name, "expected_objects": [1]},
        geometry=[square],
        crs=crs,
    )
    det = gpd.GeoDataFrame(geometry=[touching, crossing], crs=crs)
    out = write_contact_sheet(
        tmp_path / "s.png", areas, {name: ScenePicture(SCENE, [1, 2, 3])}, {name: det}
    )
    assert out.read_bytes()[:4] == b"\x89PNG"
    assert dots == []
    scene_line = titles[0].splitlines()[1]
    assert len(scene_line) <= TITLE_CHARS and scene_line.startswith("BEFL-TEST-s2_2023-05-01")


def test_append_to_the_label_file_is_refused(
    tmp_path: Path, flanders: tuple[Path, Path], shared_data: Path
) -> None:
    """A region whose label file is its complete_within too (every labelled polygon an area
    labelled completely): following the loop, ``--append-to`` that file put the squares
    into the labels, where a region without class_field reads them as whole fields."""
    _, model = flanders
    data = shared_data / "s2-fields-flanders"
    labels = tmp_path / "fields.gpkg"
    gpd.read_file(data / "fields_BEFL-s2-fields-2023_polygons.gpkg", layer="polygons").to_file(
        labels, layer="polygons"
    )
    before = len(gpd.read_file(labels, layer="polygons"))
    region = tmp_path / "self.toml"
    region.write_text(
        f"""name = "flanders-self"
task = "segmentation"
classes = ["field"]

[imagery]
paths = ["{data / PASSES[0]}"]
bands = ["nir", "red", "green"]

[labels]
path = "fields.gpkg"
complete_within = "fields.gpkg"

[chips]
size_px = 64
stride_px = 64
"""
    )
    out = tmp_path / "next.gpkg"
    args = ["suggest", str(region), "--model", str(model), "-n", "2", "-o", str(out)]
    res = CliRunner().invoke(cli, [*args, "--append-to", str(labels)])
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and str(labels) in lines[0] and "'field' objects" in lines[0], lines
    assert len(gpd.read_file(labels, layer="polygons")) == before
    assert not out.exists()
