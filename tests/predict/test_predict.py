"""predict_scene on generated scenes with a pointwise model whose output is known exactly."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from affine import Affine
from rasterio.crs import CRS

from geotl.errors import BandMismatchError, RasterError
from geotl.predict import COLUMNS, PredictOptions, predict_scene
from geotl.predict.vectorise import vectorise

from . import data


def _expected(band0: np.ndarray, transform: Affine, valid: np.ndarray | None = None) -> list:
    cm = (band0.astype(np.float32) > data.MEAN).astype(np.uint8)
    if valid is not None:
        cm[~valid] = 255
    return vectorise(cm, transform, simplify_px=1.0)


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    band0 = data.blobs(300, 260, seed=1)
    return data.write_scene(tmp_path_factory.mktemp("s") / "scene.tif", band0), band0


@pytest.mark.parametrize(
    "window_px,overlap_px,vector_window_px,halo_px",
    [(64, 16, 37, 2), (96, 32, 64, 8), (128, 0, 100, 4), (256, 64, 1024, 64)],
)
def test_polygons_equal_whole_scene_vectorisation(
    scene: tuple[Path, np.ndarray],
    window_px: int,
    overlap_px: int,
    vector_window_px: int,
    halo_px: int,
) -> None:
    path, band0 = scene
    opts = PredictOptions(
        window_px=window_px,
        overlap_px=overlap_px,
        vector_window_px=vector_window_px,
        halo_px=halo_px,
        batch_size=3,
        progress=False,
    )
    det = predict_scene(data.threshold_artefact(), path, opts)
    expected = _expected(band0, data.ORIGIN)
    native = det.native
    assert len(native) == len(expected) > 10
    got = sorted(
        zip(native["id"], native.geometry, strict=True),
        key=lambda t: (t[1].bounds[3] * -1, t[1].bounds[0]),
    )
    by_wkb = {shapely.to_wkb(o.geometry): o for o in expected}
    for _, geom in got:
        assert shapely.to_wkb(geom) in by_wkb  # identical geometry, not split nor duplicated
    # the bar across every seam is one polygon
    bar_width_m = (260 - 6) * 0.1
    assert any(abs((g.bounds[2] - g.bounds[0]) - bar_width_m) < 0.2 for g in native.geometry)
    assert (det.features["score"] > 0.5).all()


def test_ids_stable_across_window_sizes(scene: tuple[Path, np.ndarray]) -> None:
    path, _ = scene
    a = predict_scene(
        data.threshold_artefact(),
        path,
        PredictOptions(window_px=64, vector_window_px=40, progress=False),
    )
    b = predict_scene(
        data.threshold_artefact(),
        path,
        PredictOptions(window_px=128, vector_window_px=300, progress=False),
    )
    assert sorted(a.features["id"]) == sorted(b.features["id"])
    assert a.features["id"].is_unique


def test_properties_and_area(tmp_path: Path) -> None:
    band0 = np.full((100, 120), 60, dtype=np.uint8)
    band0[10:60, 20:70] = 200  # 5 m x 5 m
    path = data.write_scene(
        tmp_path / "plot.tif", band0, tags={"TIFFTAG_DATETIME": "2021:06:03 10:20:30"}
    )
    det = predict_scene(data.threshold_artefact(), path, PredictOptions(progress=False))
    f = det.features
    assert list(f.columns) == [*COLUMNS, "geometry"]
    assert f.crs.to_epsg() == 4326
    (row,) = f.itertuples()
    assert row.area_m2 == pytest.approx(25.0, rel=2e-3)  # UTM scale factor ~0.9996^2
    assert row._2 == "tree" and row.scene == "plot.tif" and row.model == "test-000000000000"
    assert row.acquired == "2021-06-03T10:20:30+00:00"
    assert 0.5 < row.score <= 1.0
    assert det.native.crs.to_epsg() == 32617


def test_min_area_drops_small_objects(tmp_path: Path) -> None:
    band0 = np.full((60, 60), 60, dtype=np.uint8)
    band0[5:8, 5:8] = 200  # 0.09 m2
    band0[20:50, 20:50] = 200  # 9 m2
    path = data.write_scene(tmp_path / "s.tif", band0)
    det = predict_scene(
        data.threshold_artefact(), path, PredictOptions(min_area_m2=1.0, progress=False)
    )
    assert len(det.features) == 1


def test_nodata_gives_no_detections(tmp_path: Path) -> None:
    band0 = np.full((200, 200), 220, dtype=np.uint8)  # everything would be foreground
    band0[:, 80:100] = 0  # nodata stripe (all bands 0 = nodata)
    data_all = np.stack([band0] * 3)
    data_all[:, :, 80:100] = 0
    path = tmp_path / "stripe.tif"
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=200,
        height=200,
        count=3,
        dtype="uint8",
        crs=data.UTM17,
        transform=data.ORIGIN,
        nodata=0,
    ) as ds:
        ds.write(data_all)
    det = predict_scene(
        data.threshold_artefact(), path, PredictOptions(window_px=64, progress=False)
    )
    assert len(det.native) == 2  # left and right of the stripe
    stripe = shapely.box(404_008.0, 3_284_980.0, 404_010.0, 3_285_000.0)
    assert all(not g.intersection(stripe).area > 1e-6 for g in det.native.geometry)


@pytest.mark.parametrize("how", ["one reader", "reading threads", "resampled"])
def test_a_nodata_value_the_file_lacks_is_honoured(tmp_path: Path, how: str) -> None:
    # the region's [imagery] nodata (250) names what the file does not: a stripe of it
    # would otherwise be foreground joining the two halves into one object
    band0 = np.full((200, 200), 220, dtype=np.uint8)
    band0[:, 80:100] = 250
    path = data.write_bands(tmp_path / "s.tif", np.stack([band0] * 3), nodata=None)
    options = PredictOptions(window_px=64, progress=False, nodata=250)
    if how == "reading threads":
        options = replace(options, read_threads=2)
    art = data.threshold_artefact()
    if how == "resampled":  # read through a WarpedVRT at the model's resolution
        art = data.threshold_artefact(resolution_m=0.2)
        options = replace(options, resample=True)
    assert len(predict_scene(art, path, replace(options, nodata=None)).native) == 1
    det = predict_scene(art, path, options)
    assert len(det.native) == 2
    stripe = shapely.box(404_008.5, 3_284_980.0, 404_009.5, 3_285_000.0)
    assert all(g.intersection(stripe).area < 1e-6 for g in det.native.geometry)


def test_all_nodata_scene_is_empty(tmp_path: Path) -> None:
    path = data.write_scene(
        tmp_path / "empty.tif", np.zeros((90, 90), dtype=np.uint8), count=1, descriptions=["red"]
    )
    det = predict_scene(data.threshold_artefact(["red"]), path, PredictOptions(progress=False))
    assert len(det.features) == 0
    assert list(det.features.columns) == [*COLUMNS, "geometry"]


def test_bands_mapped_by_name(tmp_path: Path, scene: tuple[Path, np.ndarray]) -> None:
    _, band0 = scene
    # file order blue, nir, red: the model's band 0 (red) is file band 3
    h, w = band0.shape
    arr = np.stack([np.full_like(band0, 100), np.full_like(band0, 90), band0])
    path = tmp_path / "bgr.tif"
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=w,
        height=h,
        count=3,
        dtype="uint8",
        crs=data.UTM17,
        transform=data.ORIGIN,
        nodata=0,
    ) as ds:
        ds.write(arr)
        for i, d in enumerate(["blue", "nir", "red"], start=1):
            ds.set_band_description(i, d)
    art = data.threshold_artefact(["red", "blue"])
    det = predict_scene(art, path, PredictOptions(progress=False))
    assert len(det.native) == len(_expected(band0, data.ORIGIN))
    # explicit --bands wins over descriptions
    with pytest.raises(BandMismatchError, match=r"lack \['blue'\]"):
        predict_scene(art, path, PredictOptions(bands=("red", "green", "nir"), progress=False))


def test_band_names_follow_one_rule(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    band0 = data.blobs(64, 64, seed=2)
    art = data.threshold_artefact(["red", "green", "blue"])
    described = data.write_scene(tmp_path / "d.tif", band0, descriptions=["red", "green", "blue"])
    # a region's [imagery] bands that contradict the file's descriptions: refused
    region_says = PredictOptions(bands=("blue", "green", "red"), bands_from="[imagery] bands")
    with pytest.raises(BandMismatchError, match=r"descriptions say \['red', 'green', 'blue'\], \[imagery\] bands says \['blue', 'green', 'red'\]"):  # fmt: skip
        predict_scene(art, described, replace(region_says, progress=False))
    # an unknown name in --bands: a one-line error, not a KeyError
    with pytest.raises(BandMismatchError, match=r"unknown band\(s\) \['rde'\]"):
        predict_scene(art, described, PredictOptions(bands=("rde", "green", "blue")))
    # a monitored pass with more bands, each described: mapped by its descriptions
    wide = data.write_scene(
        tmp_path / "w.tif", band0, count=5, descriptions=["red", "nir", "green", "swir16", "blue"]
    )
    det = predict_scene(art, wide, replace(region_says, bands=("red", "green", "blue")))
    assert len(det.native) == len(_expected(band0, data.ORIGIN))
    # descriptions in part unknown (Earth Engine's unpadded ids): said, not dropped silently
    partly = data.write_scene(tmp_path / "p.tif", band0, descriptions=["B4", "B3", "B2"])
    with caplog.at_level("WARNING"):
        predict_scene(art, partly, PredictOptions(progress=False))
    assert "include names geotl does not know ('B4', 'B3', 'B2')" in caplog.text


def test_unnamed_bands_read_in_the_model_order_are_warned(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A file without band names is read in the model's order: warned, naming --bands.

    It was an INFO line only: a BGR file gave wrong polygons (3 where 21 crowns were) with
    nothing visible under -q or in a log filtered to warnings.
    """
    band0 = data.blobs(64, 64, seed=2)
    art = data.threshold_artefact(["red", "green", "blue"])
    unnamed = data.write_scene(tmp_path / "u.tif", band0)
    named = data.write_scene(tmp_path / "n.tif", band0, descriptions=["red", "green", "blue"])
    caplog.set_level("WARNING", logger="geotl")
    predict_scene(art, named, PredictOptions(progress=False))
    predict_scene(art, unnamed, PredictOptions(progress=False, bands=("red", "green", "blue")))
    assert not caplog.records
    predict_scene(art, unnamed, PredictOptions(progress=False))
    (rec,) = caplog.records
    assert rec.levelname == "WARNING" and "u.tif" in rec.getMessage()
    assert "['red', 'green', 'blue']" in rec.getMessage() and "--bands" in rec.getMessage()


