"""Labels in RFC 7946 longitudes (-180..180) on a scene that counts longitudes past 180.

GDAL's warp of a scene across the antimeridian to EPSG:4326 writes longitudes 179.9..180.1;
labels drawn in QGIS or taken from geotl's own GeoJSON are cut at 180 and lie west of it at
-180..-179.9. The real NEON HARV plot is placed across the line (its pixels kept, its grid
in degrees) with its crowns moved alike: the chips must hold the same objects and object
pixels whether the labels come continuous (as the scene counts) or cut at the line.
"""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
import shapely
from affine import Affine
from rasterio.transform import from_origin
from shapely.geometry import box

from geotl.chips import chip_region, read_chip_index
from geotl.config import load_region

from .data import write_region

LAT = -17.0  # Fiji
SIZE_M = 0.1


def _place(shared_data: Path, folder: Path) -> tuple[Affine, Affine]:
    """HARV_022 on a degree grid centred on longitude 180; returns (UTM grid, degree grid)."""
    src_path = shared_data / "neon-trees" / "HARV" / "images" / "HARV_022.tif"
    with rasterio.open(src_path) as src:
        profile, data, utm = src.profile, src.read(), src.transform
    dy = SIZE_M / 110_700.0
    dx = SIZE_M / (111_320.0 * np.cos(np.radians(LAT)))
    deg = from_origin(180.0 - profile["width"] * dx / 2, LAT, dx, dy)
    profile.update(crs="EPSG:4326", transform=deg)
    folder.mkdir()
    with rasterio.open(folder / "HARV_022.tif", "w", **profile) as dst:
        dst.write(data)
    return utm, deg


def _crowns(shared_data: Path, utm: Affine, deg: Affine) -> gpd.GeoDataFrame:
    crowns = gpd.read_file(shared_data / "neon-trees" / "HARV" / "HARV_tree_crowns.geojson")
    crowns = crowns[crowns["image"] == "HARV_022.tif"].reset_index(drop=True)
    to_deg = deg @ ~utm

    def move(xy: np.ndarray) -> np.ndarray:
        x, y = to_deg @ (xy[:, 0], xy[:, 1])
        return np.column_stack([x, y])

    crowns["label"] = "Tree"
    crowns["geometry"] = shapely.transform(crowns.geometry.values, move)
    return crowns.set_crs("EPSG:4326", allow_override=True)[["label", "geometry"]]


def _cut_at_180(geom: shapely.Geometry) -> shapely.Geometry:
    """RFC 7946: the part east of 180 moved by a turn to -180..; the object a MultiPolygon."""
    west = shapely.intersection(geom, box(0, -90, 180, 90))
    east = shapely.intersection(geom, box(180, -90, 360, 90))
    if east.is_empty:
        return geom
    east = shapely.transform(east, lambda xy: xy - np.array([360.0, 0.0]))
    return east if west.is_empty else shapely.multipolygons([west, east])


def _chip(tmp_path: Path, shared_data: Path, name: str, cut: bool) -> dict[str, object]:
    folder = tmp_path / name
    utm, deg = _place(shared_data, folder)
    crowns = _crowns(shared_data, utm, deg)
    if cut:
        crowns["geometry"] = [_cut_at_180(g) for g in crowns.geometry]
    crowns.to_file(folder / "labels.geojson")
    region = write_region(
        folder / "region.toml",
        ["HARV_022.tif"],
        "labels.geojson",
        chips={"size_px": 100, "stride_px": 100},
        split={"block_size_m": 10.0, "val_fraction": 0.0, "test_fraction": 0.0},
    )
    summary = chip_region(load_region(region), folder / "chips")
    frame = read_chip_index(folder / "chips").frame
    return {
        "objects": summary.n_objects,
        "cut": int(sum(g.geom_type == "MultiPolygon" for g in crowns.geometry)),
        "pixels": int(frame["px_tree"].sum()),
    }


def test_labels_cut_at_the_antimeridian_reach_a_scene_past_180(
    tmp_path: Path, shared_data: Path
) -> None:
    continuous = _chip(tmp_path, shared_data, "continuous", cut=False)
    cut = _chip(tmp_path, shared_data, "cut", cut=True)
    assert cut["cut"] and cut["cut"] > 0  # some crowns straddle the line
    assert continuous["objects"] == cut["objects"] > 3
    # the same pixels, up to a pixel's rounding along the cut
    assert abs(int(cut["pixels"]) - int(continuous["pixels"])) <= 0.01 * int(continuous["pixels"])


def test_labels_in_a_scene_within_180_keep_their_place(tmp_path: Path, shared_data: Path) -> None:
    """A region far from the line reads its labels as they are."""
    from geotl.io.vectors import shift_longitudes

    crowns = gpd.read_file(shared_data / "neon-trees" / "HARV" / "HARV_tree_crowns.geojson")
    lonlat = crowns.to_crs("EPSG:4326")
    moved = shift_longitudes(lonlat, -72.2)
    assert moved.geometry.equals(lonlat.geometry)
    assert shift_longitudes(crowns, 0.0) is crowns  # a projected CRS: untouched
