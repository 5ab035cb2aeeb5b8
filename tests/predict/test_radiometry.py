"""Scenes in other units than the model's training imagery: real scenes, said or not."""

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

ALBERS = "landsat-pivots/sample_geotiff_custom_proj.tif"  # int16, reflectance x 10000-like


def _sample(path: Path, bands: int) -> tuple[Normalisation, int] | None:
    with rasterio.open(path) as ds:
        return sample_scene(ds, list(range(1, bands + 1)), (), None)


def _shifted(src: Path, out: Path, fn, dtype: str = "int16", nodata_corner: bool = False) -> Path:
    """A copy of ``src`` with its valid values passed through ``fn`` (nodata kept)."""
    with rasterio.open(src) as ds:
        values = ds.read().astype(np.float64)
        valid = ds.dataset_mask() > 0
        profile = ds.profile
    nodata = profile["nodata"]
    values = np.where(valid, fn(values), nodata)
    if nodata_corner:  # all but a 20 x 20 px corner is nodata
        values[:, 20:, :] = nodata
        values[:, :, 20:] = nodata
    profile.update(dtype=dtype)
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(values.astype(dtype))
    return out


def _artefact_trained_on(path: Path, bands: list[str]):
    """The test network with the card of a model whose training chips were ``path``."""
    sampled = _sample(path, len(bands))
    assert sampled is not None
    with rasterio.open(path) as ds:
        res = abs(ds.transform.a)
    art = data.threshold_artefact(bands, resolution_m=res)
    art.card = art.card.model_copy(update={"normalisation": sampled[0]})
    return art


def test_sentinel2_offset_and_scales_are_said_at_predict(
    shared_data: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A model trained on the Albers tile (reflectance x 10000) sees: the tile itself (no
    # warning), +1000 (processing baseline 04.00's BOA_ADD_OFFSET), -1000 (the reverse),
    # and 0-1 reflectance (1/10000)
    src = shared_data / ALBERS
    bands = ["red", "green", "blue"]
    art = _artefact_trained_on(src, bands)
    caplog.set_level(logging.WARNING, logger="geotl")
    options = PredictOptions(progress=False)

    def said(path: Path) -> list[str]:
        caplog.clear()
        predict_scene(art, path, options)
        return [r.getMessage() for r in caplog.records if "trained on" in r.getMessage()]

    assert said(src) == []
    up = said(_shifted(src, tmp_path / "n0400.tif", lambda v: v + 1000))
    assert len(up) == 1
    assert up[0].startswith("n0400.tif: bands red, green, blue read about 1,000 higher")
    assert "BOA_ADD_OFFSET = -1000" in up[0] and up[0].endswith("predicting as it is")
    down = said(_shifted(src, tmp_path / "older.tif", lambda v: v - 1000))
    assert len(down) == 1 and "read about 1,000 lower" in down[0]
    unit = said(_shifted(src, tmp_path / "refl.tif", lambda v: v / 10000, "float32"))
    assert len(unit) == 1 and unit[0].startswith("refl.tif: its band means [0.0")
    assert "are about 1/10,000 of [" in unit[0]
    # a scene mostly nodata is not judged, however far off its few pixels are
    assert (
        said(_shifted(src, tmp_path / "corner.tif", lambda v: v + 1000, nodata_corner=True)) == []
    )


@pytest.mark.parametrize(
    ("folder", "bands"),
    [
        ("naip-landsat-timeseries/naip", 4),  # North Dakota, 10 summers 2009-2020
        ("naip-landsat-timeseries/landsat_peru", 4),  # deforestation 1985-2020
        ("s2-fields-flanders", 3),  # Sentinel-2, a composite and one week
    ],
)
def test_real_passes_of_one_place_are_not_said(
    shared_data: Path, tmp_path: Path, folder: str, bands: int, caplog: pytest.LogCaptureFixture
) -> None:
    # every pass judged against a model trained on every other pass: seasons, land cover
    # change, another product of the same sensor are content, not units
    scenes = sorted((shared_data / folder).glob("*.tif"))
    assert len(scenes) >= 2
    names = [f"b{i}" for i in range(bands)]
    caplog.set_level(logging.WARNING, logger="geotl")
    sampled = {s: _sample(s, bands) for s in scenes}
    for trained in scenes:
        for scene in scenes:
            warn_other_radiometry(sampled[scene], sampled[trained][0], names, scene)  # type: ignore[index]
    assert [r.getMessage() for r in caplog.records if r.name.startswith("geotl")] == []
    # the first pass as 0-1 floats (/255) is said against every model
    scaled = _shifted(scenes[0], tmp_path / "scaled.tif", lambda v: v / 255, "float32")
    for trained in scenes:
        assert warn_other_radiometry(_sample(scaled, bands), sampled[trained][0], names, scaled)  # type: ignore[index]


def test_evaluate_says_test_chips_in_other_units(
    shared_data: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # evaluate scores a model on a region's test chips: chips of the Albers tile read 1000
    # higher than the model's training chips are said, naming the region file
    from types import SimpleNamespace

    from geotl.evaluate.chips import warn_other_units
    from geotl.train.data import ChipData

    src = shared_data / ALBERS
    with rasterio.open(src) as ds:
        values = ds.read()[:, :256, :256]
        valid = ds.dataset_mask()[:256, :256] > 0
    chips = values.reshape(3, 2, 128, 2, 128).transpose(1, 3, 0, 2, 4).reshape(4, 3, 128, 128)
    valid = valid.reshape(2, 128, 2, 128).transpose(0, 2, 1, 3).reshape(4, 128, 128)
    masks = np.zeros((4, 128, 128), np.uint8)
    trained = _sample(src, 3)
    assert trained is not None
    card = SimpleNamespace(normalisation=trained[0], bands=["red", "green", "blue"])
    region = SimpleNamespace(path=Path("/x/albers.toml"))
    caplog.set_level(logging.WARNING, logger="geotl")
    assert warn_other_units(card, ChipData("albers", chips, masks, valid), region) is None
    said = warn_other_units(card, ChipData("albers", chips + 1000, masks, valid), region)
    assert said is not None and said.startswith("albers.toml: bands red, green, blue read about")
    assert said.endswith("scoring them as they are")
    said = warn_other_units(card, ChipData("albers", chips / 10000, masks, valid), region)
    assert said is not None and said.startswith("albers.toml: the test chips' band means [0.0")
