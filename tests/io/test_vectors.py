import sqlite3
import time
from pathlib import Path

import geopandas as gpd
import pytest
from shapely.geometry import LineString, Point, Polygon, box

from geotl.config import load_region
from geotl.errors import LabelError
from geotl.io.vectors import content_sha256, crs_name, read_areas, read_labels


def _region(tmp_path: Path, labels: str, extra: str = "") -> Path:
    (tmp_path / "s.tif").write_bytes(b"")  # the glob must match; never opened here
    path = tmp_path / "r.toml"
    path.write_text(
        'name = "t"\nclasses = ["tree", "shrub"]\n[imagery]\npaths = ["s.tif"]\n'
        f'bands = ["red"]\n[labels]\npath = "{labels}"\n{extra}'
    )
    return path


@pytest.mark.parametrize("suffix", [".geojson", ".gpkg", ".shp", ".parquet"])
def test_any_format_class_map_and_ids(tmp_path: Path, suffix: str) -> None:
    frame = gpd.GeoDataFrame(
        {"kind": ["T", "S", "T"]},
        geometry=[box(0, 0, 1, 1), box(2, 2, 3, 3), box(4, 4, 5, 5)],
        crs="EPSG:32618",
    )
    path = tmp_path / f"l{suffix}"
    if suffix == ".parquet":
        frame.to_parquet(path)
    else:
        frame.to_file(path)
    region = load_region(
        _region(
            tmp_path, path.name, 'class_field = "kind"\nclass_map = { T = "tree", S = "shrub" }\n'
        )
    )
    labels = read_labels(region)
    assert list(labels.columns) == ["label_id", "class", "geometry"]
    assert labels["class"].tolist() == ["tree", "shrub", "tree"]
    assert labels["label_id"].tolist() == [0, 1, 2]
    assert crs_name(labels.crs) == "EPSG:32618"
    assert read_labels(region, crs="EPSG:4326").crs.to_epsg() == 4326


def test_default_class_repair_and_non_polygons(tmp_path: Path) -> None:
    bowtie = Polygon([(0, 0), (1, 1), (1, 0), (0, 1)])
    gpd.GeoDataFrame(geometry=[bowtie, Point(3, 3), box(5, 5, 6, 6)], crs="EPSG:32618").to_file(
        tmp_path / "l.gpkg"
    )
    labels = read_labels(load_region(_region(tmp_path, "l.gpkg")))
    assert labels["class"].tolist() == ["tree", "tree"]  # default: classes[0]
    assert labels["label_id"].tolist() == [0, 2]  # the point is not a polygon
    assert labels.geometry.is_valid.all() and labels.geometry.iloc[0].area == pytest.approx(0.5)


def test_missing_class_field(tmp_path: Path) -> None:
    gpd.GeoDataFrame({"a": [1]}, geometry=[box(0, 0, 1, 1)], crs="EPSG:32618").to_file(
        tmp_path / "l.gpkg"
    )
    region = load_region(_region(tmp_path, "l.gpkg", 'class_field = "label"\n'))
    with pytest.raises(LabelError, match=r"l\.gpkg: has no field 'label' \(fields: a\)"):
        read_labels(region)


def test_unreadable_file(tmp_path: Path) -> None:
    (tmp_path / "l.geojson").write_text("{not json")
    with pytest.raises(LabelError, match="cannot be read as a vector file"):
        read_labels(load_region(_region(tmp_path, "l.geojson")))


def test_read_areas(tmp_path: Path) -> None:
    gpd.GeoDataFrame(geometry=[box(0, 0, 1, 1)], crs="EPSG:32618").to_file(tmp_path / "a.gpkg")
    areas = read_areas(tmp_path / "a.gpkg", "[split] test_within")
    assert len(areas) == 1 and areas.crs.to_epsg() == 32618


def test_a_file_of_several_layers_is_read_by_name_never_guessed(tmp_path: Path) -> None:
    # a GeoPackage of roads (first) and the crowns the region means
    path = tmp_path / "l.gpkg"
    gpd.GeoDataFrame(geometry=[box(0, 0, 9, 1)], crs="EPSG:32618").to_file(path, layer="roads")
    gpd.GeoDataFrame(
        {"kind": ["T", "S"]}, geometry=[box(0, 0, 1, 1), box(2, 2, 3, 3)], crs="EPSG:32618"
    ).to_file(path, layer="crowns")
    extra = 'class_field = "kind"\nclass_map = { T = "tree", S = "shrub" }\n'
    with pytest.raises(LabelError, match=r"l\.gpkg: has 2 layers \('roads', 'crowns'\): name the one to read with \[labels\] layer"):  # fmt: skip
        read_labels(load_region(_region(tmp_path, "l.gpkg", extra)))
    labels = read_labels(load_region(_region(tmp_path, "l.gpkg", extra + 'layer = "crowns"\n')))
    assert labels["class"].tolist() == ["tree", "shrub"]
    with pytest.raises(LabelError, match=r"has no layer 'crown' \(layers: 'roads', 'crowns'\): name the one to read with \[labels\] layer"):  # fmt: skip
        read_labels(load_region(_region(tmp_path, "l.gpkg", extra + 'layer = "crown"\n')))
    with pytest.raises(LabelError, match=r"has 2 layers .*keep only the one"):
        read_areas(path, "[labels] complete_within")


def test_point_labels_of_a_segmentation_region_name_the_key_that_draws_them(tmp_path: Path) -> None:
    # points for a segmentation region: the key that turns them into squares is named
    gpd.GeoDataFrame(geometry=[Point(1, 1), Point(5, 5)], crs="EPSG:32618").to_file(
        tmp_path / "pts.geojson"
    )
    with pytest.raises(LabelError, match=r"2 of them are points: set \[labels\] point_box_m"):
        read_labels(load_region(_region(tmp_path, "pts.geojson")))


