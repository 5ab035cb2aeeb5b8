"""Scenes georeferenced otherwise than the model's chips: feet, rotation, GCPs, RPCs, local grids.

Found driving ``geotl predict`` on a real NEON plot (OSBS_022, 0.1 m, UTM 17N) given other
georeferencing. Feet (US survey and international) and a rotated geotransform were already
right: the same pixels give the same objects, their areas in m2. These were not:

- a scene placed only by GCPs (a raw, unorthorectified product) was told "raster has no
  CRS: assign one (gdal_edit.py -a_srs ...)", which cannot help it; an RPC-only one too;
- a scene in a local (engineering) CRS in feet was read as 0.328 m pixels ("pass
  --resample"), and one in metres ended in a pyproj traceback (exit 1);
- a state-plane scene in feet at 0.2 m was told to "use imagery at the model's resolution"
  (0.1 m): ``gdalwarp -tr 0.1`` there gives 3 cm pixels. The fix now names ``-tr`` in feet.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from affine import Affine
from rasterio.control import GroundControlPoint
from rasterio.crs import CRS
from rasterio.errors import NotGeoreferencedWarning
from rasterio.rpc import RPC

from geotl.errors import RasterError, ResolutionError
from geotl.io.rasters import read_scene_info
from geotl.models.artefact import Artefact, write_artefact
from geotl.predict import PredictOptions, predict_scene

from . import data

US_FOOT = 1200 / 3937  # metres
FOOT = 0.3048


@pytest.fixture(scope="module")
def plot(shared_data: Path) -> tuple[np.ndarray, dict[str, object]]:
    """The real NEON plot's pixels and profile (0.1 m, EPSG:32617)."""
    with rasterio.open(shared_data / "neon-trees" / "OSBS" / "images" / "OSBS_022.tif") as ds:
        return ds.read(), dict(ds.profile)


def _model(pixels: np.ndarray) -> Artefact:
    """The pointwise threshold model: windows cannot change its objects, only the grid can."""
    art = data.threshold_artefact(["red", "green", "blue"], resolution_m=0.1)
    norm = art.card.normalisation.model_copy(
        update={"mean": [float(np.median(pixels[0])) + 0.5] * 3, "std": [30.0] * 3}
    )
    art.card = art.card.model_copy(update={"normalisation": norm, "pixel_aspect": 1.0})
    return art


def _write(path: Path, plot: tuple[np.ndarray, dict[str, object]], **profile: object) -> Path:
    pixels, base = plot
    base = {k: v for k, v in base.items() if k not in ("blockxsize", "blockysize", "tiled")}
    with rasterio.open(path, "w", **{**base, **profile}) as ds:
        ds.write(pixels)
    return path


def _objects_in_pixels(scene: Path, art: Artefact, min_area_m2: float = 0.0):  # type: ignore[no-untyped-def]
    det = predict_scene(
        art, scene, PredictOptions(min_area_m2=min_area_m2, simplify_px=0, progress=False)
    )
    with rasterio.open(scene) as ds:
        inv = ~ds.transform
        native = det.native.to_crs(ds.crs)
    matrix = [inv.a, inv.b, inv.d, inv.e, inv.xoff, inv.yoff]
    shapes = [shapely.affinity.affine_transform(g, matrix) for g in native.geometry]
    return shapely.union_all(shapes), len(shapes), float(det.features["area_m2"].sum())


def test_feet_and_rotation_give_the_same_objects_in_m2(
    plot: tuple[np.ndarray, dict[str, object]], tmp_path: Path
) -> None:
    """The same pixels in NC/FL state plane (US feet), Arizona (international feet), and a
    grid rotated by 30 degrees: the same objects, ``min_area`` and ``area_m2`` in metres."""
    art = _model(plot[0])
    t = plot[1]["transform"]
    assert isinstance(t, Affine)
    scenes = {
        "utm": _write(tmp_path / "utm.tif", plot),
        "us_feet": _write(
            tmp_path / "fl_east_ftus.tif",
            plot,
            crs=CRS.from_epsg(2236),
            transform=Affine(0.1 / US_FOOT, 0, 650_000, 0, -0.1 / US_FOOT, 1_650_000),
        ),
        "feet": _write(
            tmp_path / "az_east_ft.tif",
            plot,
            crs=CRS.from_epsg(2222),
            transform=Affine(0.1 / FOOT, 0, 700_000, 0, -0.1 / FOOT, 1_500_000),
        ),
        "rotated": _write(tmp_path / "rot30.tif", plot, transform=t @ Affine.rotation(30)),
    }
    ref, n_ref, area_ref = _objects_in_pixels(scenes["utm"], art, min_area_m2=1.0)
    kept_all = _objects_in_pixels(scenes["utm"], art)[1]
    assert 20 < n_ref < kept_all  # 1 m2 (100 px at 0.1 m) drops some objects
    for name in ("us_feet", "feet", "rotated"):
        got, n, area = _objects_in_pixels(scenes[name], art, min_area_m2=1.0)
        assert n == n_ref, name  # 1 m2 read as 1 ft2 would keep 9-px specks
        assert got.symmetric_difference(ref).area < 1e-6 * ref.area, name
        assert area == pytest.approx(area_ref, rel=0.005), name  # the projections' scale


