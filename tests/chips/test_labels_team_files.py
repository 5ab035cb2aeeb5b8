"""Label files as teams write them: nested classes, loose class values, bad rings, datums.

Built from the real NC land-cover polygons and Landsat scene of ../shared/data.
"""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
import shapely
from shapely.geometry import box

from geotl.chips import chip_region
from geotl.chips.scenes import warn_label_overlaps
from geotl.config import load_region
from geotl.errors import LabelError
from geotl.io.vectors import read_labels

from .data import write_nc_region

NC = "nc-landsat-landcover"
CRS = "EPSG:32119"  # the scene's NC State Plane (its GeoTIFF writes it as an unnamed LCC)
# inside the scene (630534, 215488) - (644470, 228114)
FOREST = [(633000, 218000), (640000, 218000), (640000, 225000), (633000, 225000), (633000, 218000)]


def _geojson(path: Path, features: list[tuple[dict, dict | None]]) -> Path:
    crs = {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32119"}}
    feats = [{"type": "Feature", "properties": p, "geometry": g} for p, g in features]
    path.write_text(json.dumps({"type": "FeatureCollection", "crs": crs, "features": feats}))
    return path


def test_clearing_inside_forest_of_a_later_class_is_named(
    tmp_path: Path, shared_data: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # a clearing drawn on top of the forest, no hole cut: with "forest" listed later, the
    # forest wins every pixel of it and the class "clearing" gets none
    labels = tmp_path / "nested.gpkg"
    gpd.GeoDataFrame(
        {"label": ["forest", "clearing"]},
        geometry=[box(633000, 218000, 640000, 225000), box(635000, 220000, 637000, 222000)],
        crs=CRS,
    ).to_file(labels)
    region = load_region(write_nc_region(tmp_path, shared_data, labels, ["clearing", "forest"]))
    with caplog.at_level("WARNING", logger="geotl"):
        summary = chip_region(region, tmp_path / "chips")
    assert sum(summary.class_pixels_per_split["clearing"].values()) == 0
    assert "feature 2 'clearing' inside feature 1 'forest'" in caplog.text
    assert "list 'clearing' after 'forest' in classes" in caplog.text
    # listed the other way round the clearing keeps its pixels: no such warning
    caplog.clear()
    region = load_region(write_nc_region(tmp_path, shared_data, labels, ["forest", "clearing"]))
    with caplog.at_level("WARNING", logger="geotl"):
        warn_label_overlaps(region, read_labels(region))
    assert "get none of their pixels" not in caplog.text
    assert "overlap" in caplog.text  # the general note stays


def test_unclosed_ring_is_closed_not_a_failed_file(tmp_path: Path, shared_data: Path) -> None:
    # some tools write rings without repeating the first vertex; OGR and QGIS read them
    labels = _geojson(
        tmp_path / "unclosed.geojson",
        [({"label": "forest"}, {"type": "Polygon", "coordinates": [FOREST[:-1]]})],
    )
    region = load_region(write_nc_region(tmp_path, shared_data, labels, ["forest"]))
    out = read_labels(region)
    assert len(out) == 1
    assert out.geometry.iloc[0].area == pytest.approx(7000.0 * 7000.0)


def test_sliver_is_not_reported_as_a_line(
    tmp_path: Path, shared_data: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # a zero-area polygon (a sliver) becomes a line when repaired: the file holds no line,
    # so the hint to buffer lines would send the user after nothing
    sliver = [(634000, 226000), (639000, 226000), (639000, 226000), (634000, 226000)]
    labels = _geojson(
        tmp_path / "sliver.geojson",
        [
            ({"label": "forest"}, {"type": "Polygon", "coordinates": [FOREST]}),
            ({"label": "forest"}, {"type": "Polygon", "coordinates": [sliver]}),
            ({"label": "forest"}, None),
        ],
    )
    region = load_region(write_nc_region(tmp_path, shared_data, labels, ["forest"]))
    with caplog.at_level("WARNING", logger="geotl"):
        out = read_labels(region)
    assert out["label_id"].tolist() == [0]
    assert "ignored 2 feature(s)" in caplog.text
    assert "lines" not in caplog.text


def test_class_values_match_up_to_case_and_spaces(
    tmp_path: Path, shared_data: Path, caplog: pytest.LogCaptureFixture
) -> None:
    real = gpd.read_file(shared_data / NC / "landsat96_polygons.shp")
    typed = real.copy()
    typed["label"] = [
        f"{v.title()} " if i % 3 == 0 else v.upper() if i % 3 == 1 else v
        for i, v in enumerate(real["label"])
    ]
    labels = tmp_path / "typed.gpkg"
    typed.to_file(labels)
    classes = sorted(real["label"].unique())
    region = load_region(write_nc_region(tmp_path, shared_data, labels, classes))
    with caplog.at_level("WARNING", logger="geotl"):
        out = read_labels(region)
    assert out["class"].tolist() == real["label"].tolist()
    assert "'Forest ' -> forest" in caplog.text
    # a loose form that fits keys of two classes is left to an exact key: still refused
    region = load_region(
        write_nc_region(
            tmp_path,
            shared_data,
            labels,
            ["forest", "wetland"],
            class_map={"forest": "forest", "FOREST": "wetland"},
            unmapped="skip",
        )
    )
    kept = typed.loc[read_labels(region)["label_id"], "label"]
    assert set(kept) == {"forest", "FOREST"}  # "Forest " fits both keys loosely: skipped


def test_features_without_a_class_say_so(tmp_path: Path, shared_data: Path) -> None:
    real = gpd.read_file(shared_data / NC / "landsat96_polygons.shp")
    real["label"] = real["label"].astype(object)
    real.loc[[0, 5], "label"] = None
    labels = tmp_path / "nulls.gpkg"
    real.to_file(labels)
    region = load_region(
        write_nc_region(tmp_path, shared_data, labels, sorted(real["label"].dropna().unique()))
    )
    with pytest.raises(LabelError, match=r"2 feature\(s\) have no value in field 'label'"):
        read_labels(region)


def test_a_class_drawn_only_as_lines_is_refused(tmp_path: Path, shared_data: Path) -> None:
    real = gpd.read_file(shared_data / NC / "landsat96_polygons.shp")
    roads = real.iloc[:5].copy()
    roads["geometry"] = roads.geometry.boundary
    roads["label"] = "road"
    labels = tmp_path / "roads.gpkg"
    gpd.GeoDataFrame(pd.concat([real, roads]), crs=real.crs).to_file(labels)
    classes = [*sorted(real["label"].unique()), "road"]
    region = load_region(write_nc_region(tmp_path, shared_data, labels, classes))
    with pytest.raises(LabelError, match=r"every feature of class 'road' is a line.*buffer"):
        read_labels(region)
    # without the class the lines are dropped with a warning, as before
    region = load_region(
        write_nc_region(tmp_path, shared_data, labels, classes[:-1], unmapped="skip")
    )
    assert len(read_labels(region)) == len(real)


def test_nad27_labels_without_the_grid_are_reported(
    tmp_path: Path, shared_data: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from pyproj.transformer import TransformerGroup

    from geotl.io.vectors import warn_without_datum_shift

    if TransformerGroup("EPSG:4267", CRS).best_available:
        pytest.skip("this PROJ has the NADCON grid: the shift is exact")
    with rasterio.open(shared_data / NC / "landsat_multiband.tif") as src:
        scene_crs, bounds = src.crs, tuple(src.bounds)
    path = tmp_path / "nad27.gpkg"
    with caplog.at_level("WARNING", logger="geotl"):
        assert warn_without_datum_shift("EPSG:4267", CRS, path, bounds)
        assert warn_without_datum_shift("EPSG:4267", scene_crs, tmp_path / "b.gpkg", bounds)
    assert "nadcon" in caplog.text.lower() or "conus" in caplog.text.lower()
    assert "projsync --file" in caplog.text
    # the NC labels' own NAD83(HARN), WGS 84 and ED50 (a Helmert to 1.5 m): nothing to say
    assert not warn_without_datum_shift("EPSG:3358", scene_crs, path, bounds)
    assert not warn_without_datum_shift("EPSG:4326", CRS, path, bounds)
    assert not warn_without_datum_shift(
        "EPSG:4230", "EPSG:25830", path, (440000.0, 4470000.0, 450000.0, 4480000.0)
    )


@pytest.fixture
def national(tmp_path: Path, shared_data: Path) -> tuple[Path, gpd.GeoDataFrame]:
    """The NC polygons, then 3000 copies of them spread over 1200 km x 600 km (a GPKG)."""
    real = gpd.read_file(shared_data / NC / "landsat96_polygons.shp")
    rng = np.random.default_rng(0)
    n = 3000
    idx = np.arange(n) % len(real)
    shift = rng.uniform([-600_000, -300_000], [600_000, 300_000], size=(n, 2))
    shift[: len(real)] = 0.0  # the real ones stay on the scene
    shift[len(real) :] += np.sign(shift[len(real) :]) * 20_000  # the copies off it
    geoms = [
        shapely.transform(g, lambda xy, d=d: xy + d)
        for g, d in zip(real.geometry.values[idx], shift, strict=True)
    ]
    layer = gpd.GeoDataFrame({"label": real["label"].to_numpy()[idx]}, geometry=geoms, crs=real.crs)
    path = tmp_path / "national.gpkg"
    layer.to_file(path)
    return path, layer


def test_a_national_layer_reads_only_the_geometries_over_the_scenes(
    tmp_path: Path,
    shared_data: Path,
    national: tuple[Path, gpd.GeoDataFrame],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from geotl.io import vectors

    monkeypatch.setattr(vectors, "_WITHIN_MIN_BYTES", 0)  # a real national layer: > 4 MB
    path, layer = national
    classes = sorted(layer["label"].unique())
    region = load_region(write_nc_region(tmp_path, shared_data, path, classes))
    with rasterio.open(shared_data / NC / "landsat_multiband.tif") as src:
        within = [(src.crs, box(*src.bounds))]
    whole = read_labels(region)
    part = read_labels(region, within=within)
    assert len(whole) == 3000
    assert 33 <= len(part) < 60  # the 34 real ones (one lies off the scene), few copies
    # the same ids, classes and shapes as the whole read, for every label over the scene
    same = whole.set_index("label_id").loc[part["label_id"]]
    assert same["class"].tolist() == part["class"].tolist()
    assert all(a.equals(b) for a, b in zip(same.geometry, part.geometry, strict=True))
    assert part.attrs["n_dropped"] == 0
    # every label over the scene is there
    over = whole.to_crs(within[0][0]).intersects(within[0][1])
    assert set(whole.loc[over, "label_id"]) <= set(part["label_id"])


def test_a_national_layer_in_a_wrong_crs_is_still_diagnosed(
    tmp_path: Path,
    shared_data: Path,
    national: tuple[Path, gpd.GeoDataFrame],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from geotl.io import vectors

    monkeypatch.setattr(vectors, "_WITHIN_MIN_BYTES", 0)
    path, layer = national
    classes = sorted(layer["label"].unique())
    # NC State Plane metres declared as UTM 17N: no geometry over the scene, whole read
    region = load_region(write_nc_region(tmp_path, shared_data, path, classes, crs="EPSG:26917"))
    with pytest.raises(LabelError, match="coordinates look like"):
        chip_region(region, tmp_path / "chips")
    # a class value outside the scenes is refused as in a whole read
    layer.loc[2999, "label"] = "Quarry"
    layer.to_file(path)
    region = load_region(write_nc_region(tmp_path, shared_data, path, classes))
    with pytest.raises(LabelError, match=r"'Quarry' \(1\)"):
        chip_region(region, tmp_path / "chips")
