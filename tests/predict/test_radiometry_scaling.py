"""Landsat Collection 2 digital numbers (with GDAL scale/offset) given to a reflectance model.

USGS ships Collection 2 Level-2 surface reflectance as uint16 digital numbers, reflectance =
DN x 2.75e-05 - 0.2, and some providers write that scale and offset into the GeoTIFF. geotl
reads the raw numbers, so a model trained on reflectance sees values ~100,000x its own: the
warning said "other units? Rescale the scene", without the scale that fixes it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import rasterio

from geotl.models.artefact import Artefact, Normalisation
from geotl.predict import PredictOptions
from geotl.predict.core import predict_scene

from . import data


def _c2_scene(path: Path, shared_data: Path, scaled: bool) -> Path:
    """Real NC Landsat bands 3, 2, 1 as C2 L2 digital numbers (red, green, blue)."""
    bands = []
    for number in (30, 20, 10):
        with rasterio.open(shared_data / f"nc-landsat-landcover/lsat7_2000_{number}.tif") as src:
            dn8 = src.read(1, window=((100, 228), (100, 228)))
        reflectance = dn8 / 255.0 * 0.45
        bands.append(np.round((reflectance + 0.2) / 2.75e-5).astype(np.uint16))
    data.write_bands(path, np.stack(bands), nodata=0)
    if scaled:
        with rasterio.open(path, "r+") as ds:
            ds.scales = (2.75e-5,) * 3
            ds.offsets = (-0.2,) * 3
    return path


def _reflectance_model() -> Artefact:
    model = data.threshold_artefact(["red", "green", "blue"])
    norm = Normalisation(mean=[0.09, 0.1, 0.12], std=[0.03, 0.03, 0.03])
    return Artefact(
        card=model.card.model_copy(update={"normalisation": norm}),
        network=model.network,
        path=model.path,
        device=model.device,
    )


@pytest.mark.parametrize("scaled", [True, False])
def test_scaled_digital_numbers_name_the_scale_that_fixes_them(
    tmp_path: Path, shared_data: Path, caplog: pytest.LogCaptureFixture, scaled: bool
) -> None:
    scene = _c2_scene(tmp_path / "LC09_SR.tif", shared_data, scaled)
    with caplog.at_level(logging.WARNING, logger="geotl.predict.radiometry"):
        predict_scene(_reflectance_model(), scene, PredictOptions(window_px=64, progress=False))
    said = " ".join(r.getMessage() for r in caplog.records)
    assert "other units?" in said
    if scaled:
        assert "scale and offset (2.75e-05 and -0.2)" in said
        assert "gdal_translate -unscale -ot Float32" in said
    else:  # nothing in the file says how: the plain advice
        assert "gdal_translate" not in said and "Rescale the scene" in said