def test_unmappable_bands_name_both_sets(tmp_path: Path) -> None:
    path = data.write_scene(tmp_path / "two.tif", data.blobs(64, 64), count=2)
    with pytest.raises(BandMismatchError) as err:
        predict_scene(data.threshold_artefact(), path, PredictOptions(progress=False))
    assert "2 unnamed band(s)" in str(err.value) and "['red', 'green', 'blue']" in str(err.value)
    assert "two.tif" in str(err.value)


def test_resolution_refused_then_resampled(tmp_path: Path) -> None:
    band0 = data.blobs(150, 130, seed=3)
    coarse = Affine(0.2, 0, 404_000.0, 0, -0.2, 3_285_000.0)
    path = data.write_scene(tmp_path / "coarse.tif", band0, transform=coarse)
    with pytest.raises(RasterError, match=r"0\.2 m differs from the model's 0\.1 m.*--resample"):
        predict_scene(data.threshold_artefact(), path, PredictOptions(progress=False))
    det = predict_scene(
        data.threshold_artefact(), path, PredictOptions(resample=True, progress=False)
    )
    total = sum(g.area for g in det.native.geometry)
    expected = sum(o.geometry.area for o in _expected(band0, coarse))
    assert total == pytest.approx(expected, rel=0.05)


def test_crs_without_epsg_code(tmp_path: Path) -> None:
    wkt = (
        'PROJCS["custom albers",GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",6378137,298.257223563]],'
        'PRIMEM["Greenwich",0],UNIT["degree",0.0174532925199433]],PROJECTION["Albers_Conic_Equal_Area"],'
        'PARAMETER["latitude_of_center",23],PARAMETER["longitude_of_center",-96.123],'
        'PARAMETER["standard_parallel_1",29.5],PARAMETER["standard_parallel_2",45.5],'
        'PARAMETER["false_easting",0],PARAMETER["false_northing",0],UNIT["metre",1]]'
    )
    crs = CRS.from_wkt(wkt)
    assert crs.to_epsg() is None
    band0 = data.blobs(120, 120, seed=4)
    t = Affine(0.1, 0, -500_000.0, 0, -0.1, 1_500_000.0)
    path = data.write_scene(tmp_path / "albers.tif", band0, crs=crs, transform=t)
    det = predict_scene(data.threshold_artefact(), path, PredictOptions(progress=False))
    assert len(det.features) == len(_expected(band0, t))
    assert det.features.crs.to_epsg() == 4326
    # equal-area CRS: geodesic area_m2 equals planar area
    assert det.features["area_m2"].sum() == pytest.approx(det.native.area.sum(), rel=1e-3)