def test_a_gcp_only_scene_is_told_to_orthorectify(
    plot: tuple[np.ndarray, dict[str, object]], tmp_path: Path
) -> None:
    """It was told to assign a CRS (gdal_edit.py -a_srs), which leaves it without a grid."""
    t = plot[1]["transform"]
    assert isinstance(t, Affine)
    gcps = [
        GroundControlPoint(row=r, col=c, x=(t @ (c, r))[0], y=(t @ (c, r))[1])
        for r, c in ((0, 0), (0, 400), (400, 0), (400, 400), (200, 200))
    ]
    scene = tmp_path / "raw_gcps.tif"
    profile = {k: v for k, v in plot[1].items() if k not in ("crs", "transform")}
    with (
        pytest.warns(NotGeoreferencedWarning),
        rasterio.open(scene, "w", **profile) as ds,  # type: ignore[arg-type]
    ):
        ds.write(plot[0])
        ds.gcps = (gcps, plot[1]["crs"])
    with pytest.raises(
        RasterError,
        match=r"raw_gcps\.tif: placed only by 5 ground control points.*unorthorectified.*"
        r"gdalwarp -t_srs EPSG:32617 FILE OUT\.tif",
    ):
        predict_scene(_model(plot[0]), scene, PredictOptions(progress=False))


def test_an_rpc_only_scene_is_told_to_orthorectify_with_its_rpcs(
    plot: tuple[np.ndarray, dict[str, object]], tmp_path: Path
) -> None:
    scene = tmp_path / "raw_rpcs.tif"
    profile = {k: v for k, v in plot[1].items() if k not in ("crs", "transform")}
    one, zeros = [1.0] + [0.0] * 19, [0.0] * 20
    rpcs = RPC(
        height_off=30, height_scale=100, lat_off=29.69, lat_scale=0.001,
        long_off=-81.96, long_scale=0.001, line_off=200, line_scale=200,
        samp_off=200, samp_scale=200, line_den_coeff=one, samp_den_coeff=one,
        line_num_coeff=[0.0, 0.0, -1.0, *zeros[3:]], samp_num_coeff=[0.0, 1.0, *zeros[2:]],
    )  # fmt: skip
    with (
        pytest.warns(NotGeoreferencedWarning),
        rasterio.open(scene, "w", **profile) as ds,  # type: ignore[arg-type]
    ):
        ds.write(plot[0])
        ds.rpcs = rpcs
    with pytest.raises(RasterError, match=r"placed only by RPCs.*gdalwarp -rpc -t_srs EPSG:32617"):
        predict_scene(_model(plot[0]), scene, PredictOptions(progress=False))


@pytest.mark.parametrize(
    ("unit", "size"), [('"US survey foot",0.304800609601219', 0.328), ('"metre",1', 0.1)]
)
def test_a_local_grid_is_refused_by_name(
    plot: tuple[np.ndarray, dict[str, object]], tmp_path: Path, unit: str, size: float
) -> None:
    """Feet were read as metres ("0.328 m ... pass --resample"); metres ended in a traceback."""
    crs = CRS.from_wkt(f'LOCAL_CS["site grid",UNIT[{unit}],AXIS["E",EAST],AXIS["N",NORTH]]')
    scene = _write(
        tmp_path / "site.tif", plot, crs=crs, transform=Affine(size, 0, 1000, 0, -size, 5000)
    )
    with pytest.raises(RasterError, match=r"site\.tif: its CRS \(site grid\) is a local grid"):
        predict_scene(_model(plot[0]), scene, PredictOptions(progress=False))
    with pytest.raises(RasterError, match="local grid"):  # geotl chip: a traceback too
        read_scene_info(scene)


def test_a_coarser_scene_in_feet_is_told_the_warp_in_feet(
    plot: tuple[np.ndarray, dict[str, object]], tmp_path: Path
) -> None:
    """ "use imagery at the model's resolution" (0.1 m): ``-tr 0.1`` in feet is 3 cm."""
    pixels = plot[0][:, ::2, ::2]
    scene = _write(
        tmp_path / "fl_east_0.2m.tif",
        (pixels, plot[1]),
        width=200,
        height=200,
        crs=CRS.from_epsg(2236),
        transform=Affine(0.2 / US_FOOT, 0, 650_000, 0, -0.2 / US_FOOT, 1_650_000),
    )
    with pytest.raises(
        ResolutionError,
        match=r"0\.2 m differs from the model's 0\.1 m: pass --resample .*"
        r"gdalwarp -tr 0\.3281 0\.3281 -r bilinear FILE OUT\.tif; in its CRS's unit, the US "
        r"survey foot",
    ):
        predict_scene(_model(plot[0]), scene, PredictOptions(progress=False))


def test_cli_refuses_a_local_grid_in_one_line(
    plot: tuple[np.ndarray, dict[str, object]], tmp_path: Path
) -> None:
    """Exit 1 and a pyproj traceback ("Error creating Transformer from CRS") before."""
    crs = CRS.from_wkt('LOCAL_CS["site grid",UNIT["metre",1],AXIS["E",EAST],AXIS["N",NORTH]]')
    scene = _write(tmp_path / "site.tif", plot, crs=crs, transform=Affine(0.1, 0, 0, 0, -0.1, 50))
    model = tmp_path / "model"
    art = _model(plot[0])
    write_artefact(model, data.BandThreshold().eval(), art.card)
    out = tmp_path / "o.geojson"
    proc = subprocess.run(
        [sys.executable, "-m", "geotl", "predict", str(model), str(scene), "-o", str(out)],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""},
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.strip().splitlines() if "error" in ln]
    assert len(lines) == 1 and "local grid" in lines[0], proc.stderr
    assert not out.exists()
