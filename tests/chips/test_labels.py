import numpy as np
from affine import Affine
from shapely.geometry import Polygon, box

from geotl.chips.labels import IGNORE, class_pixel_counts, rasterize_chip
from geotl.io.nodata import nodata_mask

T = Affine(1, 0, 0, 0, -1, 8)  # 8x8 px chip covering (0, 0)-(8, 8)


def test_pixel_centres_decide_membership() -> None:
    # a box covering pixel centres only in columns 0-1, rows 0-1; its edge at 2.4 touches col 2
    mask = rasterize_chip([(box(0, 5.6, 2.4, 8), 1)], T, 8, 8)
    assert mask[:2, :2].tolist() == [[1, 1], [1, 1]]
    assert mask[:, 2:].max() == 0  # all_touched=False
    assert mask[2:].max() == 0


def test_higher_class_wins_on_overlap_regardless_of_order() -> None:
    shapes = [(box(0, 0, 8, 8), 2), (box(0, 0, 4, 8), 1)]
    mask = rasterize_chip(shapes, T, 8, 8)
    assert (mask == 2).all()


def test_ignore_and_complete_areas() -> None:
    ignore = np.zeros((8, 8), dtype=bool)
    ignore[0, 0] = True
    complete = [box(0, 0, 4, 8)]  # left half complete
    mask = rasterize_chip([(box(0, 0, 8, 1), 1)], T, 8, 8, ignore=ignore, complete=complete)
    assert mask[0, 0] == IGNORE
    assert (mask[:, 4:] == IGNORE).all()  # outside complete area: not a negative
    assert mask[7, :4].tolist() == [1, 1, 1, 1]
    assert mask[3, 1] == 0
    assert (rasterize_chip([], T, 8, 8, complete=[]) == IGNORE).all()


def test_holes_are_background() -> None:
    ring = Polygon([(0, 0), (8, 0), (8, 8), (0, 8)], [[(2, 2), (6, 2), (6, 6), (2, 6)]])
    mask = rasterize_chip([(ring, 1)], T, 8, 8)
    assert mask[4, 4] == 0
    assert mask[0, 0] == 1


def test_nodata_mask_all_bands_and_nan() -> None:
    data = np.array([[[255, 255], [1, 255]], [[255, 3], [255, 255]]], dtype=np.uint8)
    assert nodata_mask(data, 255).tolist() == [[True, False], [False, True]]
    assert not nodata_mask(data, None).any()
    f = np.array([[[np.nan, 1.0]]], dtype=np.float32)
    assert nodata_mask(f, None).tolist() == [[True, False]]
    assert nodata_mask(f, -9999).tolist() == [[True, False]]


def test_class_pixel_counts() -> None:
    mask = np.array([[0, 1, 2], [255, 2, 2]], dtype=np.uint8)
    assert class_pixel_counts(mask, 2) == [1, 1, 3, 1]


def test_nodata_mask_compares_in_the_data_type() -> None:
    data = np.array([[[255, 0, 7]], [[255, 255, 7]]], dtype=np.uint8)
    assert nodata_mask(data, 255.0).tolist() == [[True, False, False]]
    assert not nodata_mask(data, -1).any() and not nodata_mask(data, 2.5).any()
    assert not nodata_mask(data, 300).any()
    i16 = np.array([[[-9999, 3]]], dtype=np.int16)
    assert nodata_mask(i16, -9999.0).tolist() == [[True, False]]


def test_rasterize_multipolygon_and_collection() -> None:
    from shapely.geometry import GeometryCollection, LineString, MultiPolygon

    multi = MultiPolygon([box(0, 6, 2, 8), box(6, 0, 8, 2)])
    mask = rasterize_chip([(multi, 1)], T, 8, 8)
    assert mask[0, 0] == 1 and mask[7, 7] == 1 and int(mask.sum()) == 8
    coll = GeometryCollection([box(0, 6, 2, 8), LineString([(0, 0), (8, 8)])])
    assert rasterize_chip([(coll, 2)], T, 8, 8)[0, 0] == 2
