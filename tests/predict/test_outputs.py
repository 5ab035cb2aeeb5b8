"""Prediction outputs as a GIS user meets them: quicklook, output names."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pytest
from affine import Affine
from click.testing import CliRunner
from shapely.geometry import box

from geotl.cli.main import cli

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from predict import data


def test_quicklook_title_names_the_scene(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the title named the last class drawn ("tree: 2 detection(s)"), not the scene
    from matplotlib.axes import Axes

    from geotl.predict.outputs.quicklook import write_quicklook

    titles: list[str] = []
    set_title = Axes.set_title

    def record(self: Axes, label: str, *args: Any, **kwargs: Any) -> Any:
        titles.append(label)
        return set_title(self, label, *args, **kwargs)

    monkeypatch.setattr(Axes, "set_title", record)
    scene = data.write_scene(tmp_path / "plot_7.tif", np.full((40, 50), 150, dtype=np.uint8))
    x, y = data.ORIGIN.c, data.ORIGIN.f
    frame = gpd.GeoDataFrame(
        {"class": ["tree", "building"]},
        geometry=[box(x + 1, y - 2, x + 2, y - 1), box(x + 3, y - 3, x + 4, y - 2)],
        crs=data.UTM17,
    )
    out = write_quicklook(
        tmp_path / "q.png", scene, frame, [1, 2, 3], ["building", "tree"], name="2023/plot_7.tif"
    )
    assert out.stat().st_size > 0
    assert titles == ["2023/plot_7.tif: 2 detection(s)"]


@pytest.mark.parametrize(
    ("option", "name", "said"),
    [
        ("--quicklook", "q.jpg", "q.jpg: is written as png: name it --quicklook OUT.png"),
        ("--probabilities", "p.png", "p.png: is written as tif: name it --probabilities OUT.tif"),
    ],
)
def test_quicklook_and_probabilities_named_for_another_format_are_refused(
    tmp_path: Path, option: str, name: str, said: str
) -> None:
    # a PNG was written as q.jpg and a GeoTIFF as p.png, after all the work
    model = tmp_path / "model"
    data.write_constant_model(model)
    scene = data.write_scene(tmp_path / "s.tif", np.full((40, 50), 150, dtype=np.uint8))
    out = tmp_path / "o.geojson"
    res = CliRunner().invoke(
        cli, ["-q", "predict", str(model), str(scene), "-o", str(out), option, str(tmp_path / name)]
    )
    assert res.exit_code == 2 and said in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert not out.exists() and not (tmp_path / name).exists()


def test_quicklook_lies_on_the_map_where_its_scene_does(tmp_path: Path) -> None:
    """GDAL (so QGIS) opens the PNG in the scene's CRS, each place over its own pixels."""
    import rasterio

    from geotl.predict.outputs.quicklook import write_quicklook

    band0 = np.full((40, 50), 50, dtype=np.uint8)
    band0[:20, :25] = 250  # a bright top-left quarter
    scene = data.write_scene(tmp_path / "s.tif", band0)
    empty = gpd.GeoDataFrame({"class": []}, geometry=[], crs=data.UTM17)
    png = write_quicklook(tmp_path / "q.png", scene, empty, [1, 2, 3], ["tree"])
    assert (tmp_path / "q.pgw").is_file() and (tmp_path / "q.png.aux.xml").is_file()
    x0, y0, px = data.ORIGIN.c, data.ORIGIN.f, data.ORIGIN.a
    with rasterio.open(png) as pic:
        assert pic.crs == data.UTM17
        red = pic.read(1)
        # scene pixel coordinates, a tenth of a scene pixel on either side of the edges
        places = [((12, 10), True), ((37, 30), False), ((24.9, 10), True), ((25.1, 10), False)]
        places += [((10, 19.9), True), ((10, 20.1), False)]
        for (col, row), bright in places:
            r, c = pic.index(x0 + col * px, y0 - row * px)
            assert (red[r, c] > 200) == bright, (col, row, red[r, c])
        # the scene's corners fall inside the picture, at the right scale
        assert pic.bounds.left <= x0 and pic.bounds.top >= y0
        assert abs(pic.transform.a * pic.width - (pic.bounds.right - pic.bounds.left)) < 1e-6


