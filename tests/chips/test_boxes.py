"""Object boxes in the chip index: the chip-edge rule, tiny boxes, points and lines."""

from __future__ import annotations

import logging
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
from shapely.geometry import LineString, Point

from geotl.chips import chip_region, read_chip_index
from geotl.chips.boxes import MIN_VISIBLE_FRACTION, chip_boxes, unflat_boxes
from geotl.config import load_region
from geotl.errors import LabelError

from .data import write_boxes, write_region, write_scene

X0, Y0 = 500_000.0, 4_000_000.0  # top-left of the generated scenes (EPSG:32618, 1 m)


def _region(tmp_path: Path, boxes: list[tuple[float, float, float, float]], **tables: dict) -> Path:  # type: ignore[type-arg]
    write_scene(tmp_path / "a.tif", width=32, height=16)
    write_boxes(tmp_path / "labels.gpkg", boxes)
    path = write_region(tmp_path / "region.toml", ["a.tif"], "labels.gpkg", **tables)
    text = path.read_text().replace(
        'name = "test-region"', 'name = "test-region"\ntask = "detection"'
    )
    path.write_text(text)
    return path


def test_edge_rule_keeps_mostly_inside_and_ignores_the_rest(tmp_path: Path) -> None:
    # chips: columns 0-15 and 16-31 (16 px, 1 m). Object A spans x 10..20: 6/10 in chip 0
    # (kept there, clipped), 4/10 in chip 1 (ignore there). B lies inside chip 1.
    boxes = [(X0 + 10, Y0 - 8, X0 + 20, Y0 - 2), (X0 + 24, Y0 - 12, X0 + 30, Y0 - 4)]
    region = load_region(
        _region(tmp_path, boxes, split={"val_fraction": 0.0, "test_fraction": 0.0})
    )
    chip_region(region, tmp_path / "chips")
    index = read_chip_index(tmp_path / "chips")
    rows = {r.chip_id: r for r in index.frame.itertuples()}
    c0, c1 = rows["a_r0_c0"], rows["a_r0_c16"]
    assert unflat_boxes(c0.boxes).tolist() == [[10, 2, 16, 8]]
    assert list(c0.box_object_ids) == [0] and list(c0.box_classes) == [1]
    assert len(unflat_boxes(c0.ignore_boxes)) == 0
    assert unflat_boxes(c1.boxes).tolist() == [[8, 4, 14, 12]]
    assert list(c1.box_object_ids) == [1]
    assert unflat_boxes(c1.ignore_boxes).tolist() == [[0, 2, 4, 8]]
    assert index.meta["boxes"]["min_visible_fraction"] == MIN_VISIBLE_FRACTION


def test_edge_rule_threshold_is_inclusive() -> None:
    b = np.array([[-5.0, 0, 5, 4], [-5.1, 0, 4.9, 4]])
    cb = chip_boxes(b, np.array([1, 1]), np.array([1, 2]), 0, 0, 8, 8)
    assert cb.object_ids.tolist() == [1] and cb.ignore_ids.tolist() == [2]


def test_tiny_boxes_dropped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    boxes = [(X0 + 2, Y0 - 8, X0 + 3.5, Y0 - 2), (X0 + 4, Y0 - 12, X0 + 10, Y0 - 4)]
    region = load_region(
        _region(tmp_path, boxes, split={"val_fraction": 0.0, "test_fraction": 0.0})
    )
    with caplog.at_level(logging.WARNING):
        summary = chip_region(region, tmp_path / "chips")
    assert summary.n_small_boxes == 1
    assert "1 object box(es) narrower or shorter than 2 px" in caplog.text
    index = read_chip_index(tmp_path / "chips")
    assert index.meta["counts"]["boxes_too_small"] == 1
    row = index.frame.set_index("chip_id").loc["a_r0_c0"]
    assert list(row["box_object_ids"]) == [1]


def test_objects_no_chip_can_show_are_warned(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A box wider than twice the chip is an ignore box in every chip: never learnt, unsaid."""
    boxes = [(X0 - 10, Y0 - 14, X0 + 40, Y0 - 2), (X0 + 4, Y0 - 12, X0 + 10, Y0 - 4)]
    region = load_region(
        _region(tmp_path, boxes, split={"val_fraction": 0.0, "test_fraction": 0.0})
    )
    with caplog.at_level(logging.WARNING):
        chip_region(region, tmp_path / "chips")
    assert "1 object(s) larger than a chip can show" in caplog.text
    assert "size_px" in caplog.text


def _write_geoms(path: Path, geoms: list) -> None:  # type: ignore[type-arg]
    gpd.GeoDataFrame({"label": ["Tree"] * len(geoms)}, geometry=geoms, crs="EPSG:32618").to_file(
        path
    )


def test_point_labels_need_point_box_m(tmp_path: Path) -> None:
    path = _region(tmp_path, [(X0 + 1, Y0 - 5, X0 + 3, Y0 - 3)])
    _write_geoms(tmp_path / "labels.gpkg", [Point(X0 + 8, Y0 - 8), Point(X0 + 20, Y0 - 6)])
    with pytest.raises(LabelError, match=r"2 label\(s\) are points.*point_box_m") as err:
        chip_region(load_region(path), tmp_path / "chips")
    assert err.value.path is not None and err.value.path.name == "labels.gpkg"
    assert not (tmp_path / "chips").exists() or not any((tmp_path / "chips").iterdir())

    text = path.read_text().replace("[labels]", "[labels]\npoint_box_m = 4.0")
    path.write_text(text)
    chip_region(load_region(path), tmp_path / "chips2")
    frame = read_chip_index(tmp_path / "chips2").frame.set_index("chip_id")
    assert unflat_boxes(frame.loc["a_r0_c0", "boxes"]).tolist() == [[6, 6, 10, 10]]


def test_line_labels_refused_for_detection(tmp_path: Path) -> None:
    path = _region(tmp_path, [(X0 + 1, Y0 - 5, X0 + 3, Y0 - 3)])
    _write_geoms(tmp_path / "labels.gpkg", [LineString([(X0 + 1, Y0 - 1), (X0 + 9, Y0 - 9)])])
    with pytest.raises(LabelError, match=r"are lines: detection needs one polygon"):
        chip_region(load_region(path), tmp_path / "chips")
