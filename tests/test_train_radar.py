"""A flood model adapted from a dB model to passes in linear power: the units are said."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from predict.radar import BANDS, NAIP, sentinel1_db
from rasterio import features
from shapely.geometry import mapping, shape

from geotl.chips import chip_region
from geotl.config import load_region
from geotl.train import TrainOptions, train_model


def _flood_region(folder: Path, linear: bool, shared_data: Path) -> Path:
    """A region of two Sentinel-1-like passes, water drawn once from the first (VV < -18 dB)."""
    folder.mkdir()
    tiles = sorted((shared_data / NAIP).glob("*.tif"))[:2]
    for i, tile in enumerate(tiles):
        path = sentinel1_db(tile, folder / f"S1_{i}.tif", i)
        if linear:
            with rasterio.open(path, "r+") as ds:
                ds.write((10 ** (ds.read() / 10)).astype(np.float32))
    with rasterio.open(folder / "S1_0.tif") as ds:
        vv, transform = ds.read(1), ds.transform
    water = (vv < (10**-1.8 if linear else -18)) & np.isfinite(vv)
    polygons = [
        {"type": "Feature", "properties": {}, "geometry": mapping(shape(g))}
        for g, _ in features.shapes(water.astype(np.uint8), mask=water, transform=transform)
        if shape(g).area >= 2000
    ]
    collection = {
        "type": "FeatureCollection",
        "crs": {"type": "name", "properties": {"name": "EPSG:32614"}},
        "features": polygons,
    }
    (folder / "water.geojson").write_text(json.dumps(collection))
    path = folder / "flood.toml"
    path.write_text(
        f'name = "{folder.name}"\nclasses = ["water"]\n[imagery]\npaths = ["S1_*.tif"]\n'
        f'bands = {json.dumps(BANDS)}\n[labels]\npath = "water.geojson"\n'
        "[chips]\nsize_px = 64\nstride_px = 64\n[split]\nblock_size_m = 640\n"
    )
    return path


def test_a_db_base_on_linear_passes_keeps_the_regions_normalisation(
    shared_data: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # a model: base keeps its own normalisation unless the region is in other units; dB
    # means are negative, so linear power passed as the same units and met the dB model's
    # (x + 11) / 5: every input about +2.3, no water anywhere
    db = load_region(_flood_region(tmp_path / "db", False, shared_data))
    lin = load_region(_flood_region(tmp_path / "lin", True, shared_data))
    chip_region(db, tmp_path / "db-chips")
    chip_region(lin, tmp_path / "lin-chips")
    quick = {"steps": 2, "val_every": 2, "batch_size": 4, "pixel_model": False}
    base = train_model(
        [db], tmp_path / "db-model", TrainOptions(chips=(tmp_path / "db-chips",), **quick)
    )
    assert max(base.normalisation.mean) < 0
    caplog.set_level("WARNING", logger="geotl")
    card = train_model(
        [lin],
        tmp_path / "lin-model",
        TrainOptions(
            chips=(tmp_path / "lin-chips",), base=f"model:{tmp_path / 'db-model'}", **quick
        ),
    )
    said = [
        r.getMessage() for r in caplog.records if "normalisation does not fit" in r.getMessage()
    ]
    assert len(said) == 1 and "are positive where the base model's in dB are negative" in said[0]
    assert min(card.normalisation.mean) > 0 and max(card.normalisation.mean) < 1
