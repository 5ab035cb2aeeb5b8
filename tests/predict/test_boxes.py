"""Box prediction across window seams: every object exactly once, at several window sizes."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import rasterio
from affine import Affine
from scipy import ndimage

from geotl.predict.boxes import Detections, axis_cores, detect_boxes
from geotl.predict.windows import plan_windows

RES = 0.5
ORIGIN = (600_000.0, 5_000_000.0)


def _scene(
    path: Path,
    height: int,
    width: int,
    sizes: tuple[int, int] = (6, 25),
    n: int = 60,
    margin: int = 0,
) -> list[tuple[int, int, int, int]]:
    """Bright squares (6-24 px) on a dark ground, many across any window seam; their boxes."""
    rng = np.random.default_rng(3)
    data = np.full((1, height, width), 10, dtype=np.uint8)
    boxes: list[tuple[int, int, int, int]] = []
    taken = np.zeros((height, width), dtype=bool)
    while len(boxes) < n:
        s = int(rng.integers(*sizes))
        r = int(rng.integers(margin, height - s - margin))
        c = int(rng.integers(margin, width - s - margin))
        if taken[max(r - 2, 0) : r + s + 2, max(c - 2, 0) : c + s + 2].any():
            continue
        taken[r : r + s, c : c + s] = True
        data[0, r : r + s, c : c + s] = 200
        boxes.append((c, r, c + s, r + s))
    transform = Affine(RES, 0, ORIGIN[0], 0, -RES, ORIGIN[1])
    with rasterio.open(
        path, "w", driver="GTiff", width=width, height=height, count=1, dtype="uint8",
        crs="EPSG:32632", transform=transform,
    ) as dst:  # fmt: skip
        dst.write(data)
    return boxes


def _oracle(batch: npt.NDArray[np.float32]) -> list[Detections]:
    """A detector that finds bright squares as a real one would: clipped at window edges."""
    out = []
    for img in batch:
        lab, _ = ndimage.label(img[0] > 100)
        slices = ndimage.find_objects(lab)
        b = np.array(
            [[s[1].start, s[0].start, s[1].stop, s[0].stop] for s in slices], dtype=np.float32
        ).reshape(-1, 4)
        out.append((b, np.ones(len(b), np.float32), np.ones(len(b), np.int64)))
    return out


@pytest.mark.parametrize(("window", "overlap"), [(64, 32), (96, 32), (128, 40), (256, 32)])
def test_each_object_exactly_once_across_seams(tmp_path: Path, window: int, overlap: int) -> None:
    truth = _scene(tmp_path / "s.tif", 300, 270)
    plan = plan_windows((300, 270), window, overlap)
    with rasterio.open(tmp_path / "s.tif") as src:
        objects, stats = detect_boxes(
            _oracle, src, [1], plan, normalise=lambda a: a.astype(np.float32), model_px=window,
            batch_size=3, score_threshold=0.5, nms_iou=0.5,
        )  # fmt: skip
    assert stats.windows == len(plan.windows) and len(plan.windows) > 1
    inv = ~Affine(RES, 0, ORIGIN[0], 0, -RES, ORIGIN[1])
    found = []
    for o in objects:
        x0, y0, x1, y1 = o.geometry.bounds
        c0, r1 = inv @ (x0, y0)
        c1, r0 = inv @ (x1, y1)
        found.append(tuple(round(v) for v in (c0, r0, c1, r1)))
    assert len(found) == len(set(found)), "an object was kept twice"
    assert sorted(found) == sorted(truth), "an object was lost or clipped at a seam"
    assert all(o.geometry.exterior.is_ccw for o in objects)


@pytest.mark.parametrize(
    ("window", "overlap", "sizes"), [(256, 64, (60, 160)), (96, 16, (20, 130))]
)
def test_objects_wider_than_the_overlap_come_out_once_and_whole(
    tmp_path: Path, window: int, overlap: int, sizes: tuple[int, int]
) -> None:
    """No window sees such an object whole: its cut views on both sides of a seam are one box.

    (Crowns of 6-16 m at 0.1 m under the default 256 px windows' 64 px overlap came out as
    two or four clipped boxes each.)
    """
    truth = _scene(tmp_path / "s.tif", 600, 500, sizes, n=12)
    plan = plan_windows((600, 500), window, overlap)
    with rasterio.open(tmp_path / "s.tif") as src:
        objects, _ = detect_boxes(
            _oracle, src, [1], plan, normalise=lambda a: a.astype(np.float32), model_px=window
        )
    inv = ~Affine(RES, 0, ORIGIN[0], 0, -RES, ORIGIN[1])
    found = []
    for o in objects:
        x0, y0, x1, y1 = o.geometry.bounds
        c0, r1 = inv @ (x0, y0)
        c1, r0 = inv @ (x1, y1)
        found.append(tuple(round(v) for v in (c0, r0, c1, r1)))
    assert sorted(found) == sorted(truth)


def _short_oracle(batch: npt.NDArray[np.float32]) -> list[Detections]:
    """The oracle, but a view cut by the window edge stops 5 px short of it (a real detector's
    box of a partly seen crown), so cut views neither reach the seam nor join across it."""
    out = []
    for b, s, lab in _oracle(batch):
        size = batch.shape[-1]
        b = b.copy()
        b[b[:, 0] == 0, 0] = 5
        b[b[:, 1] == 0, 1] = 5
        b[b[:, 2] == size, 2] = size - 5
        b[b[:, 3] == size, 3] = size - 5
        out.append((b, s, lab))
    return out


def test_a_cut_view_that_stops_short_of_the_seam_is_read_again_whole(tmp_path: Path) -> None:
    """HARV crowns (6-14 m at 0.1 m) under 256 px windows: boxes came out clipped at seams."""
    truth = _scene(tmp_path / "s.tif", 600, 500, (60, 150), n=12, margin=10)
    plan = plan_windows((600, 500), 256, 64)
    with rasterio.open(tmp_path / "s.tif") as src:
        objects, _ = detect_boxes(
            _short_oracle, src, [1], plan, normalise=lambda a: a.astype(np.float32),
            model_px=256,
        )  # fmt: skip
    inv = ~Affine(RES, 0, ORIGIN[0], 0, -RES, ORIGIN[1])
    found = []
    for o in objects:
        x0, y0, x1, y1 = o.geometry.bounds
        c0, r1 = inv @ (x0, y0)
        c1, r0 = inv @ (x1, y1)
        found.append(tuple(round(v) for v in (c0, r0, c1, r1)))
    assert sorted(found) == sorted(truth), "an object was clipped or kept twice at a seam"


def test_without_ownership_the_oracle_would_duplicate(tmp_path: Path) -> None:
    """The seam test can fail: windows overlap, so raw detections repeat objects."""
    truth = _scene(tmp_path / "s.tif", 300, 270)
    plan = plan_windows((300, 270), 96, 32)
    raw = 0
    with rasterio.open(tmp_path / "s.tif") as src:
        for w in plan.windows:
            img = src.read(
                window=((w.row_off, w.row_off + w.height), (w.col_off, w.col_off + w.width))
            )
            raw += len(_oracle(img[None].astype(np.float32))[0][0])
    assert raw > len(truth)


def test_cores_tile_the_axis() -> None:
    plan = plan_windows((500, 300), 128, 48)
    cores = axis_cores(plan.row_offsets, 128, 500)
    assert cores[0][0] == 0 and cores[-1][1] == 500
    assert all(a[1] == b[0] for a, b in itertools.pairwise(cores))


def _fixed(box: tuple[float, float, float, float]):  # type: ignore[no-untyped-def]
    """A detector that reports one box at the same window position in every window."""

    def detect(batch: npt.NDArray[np.float32]) -> list[Detections]:
        b = np.array([box], dtype=np.float32)
        return [(b, np.ones(1, np.float32), np.ones(1, np.int64)) for _ in batch]

    return detect


@pytest.mark.parametrize(("nodata_from", "expect_x1"), [(30, 30.0), (20, None), (48, 40.0)])
def test_boxes_stay_on_valid_imagery(
    tmp_path: Path, nodata_from: int, expect_x1: float | None
) -> None:
    """A real plot with its right side blanked: boxes are cut at its edge, or dropped."""
    scene = Path(__file__).resolve().parents[2] / "regions" / "demo-osbs" / "imagery"
    path = tmp_path / "blanked.tif"
    with rasterio.open(scene / "OSBS_029.tif") as ds:
        arr = ds.read(window=((0, 64), (0, 64)))
        profile = ds.profile | {"width": 64, "height": 64, "transform": ds.transform}
    arr[:, :, nodata_from:] = 255
    profile.pop("blockxsize", None), profile.pop("blockysize", None)
    with rasterio.open(path, "w", **(profile | {"nodata": 255, "tiled": False})) as dst:
        dst.write(arr)
    # centre (25, 25) valid in every case: only the box's share on nodata decides
    with rasterio.open(path) as src:
        objects, _ = detect_boxes(
            _fixed((10.0, 10.0, 40.0, 40.0)), src, [1, 2, 3], plan_windows((64, 64), 64, 0),
            normalise=lambda a: a.astype(np.float32), model_px=64,
        )  # fmt: skip
        transform = src.transform
    if expect_x1 is None:  # two thirds of the box on nodata
        assert objects == []
        return
    assert len(objects) == 1
    x0, y0, x1, y1 = objects[0].geometry.bounds
    c0, r1 = ~transform @ (x0, y0)
    c1, r0 = ~transform @ (x1, y1)
    assert [round(v, 3) for v in (c0, r0, c1, r1)] == [10.0, 10.0, expect_x1, 40.0]
    assert objects[0].first_px == (10, 10, 40, int(expect_x1))


def test_boxes_of_the_background_logit_are_no_objects(tmp_path: Path) -> None:
    """RetinaNet scores its class 0 (background) too: such a box is not the last class."""
    _scene(tmp_path / "s.tif", 64, 64, n=1)

    def detect(batch: npt.NDArray[np.float32]) -> list[Detections]:
        b = np.array([[4, 4, 20, 20], [30, 30, 50, 50]], dtype=np.float32)
        return [(b, np.full(2, 0.9, np.float32), np.array([0, 1])) for _ in batch]

    with rasterio.open(tmp_path / "s.tif") as src:
        objects, _ = detect_boxes(
            detect, src, [1], plan_windows((64, 64), 64, 0),
            normalise=lambda a: a.astype(np.float32), model_px=64,
        )  # fmt: skip
    assert [o.class_index for o in objects] == [1]