def test_geographic_scene_area(tmp_path: Path) -> None:
    band0 = np.full((100, 100), 60, dtype=np.uint8)
    band0[20:80, 20:80] = 200
    # ~1 m pixels at 40 N: 1/111_000 deg lat, 1/(111_000 cos 40) deg lon
    t = Affine(1 / 85_000, 0, -96.0, 0, -1 / 111_000, 40.0)
    path = data.write_scene(
        tmp_path / "geo_20200712.tif", band0, crs=CRS.from_epsg(4326), transform=t
    )
    art = data.threshold_artefact(resolution_m=1.0)
    det = predict_scene(art, path, PredictOptions(window_px=64, progress=False))
    (area,) = det.features["area_m2"]
    assert area == pytest.approx(60 * 60 * (111_000 / 85_000 * 0.766) * 1.0, rel=0.02)
    assert det.features["acquired"].iloc[0] == "2020-07-12"


def test_web_mercator_scene_is_measured_on_the_ground(tmp_path: Path) -> None:
    # 1 m on the ground at 40 N is 1 / cos(40) = 1.305 m of Web Mercator's grid (QGIS's
    # web layers saved as GeoTIFF): the 1 m model takes it as it is, the same square
    band0 = np.full((100, 100), 60, dtype=np.uint8)
    band0[20:80, 20:80] = 200
    px = 1 / math.cos(math.radians(40.0))
    t = Affine(px, 0, -10_686_671.0, 0, -px, 4_865_942.0)  # 96 W, 40 N
    path = data.write_scene(tmp_path / "merc.tif", band0, crs=CRS.from_epsg(3857), transform=t)
    art = data.threshold_artefact(resolution_m=1.0)
    det = predict_scene(art, path, PredictOptions(window_px=64, progress=False))
    (area,) = det.features["area_m2"]
    assert area == pytest.approx(60 * 60, rel=0.02)


