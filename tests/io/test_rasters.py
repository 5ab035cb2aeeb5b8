from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS

from geotl.errors import RasterError
from geotl.io.rasters import ground_resolution_m, open_raster, read_scene_info

T0 = Affine(0.5, 0, 100, 0, -0.5, 200)


def _write(path: Path, crs: str | None, transform: Affine = T0) -> Path:
    with rasterio.open(
        path, "w", driver="GTiff", width=8, height=4, count=2, dtype="uint16",
        crs=crs, transform=transform, nodata=0,
    ) as dst:  # fmt: skip
        dst.write(np.ones((2, 4, 8), dtype=np.uint16))
    return path


def test_read_scene_info(tmp_path: Path) -> None:
    info = read_scene_info(_write(tmp_path / "s.tif", "EPSG:32616"))
    assert (info.width, info.height, info.count, info.dtype, info.nodata) == (8, 4, 2, "uint16", 0)
    assert info.resolution_m == pytest.approx(0.5)
    assert info.bounds == (100.0, 198.0, 104.0, 200.0)


def test_bounds_of_a_rotated_scene_hold_all_four_corners(tmp_path: Path) -> None:
    """Its bounds came from two opposite corners: a 30-degree grid lost a third of its width."""
    t = T0 @ Affine.rotation(30)
    info = read_scene_info(_write(tmp_path / "rot.tif", "EPSG:32616", t))
    corners = [t @ (c, r) for c in (0, 8) for r in (0, 4)]
    xs, ys = [x for x, _ in corners], [y for _, y in corners]
    assert info.bounds == pytest.approx((min(xs), min(ys), max(xs), max(ys)))
    assert info.bounds[2] - info.bounds[0] == pytest.approx(4 * 0.866 + 2 * 0.5, abs=0.01)


def test_geographic_resolution_in_metres() -> None:
    res = ground_resolution_m(
        CRS.from_epsg(4326), Affine(0.0003, 0, -101, 0, -0.0003, 41.5), 10, 10
    )
    assert res == pytest.approx(29.5, rel=0.05)


def test_errors(tmp_path: Path) -> None:
    with pytest.raises(RasterError, match="raster has no CRS"):
        read_scene_info(_write(tmp_path / "nocrs.tif", None))
    (tmp_path / "bad.tif").write_bytes(b"not a tiff")
    with (
        pytest.raises(RasterError, match=r"bad\.tif: cannot be read as a raster"),
        open_raster(tmp_path / "bad.tif"),
    ):
        pass
    with pytest.raises(RasterError, match="file not found"):
        read_scene_info(tmp_path / "missing.tif")


def test_a_folder_or_a_quoted_pattern_says_so(tmp_path: Path) -> None:
    """`geotl predict MODEL scenes` or `'scenes/*.tif'`: it said "replace the file with a
    valid GeoTIFF" and "file not found"."""
    (tmp_path / "scenes").mkdir()
    _write(tmp_path / "scenes" / "a.tif", "EPSG:32616")
    with (
        pytest.raises(RasterError, match=r"scenes: is a folder, not a raster: give its scenes"),
        open_raster(tmp_path / "scenes"),
    ):
        pass
    with (
        pytest.raises(RasterError, match=r"\*\.tif: no such file, and geotl does not expand"),
        open_raster(tmp_path / "scenes" / "*.tif"),
    ):
        pass


def test_a_zip_archive_names_the_raster_in_it(tmp_path: Path) -> None:
    """A downloaded NAIP/Landsat zip passed as is: "replace the file with a valid GeoTIFF"."""
    import zipfile

    tif = _write(tmp_path / "scene.tif", "EPSG:32616")
    with zipfile.ZipFile(tmp_path / "dl.zip", "w") as zf:
        zf.write(tif, "scene.tif")
    with (
        pytest.raises(
            RasterError,
            match=r"dl\.zip: is a zip archive, not a raster: give the "
            r"raster in it as /vsizip/.*dl\.zip/scene\.tif",
        ),
        open_raster(tmp_path / "dl.zip"),
    ):
        pass
    with open_raster(f"/vsizip/{tmp_path / 'dl.zip'}/scene.tif") as ds:
        assert ds.count == 2
