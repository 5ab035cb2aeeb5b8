"""Prediction leaves out the pixels chips leave out: one rule for which pixels hold data.

GDAL's masks are read only where they say more than the nodata value (an alpha band, an
internal mask, nodata values per band: :func:`geotl.io.rasters.mask_bands`), as chips
read them. The probabilities GeoTIFF (nodata -1) shows which pixels prediction used.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from geotl.io.rasters import read_scene_info, read_valid
from geotl.models.artefact import Artefact
from geotl.predict import PredictOptions, predict_scene

from . import data


def _used(art: Artefact, path: Path, tmp_path: Path, nodata: float | None = None) -> np.ndarray:
    """The pixels whose probabilities prediction wrote (not its nodata, -1)."""
    out = tmp_path / "p.tif"
    options = PredictOptions(window_px=64, probabilities_path=out, progress=False, nodata=nodata)
    predict_scene(art, path, options)
    with rasterio.open(out) as ds:
        return np.asarray(ds.read(1) != -1)


def _chips_valid(path: Path, bands: int, nodata: float | None = None) -> np.ndarray:
    """The pixels chips count as data, for a region that lists ``bands`` bands."""
    info = read_scene_info(path, bands_expected=bands)
    with rasterio.open(path) as ds:
        window = rasterio.windows.Window(0, 0, ds.width, ds.height)
        _, valid = read_valid(ds, info.band_indexes, info.mask_bands, window, nodata)
    return valid


def test_a_near_infrared_band_gdal_tags_alpha_is_data(tmp_path: Path) -> None:
    # a NAIP tile without a nodata value: GDAL tags band 4 alpha and masks every band with
    # it, yet a 4-band model reads it as the near infrared: its zeros are dark water, data
    band0 = data.blobs(96, 96)
    bands = np.stack([band0, np.full_like(band0, 100), np.full_like(band0, 90), band0 // 2])
    bands[3, 10:30, 40:70] = 0
    path = data.write_bands(tmp_path / "naip.tif", bands)
    with rasterio.open(path) as ds:
        assert rasterio.enums.MaskFlags.alpha in ds.mask_flag_enums[0]  # GDAL would mask
        assert not ds.read_masks(1)[10:30, 40:70].any()
    art = data.threshold_artefact(bands=["red", "green", "blue", "nir"])
    used = _used(art, path, tmp_path)
    assert used.all()
    assert np.array_equal(used, _chips_valid(path, 4))


def test_an_alpha_band_and_an_internal_mask_hide_pixels(tmp_path: Path) -> None:
    band0 = data.blobs(96, 96)
    rgb = np.stack([band0, np.full_like(band0, 100), np.full_like(band0, 90)])
    hidden = np.zeros((96, 96), dtype=bool)
    hidden[:20, :33] = True
    hidden[60:, 70:] = True
    alpha = np.where(hidden, 0, 255).astype(np.uint8)
    rgba = data.write_bands(
        tmp_path / "rgba_alpha.tif",
        np.concatenate([rgb, alpha[None]]),
        photometric="RGB",
        alpha="YES",
    )
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
        masked = data.write_bands(tmp_path / "masked.tif", rgb)
        with rasterio.open(masked, "r+") as ds:
            ds.write_mask(alpha)
    art = data.threshold_artefact()
    for path in (rgba, masked):
        used = _used(art, path, tmp_path)
        assert np.array_equal(used, ~hidden), path.name
        assert np.array_equal(used, _chips_valid(path, 3)), path.name


def test_the_region_nodata_value_over_the_files_own(tmp_path: Path) -> None:
    # a file that states 0 as its nodata value wrongly (the region says 255): its black
    # pixels are data, its 255 pixels are not, in chips and in prediction alike
    band0 = data.blobs(96, 96)
    rgb = np.stack([band0, np.full_like(band0, 100), np.full_like(band0, 90)])
    rgb[:, 5:15, 5:50] = 0
    rgb[:, 70:80, 20:60] = 255
    path = data.write_bands(tmp_path / "wrong.tif", rgb, nodata=0)
    used = _used(data.threshold_artefact(), path, tmp_path, nodata=255)
    assert used[5:15, 5:50].all() and not used[70:80, 20:60].any()
    assert int((~used).sum()) == 10 * 40
    assert np.array_equal(used, _chips_valid(path, 3, nodata=255))


@pytest.mark.parametrize("dtype", ["uint8", "int16", "float32"])
def test_normalise_is_the_formula_to_the_bit(dtype: str) -> None:
    art = data.threshold_artefact()
    rng = np.random.default_rng(1)
    raw = rng.integers(0, 250, (3, 17, 23)).astype(dtype)
    mean = np.float32(data.MEAN)
    std = np.float32(data.STD)
    want = (raw.astype(np.float32) - mean) / std
    got = art.normalise(raw)
    assert got.dtype == np.float32 and np.array_equal(got, want)
    assert not np.shares_memory(got, raw)


def test_a_stack_with_a_region_nodata_value_keeps_its_bands_own(tmp_path: Path) -> None:
    # gdalbuildvrt -separate over files with nodata values of their own, and a region that
    # names one more ([imagery] nodata = 7): a pixel a band lacks, or that every band holds
    # as 7, has no data, in chips and in prediction alike
    from chips.data import write_stack

    bright = np.full((64, 64), 250.0, dtype=np.float32)
    bright[40:50, 10:20] = 7.0
    other = np.full((64, 64), 7, dtype=np.int16)
    other[:, 50:] = -32768  # this band has no value on the right
    path = write_stack(
        tmp_path / "stack.vrt", [(bright, -99999), (other, -32768)], data.UTM17, data.ORIGIN
    )
    used = _used(data.threshold_artefact(["red", "nir"]), path, tmp_path, nodata=7)
    assert not used[:, 50:].any() and not used[40:50, 10:20].any()
    assert int((~used).sum()) == 64 * 14 + 100
    assert np.array_equal(used, _chips_valid(path, 2, nodata=7))


def test_pictures_show_the_pixels_prediction_used(tmp_path: Path) -> None:
    # quicklooks and suggest's thumbnails read a scene by prediction's rule: a black collar
    # the region names ([imagery] nodata = 0, the file has no value) is drawn transparent,
    # and a NAIP tile's near infrared, which GDAL tags alpha, hides no pixel
    from matplotlib.image import imread
    from rasterio.windows import Window

    from geotl.predict.outputs.quicklook import write_quicklook

    band0 = data.blobs(96, 96)
    rgb = np.stack([band0, np.full_like(band0, 100), np.full_like(band0, 90)])
    rgb[:, :, :12] = 0  # the collar
    collar = data.write_bands(tmp_path / "collar.tif", rgb)
    naip_bands = np.concatenate([rgb, (band0 // 2)[None]])
    naip_bands[:, :, :12] = 60
    naip_bands[3, 10:30, 40:70] = 0
    naip = data.write_bands(tmp_path / "naip.tif", naip_bands)
    cases = [
        (collar, data.threshold_artefact(), 0.0),
        (naip, data.threshold_artefact(bands=["red", "green", "blue", "nir"]), None),
    ]
    pngs = {}
    for path, art, nodata in cases:
        used = _used(art, path, tmp_path, nodata=nodata)
        assert used[:, :12].any() == (nodata is None), path.name
        det = predict_scene(art, path, PredictOptions(window_px=64, progress=False, nodata=nodata))
        with rasterio.open(path) as ds:
            _, valid = det.picture.read(ds, Window(0, 0, 96, 96), (96, 96))
        assert np.array_equal(valid, used), path.name
        for shown in (nodata, None):
            png = tmp_path / f"{path.stem}_{shown}.png"
            write_quicklook(
                png, path, det.native, det.rgb_indexes, ["c"], masked=det.mask_bands, nodata=shown
            )
            pngs[path.stem, shown] = np.asarray(imread(png))[..., :3]
    # the collar is drawn as the page (white), not as black imagery, with the region's value
    assert _white(pngs["collar", 0.0]) > _white(pngs["collar", None]) + 500


def _white(img: np.ndarray) -> int:
    return int((img.min(axis=-1) > 0.98).sum())  # matplotlib reads a PNG as 0-1