def test_probabilities_cog_smooth(tmp_path: Path, scene: tuple[Path, np.ndarray]) -> None:
    from rio_cogeo.cogeo import cog_validate

    path, band0 = scene
    out = tmp_path / "p.tif"
    predict_scene(
        data.threshold_artefact(),
        path,
        PredictOptions(window_px=64, probabilities_path=out, progress=False),
    )
    valid, errors, _ = cog_validate(str(out))
    assert valid, errors
    with rasterio.open(out) as ds:
        assert ds.count == 1 and ds.descriptions == ("tree",) and ds.crs == data.UTM17
        p = ds.read(1)
    x = (band0.astype(np.float32) - data.MEAN) / data.STD
    assert np.allclose(p, 1 / (1 + np.exp(-4 * x)), atol=1e-5)  # blending changed nothing


class WindowMean(__import__("torch").nn.Module):
    """Output depends on the whole window (its mean): without blending, seams would show."""

    def forward(self, x):  # type: ignore[no-untyped-def]
        import torch

        m = x[:, :1].mean(dim=(2, 3), keepdim=True).expand_as(x[:, :1]) * 3
        return torch.cat([torch.zeros_like(m), m], dim=1)


def test_blending_has_no_tile_edges(tmp_path: Path) -> None:
    h = w = 256
    yy, xx = np.mgrid[:h, :w]
    band0 = (40 + 180 * (xx + yy) / (h + w)).astype(np.uint8)  # a ramp: every window differs
    path = data.write_scene(tmp_path / "ramp.tif", band0)
    art = data.threshold_artefact()
    art.network = WindowMean().eval()
    out = tmp_path / "p.tif"
    predict_scene(
        art,
        path,
        PredictOptions(window_px=64, overlap_px=32, probabilities_path=out, progress=False),
    )
    with rasterio.open(out) as ds:
        p = ds.read(1).astype(np.float64)
    # one window's value differs from its neighbour's by ~0.05; hard seams would jump by that
    step = max(np.abs(np.diff(p, axis=0)).max(), np.abs(np.diff(p, axis=1)).max())
    assert step < 0.01
    assert p.max() - p.min() > 0.3


