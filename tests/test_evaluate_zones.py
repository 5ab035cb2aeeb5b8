"""``geotl evaluate`` scores ground that two overlapping scenes hold once.

Found driving a Sentinel-2 region across a UTM zone boundary: the tiles of zones 31 and
32 overlap (as Sentinel-2 tiles do), so a test area in the overlap has test chips in both
scenes, in two CRSs. Only edge chips of one scene were de-duplicated; the overlap's pixels
and fields were scored in both chips (1,729 labelled pixels and 20 labelled fields where
the ground holds about 1,650 and 18).
"""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
import rasterio.features
import shapely
from rasterio.windows import Window
from shapely.geometry import box, shape
from zones import FLANDERS, SCENE, warped_window

from geotl.chips import chip_region, read_chip_index
from geotl.chips.labels import IGNORE
from geotl.config import load_region
from geotl.evaluate.chips import owned_pixels


def _write(path: Path, profile: dict, pixels: np.ndarray) -> None:
    profile = {k: v for k, v in profile.items() if k not in ("blockxsize", "blockysize", "tiled")}
    with rasterio.open(path, "w", **profile) as out:
        out.write(pixels)


def _two_zones(shared_data: Path, tmp_path: Path, east_time: str = "20230601T105031") -> Path:
    """Two 10 m tiles of real Flanders texture overlapping by 1 km: the western one in
    its own EPSG:32631, the eastern one warped into EPSG:32632; a test area in the overlap.

    Both are of one acquisition (the sensing time in their names), unless ``east_time``
    says otherwise.
    """
    src = shared_data / FLANDERS
    if not (src / SCENE).is_file():
        pytest.skip(f"{src} not found")
    (tmp_path / "imagery").mkdir()
    with rasterio.open(src / SCENE) as ds:
        west = Window(300, 250, 300, 256)
        _write(
            tmp_path / "imagery" / "S2A_T31UGS_20230601T105031.tif",
            {**ds.profile, "width": 300, "height": 256, "transform": ds.window_transform(west)},
            ds.read(window=west),
        )
        warped_window(
            src / SCENE,
            Window(500, 250, 300, 256),
            "EPSG:32632",
            tmp_path / "imagery" / f"S2A_T32ULB_{east_time}.tif",
        )
        # the 1 km overlap: columns 500..600 of the source, 640 m of its rows
        x0 = ds.transform.c + 500 * 10.0
        y1 = ds.transform.f - 330 * 10.0
        area = box(x0 + 100, y1 - 640, x0 + 900, y1)
    gpd.GeoDataFrame(geometry=[area], crs="EPSG:32631").to_crs(4326).to_file(
        tmp_path / "test_area.geojson"
    )
    labels = src / "fields_BEFL-s2-fields-2023_polygons.gpkg"
    path = tmp_path / "zones.toml"
    path.write_text(
        'name = "zones"\nclasses = ["field"]\n[imagery]\npaths = ["imagery/*.tif"]\n'
        'bands = ["B08", "B04", "B03"]\nnodata = 0\n'
        f'[labels]\npath = "{labels}"\nlayer = "polygons"\nclass_field = "label_name"\n'
        "[chips]\nsize_px = 64\nstride_px = 64\n"
        "[split]\nblock_size_m = 640\nval_fraction = 0.2\ntest_fraction = 0.05\n"
        'test_within = "test_area.geojson"\n'
        '[model]\nbase = "none"\nsteps = 2\n'
    )
    return path


def _scored_ground(d: Path, rows: gpd.GeoDataFrame, owned: list[np.ndarray]) -> list:
    """Each chip's scored pixels (owned, labelled) as ground in EPSG:32631."""
    out = []
    for row, own in zip(rows.itertuples(), owned, strict=True):
        with rasterio.open(d / row.mask) as m:
            scored = own & (m.read(1) != IGNORE)
            parts = [
                shape(s)
                for s, _ in rasterio.features.shapes(
                    scored.astype("uint8"), mask=scored, transform=m.transform
                )
            ]
            crs = m.crs
        out.append(gpd.GeoSeries(parts, crs=crs).to_crs(32631).union_all())
    return out


def _test_chips(region_file: Path, tmp_path: Path) -> tuple[gpd.GeoDataFrame, np.ndarray]:
    chip_region(load_region(region_file), tmp_path / "chips")
    index = read_chip_index(tmp_path / "chips")
    test = index.frame[index.frame["split"] == "test"]
    assert set(test["scene_crs"]) == {"EPSG:32631", "EPSG:32632"}
    masks = []
    for row in test.itertuples():
        with rasterio.open(tmp_path / "chips" / row.mask) as m:
            masks.append(m.read(1))
    return test, np.stack(masks)


def _twice(parts: list) -> float:
    """Ground (m2) that two of ``parts`` cover."""
    return sum(a.intersection(b).area for i, a in enumerate(parts) for b in parts[i + 1 :])


def test_ground_of_two_zones_is_scored_once(shared_data: Path, tmp_path: Path) -> None:
    test, masks = _test_chips(_two_zones(shared_data, tmp_path), tmp_path)

    whole = _scored_ground(tmp_path / "chips", test, [np.ones_like(m, bool) for m in masks])
    ground = _scored_ground(tmp_path / "chips", test, owned_pixels(test, masks))

    union = shapely.union_all(whole).area
    assert _twice(whole) > 0.2 * union  # the two zones' test chips do share ground
    # each square metre once (pixel centres decide: a few boundary pixels either way)
    assert _twice(ground) < 0.01 * union
    assert shapely.union_all(ground).area > 0.98 * union


def test_passes_of_other_dates_are_each_scored(shared_data: Path, tmp_path: Path) -> None:
    """The same ground in two passes is two images to score, not one tile seen twice."""
    region = _two_zones(shared_data, tmp_path, east_time="20230608T105031")
    test, masks = _test_chips(region, tmp_path)

    owned = owned_pixels(test, masks)

    # only a scene's own edge chips give way, as without footprints
    alone = owned_pixels(pd.DataFrame(test.drop(columns="geometry")), masks)
    assert all((o == a).all() for o, a in zip(owned, alone, strict=True))


def test_chips_without_footprints_keep_their_own_scene_rule() -> None:
    """Rows that are no chip index (no footprints) are de-duplicated within scenes only."""
    rows = pd.DataFrame(
        {
            "scene": ["a", "b"],
            "row_off": [0, 0],
            "col_off": [0, 0],
            "height": [4, 4],
            "width": [4, 4],
        }
    )
    assert [int(m.sum()) for m in owned_pixels(rows)] == [16, 16]
