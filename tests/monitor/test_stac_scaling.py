"""A catalogue's scale and offset (STAC ``raster:bands``) in the VRT a STAC pass is read through.

A real STAC API (pgstac + stac-fastapi) serves Landsat Collection 2 Level-2-like items, one
uint16 asset per band with ``raster:bands`` scale 2.75e-05 and offset -0.2 (and
Sentinel-2 L2A baseline 04.00-like ones, scale 0.0001 and offset -0.1), made from the real
North Carolina Landsat bands. A model trained on reflectance must get reflectance, one
trained on the same digital numbers must get them unchanged, and one trained on Sentinel-2
numbers before baseline 04.00 must get the pass without the +1000.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from landsat_c2 import BANDS, LANDSAT, SENTINEL2, band_means, write_band_files
from monitor_helpers import write_region
from stac_server import FileServer, StacServer, collection_json, item_json

from geotl.config import load_region
from geotl.models.artefact import BaseModelRef, ModelCard, Normalisation
from geotl.models.network import NetworkSpec
from geotl.monitor import StacSource

pytestmark = [pytest.mark.stac, pytest.mark.slow]

ORDER = ["red", "green", "blue", "nir08"]  # the model's and the region's band order


def _card(means: list[float], stds: list[float]) -> ModelCard:
    return ModelCard(
        name="nc",
        classes=["water"],
        bands=ORDER,
        normalisation=Normalisation(mean=means, std=stds),
        chip_size_px=64,
        resolution_m=28.5,
        network=NetworkSpec(encoder="tu-mobilenetv3_small_050", in_channels=4, num_classes=2),
        base=BaseModelRef(id="none", architecture="unet", licence="MIT", commercial_use=True),
        freeze="none",
    )


def _item(
    collection: str, scene_id: str, files: FileServer, paths: dict[str, Path], scaling: Any
) -> dict[str, Any]:
    first = paths["red"]
    item = item_json(collection, scene_id, first, files.url(first), "2023-04-15T15:50:00Z", 1.0)
    item["assets"] = {
        band: {
            "href": files.url(path),
            "roles": ["data"],
            "eo:bands": [{"name": BANDS[band][1], "common_name": band}],
            "raster:bands": [
                {"data_type": "uint16", "nodata": 0, "scale": scaling[0], "offset": scaling[1]}
            ],
        }
        for band, path in paths.items()
    }
    return item


@pytest.fixture(scope="module")
def catalogue(
    stac_server: StacServer, shared_data: Path, tmp_path_factory: pytest.TempPathFactory
) -> Any:
    root = tmp_path_factory.mktemp("c2-assets")
    files = FileServer(root)
    items = []
    for collection, scene_id, scaling in (
        ("landsat-c2-l2-scaled", "LC08_L2SP_016035_20230415_20230417_02_T1", LANDSAT),
        ("sentinel-2-l2a-scaled", "S2B_17SQV_20230415_0_L2A", SENTINEL2),
    ):
        stac_server.load_collection(collection_json(collection, "per-band assets with scale"))
        paths = write_band_files(shared_data, root / collection, scene_id, scaling)
        items.append(_item(collection, scene_id, files, paths, scaling))
    stac_server.load_items(items)
    yield stac_server, root
    files.close()


def _read_pass(
    catalogue: Any, tmp_path: Path, collection: str, card: ModelCard
) -> tuple[np.ndarray, np.ndarray, str]:
    """The pass's bands through geotl's VRT and straight from the files, in ORDER."""
    server, root = catalogue
    assets = ", ".join(f'{band} = "{band}"' for band in ORDER)
    monitor = (
        f'source = "stac"\nurl = "{server.url}"\ncollection = "{collection}"\n'
        f"lookback_days = 30\nassets = {{ {assets} }}"
    )
    imagery = sorted((root / collection).glob("*_SR_B4.TIF"))
    region = write_region(tmp_path / "region", "nc", imagery, ORDER, ["water"], monitor)
    source = StacSource(load_region(region))
    [scene] = source.discover({}, None)
    with source.open_scene(scene, tmp_path / "work", card) as vrt, rasterio.open(vrt) as ds:
        read = ds.read()
        dtype = ds.dtypes[0]
    raw = []
    for band in ORDER:
        [path] = (root / collection).glob(f"*_{BANDS[band][1]}.TIF")
        with rasterio.open(path) as ds:
            raw.append(ds.read(1))
    return read, np.stack(raw), dtype


def test_reflectance_model_reads_digital_numbers_as_reflectance(
    catalogue: Any, shared_data: Path, tmp_path: Path
) -> None:
    card = _card(*band_means(shared_data, ORDER, "reflectance"))
    read, raw, dtype = _read_pass(catalogue, tmp_path, "landsat-c2-l2-scaled", card)
    valid = raw > 0
    assert dtype == "float32"
    expected = raw.astype(np.float64) * LANDSAT[0] + LANDSAT[1]
    assert np.allclose(read[valid], expected[valid], atol=1e-6)
    # the pass's values are the model's: means within 1 % of the card's
    for i in range(len(ORDER)):
        assert read[i][valid[i]].mean() == pytest.approx(card.normalisation.mean[i], rel=0.01)


def test_model_of_digital_numbers_reads_them_unchanged(
    catalogue: Any, shared_data: Path, tmp_path: Path
) -> None:
    card = _card(*band_means(shared_data, ORDER, "dn"))
    read, raw, dtype = _read_pass(catalogue, tmp_path, "landsat-c2-l2-scaled", card)
    assert dtype == "uint16"
    assert np.array_equal(read, raw)


def test_sentinel2_offset_removed_for_a_model_of_older_numbers(
    catalogue: Any, shared_data: Path, tmp_path: Path
) -> None:
    card = _card(*band_means(shared_data, ORDER, "s2-dn"))
    read, raw, _ = _read_pass(catalogue, tmp_path, "sentinel-2-l2a-scaled", card)
    valid = raw > 0
    assert np.array_equal(read[valid], raw[valid].astype(np.float32) - 1000)
    assert (read[~valid] == -1000).all()  # nodata keeps the VRT's nodata value