def test_quicklook_of_a_rotated_scene_draws_its_boxes_on_their_pixels(tmp_path: Path) -> None:
    """A grid rotated 30 degrees: picture, world file and polygons agree, as they do north-up.

    It was drawn as if north-up over the rotated footprint's bounds, the polygons in map
    units: boxes off their objects, and the picture off its scene in QGIS.
    """
    import math

    import rasterio
    from affine import Affine
    from shapely import affinity

    from geotl.predict.outputs.quicklook import write_quicklook

    t = data.ORIGIN @ Affine.rotation(30)
    assert t.b != 0 and t.d != 0
    band0 = np.full((40, 50), 50, dtype=np.uint8)
    band0[:20, :25] = 250  # a bright top-left quarter of the stored grid
    scene = data.write_scene(tmp_path / "rot.tif", band0, transform=t)
    obj = affinity.affine_transform(box(30, 25, 45, 35), [t.a, t.b, t.d, t.e, t.c, t.f])
    frame = gpd.GeoDataFrame({"class": ["tree"]}, geometry=[obj], crs=data.UTM17)
    png = write_quicklook(tmp_path / "q.png", scene, frame, [1, 2, 3], ["tree"])
    with rasterio.open(png) as pic:
        assert pic.crs == data.UTM17
        assert math.isclose(abs(pic.transform.b), abs(pic.transform.a) * math.tan(math.pi / 6))
        red, green = pic.read(1), pic.read(2)

        def at(col: float, row: float) -> tuple[int, int]:
            r, c = pic.index(*(t @ (col, row)))
            return int(r), int(c)

        for (col, row), bright in [((12, 10), True), ((37, 10), False), ((12, 30), False)]:
            r, c = at(col, row)
            assert (red[r, c] > 200) == bright, (col, row, red[r, c])
        # the box's outline (class colour: green) on its pixels, none inside or elsewhere
        for (col, row), outline in [((30, 30), True), ((45, 28), True), ((37, 30), False)]:
            r, c = at(col, row)
            assert (green[r - 2 : r + 3, c - 2 : c + 3].max() > 100) == outline, (col, row)


@pytest.mark.parametrize("stored", ["south-up", "east-left"])
def test_quicklook_of_a_flipped_scene_draws_its_polygons_on_their_pixels(
    tmp_path: Path, stored: str
) -> None:
    """A grid stored south-up (or east-left): picture, world file and polygons agree.

    rasterio's bounds of such a grid have bottom > top (left > right): the picture was
    drawn north-up but its axes ran the other way, so every polygon was drawn mirrored
    over other pixels, and the world file placed the picture upside down.
    """
    import rasterio
    from affine import Affine
    from shapely import affinity

    from geotl.predict.outputs.quicklook import write_quicklook

    o = data.ORIGIN
    if stored == "south-up":  # row 0 is the southern edge
        t = Affine(o.a, 0, o.c, 0, -o.e, o.f + o.e * 40)
    else:  # column 0 is the eastern edge
        t = Affine(-o.a, 0, o.c + o.a * 50, 0, o.e, o.f)
    band0 = np.full((40, 50), 50, dtype=np.uint8)
    band0[:20, :25] = 250  # a bright first quarter of the stored grid
    scene = data.write_scene(tmp_path / "s.tif", band0, transform=t)
    obj = affinity.affine_transform(box(30, 25, 45, 35), [t.a, t.b, t.d, t.e, t.c, t.f])
    frame = gpd.GeoDataFrame({"class": ["tree"]}, geometry=[obj], crs=data.UTM17)
    png = write_quicklook(tmp_path / "q.png", scene, frame, [1, 2, 3], ["tree"])
    with rasterio.open(png) as pic:
        assert pic.transform.a > 0 and pic.transform.e < 0  # north-up, east-right
        red, green = pic.read(1), pic.read(2)

        def at(col: float, row: float) -> tuple[int, int]:
            r, c = pic.index(*(t @ (col, row)))
            return int(r), int(c)

        for (col, row), bright in [((12, 10), True), ((37, 10), False), ((12, 30), False)]:
            r, c = at(col, row)
            assert (red[r, c] > 200) == bright, (col, row, red[r, c])
        for (col, row), outline in [((30, 30), True), ((45, 28), True), ((37, 30), False)]:
            r, c = at(col, row)
            assert (green[r - 2 : r + 3, c - 2 : c + 3].max() > 100) == outline, (col, row)


