import doctest
import itertools

import pytest
from affine import Affine
from rasterio.windows import Window

import geotl.chips.labels
import geotl.chips.split
import geotl.chips.windows
from geotl.chips.windows import chip_windows, grid_offsets
from geotl.io.rasters import window_bounds


@pytest.mark.parametrize("module", [geotl.chips.windows, geotl.chips.labels, geotl.chips.split])
def test_doctests(module: object) -> None:
    result = doctest.testmod(module)  # type: ignore[arg-type]
    assert result.attempted > 0
    assert result.failed == 0


@pytest.mark.parametrize(
    ("length", "size", "stride"),
    [
        (400, 128, 128),
        (400, 128, 64),
        (129, 128, 128),
        (128, 128, 128),
        (1000, 256, 200),
        (7, 3, 1),
    ],
)
def test_grid_covers_axis_inside_scene(length: int, size: int, stride: int) -> None:
    offsets = grid_offsets(length, size, stride)
    assert offsets[0] == 0
    assert offsets[-1] + size == length  # last chip ends exactly at the edge
    assert offsets == sorted(set(offsets))
    assert all(0 <= o <= length - size for o in offsets)
    steps = [b - a for a, b in itertools.pairwise(offsets)]
    assert all(0 < s <= stride for s in steps)
    covered = set()
    for o in offsets:
        covered.update(range(o, o + size))
    assert covered == set(range(length))


def test_scene_smaller_than_chip_has_no_windows() -> None:
    assert grid_offsets(127, 128, 128) == []
    assert chip_windows(500, 100, 128, 128) == []


def test_invalid_sizes() -> None:
    with pytest.raises(ValueError):
        grid_offsets(10, 0, 1)


def test_windows_row_major_and_bounds() -> None:
    wins = chip_windows(300, 200, 128, 128)
    assert wins[0] == Window(0, 0, 128, 128)
    assert wins == sorted(wins, key=lambda w: (w.row_off, w.col_off))
    t = Affine(0.5, 0, 100.0, 0, -0.5, 200.0)
    assert window_bounds(t, Window(0, 0, 128, 128)) == (100.0, 136.0, 164.0, 200.0)
