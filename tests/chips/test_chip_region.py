"""chip_region on tiny generated scenes: output, determinism, atomicity and bad input."""

from __future__ import annotations

import hashlib
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from rasterio.enums import ColorInterp
from shapely.geometry import box

import geotl.chips.pipeline as pipeline
from geotl.chips import chip_region, read_chip_index
from geotl.config import load_region
from geotl.errors import (
    BandMismatchError,
    ConfigError,
    GeotlInputError,
    LabelError,
    OutputExistsError,
    RasterError,
)
from geotl.io.vectors import read_labels

from .data import write_boxes, write_region, write_scene, write_stack
from .leak import assert_leak_free

X0, Y0 = 500_000.0, 4_000_000.0  # top-left of the generated scenes (EPSG:32618, 1 m)


@pytest.fixture
def region_file(tmp_path: Path) -> Path:
    write_scene(tmp_path / "a.tif", width=96, height=80, nodata=255)
    write_scene(tmp_path / "b.tif", width=64, height=64, origin=(X0 + 200, Y0))
    boxes = [
        (X0 + 3, Y0 - 13, X0 + 10, Y0 - 4),
        (X0 + 40, Y0 - 50, X0 + 60, Y0 - 30),
        (X0 + 210, Y0 - 20, X0 + 215, Y0 - 10),
    ]
    write_boxes(tmp_path / "labels.gpkg", boxes)
    return write_region(tmp_path / "region.toml", ["*.tif"], "labels.gpkg")