def test_line_labels_of_a_segmentation_region_say_to_draw_areas(tmp_path: Path) -> None:
    # they were only "empty or not polygons"
    lines = [LineString([(0, 0), (5, 5)]), LineString([(1, 0), (9, 0)])]
    gpd.GeoDataFrame(geometry=lines, crs="EPSG:32618").to_file(tmp_path / "roads.gpkg")
    with pytest.raises(LabelError, match=r"2 of them are lines: label areas with polygons"):
        read_labels(load_region(_region(tmp_path, "roads.gpkg")))


def test_a_table_without_geometry_beside_the_labels_is_no_layer_to_choose(
    tmp_path: Path,
) -> None:
    # a code list saved in the same GeoPackage made it "2 layers: name the one to read"
    import pandas as pd
    import pyogrio

    path = tmp_path / "l.gpkg"
    gpd.GeoDataFrame({"kind": ["T"]}, geometry=[box(0, 0, 1, 1)], crs="EPSG:32618").to_file(path)
    pyogrio.write_dataframe(pd.DataFrame({"kind": ["T"], "name": ["tree"]}), path, layer="codes")
    extra = 'class_field = "kind"\nclass_map = { T = "tree" }\n'
    assert read_labels(load_region(_region(tmp_path, "l.gpkg", extra)))["class"].tolist() == [
        "tree"
    ]


@pytest.mark.parametrize("key", ["1", "1.0"])
def test_whole_number_codes_read_as_float_map_like_integers(tmp_path: Path, key: str) -> None:
    # an integer code field with a null in it reads as float: 1.0 must meet class_map's 1
    frame = gpd.GeoDataFrame(
        {"code": [1.0, 2.0, None]},
        geometry=[box(0, 0, 1, 1), box(2, 2, 3, 3), box(4, 4, 5, 5)],
        crs="EPSG:32618",
    )
    frame.to_file(tmp_path / "l.gpkg")
    other = "2" if key == "1" else "2.0"
    extra = (
        f'class_field = "code"\nclass_map = {{ "{key}" = "tree", "{other}" = "shrub" }}\n'
        'unmapped = "skip"\n'
    )
    labels = read_labels(load_region(_region(tmp_path, "l.gpkg", extra)))
    assert list(labels["class"]) == ["tree", "shrub"]


def test_skipped_unmapped_values_are_warned_once_naming_the_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # a command reads its labels several times (chipping, budget, each curve point)
    frame = gpd.GeoDataFrame(
        {"kind": ["T", "X"]}, geometry=[box(0, 0, 1, 1), box(2, 2, 3, 3)], crs="EPSG:32618"
    )
    frame.to_file(tmp_path / "once.gpkg")
    extra = 'class_field = "kind"\nclass_map = { T = "tree" }\nunmapped = "skip"\n'
    region = load_region(_region(tmp_path, "once.gpkg", extra))
    with caplog.at_level("WARNING", logger="geotl.io.vectors"):
        for _ in range(3):
            assert list(read_labels(region)["class"]) == ["tree"]
    said = [r.getMessage() for r in caplog.records if "unmapped" in r.getMessage()]
    assert said == [f"{tmp_path / 'once.gpkg'}: skipped 1 feature(s) with unmapped values: 'X' (1)"]


@pytest.mark.parametrize("suffix", [".gpkg", ".shp", ".geojson", ".parquet"])
def test_content_digest_follows_features_not_bytes(tmp_path: Path, suffix: str) -> None:
    """The same features written again keep their digest; a moved vertex or class does not."""
    frame = gpd.GeoDataFrame(
        {"kind": ["T", "S"]}, geometry=[box(0, 0, 1, 1), box(2, 2, 3, 3)], crs="EPSG:32618"
    )

    def write(f: gpd.GeoDataFrame, path: Path) -> Path:
        f.to_parquet(path) if suffix == ".parquet" else f.to_file(path)
        return path

    first = write(frame, tmp_path / f"a{suffix}")
    time.sleep(1.1)  # a GeoPackage stamps its last write, a .dbf the day
    again = write(frame, tmp_path / f"b{suffix}")
    if suffix == ".shp":  # the .dbf's date of last update: another day, the same features
        dbf = bytearray(again.with_suffix(".dbf").read_bytes())
        dbf[1:4] = bytes([99, 1, 2])
        again.with_suffix(".dbf").write_bytes(bytes(dbf))
    assert content_sha256(first) == content_sha256(again)
    if suffix in (".gpkg", ".shp"):
        assert first.read_bytes() != again.read_bytes() or suffix == ".shp"
    moved = frame.copy()
    moved.geometry = [box(0, 0, 1, 1.5), box(2, 2, 3, 3)]
    relabelled = frame.assign(kind=["T", "T"])
    assert content_sha256(write(moved, tmp_path / f"c{suffix}")) != content_sha256(first)
    assert content_sha256(write(relabelled, tmp_path / f"d{suffix}")) != content_sha256(first)


def test_content_digest_ignores_qgis_styles(tmp_path: Path) -> None:
    path = tmp_path / "l.gpkg"
    gpd.GeoDataFrame(geometry=[box(0, 0, 1, 1)], crs="EPSG:32618").to_file(path)
    before = content_sha256(path)
    with sqlite3.connect(path) as db:  # what QGIS's "save style in the database" adds
        db.execute("CREATE TABLE layer_styles (id INTEGER PRIMARY KEY, styleQML TEXT)")
        db.execute("INSERT INTO layer_styles (styleQML) VALUES ('<qgis/>')")
    assert content_sha256(path) == before
