"""Multi-part label features (ArcGIS Dissolve, QGIS "Collect geometries"): one object per part.

Real NEON HARV crowns: the crowns that touch no other crown, written once a feature each
and once collected into one MultiPolygon per image, must give the same objects, boxes and
object ids in the chips.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely
from shapely.geometry import GeometryCollection, MultiPolygon, Point, box

from geotl.chips import chip_region, read_chip_index
from geotl.chips.boxes import unflat_boxes
from geotl.config import load_region
from geotl.io.vectors import read_labels

from .data import write_region

IMAGES = ["HARV_022.tif", "HARV_024.tif"]


def _crowns(shared_data: Path) -> gpd.GeoDataFrame:
    """The crowns of two HARV plots that touch no other crown (a MultiPolygon stays valid)."""
    crowns = gpd.read_file(shared_data / "neon-trees" / "HARV" / "HARV_tree_crowns.geojson")
    crowns = crowns[crowns["image"].isin(IMAGES)].reset_index(drop=True)
    geoms = crowns.geometry.values
    left, right = shapely.STRtree(geoms).query(geoms, predicate="intersects")
    touching = np.bincount(left[left != right], minlength=len(crowns)) > 0
    kept = crowns[~touching].reset_index(drop=True)
    kept["label"] = "Tree"  # a few crowns have no label: not what this test is about
    return kept


def _region(tmp_path: Path, shared_data: Path, labels: gpd.GeoDataFrame, name: str) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    for image in IMAGES:
        shutil.copy(shared_data / "neon-trees" / "HARV" / "images" / image, folder / image)
    labels.to_file(folder / "labels.gpkg")
    path = write_region(
        folder / "region.toml",
        ["HARV_*.tif"],
        "labels.gpkg",
        chips={"size_px": 200, "stride_px": 200},
        split={"block_size_m": 20.0, "val_fraction": 0.0, "test_fraction": 0.0},
    )
    path.write_text(
        path.read_text().replace('classes = ["tree"]', 'task = "detection"\nclasses = ["tree"]')
    )
    return path


def test_multipart_features_are_one_label_per_part(tmp_path: Path, shared_data: Path) -> None:
    crowns = _crowns(shared_data)
    collected = crowns.dissolve(by="image", as_index=False)[["label", "geometry"]]
    assert (collected.geom_type == "MultiPolygon").all() and len(collected) == 2
    single = read_labels(load_region(_region(tmp_path, shared_data, crowns, "single")))
    multi = read_labels(load_region(_region(tmp_path, shared_data, collected, "multi")))
    assert len(multi) == len(single) == len(crowns) > 5
    assert multi["label_id"].is_unique and (multi.geom_type == "Polygon").all()
    assert multi["label_id"].iloc[0] == 0  # the first feature's first part keeps its id
    assert sorted(shapely.area(multi.geometry.values).round(3)) == sorted(
        shapely.area(single.geometry.values).round(3)
    )
    # a file of single polygons keeps its feature positions as ids
    assert single["label_id"].tolist() == list(range(len(crowns)))


def test_multipart_features_give_the_detector_its_boxes(tmp_path: Path, shared_data: Path) -> None:
    crowns = _crowns(shared_data)
    collected = crowns.dissolve(by="image", as_index=False)[["label", "geometry"]]
    summaries, boxes = {}, {}
    for name, labels in (("single", crowns), ("multi", collected)):
        region = load_region(_region(tmp_path, shared_data, labels, name))
        summaries[name] = chip_region(region, tmp_path / name / "chips")
        frame = read_chip_index(tmp_path / name / "chips").frame.sort_values("chip_id")
        boxes[name] = [unflat_boxes(b).round(2).tolist() for b in frame["boxes"]]
    # one box per crown, as from the file of single polygons (was: one box per plot)
    assert boxes["multi"] == boxes["single"]
    assert sum(len(b) for b in boxes["multi"]) >= len(crowns)
    assert summaries["multi"].n_objects == summaries["single"].n_objects == len(crowns)


def test_halves_cut_at_the_antimeridian_stay_one_object(tmp_path: Path) -> None:
    """RFC 7946 cuts an object at longitude 180 (geotl's own GeoJSON reused as labels)."""
    halves = MultiPolygon([box(179.99, -80.0, 180.0, -79.99), box(-180.0, -80.0, -179.99, -79.99)])
    cornered = MultiPolygon(
        [
            box(179.0, -80.0, 179.01, -79.99),
            box(178.0, -80.0, 178.01, -79.99),
            box(178.01, -79.99, 178.02, -79.98),
        ]
    )
    gpd.GeoDataFrame(
        {"label": ["Tree", "Tree"]}, geometry=[halves, cornered], crs="EPSG:4326"
    ).to_file(tmp_path / "labels.geojson")
    (tmp_path / "s.tif").write_bytes(b"")  # the glob must match; never opened here
    labels = read_labels(
        load_region(write_region(tmp_path / "r.toml", ["s.tif"], "labels.geojson"))
    )
    assert labels["label_id"].tolist() == [0, 1, 3]  # part j of feature i: j * n_features + i
    # the halves are one object; so are parts that touch at a point (as round a pole)
    assert [shapely.get_num_geometries(g) for g in labels.geometry] == [2, 1, 2]


def test_parts_that_touch_at_a_corner_stay_apart_in_metres(tmp_path: Path) -> None:
    """A dissolved layer keeps pixel-traced objects that touch at a corner as parts."""
    cornered = MultiPolygon([box(0, 0, 1, 1), box(1, 1, 2, 2)])
    gpd.GeoDataFrame({"label": ["Tree"]}, geometry=[cornered], crs="EPSG:32618").to_file(
        tmp_path / "labels.gpkg"
    )
    (tmp_path / "s.tif").write_bytes(b"")  # the glob must match; never opened here
    labels = read_labels(load_region(write_region(tmp_path / "r.toml", ["s.tif"], "labels.gpkg")))
    assert labels["label_id"].tolist() == [0, 1]


def test_a_collection_of_polygons_and_points_is_one_label_per_polygon(tmp_path: Path) -> None:
    """KML's MultiGeometry (a placemark of polygons and a pin) reads as a collection."""
    collection = GeometryCollection([box(0, 0, 1, 1), box(3, 0, 4, 1), Point(8, 8)])
    gpd.GeoDataFrame({"label": ["Tree"]}, geometry=[collection], crs="EPSG:32618").to_file(
        tmp_path / "labels.geojson"
    )
    (tmp_path / "s.tif").write_bytes(b"")  # the glob must match; never opened here
    region = write_region(tmp_path / "r.toml", ["s.tif"], "labels.geojson")
    labels = read_labels(load_region(region))
    assert labels["label_id"].tolist() == [0, 1]
    assert [g.bounds for g in labels.geometry] == [(0, 0, 1, 1), (3, 0, 4, 1)]


def test_chips_cut_when_a_multipart_feature_was_one_object_are_stale(
    tmp_path: Path, shared_data: Path
) -> None:
    """Chips of an earlier geotl hold one object id per feature: cut again, not trained on."""
    from geotl.chips.assemble import LABEL_READING_KEY, stale_reason

    crowns = _crowns(shared_data)
    collected = crowns.dissolve(by="image", as_index=False)[["label", "geometry"]]
    for name, labels in (("single", crowns), ("multi", collected)):
        region = load_region(_region(tmp_path, shared_data, labels, name))
        chip_region(region, tmp_path / name / "chips")
        meta = read_chip_index(tmp_path / name / "chips").meta
        assert stale_reason(region, meta) is None
        earlier = {k: v for k, v in meta.items() if k != LABEL_READING_KEY}
        why = stale_reason(region, earlier)
        if name == "single":
            assert why is None  # nothing read otherwise now: the chips stay good
        else:
            assert why is not None and "2 multi-part label feature(s)" in why
        # label_reading 2 numbered the parts on from the features read: stale the same way
        numbered = stale_reason(region, {**meta, LABEL_READING_KEY: 2})
        if name == "single":
            assert numbered is None
        else:
            assert numbered is not None and "numbered their parts otherwise" in numbered
