"""A scene of one file per band (Landsat C2 ``..._SR_B4.TIF``) stacked with gdalbuildvrt -separate.

``gdalbuildvrt -separate`` writes no band descriptions, so the VRT named none of its bands:
prediction assumed the model's order (a warning) and a stack built in another order gave
wrong polygons, and chipping took ``[imagery] bands`` on trust. The bands now take the
names their sources give (description, else the band id that ends the file name).
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import rasterio
from chips.data import write_boxes, write_region

from geotl.chips import chip_region
from geotl.config import load_region
from geotl.errors import BandMismatchError
from geotl.io.band_names import _source_name
from geotl.io.rasters import read_scene_info
from geotl.predict import PredictOptions
from geotl.predict.core import predict_scene, predict_scenes

from . import data

PASS = "LC09_L2SP_016035_20230501_20230503_02_T1"


def _band_files(folder: Path, shared_data: Path, descriptions: bool = False) -> dict[str, Path]:
    """Real Landsat values (NC, bands 1-3) in one file per band; red holds the blobs."""
    folder.mkdir(parents=True, exist_ok=True)
    red = data.blobs(120, 160)
    files: dict[str, Path] = {}
    for band, number in (("SR_B2", 10), ("SR_B3", 20), ("SR_B4", 30)):
        with rasterio.open(shared_data / f"nc-landsat-landcover/lsat7_2000_{number}.tif") as src:
            real = src.read(1, window=((100, 220), (100, 260))).clip(1, 100).astype(np.uint8)
        values = np.where(red > 100, red, real) if band == "SR_B4" else real
        name = f"{'band' + band[-1] if descriptions else PASS + '_' + band}.TIF"
        path = data.write_bands(folder / name, values[None], nodata=0)
        if descriptions:
            with rasterio.open(path, "r+") as ds:
                ds.set_band_description(1, band)
        files[band] = path
    return files


def _vrt(path: Path, sources: list[Path]) -> Path:
    """What ``gdalbuildvrt -separate`` writes: one source per band, no descriptions."""
    with rasterio.open(sources[0]) as ds:
        w, h, crs, transform = ds.width, ds.height, ds.crs, ds.transform
    bands = "".join(
        f'<VRTRasterBand dataType="Byte" band="{i}"><NoDataValue>0</NoDataValue>'
        f'<ComplexSource><SourceFilename relativeToVRT="1">{src.name}</SourceFilename>'
        f'<SourceBand>1</SourceBand><SrcRect xOff="0" yOff="0" xSize="{w}" ySize="{h}"/>'
        f'<DstRect xOff="0" yOff="0" xSize="{w}" ySize="{h}"/><NODATA>0</NODATA>'
        "</ComplexSource></VRTRasterBand>"
        for i, src in enumerate(sources, start=1)
    )
    geo = ", ".join(repr(v) for v in transform.to_gdal())
    path.write_text(
        f'<VRTDataset rasterXSize="{w}" rasterYSize="{h}"><SRS>{crs.to_wkt()}</SRS>'
        f"<GeoTransform>{geo}</GeoTransform>{bands}</VRTDataset>"
    )
    return path


def test_a_stack_is_named_by_its_band_files(tmp_path: Path, shared_data: Path) -> None:
    files = _band_files(tmp_path, shared_data)
    vrt = _vrt(tmp_path / f"{PASS}.vrt", [files["SR_B4"], files["SR_B3"], files["SR_B2"]])
    assert read_scene_info(vrt).descriptions == ("SR_B4", "SR_B3", "SR_B2")
    # by the sources' own descriptions when their file names say nothing
    described = _band_files(tmp_path / "described", shared_data, descriptions=True)
    vrt = _vrt(tmp_path / "described/s.vrt", [described["SR_B3"], described["SR_B2"]])
    assert read_scene_info(vrt).descriptions == ("SR_B3", "SR_B2")
    # one band unnamed: the stack names none (no half-guessed order)
    plain = data.write_bands(tmp_path / "described/extra.tif", np.ones((1, 120, 160), np.uint8))
    vrt = _vrt(tmp_path / "described/part.vrt", [described["SR_B3"], plain])
    assert read_scene_info(vrt).descriptions == (None, None)


def test_a_stack_in_another_order_predicts_by_name(
    tmp_path: Path, shared_data: Path, caplog: pytest.LogCaptureFixture
) -> None:
    files = _band_files(tmp_path, shared_data)
    model = data.threshold_artefact(["red", "green", "blue"])  # band 0 (red) above its mean
    opts = PredictOptions(window_px=64, progress=False)
    right = predict_scene(
        model, _vrt(tmp_path / "right.vrt", [files[b] for b in ("SR_B4", "SR_B3", "SR_B2")]), opts
    )
    with caplog.at_level(logging.WARNING):
        other = predict_scene(
            model,
            _vrt(tmp_path / "other.vrt", [files[b] for b in ("SR_B2", "SR_B3", "SR_B4")]),
            opts,
        )
    assert len(right.native) >= 3
    assert sorted(other.native.geometry.to_wkt()) == sorted(right.native.geometry.to_wkt())
    assert "does not name its bands" not in caplog.text


def test_chipping_refuses_a_stack_in_another_order_than_the_region(
    tmp_path: Path, shared_data: Path
) -> None:
    files = _band_files(tmp_path, shared_data)
    _vrt(tmp_path / f"{PASS}.vrt", [files[b] for b in ("SR_B4", "SR_B3", "SR_B2")])
    with rasterio.open(files["SR_B4"]) as ds:
        left, top = ds.bounds.left, ds.bounds.top
    write_boxes(tmp_path / "l.gpkg", [(left + 1, top - 5, left + 5, top - 1)], crs="EPSG:32617")
    region = write_region(
        tmp_path / "r.toml",
        [f"{PASS}.vrt"],
        "l.gpkg",
        imagery={"bands": ["SR_B2", "SR_B3", "SR_B4"]},
    )
    with pytest.raises(BandMismatchError, match=r"say \['red', 'green', 'blue'\]"):
        chip_region(load_region(region), tmp_path / "chips")


def test_remote_sources_are_not_named_by_their_url(tmp_path: Path) -> None:
    # a STAC item's assets: [monitor] assets names them (checked against eo:bands), and a
    # name guessed from the URL would refuse a region that calls Landsat's SR_B5 "nir"
    source = ET.fromstring(
        '<ComplexSource><SourceFilename relativeToVRT="0">'
        "/vsicurl/http://127.0.0.1:9/LC09_SR_B5.TIF</SourceFilename>"
        "<SourceBand>1</SourceBand></ComplexSource>"
    )
    assert _source_name(source, tmp_path) is None


def test_one_file_per_band_given_as_scenes_says_to_stack_them(
    tmp_path: Path, shared_data: Path
) -> None:
    # was: "no scene could be predicted" (exit 1) repeating the band advice for every file,
    # none of it saying that the files are one scene
    files = _band_files(tmp_path / "bands", shared_data)
    data.write_constant_model(tmp_path / "model", ["red", "green", "blue"])
    with pytest.raises(BandMismatchError) as err:
        predict_scenes(
            tmp_path / "model",
            sorted(files.values()),
            tmp_path / "out.geojson",
            options=PredictOptions(progress=False),
        )
    assert err.value.exit_code == 2
    assert "3 files of one band each" in err.value.message
    assert "gdalbuildvrt -separate" in err.value.message
    assert err.value.message.count("gdalbuildvrt") == 1
    assert not (tmp_path / "out.geojson").exists()
