"""Label reads after chipping: only the chips' part of a national layer, and holes drawn
as features of their own (``class_map = { Water = "background" }``), on the real NC scene."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from shapely.geometry import MultiPolygon, box

from geotl.chips import ChipIndex, chip_region, read_chip_index
from geotl.config import load_region
from geotl.io import vectors
from geotl.io.vectors import chip_areas, read_labels
from geotl.train.data import object_classes

from .data import write_nc_region

NC = "nc-landsat-landcover"


def _region(tmp_path: Path, shared_data: Path, labels: Path, classes: list[str], **lab: object):
    return load_region(write_nc_region(tmp_path, shared_data, labels, classes, **lab))


def _national(tmp_path: Path, shared_data: Path) -> Path:
    """A multi-part feature far off the scene, the real NC polygons, one multi-part on it."""
    real = gpd.read_file(shared_data / NC / "landsat96_polygons.shp")
    rng = np.random.default_rng(0)
    far = [
        shapely.transform(g, lambda xy, d=d: xy + d)
        for g, d in zip(
            real.geometry.values[np.arange(600) % len(real)],
            rng.uniform(200_000, 500_000, size=(600, 2)),
            strict=True,
        )
    ]
    off = MultiPolygon(
        [box(900_000, 900_000, 901_000, 901_000), box(905_000, 900_000, 906_000, 901_000)]
    )
    on = MultiPolygon(
        [box(634_000, 219_000, 634_500, 219_500), box(636_000, 219_000, 636_500, 219_500)]
    )
    geoms = [off, *real.geometry.values, on, *far]
    labels = [
        "water",
        *real["label"],
        "forest",
        *real["label"].to_numpy()[np.arange(600) % len(real)],
    ]
    path = tmp_path / "national.gpkg"
    gpd.GeoDataFrame({"label": labels}, geometry=geoms, crs=real.crs).to_file(path)
    return path


def _scene_area(shared_data: Path) -> list[tuple[object, shapely.Geometry]]:
    with rasterio.open(shared_data / NC / "landsat_multiband.tif") as src:
        return [(src.crs, box(*src.bounds))]


def test_parts_keep_the_ids_of_a_whole_read(
    tmp_path: Path, shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the ids of a multi-part feature's parts were numbered on over the parts read: a
    # partial read (chip) and a whole one (train) gave the same object two ids
    monkeypatch.setattr(vectors, "_WITHIN_MIN_BYTES", 0)  # a real national layer: > 4 MB
    path = _national(tmp_path, shared_data)
    classes = sorted(gpd.read_file(path)["label"].unique())
    region = _region(tmp_path, shared_data, path, classes)
    whole = read_labels(region)
    part = read_labels(region, within=_scene_area(shared_data))
    assert len(part) < 60 < len(whole)
    same = whole.set_index("label_id").loc[part["label_id"]]
    assert same["class"].tolist() == part["class"].tolist()
    assert all(a.equals(b) for a, b in zip(same.geometry, part.geometry, strict=True))
    n = 1 + 34 + 1 + 600
    assert {35, n + 35} <= set(part["label_id"])  # the 2nd part of feature 35: n + 35


def test_stages_after_chip_read_only_the_chips_labels(
    tmp_path: Path, shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(vectors, "_WITHIN_MIN_BYTES", 0)
    path = _national(tmp_path, shared_data)
    classes = sorted(gpd.read_file(path)["label"].unique())
    region = _region(tmp_path, shared_data, path, classes)
    read = []
    real_read = vectors._read_within
    monkeypatch.setattr(vectors, "_read_within", lambda *a: read.append(real_read(*a)) or read[-1])
    chip_region(region, tmp_path / "chips")
    index = read_chip_index(tmp_path / "chips")
    ids = {int(i) for v in index.frame["object_ids"] for i in v}
    got = object_classes(region, index)
    assert read[-1] is not None and len(read[-1]) == 636  # every row, few geometries
    whole = object_classes(region)
    assert got is not None and whole is not None
    assert ids <= set(got) and len(got) < len(whole) / 5
    assert all(whole[i] == c for i, c in got.items())


def test_chip_areas_read_whole_across_the_antimeridian() -> None:
    frame = gpd.GeoDataFrame(
        {"scene": ["a", "a", "b"]},
        geometry=[box(10, 50, 11, 51), box(11, 50, 12, 51), box(20, 0, 21, 1)],
        crs="EPSG:4326",
    )
    areas = chip_areas(frame)
    assert areas is not None and [a.bounds for _, a in areas] == [
        (10.0, 50.0, 12.0, 51.0),
        (20.0, 0.0, 21.0, 1.0),
    ]
    across = frame.assign(
        geometry=[box(179.5, 0, 180, 1), box(-180, 0, -179.5, 1), box(0, 0, 1, 1)]
    )
    assert chip_areas(across) is None
    assert chip_areas(ChipIndex(Path("."), frame.iloc[:0], {}).frame) is None


def _lakes(tmp_path: Path, shared_data: Path) -> tuple[Path, gpd.GeoDataFrame]:
    """The NC water polygons, each drawn inside a forest polygon 300 m wider (no hole)."""
    real = gpd.read_file(shared_data / NC / "landsat96_polygons.shp")
    water = real[real["label"] == "water"].reset_index(drop=True)
    forest = water.geometry.buffer(300.0)
    frame = gpd.GeoDataFrame(
        {"label": ["Forest"] * len(water) + ["Water"] * len(water)},
        geometry=[*forest.values, *water.geometry.values],
        crs=real.crs,
    )
    path = tmp_path / "lakes.gpkg"
    frame.to_file(path)
    return path, water


def test_a_lake_mapped_to_background_is_cut_from_the_forest(
    tmp_path: Path, shared_data: Path
) -> None:
    path, water = _lakes(tmp_path, shared_data)
    region = _region(
        tmp_path,
        shared_data,
        path,
        ["forest"],
        class_map={"Forest": "forest", "Water": "background"},
    )
    labels = read_labels(region)
    assert labels["class"].unique().tolist() == ["forest"]
    assert labels["label_id"].tolist() == list(range(len(water)))  # lakes: no label
    assert all(
        not g.intersection(w).area > 1.0
        for g, w in zip(labels.geometry, water.geometry, strict=True)
    )
    chip_region(region, tmp_path / "chips")
    index = read_chip_index(tmp_path / "chips")
    lake_px = ring_px = 0
    for row in index.frame.itertuples():
        with rasterio.open(tmp_path / "chips" / row.mask) as src:
            mask, transform = src.read(1), src.transform
        rows, cols = np.indices(mask.shape)
        xs, ys = (
            np.asarray(v) for v in rasterio.transform.xy(transform, rows.ravel(), cols.ravel())
        )
        lakes = water.to_crs(src.crs).geometry.buffer(-30.0).union_all()  # a pixel inside
        lake = mask.ravel()[shapely.contains_xy(lakes, xs, ys)]
        assert not (lake == 1).any()  # not forest
        lake_px += int((lake == 0).sum())  # labelled background, not ignore (but nodata)
        forest = labels.to_crs(src.crs).union_all().buffer(-30.0)
        ring_px += int((mask.ravel()[shapely.contains_xy(forest, xs, ys)] == 1).sum())
    assert lake_px > 100 and ring_px > 100


def test_background_in_the_class_map_only(tmp_path: Path, shared_data: Path) -> None:
    path, _ = _lakes(tmp_path, shared_data)
    with pytest.raises(Exception, match="map their value to it"):
        _region(tmp_path, shared_data, path, ["forest", "background"])
    with pytest.raises(Exception, match="map at least one"):
        _region(tmp_path, shared_data, path, ["forest"], class_map={"Water": "background"})
    with pytest.raises(Exception, match="or fix the map"):
        _region(tmp_path, shared_data, path, ["forest"], class_map={"Water": "lake"})
