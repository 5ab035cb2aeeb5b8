"""Tiles of one acquisition predicted together: an object in their overlap is kept once.

Found driving two Sentinel-2 tiles across the UTM zone 31/32 boundary (EPSG:32631 and
EPSG:32632, 3 km of shared ground) through ``geotl predict`` into one GeoJSON: 276 of the
1,220 fields came out twice, once per tile. Here the objects are the real field polygons
of Flanders (s2-fields-flanders), cut by each tile's outline as a tile's prediction is.
"""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import shapely
from shapely.geometry import box

from geotl.predict.core import COLUMNS, SceneDetections
from geotl.predict.tiles import drop_tile_overlaps

FLANDERS = "s2-fields-flanders"
ACQUIRED = "2023-06-01T10:50:31+00:00"


def _fields(shared_data: Path) -> gpd.GeoDataFrame:
    path = shared_data / FLANDERS / "fields_BEFL-s2-fields-2023_polygons.gpkg"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    g = gpd.read_file(path, layer="polygons")
    return g[~g.geometry.is_empty & g.geometry.notna()].reset_index(drop=True)


def _tile(
    fields: gpd.GeoDataFrame, outline: shapely.Polygon, crs: str, name: str, acquired: str
) -> SceneDetections:
    """The fields a tile with ``outline`` (EPSG:32631) sees, cut by its edge, in ``crs``."""
    cut = fields.clip(outline)
    cut = cut[cut.geometry.area > 0].explode(index_parts=False).reset_index(drop=True)
    native = gpd.GeoDataFrame(
        {
            "id": [f"{name}-{i}" for i in range(len(cut))],
            "class": "field",
            "score": 0.9,
            "area_m2": cut.geometry.area.to_numpy(),
            "scene": name,
            "acquired": acquired,
            "model": "m",
        },
        geometry=cut.geometry.values,
        crs=fields.crs,
    ).to_crs(crs)
    footprint = gpd.GeoSeries([outline], crs=fields.crs).to_crs(4326).iloc[0]
    return SceneDetections(
        scene=Path(name),
        name=name,
        features=native.to_crs(4326)[[*COLUMNS, "geometry"]],
        native=native,
        footprint=footprint,
        rgb_indexes=[1, 2, 3],
    )


def _two_zones(shared_data: Path, acquired: str) -> tuple[gpd.GeoDataFrame, list]:
    fields = _fields(shared_data)
    x0, y0, x1, y1 = fields.total_bounds
    mid = float(np.median(fields.geometry.centroid.x))  # the boundary among the fields
    west = box(x0 - 10, y0 - 10, mid + 1500, y1 + 10)  # 3 km shared with the east tile
    east = box(mid - 1500, y0 - 10, x1 + 10, y1 + 10)
    return fields, [
        _tile(fields, west, "EPSG:32631", "T31UGS.tif", acquired),
        _tile(fields, east, "EPSG:32632", "T32ULB.tif", acquired),
    ]


def _copies(fields: gpd.GeoDataFrame, kept: list[SceneDetections]) -> np.ndarray:
    """Per field, how many kept objects cover at least half of it."""
    objs = np.concatenate([d.features.to_crs(fields.crs).geometry.values for d in kept])
    tree = shapely.STRtree(objs)
    out = []
    for g in fields.geometry.values:
        near = tree.query(g, predicate="intersects")
        out.append(sum(shapely.intersection(g, objs[j]).area >= 0.5 * g.area for j in near))
    return np.asarray(out)


def test_fields_in_the_overlap_of_two_zones_are_kept_once(shared_data: Path) -> None:
    fields, tiles = _two_zones(shared_data, ACQUIRED)
    before = _copies(fields, tiles)
    assert (before == 2).sum() > 10  # the overlap does hold fields seen by both tiles

    kept = drop_tile_overlaps(tiles)

    after = _copies(fields, kept)
    assert (after == 1).all(), np.bincount(after)
    # each tile keeps the fields of its own side; the kept objects are its own, unchanged
    for t, k in zip(tiles, kept, strict=True):
        assert 0 < len(k.features) < len(t.features)
        assert set(k.native["id"]) == set(k.features["id"]) <= set(t.features["id"])


@pytest.mark.parametrize("acquired", ["2023-06-01", None])
def test_passes_known_by_their_day_alone_stay_apart(
    shared_data: Path, acquired: str | None
) -> None:
    """Two passes of one day (Sentinel-1A and 1B) are not tiles of one acquisition."""
    _, tiles = _two_zones(shared_data, acquired or "")
    if acquired is None:
        for t in tiles:
            t.features["acquired"] = None
    kept = drop_tile_overlaps(tiles)
    assert [len(k.features) for k in kept] == [len(t.features) for t in tiles]


def _warp_crop(src: Path, out: Path, cols: tuple[int, int], crs: str | None) -> Path:
    """Columns ``cols`` of ``src``, as they are or warped into ``crs`` (same pixel size)."""
    import rasterio
    from rasterio.warp import Resampling, calculate_default_transform, reproject
    from rasterio.windows import Window

    with rasterio.open(src) as ds:
        win = Window(cols[0], 0, cols[1] - cols[0], ds.height)
        pixels, tf = ds.read(window=win), ds.window_transform(win)
        profile = {**ds.profile, "width": win.width, "height": win.height, "transform": tf}
        if crs is not None:
            bounds = rasterio.windows.bounds(win, ds.transform)
            tf, w, h = calculate_default_transform(
                ds.crs, crs, win.width, win.height, *bounds, resolution=ds.res[0]
            )
            warped = np.full((ds.count, h, w), 255, dtype=pixels.dtype)
            reproject(
                pixels,
                warped,
                src_transform=profile["transform"],
                src_crs=ds.crs,
                dst_transform=tf,
                dst_crs=crs,
                resampling=Resampling.bilinear,
                src_nodata=255,
                dst_nodata=255,
            )
            pixels = warped
            profile.update(crs=crs, transform=tf, width=w, height=h, nodata=255)
    for k in ("blockxsize", "blockysize", "tiled"):
        profile.pop(k, None)
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(pixels)
    return out


def test_predict_two_zone_tiles_into_one_geojson(demo_model: Path, tmp_path: Path) -> None:
    """The demo plot as two tiles of one acquisition, 12 m shared, in UTM 17N and 18N."""
    from geotl.predict import predict_scenes

    plot = Path(__file__).parents[2] / "regions" / "demo-osbs" / "imagery" / "OSBS_029.tif"
    west = _warp_crop(plot, tmp_path / "OSBS_T17_20230601T105031.tif", (0, 260), None)
    east = _warp_crop(plot, tmp_path / "OSBS_T18_20230601T105031.tif", (140, 400), "EPSG:32618")

    predict_scenes(demo_model, [west, east], tmp_path / "crowns.geojson")

    got = gpd.read_file(tmp_path / "crowns.geojson").to_crs("EPSG:32617")
    assert set(got["scene"]) == {west.name, east.name}
    a, b = (got[got["scene"] == s].geometry.values for s in (west.name, east.name))
    left, right = shapely.STRtree(b).query(a, predicate="intersects")
    twice = [
        (i, j)
        for i, j in zip(left.tolist(), right.tolist(), strict=True)
        if shapely.intersection(a[i], b[j]).area >= 0.5 * min(a[i].area, b[j].area)
    ]
    assert not twice
