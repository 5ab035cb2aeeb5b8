"""chip_region on the real datasets of ../shared/data."""

from __future__ import annotations

import hashlib
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pytest
import rasterio

from geotl.chips import chip_region, read_chip_index
from geotl.config import load_region
from geotl.errors import LabelError

from .data import write_region
from .leak import assert_leak_free

SITES = ("HARV", "OSBS", "SJER")


@pytest.fixture(scope="module")
def neon_labels(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    """HARV + OSBS + SJER crowns in one file (EPSG:4326): three UTM zones, one region."""
    frames = [
        gpd.read_file(shared_data / f"neon-trees/{s}/{s}_tree_crowns.geojson").to_crs(4326)
        for s in SITES
    ]
    path = tmp_path_factory.mktemp("neon") / "crowns.gpkg"
    pd.concat(frames, ignore_index=True).to_file(path)
    return path


def _neon_region(tmp_path: Path, shared_data: Path, crowns: Path, **kw: dict) -> Path:
    scenes = [str(shared_data / f"neon-trees/{s}/images/*.tif") for s in SITES]
    return write_region(
        tmp_path / "neon.toml", scenes, str(crowns),
        chips={"size_px": 128, "stride_px": 128},
        split={"block_size_m": 40, "val_fraction": 0.15, "test_fraction": 0.15, "seed": 1},
        **kw,
    )  # fmt: skip


def test_neon_three_utm_zones(tmp_path: Path, shared_data: Path, neon_labels: Path) -> None:
    # HARV has 11 crowns with an empty label: an error naming the value and its count
    with pytest.raises(LabelError, match=r"11 feature\(s\) have no value in field .label."):
        chip_region(load_region(_neon_region(tmp_path, shared_data, neon_labels)), tmp_path / "x")
    assert not (tmp_path / "x").exists()

    region = load_region(
        _neon_region(tmp_path, shared_data, neon_labels, labels={"unmapped": "skip"})
    )
    summary = chip_region(region, tmp_path / "chips")
    index = read_chip_index(tmp_path / "chips")
    frame = index.frame
    assert set(frame["scene_crs"]) == {"EPSG:32618", "EPSG:32617", "EPSG:32611"}
    assert all(summary.counts[s] > 0 for s in ("train", "val", "test"))
    assert index.meta["counts"]["labels_unmapped_skipped"] == 11
    assert summary.n_objects > 400  # 226 + 78 + 202 crowns minus 11 unlabelled
    assert frame["px_tree"].sum() > 0 and (frame["n_objects"] > 0).mean() > 0.5
    # chips of one scene: read back one per zone and check it sits on its scene
    for crs in ("EPSG:32618", "EPSG:32617", "EPSG:32611"):
        row = frame[frame["scene_crs"] == crs].iloc[0]
        with rasterio.open(index.path / row["image"]) as img, rasterio.open(row["scene"]) as scene:
            assert img.crs == scene.crs
            window = rasterio.windows.Window(row["col_off"], row["row_off"], 128, 128)
            assert (img.read() == scene.read(window=window)).all()
    assert_leak_free(tmp_path / "chips")
    # same seed -> same split (and byte-identical index)
    chip_region(region, tmp_path / "again")
    one = hashlib.sha256((tmp_path / "chips/chips.parquet").read_bytes()).hexdigest()
    two = hashlib.sha256((tmp_path / "again/chips.parquet").read_bytes()).hexdigest()
    assert one == two


def test_s2_flanders_complete_within(tmp_path: Path, shared_data: Path) -> None:
    d = shared_data / "s2-fields-flanders"
    path = write_region(
        tmp_path / "s2.toml",
        [str(d / "BEFL-TEST-s2_2023-05-01_2023-07-01_B08-B04-B03_min_byte.tif")],
        str(d / "fields_BEFL-s2-fields-2023_polygons.gpkg"),
        classes=["field"],
        imagery={"bands": ["nir", "red", "green"]},
        labels={"class_field": "label_name", "class_map": {"field": "field"},
                "complete_within": str(d / "fields_BEFL-s2-fields-2023_locations.gpkg")},
        chips={"size_px": 32, "stride_px": 32},
        split={"block_size_m": 640},
    )  # fmt: skip
    summary = chip_region(load_region(path), tmp_path / "chips")
    frame = read_chip_index(tmp_path / "chips").frame
    # 11 complete windows of 64 x 64 px inside the scene: only chips touching them remain
    assert summary.n_skipped_incomplete > 500
    assert 30 <= summary.n_chips <= 11 * 9
    # test chips never give way; others may lose pixels (even all) to guard bands
    test = frame["split"] == "test"
    assert (frame.loc[test, "px_ignore"] < 32 * 32).all() and summary.guard.total_pixels() > 0
    assert frame["px_field"].sum() > 0 and frame["px_background"].sum() > 0
    locations = gpd.read_file(d / "fields_BEFL-s2-fields-2023_locations.gpkg", layer="locations")
    assert frame.to_crs(locations.crs).intersects(locations.union_all()).all()
    assert_leak_free(tmp_path / "chips")


def test_spacenet_single_band_uint16(tmp_path: Path, shared_data: Path) -> None:
    d = shared_data / "spacenet-atlanta"
    path = write_region(
        tmp_path / "sn.toml", [str(d / "sample_geotiff.tif")], str(d / "geotiff_labels.geojson"),
        classes=["building"], imagery={"bands": ["pan"]},
        labels={"class_field": None, "class_map": None},
        chips={"size_px": 128, "stride_px": 96}, split={"block_size_m": 150},
    )  # fmt: skip
    summary = chip_region(load_region(path), tmp_path / "chips")
    index = read_chip_index(tmp_path / "chips")
    row = index.frame.iloc[0]
    with rasterio.open(index.path / row["image"]) as img:
        assert img.count == 1 and img.dtypes[0] == "uint16" and img.nodata == 0
    assert summary.n_objects > 30 and index.frame["px_building"].sum() > 0
    assert_leak_free(index.path)


def test_landsat_pivots_geographic_crs_with_nodata(tmp_path: Path, shared_data: Path) -> None:
    d = shared_data / "landsat-pivots"
    path = write_region(
        tmp_path / "ls.toml",
        [str(d / "nebraska_landsat5_with_nodata_wgs84.tif")],
        str(d / "nebraska_wgs84_with_nodata_labels.geojson"),
        classes=["pivot"], imagery={"bands": ["red"]},
        labels={"class_field": None, "class_map": None},
        chips={"size_px": 256, "stride_px": 256, "max_nodata_fraction": 0.3},
        split={"block_size_m": 15000},
    )  # fmt: skip
    summary = chip_region(load_region(path), tmp_path / "chips")
    index = read_chip_index(tmp_path / "chips")
    frame = index.frame
    assert summary.n_skipped_nodata > 0  # the scan-gap stripes and the collar
    assert (frame["nodata_fraction"] <= 0.3).all()
    assert (frame["px_ignore"] > 0).any()  # stripes inside kept chips become ignore
    assert frame["px_pivot"].sum() > 0 and 0 < summary.n_objects <= 9
    assert frame["scene_crs"].iloc[0] == "EPSG:4326"
    assert frame["resolution_m"].iloc[0] == pytest.approx(30, rel=0.15)
    assert_leak_free(tmp_path / "chips")


def test_landsat_albers_labels_with_wrong_declared_crs(tmp_path: Path, shared_data: Path) -> None:
    d = shared_data / "landsat-pivots"
    kw = {
        "classes": ["pivot"],
        "chips": {"size_px": 128, "stride_px": 128},
        "split": {"block_size_m": 8000, "val_fraction": 0.0, "test_fraction": 0.0},
    }
    path = write_region(
        tmp_path / "albers.toml", [str(d / "sample_geotiff_custom_proj.tif")],
        str(d / "geotiff_custom_proj_labels.geojson"),
        labels={"class_field": None, "class_map": None}, **kw,
    )  # fmt: skip
    with pytest.raises(LabelError) as info:
        chip_region(load_region(path), tmp_path / "chips")
    message = str(info.value)
    assert (
        "geotiff_custom_proj_labels.geojson: declared EPSG:4326 but coordinates look like"
        in message
    )
    assert "set [labels] crs = '+proj=aea" in message
    assert not (tmp_path / "chips").exists()
    # the suggested fix works
    suggested = message.split("crs = '")[1].split("'")[0]
    path = write_region(
        tmp_path / "albers.toml", [str(d / "sample_geotiff_custom_proj.tif")],
        str(d / "geotiff_custom_proj_labels.geojson"),
        labels={"class_field": None, "class_map": None, "crs": suggested}, **kw,
    )  # fmt: skip
    summary = chip_region(load_region(path), tmp_path / "chips")
    assert summary.n_objects >= 15
