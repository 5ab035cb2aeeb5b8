"""A radar region whose passes are not all in one set of units: said when chipping."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from predict.radar import BANDS, NAIP, sentinel1_db

from geotl.chips.scenes import scan_scenes
from geotl.config import load_region


def _region(folder: Path) -> Path:
    with rasterio.open(next(folder.glob("*.tif"))) as ds:
        x, y = ds.bounds.left + 500, ds.bounds.top - 500
    square = [[x, y], [x + 200, y], [x + 200, y - 200], [x, y - 200], [x, y]]
    (folder / "water.geojson").write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "crs": {"type": "name", "properties": {"name": "EPSG:32614"}},
                "features": [
                    {
                        "type": "Feature",
                        "properties": {},
                        "geometry": {"type": "Polygon", "coordinates": [square]},
                    }
                ],
            }
        )
    )
    path = folder / "flood.toml"
    path.write_text(
        'name = "flood"\nclasses = ["water"]\n[imagery]\npaths = ["*.tif"]\n'
        f'bands = {json.dumps(BANDS)}\n[labels]\npath = "water.geojson"\n'
    )
    return path


def _redone(src: Path, out: Path, fn) -> None:
    with rasterio.open(src) as ds:
        values, profile = ds.read().astype(np.float64), ds.profile
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(fn(values).astype(np.float32))
        dst.descriptions = tuple(BANDS)


def test_linear_or_shifted_pass_among_db_passes_is_said(
    shared_data: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # one normalisation serves every chip: a pass in linear power (or 10 dB off) among dB
    # passes was chipped without a word, its chips a flat grey to the network
    tiles = sorted((shared_data / NAIP).glob("*.tif"))[:2]
    a = sentinel1_db(tiles[0], tmp_path / "S1_a.tif", 0)
    sentinel1_db(tiles[1], tmp_path / "S1_b.tif", 1)
    region = load_region(_region(tmp_path))
    caplog.set_level("WARNING", logger="geotl")
    scan_scenes(region)
    assert [r.getMessage() for r in caplog.records if r.name == "geotl.chips.scenes"] == []
    _redone(a, tmp_path / "S1_c.tif", lambda v: 10 ** (v / 10))
    scan_scenes(region)
    said = [r.getMessage() for r in caplog.records if r.name == "geotl.chips.scenes"]
    assert len(said) == 1 and said[0].startswith("S1_c.tif: its band means [0.")
    assert "where S1_a.tif's in dB are negative" in said[0]
    assert said[0].endswith("Convert the scene to dB: 10 * log10(power) before chipping")
    caplog.clear()
    _redone(a, tmp_path / "S1_c.tif", lambda v: v + 10)
    scan_scenes(region)
    said = [r.getMessage() for r in caplog.records if r.name == "geotl.chips.scenes"]
    assert len(said) == 1 and said[0].startswith("S1_c.tif: its bands in dB read about")
    assert "dB higher than S1_a.tif's" in said[0]