def test_corrupt_scene_is_raster_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"II*\x00garbage" * 10)
    with pytest.raises(RasterError):
        predict_scene(data.threshold_artefact(), bad, PredictOptions(progress=False))


def test_a_scene_cut_short_says_so_with_gdals_reason(
    tmp_path: Path, scene: tuple[Path, np.ndarray]
) -> None:
    whole = scene[0].read_bytes()
    cut = tmp_path / "cut.tif"
    cut.write_bytes(whole[: len(whole) // 2])  # a copy still in progress
    with pytest.raises(RasterError, match=r"read failed \(.*cut.tif.*\): .* cut short"):
        predict_scene(data.threshold_artefact(), cut, PredictOptions(progress=False))


def test_geojson_writer_output(tmp_path: Path, scene: tuple[Path, np.ndarray]) -> None:
    from geotl.io.geojson import write_geojson

    det = predict_scene(data.threshold_artefact(), scene[0], PredictOptions(progress=False))
    out = write_geojson(tmp_path / "d.geojson", det.features)
    fc = json.loads(out.read_text())
    assert len(fc["features"]) == len(det.features)


def test_windowing_and_edge_margin() -> None:
    from geotl.predict import PredictOptions

    c = data.card()  # 64 px chips at 0.1 m, encoder stride 8
    assert PredictOptions().windowing(c) == (256, 64)
    assert PredictOptions(window_px=100, overlap_px=500).windowing(c) == (104, 103)
    # half the overlap along the scene's edge saw padding: 32 px of 0.1 m
    assert PredictOptions().edge_margin_m(c) == pytest.approx(3.2)
    assert PredictOptions(overlap_px=0).edge_margin_m(c) == 0.0


def test_geodesic_areas_equal_pyproj_per_geometry() -> None:
    from pyproj import Geod
    from shapely.geometry import MultiPolygon, Polygon

    from geotl.io.lonlat import geodesic_areas_m2

    holed = Polygon(
        [(10, 50), (10.01, 50), (10.01, 50.01), (10, 50.01)],
        [
            [(10.002, 50.002), (10.004, 50.002), (10.004, 50.004), (10.002, 50.004)],
            [(10.006, 50.006), (10.008, 50.006), (10.008, 50.008)],
        ],
    )
    clockwise = Polygon([(-70, -30), (-70, -29.99), (-69.99, -29.99)])
    multi = MultiPolygon([holed, Polygon([(10.02, 50.02), (10.03, 50.02), (10.03, 50.03)])])
    geoms = np.array([holed, clockwise, multi, holed], dtype=object)
    geod = Geod(ellps="WGS84")
    # pyproj's signed sum is the area only for oriented rings (shell ccw, holes cw)
    oriented = shapely.orient_polygons(geoms, exterior_cw=False)
    want = [abs(float(geod.geometry_area_perimeter(g)[0])) for g in oriented]
    assert geodesic_areas_m2(geoms).tolist() == want
    assert geodesic_areas_m2(oriented).tolist() == want
    assert want[0] < want[2] and want[1] > 0


def test_geodesic_area_subtracts_a_hole_wound_like_its_shell() -> None:
    """The instance vectoriser gave a field a hole wound like its shell: its area was added.

    Seen on the Sentinel-2 fields reprojected to EPSG:4326 (task "instances"): area_m2
    72,469 m² for a field of 66,563 m² (shell 69,654 m², holes 2,953 and 137 m²).
    """
    from shapely.geometry import Polygon

    from geotl.io.lonlat import geodesic_areas_m2

    shell = [(4.0, 51.0), (4.01, 51.0), (4.01, 51.01), (4.0, 51.01)]
    hole = [(4.002, 51.002), (4.004, 51.002), (4.004, 51.004), (4.002, 51.004)]
    same_way = Polygon(shell, [hole])  # both counter-clockwise
    oriented = Polygon(shell, [hole[::-1]])
    assert same_way.exterior.is_ccw and same_way.interiors[0].is_ccw
    without = float(geodesic_areas_m2(np.array([Polygon(shell)]))[0])
    areas = geodesic_areas_m2(np.array([same_way, oriented], dtype=object))
    assert areas[0] == areas[1] < without
    assert areas[0] == pytest.approx(without * (1 - 0.04), rel=1e-3)  # the hole is 4 %


def test_scene_in_other_units_is_said(
    tmp_path: Path, scene: tuple[Path, np.ndarray], caplog: pytest.LogCaptureFixture
) -> None:
    # the model learnt 8-bit values; the same scene as 16-bit numbers 40x larger would be
    # predicted without complaint: it is said, naming the file and the factor
    path, band0 = scene
    art = data.threshold_artefact(["red", "green", "blue"])
    caplog.set_level("WARNING", logger="geotl")
    predict_scene(art, path, PredictOptions(progress=False))
    assert not [r for r in caplog.records if "band means" in r.getMessage()]
    stack = np.stack([band0, band0, band0]).astype(np.uint16) * 40
    wide = data.write_bands(tmp_path / "sixteen_bit.tif", stack, nodata=0)
    predict_scene(art, wide, PredictOptions(progress=False))
    said = [r.getMessage() for r in caplog.records if "band means" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith("sixteen_bit.tif: its band means")
    factor = 40 * band0[band0 > 0].mean() / data.MEAN
    assert (
        f"about {factor:.0f}x [127.5, 127.5, 127.5], those of the imagery the model was trained on"
        in said[0]
    )
    # nodata is left out of the means: a scene half empty is not "other units"
    caplog.clear()
    half = np.stack([band0, band0, band0])
    half[:, :, : half.shape[2] // 2] = 0
    predict_scene(
        art, data.write_bands(tmp_path / "half.tif", half, nodata=0), PredictOptions(progress=False)
    )
    assert not [r for r in caplog.records if "band means" in r.getMessage()]


def test_south_up_scene_reads_north_up(tmp_path: Path, scene: tuple[Path, np.ndarray]) -> None:
    # the same ground stored south-up (positive pixel height, as rioxarray writes ascending
    # y): the model sees it north-up, so the polygons and scores are those of the north-up file
    from geotl.predict.outputs.quicklook import write_quicklook

    path, band0 = scene
    h = band0.shape[0]
    south_up = Affine(0.1, 0, data.ORIGIN.c, 0, 0.1, data.ORIGIN.f - 0.1 * h)
    flipped = data.write_scene(tmp_path / "south_up.tif", band0[::-1], transform=south_up)
    art = data.threshold_artefact(["red", "green", "blue"])
    north = predict_scene(art, path, PredictOptions(progress=False))
    south = predict_scene(art, flipped, PredictOptions(progress=False))
    assert len(north.native) == len(south.native) > 3

    def key(frame):
        frame = frame.assign(x=frame.centroid.x.round(6), y=frame.centroid.y.round(6))
        return frame.sort_values(["x", "y"]).reset_index(drop=True)

    a, b = key(north.native), key(south.native)
    assert all(
        shapely.equals_exact(g, k, 1e-9) for g, k in zip(a.geometry, b.geometry, strict=True)
    )
    assert (a["score"] == b["score"]).all()
    # the quicklook shows it north-up too: the same picture
    pictures = []
    for det, name in ((north, "n.png"), (south, "s.png")):
        write_quicklook(tmp_path / name, det.scene, det.native, [1, 2, 3], ["c"])
        import matplotlib.image

        pictures.append(matplotlib.image.imread(tmp_path / name)[40:-40, 40:-40, :3])
    assert np.abs(pictures[0] - pictures[1]).mean() < 0.01


def test_run_and_monitor_predict_with_the_region_nodata() -> None:
    from geotl.config import load_region

    region = load_region(Path(__file__).resolve().parents[2] / "regions" / "demo-osbs.toml")
    assert PredictOptions.from_region(region).nodata is None
    imagery = region.imagery.model_copy(update={"nodata": -9999.0})
    assert (
        PredictOptions.from_region(region.model_copy(update={"imagery": imagery})).nodata == -9999.0
    )


def test_a_stack_band_without_data_leaves_the_pixel_out(tmp_path: Path) -> None:
    """A stack of files with nodata values of their own: where one band has none, no data.

    The other band's value there must not make an object (the chips mark such pixels
    ignore; prediction reads them by the same rule).
    """
    from chips.data import write_stack

    bright = np.full((64, 64), 250.0, dtype=np.float32)  # foreground for BandThreshold
    other = np.full((64, 64), 100, dtype=np.int16)
    other[:, 32:] = -32768  # this band has no value on the right half
    path = write_stack(
        tmp_path / "stack.vrt", [(bright, -99999), (other, -32768)], data.UTM17, data.ORIGIN
    )
    opts = PredictOptions(window_px=64, overlap_px=0, min_area_m2=0.0, progress=False)
    det = predict_scene(data.threshold_artefact(["red", "nir"]), path, opts)
    assert len(det.native) == 1
    left, _, right, _ = det.native.geometry.iloc[0].bounds
    assert (left, right) == pytest.approx((data.ORIGIN.c, data.ORIGIN.c + 3.2))


def test_a_scene_across_the_antimeridian_gives_rfc7946_polygons(tmp_path: Path) -> None:
    """Objects across longitude 180 (Fiji) are cut there, as RFC 7946 asks.

    Reprojected as they were, their rings held longitudes near 180 and near -180: polygons
    around the world, and the GeoJSON writer failed with a GEOS traceback.
    """
    from geotl.io.geojson import feature_collection

    # UTM 60S, the scene's centre on 180 E at 17 S
    fiji = Affine(0.1, 0, 819_448.35, 0, -0.1, 8_118_001.39)
    band0 = np.full((64, 64), 50, dtype=np.uint8)
    band0[10:50, 5:60] = 250  # one object across the middle column
    path = data.write_scene(tmp_path / "fiji.tif", band0, crs=CRS.from_epsg(32760), transform=fiji)
    det = predict_scene(data.threshold_artefact(), path, PredictOptions(progress=False))
    # the pool's workers cut and measure their objects themselves: the same to the bit
    pooled = predict_scene(
        data.threshold_artefact(), path, PredictOptions(progress=False, workers=2)
    )
    assert pooled.features.to_json() == det.features.to_json()
    assert len(det.features) == 1
    (obj,) = det.features.geometry
    assert obj.is_valid and obj.geom_type == "MultiPolygon" and len(obj.geoms) == 2
    west, east = sorted(obj.geoms, key=lambda g: g.bounds[0])
    assert west.bounds[0] == pytest.approx(-180.0) and east.bounds[2] == pytest.approx(180.0)
    assert det.features["area_m2"].iloc[0] == pytest.approx(40 * 55 * 0.01, rel=0.02)
    (feature,) = feature_collection(det.features)["features"]
    assert all(-180 <= x <= 180 for poly in feature["geometry"]["coordinates"] for x, _ in poly[0])


def test_the_footprint_of_a_rotated_scene_is_its_outline(tmp_path: Path) -> None:
    """A grid rotated 30 degrees: its footprint is the scene, not the box around two corners."""
    import geopandas as gpd

    t = data.ORIGIN @ Affine.rotation(30)
    path = data.write_scene(tmp_path / "rot.tif", data.blobs(64, 48), transform=t)
    det = predict_scene(data.threshold_artefact(), path, PredictOptions(progress=False))
    native = gpd.GeoSeries([det.footprint], crs=4326).to_crs(data.UTM17).iloc[0]
    outline = shapely.Polygon([t @ (c, r) for c, r in ((0, 0), (48, 0), (48, 64), (0, 64))])
    assert native.symmetric_difference(outline).area < 0.001 * outline.area