def test_quicklook_of_a_one_pixel_wide_scene_warns_nothing(tmp_path: Path) -> None:
    """A 1 x 400 px strip: drawn, without matplotlib's tight-layout warning on stderr."""
    import warnings

    from geotl.predict.outputs.quicklook import write_quicklook

    scene = data.write_scene(tmp_path / "strip.tif", np.full((400, 1), 200, dtype=np.uint8))
    o = data.ORIGIN
    obj = box(o.c, o.f - 30, o.c + 0.1, o.f - 10)  # an object in the strip: a legend too
    frame = gpd.GeoDataFrame({"class": ["tree"]}, geometry=[obj], crs=data.UTM17)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        png = write_quicklook(tmp_path / "q.png", scene, frame, [1, 2, 3], ["tree"])
    assert png.is_file()


def test_a_geographic_scene_past_180_gives_longitudes_within_180(tmp_path: Path) -> None:
    # a scene in EPSG:4326 whose columns run past longitude 180 (Fiji on a 0..360 grid):
    # nothing to reproject, so the GeoJSON held longitudes up to 180.0000135 and the
    # object across 180 uncut, where RFC 7946 (3.1.9) asks for -180..180 and a cut
    import json

    model = tmp_path / "model"
    data.write_constant_model(model)  # foreground everywhere: one object, the scene
    deg = 0.1 / 111_320  # 0.1 m pixels at the equator, the model's
    west = 180 - 30 * deg  # 30 of 60 columns west of 180
    scene = data.write_scene(
        tmp_path / "fiji.tif",
        np.full((40, 60), 150, dtype=np.uint8),
        crs="EPSG:4326",
        transform=Affine(deg, 0, west, 0, -deg, -17.0),
    )
    out = tmp_path / "fiji.geojson"
    gpkg = tmp_path / "fiji.gpkg"
    args = ["predict", str(model), str(scene), "-o", str(out), "--gpkg", str(gpkg)]
    result = CliRunner().invoke(cli, [*args, "--min-area", "0", "--no-progress"])
    assert result.exit_code == 0, result.output
    (feature,) = json.loads(out.read_text())["features"]
    geometry = feature["geometry"]
    assert geometry["type"] == "MultiPolygon" and len(geometry["coordinates"]) == 2
    sides = sorted((min(xs), max(xs)) for xs in _longitudes(geometry["coordinates"]))
    assert sides[0] == pytest.approx((-180, -180 + 30 * deg), abs=1e-7)
    assert sides[1] == pytest.approx((180 - 30 * deg, 180), abs=1e-7)
    # the GeoPackage stays in the scene's own longitudes (its CRS, as the scene has them)
    native = gpd.read_file(gpkg, layer="detections")
    assert native.total_bounds[2] == pytest.approx(180 + 30 * deg)


def _longitudes(multipolygon: list[Any]) -> list[list[float]]:
    """Each part's longitudes, from a GeoJSON MultiPolygon's coordinates."""
    return [[x for ring in poly for x, _ in ring] for poly in multipolygon]
