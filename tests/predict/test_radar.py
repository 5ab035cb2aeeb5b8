"""Radar scenes (Sentinel-1-like passes of real ground): their units and their band names.

The passes (:mod:`radar`) are derived from real ground, one per summer.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import rasterio

from geotl.models.artefact import Normalisation
from geotl.predict import PredictOptions, predict_scene
from geotl.predict.radiometry import sample_scene, warn_other_radiometry

from . import data
from .radar import BANDS, NAIP, sentinel1_db


def _redone(src: Path, out: Path, fn) -> Path:
    """A copy of ``src`` with its values passed through ``fn`` (NaN stays NaN)."""
    with rasterio.open(src) as ds:
        values, profile = ds.read().astype(np.float64), ds.profile
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(fn(values).astype(np.float32))
        dst.descriptions = tuple(BANDS)
    return out


def _sample(path: Path) -> tuple[Normalisation, int] | None:
    with rasterio.open(path) as ds:
        return sample_scene(ds, [1, 2])


@pytest.fixture
def passes(shared_data: Path, tmp_path: Path) -> list[Path]:
    tiles = sorted((shared_data / NAIP).glob("*.tif"))[:4]
    assert len(tiles) == 4
    return [sentinel1_db(t, tmp_path / f"S1_{t.stem[-8:]}.tif", i) for i, t in enumerate(tiles)]


def test_db_scene_in_other_units_or_shifted_is_said_at_predict(
    passes: list[Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # a flood-mapping model trained on dB passes was silent on linear power (every band
    # positive: no water anywhere) and on a pass 10 dB brighter: it judged positive means only
    trained = _sample(passes[0])
    assert trained is not None and max(trained[0].mean) < 0
    art = data.threshold_artefact(BANDS, resolution_m=10.0)
    art.card = art.card.model_copy(update={"normalisation": trained[0]})
    caplog.set_level(logging.WARNING, logger="geotl")
    options = PredictOptions(progress=False)

    def said(path: Path) -> list[str]:
        caplog.clear()
        predict_scene(art, path, options)
        return [r.getMessage() for r in caplog.records if r.name == "geotl.predict.radiometry"]

    assert said(passes[0]) == []
    linear = said(_redone(passes[0], tmp_path / "linear.tif", lambda v: 10 ** (v / 10)))
    assert len(linear) == 1
    assert linear[0].startswith("linear.tif: its band means [0.")
    assert "are positive where the training's in dB are negative" in linear[0]
    assert "10 * log10(power)" in linear[0] and linear[0].endswith("predicting as it is")
    amplitude = said(_redone(passes[0], tmp_path / "amp.tif", lambda v: 10 ** (v / 20)))
    assert len(amplitude) == 1 and "linear power, amplitude" in amplitude[0]
    up = said(_redone(passes[0], tmp_path / "plus10.tif", lambda v: v + 10))
    assert len(up) == 1
    assert up[0].startswith("plus10.tif: bands VV, VH read about 10 dB higher")
    assert "a factor of 10 in power?" in up[0]
    down = said(_redone(passes[0], tmp_path / "minus10.tif", lambda v: v - 10))
    assert len(down) == 1 and "read about 10 dB lower" in down[0]


def test_db_passes_and_a_flooded_pass_are_not_said(
    shared_data: Path, passes: list[Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # other summers of the same ground, and a pass all under calm water (means as far down
    # as -10 dB, but the narrow spread of speckle), are content: a flood must not read as
    # a calibration error on the very pass a flood team needs
    tile = sorted((shared_data / NAIP).glob("*.tif"))[0]
    flood = sentinel1_db(tile, tmp_path / "S1_flood.tif", 9, flooded=True)
    sampled = {p: _sample(p) for p in [*passes, flood]}
    caplog.set_level(logging.WARNING, logger="geotl")
    for trained in passes:
        for scene, got in sampled.items():
            warn_other_radiometry(got, sampled[trained][0], BANDS, scene)  # type: ignore[index]
    assert [r.getMessage() for r in caplog.records if r.name.startswith("geotl")] == []


def test_db_given_to_a_model_of_linear_power_is_said(passes: list[Path], tmp_path: Path) -> None:
    linear = _redone(passes[0], tmp_path / "linear.tif", lambda v: 10 ** (v / 10))
    trained = _sample(linear)
    assert trained is not None
    said = warn_other_radiometry(_sample(passes[1]), trained[0], BANDS, passes[1])
    assert said is not None and "are negative where the training's in linear power" in said
    assert warn_other_radiometry(_sample(linear), trained[0], BANDS, linear) is None


def test_snap_band_names_are_read_in_their_order(
    passes: list[Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # SNAP writes a Sentinel-1 GeoTIFF's bands as Sigma0_VH_db, Sigma0_VV_db (in its own
    # order): unknown names were read in file order, VH as the model's VV, with a warning
    # that the file had no band descriptions
    with rasterio.open(passes[0]) as ds:
        values, profile = ds.read(), ds.profile
    snap = tmp_path / "subset_S1A_IW_GRDH_Orb_Cal_TC.tif"
    with rasterio.open(snap, "w", **profile) as dst:
        dst.write(values[::-1])
        dst.descriptions = ("Sigma0_VH_db", "Sigma0_VV_db")
    trained = _sample(passes[0])
    assert trained is not None
    art = data.threshold_artefact(BANDS, resolution_m=10.0)
    art.card = art.card.model_copy(update={"normalisation": trained[0]})
    caplog.set_level(logging.WARNING, logger="geotl")
    options = PredictOptions(progress=False)
    want = predict_scene(art, passes[0], options).features
    caplog.clear()
    got = predict_scene(art, snap, options).features
    assert [r.getMessage() for r in caplog.records if r.name.startswith("geotl")] == []
    assert len(want) > 10
    assert sorted(got["area_m2"]) == sorted(want["area_m2"])
