"""``--calibrate`` with a region at another ground resolution than the model's.

A model card records its training region's path; once the model is copied elsewhere that
path is gone and export asks for ``--calibrate REGION``. A user then passes the region they
have: with the model's bands it was accepted without a word even when its chips were at
28.5 m for a 0.1 m model, so int8 was calibrated on imagery the model never predicts.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from geotl.export.quantise import region_calibration

from .test_export_calibrate import _write_region

DEMO_REGION = Path(__file__).resolve().parents[2] / "regions" / "demo-osbs.toml"


def test_calibration_at_another_resolution_is_named(
    demo_model: Path,
    demo_chips: Path,
    tmp_path: Path,
    shared_data: Path,
    one_thread: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    landsat = _write_region(tmp_path, shared_data)  # 28.5 m, the demo model 0.1 m
    with caplog.at_level(logging.WARNING, logger="geotl.export.quantise"):
        calib = region_calibration(demo_model, 64, region_path=landsat)
    assert len(calib.tiles) > 0
    warned = [r.getMessage() for r in caplog.records if r.name == "geotl.export.quantise"]
    assert len(warned) == 1, warned
    assert str(landsat) in warned[0] and "28.5 m" in warned[0] and "0.1 m" in warned[0]
    # the gdalwarp it suggests is in the scenes' own units (metres here), averaging down
    assert "gdalwarp -tr 0.1 0.1 -r bilinear" in warned[0], warned[0]

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="geotl.export.quantise"):
        region_calibration(demo_model, 64, region_path=DEMO_REGION, chips_dir=demo_chips)
    assert not [r for r in caplog.records if r.name == "geotl.export.quantise"]


def test_calibration_on_pixels_of_another_shape_is_named(
    demo_model: Path,
    demo_chips: Path,
    tmp_path: Path,
    one_thread: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A model of pixels twice as tall as wide calibrated on square pixels of the same mean.

    The card is the demo model's with the shape of chips cut on a square-degree grid at
    60 N (cos 60 N = 0.5); the demo's UTM chips have the card's 0.1 m mean, so comparing
    means alone said nothing. A card from before geotl recorded the shape (None) is held
    to the mean only.
    """
    from geotl.models.artefact import load_artefact, write_artefact

    art = load_artefact(demo_model)
    tall = tmp_path / "m60"
    write_artefact(tall, art.network, art.card.model_copy(update={"pixel_aspect": 0.5}))
    with caplog.at_level(logging.WARNING, logger="geotl.export.quantise"):
        region_calibration(tall, 64, region_path=DEMO_REGION, chips_dir=demo_chips)
    warned = [r.getMessage() for r in caplog.records if r.name == "geotl.export.quantise"]
    assert len(warned) == 1, warned
    assert str(DEMO_REGION) in warned[0]
    assert "pixels are 0.1 m on the ground, the model's 0.06667 x 0.1333 m" in warned[0]

    caplog.clear()
    old = tmp_path / "old"
    write_artefact(old, art.network, art.card.model_copy(update={"pixel_aspect": None}))
    with caplog.at_level(logging.WARNING, logger="geotl.export.quantise"):
        region_calibration(old, 64, region_path=DEMO_REGION, chips_dir=demo_chips)
    assert not [r for r in caplog.records if r.name == "geotl.export.quantise"]