def _tree(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_chips_index_and_files(region_file: Path, tmp_path: Path) -> None:
    region = load_region(region_file)
    summary = chip_region(region, tmp_path / "chips")
    index = read_chip_index(tmp_path / "chips")
    frame = index.frame
    expected = [
        "chip_id", "scene", "scene_crs", "row_off", "col_off", "height", "width", "split",
        "image", "mask", "resolution_m", "nodata_fraction", "px_background", "px_tree",
        "px_ignore", "n_objects", "object_ids", "boxes", "box_classes", "box_object_ids",
        "ignore_boxes", "geometry",
    ]  # fmt: skip
    assert list(frame.columns) == expected
    assert frame.crs.to_epsg() == 4326
    assert summary.n_chips == len(frame) == 6 * 5 + 4 * 4  # no chip dropped: guard bands
    assert set(frame["split"]) <= {"train", "val", "test"}
    assert index.meta["classes"] == ["tree"] and index.meta["size_px"] == 16
    assert index.meta["counts"]["guard"]["pixels"] == summary.guard.pixels
    # window arithmetic: last column shifted back inside the 96 px scene, rows 0..64
    a = frame[frame["chip_id"].str.startswith("a_")]
    assert a["col_off"].max() <= 80 and a["row_off"].max() <= 64
    # files exist exactly for the indexed chips
    images = sorted(p.name for p in (tmp_path / "chips" / "images").iterdir())
    assert images == sorted(f"{c}.tif" for c in frame["chip_id"])
    # a chip is georeferenced, keeps dtype/nodata, its mask matches the pixel counts
    row = frame.iloc[0]
    with (
        rasterio.open(index.path / row["image"]) as img,
        rasterio.open(index.path / row["mask"]) as m,
    ):
        assert img.crs.to_epsg() == 32618 and img.count == 3 and img.dtypes[0] == "uint8"
        assert img.nodata == 255 and img.descriptions == ("red", "green", "blue")
        assert img.transform.c == X0 + row["col_off"] and img.transform.f == Y0 - row["row_off"]
        mask = m.read(1)
        assert m.dtypes[0] == "uint8" and m.transform == img.transform
    assert (
        int((mask == 1).sum()) == row["px_tree"] and int((mask == 0).sum()) == row["px_background"]
    )
    # the label inside chip a_r0_c0 (pixels x 3..9, y 4..12) is burnt where the chip is kept
    chip = frame[frame["chip_id"] == "a_r0_c0"]
    if len(chip):
        with rasterio.open(index.path / "masks/a_r0_c0.tif") as m:
            mask = m.read(1)
        assert mask[4:13, 3:10].min() == 1 and int(mask.sum()) == 7 * 9
        assert chip.iloc[0]["object_ids"].tolist() == [0]
    assert_leak_free(index.path)


def test_rerun_is_byte_identical_and_needs_overwrite(region_file: Path, tmp_path: Path) -> None:
    region = load_region(region_file)
    chip_region(region, tmp_path / "one")
    chip_region(region, tmp_path / "two")
    assert _tree(tmp_path / "one") == _tree(tmp_path / "two")
    with pytest.raises(OutputExistsError):
        chip_region(region, tmp_path / "one")
    chip_region(region, tmp_path / "one", overwrite=True)
    assert _tree(tmp_path / "one") == _tree(tmp_path / "two")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_interrupted_run_leaves_nothing(
    region_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    region = load_region(region_file)
    chip_region(region, tmp_path / "chips")
    before = _tree(tmp_path / "chips")

    def boom(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "write_chip_index", boom)
    with pytest.raises(KeyboardInterrupt):
        chip_region(region, tmp_path / "chips", overwrite=True)
    with pytest.raises(KeyboardInterrupt):
        chip_region(region, tmp_path / "fresh")
    assert _tree(tmp_path / "chips") == before  # the previous output is intact
    assert not (tmp_path / "fresh").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_nodata_is_ignore_and_mostly_nodata_chips_skipped(tmp_path: Path) -> None:
    data = np.full((3, 32, 64), 7, dtype=np.int16)
    data[:, :, 32:] = -9999  # right half nodata
    data[:, 0, 0] = -9999  # one nodata pixel in the first chip
    data[0, 1, 0] = -9999  # nodata in one band only: not nodata
    write_scene(tmp_path / "s.tif", width=64, height=32, dtype="int16", nodata=-9999, fill=data)
    write_boxes(tmp_path / "l.geojson", [(X0, Y0 - 32, X0 + 64, Y0)])
    region = load_region(
        write_region(
            tmp_path / "r.toml",
            ["s.tif"],
            "l.geojson",
            split={"val_fraction": 0.0, "test_fraction": 0.0},
        )
    )
    summary = chip_region(region, tmp_path / "out")
    frame = read_chip_index(tmp_path / "out").frame
    assert summary.n_skipped_nodata == 4 and len(frame) == 4
    with rasterio.open(tmp_path / "out/masks/s_r0_c0.tif") as m:
        mask = m.read(1)
    assert mask[0, 0] == 255 and mask[1, 0] == 1 and int((mask == 255).sum()) == 1
    with rasterio.open(tmp_path / "out/images/s_r0_c0.tif") as img:
        assert img.dtypes[0] == "int16" and img.nodata == -9999


@pytest.mark.parametrize("how", ["alpha band", "internal mask"])
def test_gdal_mask_is_carried_into_chips_as_nodata(tmp_path: Path, how: str) -> None:
    # an RGBA orthomosaic (drone software, gdalwarp -dstalpha), or a COG's internal mask
    rgb = np.full((3, 32, 64), 90, dtype=np.uint8)
    valid = np.full((32, 64), 255, dtype=np.uint8)
    valid[:4, :6] = 0  # a hidden corner of the first chip
    valid[:, 32:] = 0  # the right half is outside the flight
    alpha = how == "alpha band"
    with (
        rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True),
        rasterio.open(
            tmp_path / "s.tif",
            "w",
            driver="GTiff",
            width=64,
            height=32,
            count=4 if alpha else 3,
            dtype="uint8",
            crs="EPSG:32618",
            transform=rasterio.Affine(1, 0, X0, 0, -1, Y0),
            photometric="RGB",
            **({"alpha": "YES"} if alpha else {}),
        ) as ds,
    ):
        if alpha:
            ds.write(np.concatenate([rgb, valid[None]]))
        else:
            ds.write(rgb)
            ds.write_mask(valid)
    assert not (tmp_path / "s.tif.msk").exists()
    write_boxes(tmp_path / "l.geojson", [(X0, Y0 - 32, X0 + 64, Y0)])
    no_split = {"val_fraction": 0.0, "test_fraction": 0.0}
    region = load_region(write_region(tmp_path / "r.toml", ["s.tif"], "l.geojson", split=no_split))
    summary = chip_region(region, tmp_path / "chips")
    assert summary.n_skipped_nodata == 4 and len(read_chip_index(tmp_path / "chips").frame) == 4
    with rasterio.open(tmp_path / "chips/masks/s_r0_c0.tif") as m:
        mask = m.read(1)
    assert (mask[:4, :6] == 255).all() and int((mask == 255).sum()) == 24
    with rasterio.open(tmp_path / "chips/images/s_r0_c0.tif") as img:
        chip = img.read()
        assert img.count == 3 and img.nodata == 0
    assert (chip[:, :4, :6] == 0).all() and (chip[:, 4:, :] == 90).all()
    if alpha:
        _bad(
            tmp_path,
            BandMismatchError,
            r"has 3 data band\(s\) and an alpha band \(the mask: not listed\) but \[imagery\] "
            r"bands lists 2",
            scenes=["s.tif"],
            label_file="l.geojson",
            imagery={"bands": ["red", "green"]},
        )


@pytest.mark.parametrize("nodata", [0, None])
def test_a_band_tagged_alpha_that_the_region_lists_is_data(
    tmp_path: Path, nodata: int | None
) -> None:
    # GDAL tags the fourth band of a 4-band byte GeoTIFF alpha by default: in a NAIP tile
    # it is the near infrared. With a nodata value GDAL does not mask with it; without one
    # it does, and the region listing four bands says it is data all the same
    write_scene(tmp_path / "s.tif", width=32, height=32, count=4, nodata=nodata)
    with rasterio.open(tmp_path / "s.tif") as ds:
        assert ds.colorinterp[3] == rasterio.enums.ColorInterp.alpha
        assert (rasterio.enums.MaskFlags.alpha in ds.mask_flag_enums[0]) == (nodata is None)
    write_boxes(tmp_path / "l.geojson", [(X0, Y0 - 32, X0 + 32, Y0)])
    no_split = {"val_fraction": 0.0, "test_fraction": 0.0}
    path = write_region(
        tmp_path / "r.toml",
        ["s.tif"],
        "l.geojson",
        split=no_split,
        imagery={"bands": ["red", "green", "blue", "nir"]},
    )
    chip_region(load_region(path), tmp_path / "chips")
    with rasterio.open(tmp_path / "chips/images/s_r0_c0.tif") as img:
        assert img.count == 4


def test_a_vrt_stack_of_mixed_dtypes_and_nodata_values(tmp_path: Path) -> None:
    # gdalbuildvrt -separate over Landsat-like files: float32 reflectance and an int16 band
    refl = np.full((32, 32), 0.25, dtype=np.float32)
    refl[:3, :5] = -99999  # nodata in every band ...
    therm = np.full((32, 32), 2900, dtype=np.int16)
    therm[:3, :5] = -32768
    therm[10, :] = -32768  # ... and a row without data in this band only: no data either
    write_stack(
        tmp_path / "stack.vrt",
        [(refl, -99999), (refl, -99999), (therm, -32768)],
        rasterio.crs.CRS.from_epsg(32618),
        rasterio.Affine(1, 0, X0, 0, -1, Y0),
    )
    write_boxes(tmp_path / "l.geojson", [(X0, Y0 - 32, X0 + 32, Y0)])
    no_split = {"val_fraction": 0.0, "test_fraction": 0.0}
    path = write_region(
        tmp_path / "r.toml",
        ["stack.vrt"],
        "l.geojson",
        split=no_split,
        imagery={"bands": ["red", "green", "lwir"]},
    )
    chip_region(load_region(path), tmp_path / "chips")
    with rasterio.open(tmp_path / "chips/images/stack_r0_c0.tif") as img:
        chip = img.read()
        assert img.dtypes == ("float32",) * 3 and img.nodata == -99999
    with rasterio.open(tmp_path / "chips/masks/stack_r0_c0.tif") as m:
        mask = m.read(1)
    assert (mask[:3, :5] == 255).all() and (mask[10] == 255).all()
    assert int((mask == 255).sum()) == 15 + 16  # a 16 px chip
    assert (chip[:, :3, :5] == -99999).all()
    assert chip[2, 4, 7] == 2900 and chip[0, 4, 7] == np.float32(0.25)


def test_a_band_without_data_in_a_stack_is_no_reflectance(tmp_path: Path) -> None:
    # nc-landsat-landcover: lsat7_2000_70.tif (int16, nodata -32768) lacks data where the
    # float32 bands (nodata -99999) have it; kept as data, -32768 made that band's mean
    # -7721 in the model card. Such pixels are ignore, their bands the chips' nodata.
    refl = np.full((32, 32), 0.25, dtype=np.float32)
    therm = np.full((32, 32), 2900, dtype=np.int16)
    therm[:, 20:] = -32768
    write_stack(
        tmp_path / "stack.vrt",
        [(refl, -99999), (therm, -32768)],
        rasterio.crs.CRS.from_epsg(32618),
        rasterio.Affine(1, 0, X0, 0, -1, Y0),
    )
    write_boxes(tmp_path / "l.geojson", [(X0, Y0 - 32, X0 + 32, Y0)])
    path = write_region(
        tmp_path / "r.toml",
        ["stack.vrt"],
        "l.geojson",
        split={"val_fraction": 0.0, "test_fraction": 0.0},
        imagery={"bands": ["red", "lwir"]},
        chips={"size_px": 32, "max_nodata_fraction": 0.9},
    )
    chip_region(load_region(path), tmp_path / "chips")
    with rasterio.open(tmp_path / "chips/images/stack_r0_c0.tif") as img:
        chip, nodata = img.read(), img.nodata
    with rasterio.open(tmp_path / "chips/masks/stack_r0_c0.tif") as m:
        mask = m.read(1)
    assert (mask[:, 20:] == 255).all() and (mask[:, :20] == 1).all()
    assert (chip[:, :, 20:] == nodata).all() and not (chip == -32768).any()


def test_complete_within_ignores_outside_and_skips_chips(tmp_path: Path) -> None:
    write_scene(tmp_path / "s.tif", width=64, height=64)
    write_boxes(tmp_path / "l.gpkg", [(X0 + 2, Y0 - 10, X0 + 6, Y0 - 2)])
    write_boxes(tmp_path / "areas.gpkg", [(X0, Y0 - 24, X0 + 24, Y0)])  # 24 x 24 m complete area
    region = load_region(
        write_region(
            tmp_path / "r.toml",
            ["s.tif"],
            "l.gpkg",
            labels={"complete_within": "areas.gpkg"},
            split={"val_fraction": 0.0, "test_fraction": 0.0},
        )
    )
    summary = chip_region(region, tmp_path / "out")
    frame = read_chip_index(tmp_path / "out").frame.set_index("chip_id")
    assert sorted(frame.index) == ["s_r0_c0", "s_r0_c16", "s_r16_c0", "s_r16_c16"]
    assert summary.n_skipped_incomplete == 12
    assert frame.loc["s_r0_c16", "px_ignore"] == 16 * 16 - 8 * 16
    assert frame.loc["s_r16_c16", "px_ignore"] == 16 * 16 - 8 * 8
    assert frame.loc["s_r0_c0", "px_tree"] == 4 * 8


def test_a_region_of_nodata_names_the_scenes_not_the_labels(tmp_path: Path) -> None:
    from geotl.errors import RasterError

    write_scene(tmp_path / "s.tif", nodata=0, fill=np.zeros((64, 64), dtype="uint8"))
    write_boxes(tmp_path / "l.gpkg", [(X0 + 2, Y0 - 10, X0 + 6, Y0 - 2)])
    region = load_region(write_region(tmp_path / "r.toml", ["s.tif"], "l.gpkg"))
    with pytest.raises(
        RasterError, match=r"r.toml: no chip left: all 16 were more than 50% nodata"
    ):
        chip_region(region, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_test_within_forces_test_split(tmp_path: Path) -> None:
    write_scene(tmp_path / "s.tif", width=128, height=128)
    write_boxes(tmp_path / "l.gpkg", [(X0 + 2, Y0 - 10, X0 + 6, Y0 - 2)])
    write_boxes(tmp_path / "test.gpkg", [(X0 + 64, Y0 - 128, X0 + 128, Y0 - 64)])
    region = load_region(
        write_region(
            tmp_path / "r.toml",
            ["s.tif"],
            "l.gpkg",
            split={"test_within": "test.gpkg", "test_fraction": 0.0, "val_fraction": 0.1},
        )
    )
    chip_region(region, tmp_path / "out")
    frame = read_chip_index(tmp_path / "out").frame
    inside = (frame["col_off"] >= 64) & (frame["row_off"] >= 64)
    assert set(frame.loc[inside, "split"]) == {"test"}
    assert "test" not in set(frame.loc[~inside, "split"])
    assert_leak_free(tmp_path / "out")


def test_test_areas_off_the_scenes_are_named_not_advised_as_fractions(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # it advised "[split] test_fraction = 0.2 ..." (unused beside test_within), never the file
    write_scene(tmp_path / "s.tif", width=64, height=64)
    write_boxes(tmp_path / "l.gpkg", [(X0 + 2, Y0 - 10, X0 + 6, Y0 - 2)])
    write_boxes(tmp_path / "test.gpkg", [(X0 + 5000, Y0 - 64, X0 + 5064, Y0)])
    path = write_region(
        tmp_path / "r.toml",
        ["s.tif"],
        "l.gpkg",
        split={"test_within": "test.gpkg", "test_fraction": 0.2, "val_fraction": 0.0},
    )
    with caplog.at_level("WARNING", logger="geotl"):
        summary = chip_region(load_region(path), tmp_path / "out")
    assert summary.counts["test"] == 0
    assert "test.gpkg: no chip is centred inside these [split] test_within areas" in caplog.text
    assert "left no labelled object in test" not in caplog.text


def test_complete_within_off_the_scenes_names_its_file(tmp_path: Path) -> None:
    # the error named the labels file
    write_scene(tmp_path / "s.tif")
    write_boxes(tmp_path / "l.gpkg", [(X0, Y0 - 5, X0 + 5, Y0)])
    write_boxes(tmp_path / "areas.gpkg", [(X0 + 5000, Y0 - 64, X0 + 5064, Y0)])
    _bad(
        tmp_path,
        LabelError,
        r"areas\.gpkg: no chip left: 16 lay outside these \[labels\] complete_within areas",
        scenes=["s.tif"],
        label_file="l.gpkg",
        labels={"complete_within": "areas.gpkg"},
    )


def test_designated_areas_are_their_split_alone_and_lend_no_pixel(tmp_path: Path) -> None:
    # a test area off the 16 px chip grid: chips centred outside it still cover parts of it
    import json

    write_scene(tmp_path / "s.tif", width=128, height=128)
    boxes = [
        (X0 + x, Y0 - y - 6, X0 + x + 6, Y0 - y) for x in range(2, 122, 9) for y in range(2, 122, 9)
    ]
    write_boxes(tmp_path / "l.gpkg", boxes)
    area = (X0 + 42, Y0 - 90, X0 + 90, Y0 - 42)
    write_boxes(tmp_path / "test.gpkg", [area])
    # the default test_fraction (0.2) is left in the file: the area alone is the test split
    region = load_region(
        write_region(tmp_path / "r.toml", ["s.tif"], "l.gpkg", split={"test_within": "test.gpkg"})
    )
    chip_region(region, tmp_path / "out")
    frame = read_chip_index(tmp_path / "out").frame
    centre_in = frame.apply(lambda r: 42 < r.col_off + 8 < 90 and 42 < r.row_off + 8 < 90, axis=1)
    assert (frame["split"] == "test").to_numpy().tolist() == centre_in.tolist()
    guard = json.loads((tmp_path / "out" / "chipset.json").read_text())["split"]["guard_px"]
    grown = box(*area).buffer(guard, join_style="mitre")
    for r in frame.loc[frame["split"] != "test"].itertuples():
        with rasterio.open(tmp_path / "out" / r.mask) as src:
            mask, t = src.read(1), src.transform
        rows, cols = np.nonzero(mask != 255)
        xs, ys = rasterio.transform.xy(t, rows, cols)
        assert not shapely.contains_xy(grown, xs, ys).any(), r.chip_id
    assert_leak_free(tmp_path / "out")


def test_bands_the_file_describes_otherwise_are_refused(tmp_path: Path) -> None:
    write_scene(tmp_path / "s.tif")
    with rasterio.open(tmp_path / "s.tif", "r+") as ds:
        for i, name in enumerate(["blue", "green", "red"], start=1):
            ds.set_band_description(i, name)
    write_boxes(tmp_path / "l.gpkg", [(X0 + 2, Y0 - 10, X0 + 6, Y0 - 2)])
    region = load_region(write_region(tmp_path / "r.toml", ["s.tif"], "l.gpkg"))  # red, green, blue
    with pytest.raises(BandMismatchError, match=r"s\.tif: its band descriptions say"):
        chip_region(region, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_unmapped_values_error_lists_counts_or_skip(tmp_path: Path) -> None:
    write_scene(tmp_path / "s.tif")
    boxes = [(X0 + i, Y0 - 10, X0 + i + 4, Y0 - 2) for i in range(0, 40, 5)]
    write_boxes(tmp_path / "l.gpkg", boxes, labels=["Tree"] * 5 + ["", "Shrub", "Shrub"])
    path = write_region(tmp_path / "r.toml", ["s.tif"], "l.gpkg")
    with pytest.raises(LabelError, match=r"no value \(1\), 'Shrub' \(2\).*unmapped = \"skip\""):
        chip_region(load_region(path), tmp_path / "out")
    assert not (tmp_path / "out").exists()
    path = write_region(tmp_path / "r2.toml", ["s.tif"], "l.gpkg", labels={"unmapped": "skip"})
    chip_region(load_region(path), tmp_path / "out")
    meta = read_chip_index(tmp_path / "out").meta
    assert meta["counts"]["labels_unmapped_skipped"] == 3


def test_invalid_geometries_repaired_and_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_scene(tmp_path / "s.tif")
    bowtie = gpd.GeoSeries.from_wkt(
        [
            f"POLYGON(({X0} {Y0 - 10}, {X0 + 10} {Y0}, {X0 + 10} {Y0 - 10}, {X0} {Y0}, {X0} {Y0 - 10}))"
        ],
        crs="EPSG:32618",
    )
    gpd.GeoDataFrame({"label": ["Tree"]}, geometry=bowtie).to_file(tmp_path / "l.gpkg")
    path = write_region(tmp_path / "r.toml", ["s.tif"], "l.gpkg")
    with caplog.at_level("INFO", logger="geotl"):
        chip_region(load_region(path), tmp_path / "out")
    assert "repaired 1 invalid geometry" in caplog.text
    index = read_chip_index(tmp_path / "out")
    assert index.meta["counts"]["labels_repaired"] == 1
    assert index.frame["px_tree"].sum() > 0


def test_overlapping_polygons_of_different_classes_and_copies_are_said(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # the later class silently won the shared pixels, and copies counted as objects;
    # touching neighbours are no overlap
    write_scene(tmp_path / "s.tif")
    boxes = [
        box(X0, Y0 - 10, X0 + 10, Y0),  # water
        box(X0 + 5, Y0 - 10, X0 + 15, Y0),  # field, overlapping it by half
        box(X0 + 15, Y0 - 10, X0 + 25, Y0),  # water, touching the field only
    ]
    boxes.append(boxes[2])  # a copy
    frame = gpd.GeoDataFrame({"label": ["W", "F", "W", "W"]}, geometry=boxes, crs="EPSG:32618")
    frame.to_file(tmp_path / "l.gpkg")
    path = write_region(
        tmp_path / "r.toml",
        ["s.tif"],
        "l.gpkg",
        classes=["water", "field"],
        labels={"class_map": {"W": "water", "F": "field"}},
        split={"val_fraction": 0.0, "test_fraction": 0.0},
        chips={"size_px": 32, "stride_px": 32},
    )
    with caplog.at_level("WARNING", logger="geotl"):
        chip_region(load_region(path), tmp_path / "out")
    assert (
        "1 pair(s) of label polygons of different classes overlap (e.g. features 1 'water'"
        in caplog.text
    )
    assert (
        "1 label polygon(s) repeat another of the same class (e.g. features 3 and 4" in caplog.text
    )
    with rasterio.open(tmp_path / "out/masks/s_r0_c0.tif") as m:
        row = m.read(1)[5, :25].tolist()
    assert row == [1] * 5 + [2] * 10 + [1] * 10  # field (listed later) wins the overlap


# ---- bad input: each one line, exit-2 errors, nothing written ----


def _bad(tmp_path: Path, exc: type[Exception], match: str, **region_kw: object) -> None:
    path = write_region(tmp_path / "r.toml", **region_kw)  # type: ignore[arg-type]
    with pytest.raises(exc, match=match) as info:
        chip_region(load_region(path), tmp_path / "out")
    assert isinstance(info.value, GeotlInputError)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_corrupt_geotiff(tmp_path: Path) -> None:
    (tmp_path / "s.tif").write_bytes(b"II*\x00garbage" * 10)
    write_boxes(tmp_path / "l.gpkg", [(X0, Y0 - 5, X0 + 5, Y0)])
    _bad(
        tmp_path,
        RasterError,
        r"s\.tif: cannot be read as a raster",
        scenes=["s.tif"],
        label_file="l.gpkg",
    )


def test_truncated_geotiff(tmp_path: Path) -> None:
    scene = write_scene(tmp_path / "s.tif", width=256, height=256)
    data = scene.read_bytes()
    scene.write_bytes(data[: len(data) // 2])
    write_boxes(tmp_path / "l.gpkg", [(X0, Y0 - 5, X0 + 5, Y0)])
    _bad(
        tmp_path,
        RasterError,
        r"s\.tif: .*(cut short|cannot be read)",
        scenes=["s.tif"],
        label_file="l.gpkg",
    )


def test_raster_without_crs(tmp_path: Path) -> None:
    write_scene(tmp_path / "s.tif", crs=None)
    write_boxes(tmp_path / "l.gpkg", [(X0, Y0 - 5, X0 + 5, Y0)])
    _bad(tmp_path, RasterError, r"s\.tif: raster has no CRS", scenes=["s.tif"], label_file="l.gpkg")


def test_labels_without_crs(tmp_path: Path) -> None:
    write_scene(tmp_path / "s.tif")
    write_boxes(tmp_path / "l.geojson", [(X0, Y0 - 5, X0 + 5, Y0)], crs=None)
    # a GeoJSON without "crs" is CRS84 by the standard: these metres then overlap nothing
    _bad(
        tmp_path,
        LabelError,
        r"declared EPSG:4326 but coordinates look like EPSG:32618.*crs = 'EPSG:32618'",
        scenes=["s.tif"],
        label_file="l.geojson",
    )
    write_boxes(tmp_path / "l.shp", [(X0, Y0 - 5, X0 + 5, Y0)], crs=None)
    _bad(
        tmp_path,
        LabelError,
        r"l\.shp: has no CRS.*\[labels\] crs",
        scenes=["s.tif"],
        label_file="l.shp",
    )


def test_labels_crs_override_fixes_missing_crs(tmp_path: Path) -> None:
    write_scene(tmp_path / "s.tif")
    write_boxes(tmp_path / "l.shp", [(X0, Y0 - 5, X0 + 5, Y0)], crs=None)
    path = write_region(tmp_path / "r.toml", ["s.tif"], "l.shp", labels={"crs": "EPSG:32618"})
    assert chip_region(load_region(path), tmp_path / "out").n_objects == 1


def test_labels_overlap_no_scene(tmp_path: Path) -> None:
    write_scene(tmp_path / "s.tif")
    write_boxes(tmp_path / "l.gpkg", [(X0 + 5000, Y0 - 5, X0 + 5005, Y0)])
    _bad(
        tmp_path,
        LabelError,
        r"l\.gpkg: no label overlaps any scene",
        scenes=["s.tif"],
        label_file="l.gpkg",
    )


def test_empty_label_file(tmp_path: Path) -> None:
    write_scene(tmp_path / "s.tif")
    gpd.GeoDataFrame({"label": []}, geometry=[], crs="EPSG:32618").to_file(tmp_path / "l.gpkg")
    _bad(tmp_path, LabelError, r"l\.gpkg: has no features", scenes=["s.tif"], label_file="l.gpkg")


def test_chip_larger_than_every_scene(tmp_path: Path) -> None:
    write_scene(tmp_path / "s.tif", width=32, height=32)
    write_boxes(tmp_path / "l.gpkg", [(X0, Y0 - 5, X0 + 5, Y0)])
    _bad(
        tmp_path,
        ConfigError,
        r"r\.toml: chips.size_px = 64 is larger than every scene.*lower",
        scenes=["s.tif"],
        label_file="l.gpkg",
        chips={"size_px": 64},
    )


def test_band_count_mismatch(tmp_path: Path) -> None:
    write_scene(tmp_path / "s.tif", count=1)
    write_boxes(tmp_path / "l.gpkg", [(X0, Y0 - 5, X0 + 5, Y0)])
    _bad(
        tmp_path,
        BandMismatchError,
        r"s\.tif: has 1 data band\(s\) but \[imagery\] bands lists 3",
        scenes=["s.tif"],
        label_file="l.gpkg",
    )


def test_single_band_files_are_told_to_stack(tmp_path: Path) -> None:
    # nc-landsat-landcover's lsat7_2000_10.tif ... _70.tif matched by one glob
    for b in (1, 2, 3):
        write_scene(tmp_path / f"band{b}.tif", count=1)
    write_boxes(tmp_path / "l.gpkg", [(X0, Y0 - 5, X0 + 5, Y0)])
    _bad(
        tmp_path,
        BandMismatchError,
        r"band1\.tif: has 1 data band\(s\) but .*gdalbuildvrt -separate",
        scenes=["band*.tif"],
        label_file="l.gpkg",
    )


def test_an_alpha_band_gdal_does_not_mask_with_is_explained(tmp_path: Path) -> None:
    # gdalwarp -dstalpha over a 6-band scene: band 7 is tagged alpha, yet GDAL's masks use
    # an alpha band only in 2- and 4-band files, so it reads as a seventh data band
    scene = write_scene(tmp_path / "s.tif", count=5)
    with rasterio.open(scene, "r+") as ds:
        ds.colorinterp = [ColorInterp.gray] + [ColorInterp.undefined] * 3 + [ColorInterp.alpha]
    write_boxes(tmp_path / "l.gpkg", [(X0, Y0 - 5, X0 + 5, Y0)])
    _bad(
        tmp_path,
        BandMismatchError,
        r"has 5 data band\(s\) but .* lists 4 .*band 5 is tagged alpha.*-b 1 -b 2 -b 3 -b 4 -mask 5",
        scenes=["s.tif"],
        label_file="l.gpkg",
        imagery={"bands": ["blue", "green", "red", "nir"]},
    )


@pytest.mark.parametrize("nodata", [-9999.0, 300.0, float("nan")])
def test_a_nodata_the_scenes_cannot_hold_is_refused(tmp_path: Path, nodata: float) -> None:
    # it crashed in the chip writer with a rasterio ValueError and a traceback
    write_scene(tmp_path / "s.tif")
    write_boxes(tmp_path / "l.gpkg", [(X0, Y0 - 5, X0 + 5, Y0)])
    _bad(
        tmp_path,
        ConfigError,
        r"r\.toml: \[imagery\] nodata = .* cannot occur in s\.tif \(uint8, whole numbers 0\.\.255\)",
        scenes=["s.tif"],
        label_file="l.gpkg",
        imagery={"nodata": nodata},
    )


def test_scene_smaller_than_chip_is_skipped(tmp_path: Path) -> None:
    write_scene(tmp_path / "big.tif", width=32, height=32)
    write_scene(tmp_path / "small.tif", width=8, height=8)
    write_boxes(tmp_path / "l.gpkg", [(X0, Y0 - 5, X0 + 5, Y0)])
    path = write_region(tmp_path / "r.toml", ["*.tif"], "l.gpkg")
    summary = chip_region(load_region(path), tmp_path / "out")
    assert summary.n_scenes == 1 and summary.n_scenes_too_small == 1


def test_a_scene_in_other_units_is_said(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # one 8-bit scene and one of 16-bit numbers 40x larger in one region: one normalisation
    # would serve both, so the second is named with its factor (chipped all the same)
    ramp = np.random.default_rng(0).integers(1, 200, size=(3, 64, 64))
    write_scene(tmp_path / "a.tif", fill=ramp.astype("uint8"))
    write_scene(tmp_path / "b.tif", fill=ramp * 40, dtype="uint16", origin=(X0 + 200, Y0))
    write_boxes(tmp_path / "labels.gpkg", [(X0 + 3, Y0 - 13, X0 + 10, Y0 - 4)])
    region = load_region(write_region(tmp_path / "region.toml", ["*.tif"], "labels.gpkg"))
    with caplog.at_level("WARNING", logger="geotl"):
        chip_region(region, tmp_path / "chips")
    said = [r.getMessage() for r in caplog.records if "other units?" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith("b.tif: its band means")
    assert "are about 40x" in said[0] and "(a.tif's)" in said[0]
    # scenes in one set of units say nothing
    caplog.clear()
    write_scene(tmp_path / "b.tif", fill=(ramp // 2).astype("uint8"), origin=(X0 + 200, Y0))
    with caplog.at_level("WARNING", logger="geotl"):
        chip_region(region, tmp_path / "chips2")
    assert "other units?" not in caplog.text


def test_the_same_ground_in_two_crss_falls_in_the_same_split(tmp_path: Path) -> None:
    """A scene and its copy in the next UTM zone: blocked in one frame, split alike.

    Blocked per CRS, each copy's ground was split on its own: the same field was train in
    one and test in the other, and the guard bands between them took most pixels.
    """
    from rasterio.warp import calculate_default_transform, reproject

    a = write_scene(tmp_path / "a.tif", width=256, height=256)
    with rasterio.open(a) as src:
        transform, w, h = calculate_default_transform(
            src.crs, "EPSG:32617", src.width, src.height, *src.bounds, resolution=1.0
        )
        profile = src.profile | {
            "crs": "EPSG:32617",
            "transform": transform,
            "width": w,
            "height": h,
        }
        with rasterio.open(tmp_path / "b.tif", "w", **profile) as dst:
            for k in range(1, src.count + 1):
                reproject(rasterio.band(src, k), rasterio.band(dst, k))
    x0, y0 = 500_000.0, 4_000_000.0
    grid = [
        (x0 + i, y0 - j - 4, x0 + i + 4, y0 - j) for i in range(2, 250, 8) for j in range(2, 250, 8)
    ]
    write_boxes(tmp_path / "l.gpkg", grid)
    region = load_region(
        write_region(
            tmp_path / "r.toml",
            ["a.tif", "b.tif"],
            "l.gpkg",
            chips={"size_px": 32, "stride_px": 32},
            split={"block_size_m": 64, "guard_px": 4},
        )
    )
    chip_region(region, tmp_path / "out")
    frame = read_chip_index(tmp_path / "out").frame.to_crs("EPSG:32618")
    in_a = frame[frame["chip_id"].str.startswith("a_")]
    in_b = frame[frame["chip_id"].str.startswith("b_")]
    assert len(in_a) == 64 and len(in_b) >= 64
    agree = []
    for geom, split in zip(in_b.geometry, in_b["split"], strict=True):
        overlap = in_a.geometry.intersection(geom).area
        if overlap.max() > 0.5 * geom.area:  # a chip of b mostly over one chip of a
            agree.append(in_a["split"].iloc[int(overlap.argmax())] == split)
    assert len(agree) > 30 and np.mean(agree) > 0.9, np.mean(agree)


def test_objects_the_guard_bands_took_leave_the_chips_object_ids(tmp_path: Path) -> None:
    """A chip lists only objects it still shows: the label budget never draws one it hid.

    Before, an object wholly inside a guard band stayed in its chip's ``object_ids``: the
    budget could spend a label on it, and the split's object counts held it.
    """
    from rasterio.features import geometry_mask

    write_scene(tmp_path / "s.tif", width=128, height=128)
    x0, y0 = 500_000.0, 4_000_000.0
    grid = [
        (x0 + i, y0 - j - 2, x0 + i + 2, y0 - j) for i in range(1, 127, 6) for j in range(1, 127, 6)
    ]
    write_boxes(tmp_path / "l.gpkg", grid)
    region = load_region(
        write_region(
            tmp_path / "r.toml",
            ["s.tif"],
            "l.gpkg",
            split={"block_size_m": 16, "val_fraction": 0.3, "test_fraction": 0.3, "guard_px": 4},
        )
    )
    summary = chip_region(region, tmp_path / "out")
    frame = read_chip_index(tmp_path / "out").frame
    labels = read_labels(region).set_index("label_id").geometry
    listed = 0
    for row in frame.itertuples():
        with rasterio.open(tmp_path / "out" / str(row.mask)) as m:
            mask, transform = m.read(1), m.transform
        for i in row.object_ids:
            shown = geometry_mask(
                [labels.loc[int(i)]], mask.shape, transform, invert=True, all_touched=True
            )
            assert (mask[shown] != 255).any(), (row.chip_id, i)
            listed += 1
    assert summary.n_objects < len(grid)  # the bands took some objects whole
    # what they took is said apart: object pixels, and the background around them
    guard = summary.guard
    assert 0 < sum(guard.object_pixels.values()) < guard.total_pixels()
    assert f"took {sum(guard.object_pixels.values())} more object pixels" in summary.line()
    assert listed >= summary.n_objects > len(grid) // 2


def test_a_scene_without_any_label_is_said(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An unlabelled plot among labelled ones became background chips without a word."""
    write_scene(tmp_path / "a.tif")
    write_scene(tmp_path / "b.tif", origin=(X0 + 1000, Y0))  # 1 km east: no label there
    write_boxes(tmp_path / "l.geojson", [(X0 + 4, Y0 - 12, X0 + 12, Y0 - 4)])
    path = write_region(
        tmp_path / "r.toml",
        ["a.tif", "b.tif"],
        "l.geojson",
        split={"val_fraction": 0.0, "test_fraction": 0.0},
    )
    with caplog.at_level("WARNING", logger="geotl"):
        chip_region(load_region(path), tmp_path / "out")
    assert "labels: 1 of 2 scene(s) hold no label (b.tif): all their chips are background" in (
        caplog.text
    )
    caplog.clear()
    areas = gpd.GeoDataFrame(geometry=[box(X0, Y0 - 64, X0 + 64, Y0)], crs="EPSG:32618")
    areas.to_file(tmp_path / "done.gpkg")
    path = write_region(
        tmp_path / "r.toml",
        ["a.tif", "b.tif"],
        "l.geojson",
        labels={"complete_within": "done.gpkg"},
        split={"val_fraction": 0.0, "test_fraction": 0.0},
    )
    with caplog.at_level("WARNING", logger="geotl"):
        chip_region(load_region(path), tmp_path / "out2")
    assert "hold no label" not in caplog.text  # its chips are skipped, not background


def test_scenes_of_other_resolutions_are_said(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # 1 m and 3 m scenes were chipped and trained together silently: the card recorded the
    # chips' median resolution and predict then refused the other scenes
    write_scene(tmp_path / "fine.tif", width=64, height=64)
    write_scene(tmp_path / "coarse.tif", width=32, height=32, origin=(X0 + 200, Y0), res=3.0)
    write_scene(tmp_path / "near.tif", width=64, height=64, origin=(X0 + 400, Y0), res=1.05)
    write_boxes(tmp_path / "l.gpkg", [(X0 + 2, Y0 - 10, X0 + 6, Y0 - 2)])
    path = write_region(tmp_path / "r.toml", ["fine.tif", "near.tif", "coarse.tif"], "l.gpkg")
    with caplog.at_level("WARNING", logger="geotl"):
        chip_region(load_region(path), tmp_path / "out")
    assert "r.toml: scenes differ in ground resolution (fine.tif 1 m, coarse.tif 3 m)" in (
        caplog.text
    )
    caplog.clear()
    path = write_region(tmp_path / "r2.toml", ["fine.tif", "near.tif"], "l.gpkg")
    with caplog.at_level("WARNING", logger="geotl"):
        chip_region(load_region(path), tmp_path / "out2")
    assert "ground resolution" not in caplog.text


def test_a_rotated_scene_keeps_its_labels_and_its_chips_own_ground(tmp_path: Path) -> None:
    # the scene's two-corner bounds left out most of a rotated grid: its labels were dropped
    # (background in the masks where they lay), and each chip's footprint was its envelope,
    # so guard bands took the ground of the chips around it
    from affine import Affine
    from rasterio.features import rasterize

    transform = Affine.translation(X0, Y0) @ Affine.rotation(30) @ Affine.scale(1, -1)
    with rasterio.open(
        tmp_path / "rot.tif", "w", driver="GTiff", width=96, height=64, count=3,
        dtype="uint8", crs="EPSG:32618", transform=transform,
    ) as dst:  # fmt: skip
        dst.write(np.full((3, 64, 96), 100, np.uint8))
    # boxes spread over the scene, most of them outside its two-corner bounds
    centres = [transform @ (c, r) for c in (8, 40, 72) for r in (8, 32, 56)]
    write_boxes(tmp_path / "l.gpkg", [(x - 2, y - 2, x + 2, y + 2) for x, y in centres])
    path = write_region(tmp_path / "r.toml", ["rot.tif"], "l.gpkg", split={"guard_px": 2})
    chip_region(load_region(path), tmp_path / "out")
    frame = read_chip_index(tmp_path / "out").frame
    labels = gpd.read_file(tmp_path / "l.gpkg")
    assert len({i for ids in frame["object_ids"] for i in ids}) == len(centres)
    for row in frame.itertuples():
        with rasterio.open(tmp_path / "out" / row.mask) as src:
            mask, chip_t = src.read(1), src.transform
        truth = rasterize(list(labels.geometry), out_shape=mask.shape, transform=chip_t)
        kept = mask != 255
        assert (mask[kept] == truth[kept]).all()
        # a 2 px guard band leaves most of a 16 px chip labelled
        assert kept.mean() > 0.5
    # no leak, measured in the scene's own pixels (tests/chips/leak.py assumes north-up)
    rank = {"train": 0, "val": 1, "test": 2}
    rows = list(frame.itertuples())
    for a in rows:
        with rasterio.open(tmp_path / "out" / a.mask) as src:
            r, c = np.nonzero(src.read(1) != 255)
        r, c = r + a.row_off + 0.5, c + a.col_off + 0.5
        for b in rows:
            if rank[b.split] <= rank[a.split]:
                continue
            dr = np.maximum.reduce([b.row_off - r, 0 * r, r - (b.row_off + b.height)])
            dc = np.maximum.reduce([b.col_off - c, 0 * c, c - (b.col_off + b.width)])
            assert np.maximum(dr, dc).min(initial=np.inf) > 2, (a.chip_id, b.chip_id)
