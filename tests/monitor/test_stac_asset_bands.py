"""Per-band STAC assets (Landsat C2 L2 as Planetary Computer publishes it) against the mapping.

A real STAC API (pgstac + stac-fastapi); the items name each asset's band in ``eo:bands``
(STAC 1.0) or ``bands`` (STAC 1.1), with ``raster:bands`` scale and offset, and a mapping
that swaps two bands must be refused before any pass is predicted on the wrong bands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from monitor_helpers import write_region
from stac_server import StacServer, collection_json, item_json

from geotl.config import load_region
from geotl.errors import ConfigError
from geotl.monitor import StacSource
from geotl.monitor.sources.remote import parse_asset_spec

pytestmark = [pytest.mark.stac, pytest.mark.slow]

COLLECTION = "landsat-c2-l2-bands"
# asset key -> the band id the item names it by (Planetary Computer's landsat-c2-l2)
ASSETS = {"blue": "SR_B2", "green": "SR_B3", "red": "SR_B4", "nir08": "SR_B5"}


def _item(server: StacServer, tif: Path, item_id: str, when: str, stac11: bool) -> dict[str, Any]:
    assert server.files is not None
    item = item_json(COLLECTION, item_id, tif, server.files.url(tif), when, 1.0)
    raster = {"data_type": "uint16", "nodata": 0, "scale": 2.75e-05, "offset": -0.2}
    item["assets"] = {
        key: {
            "href": server.files.url(tif),
            "roles": ["data"],
            **(
                {"bands": [{"name": band, "eo:common_name": key, **raster}]}
                if stac11
                else {
                    "eo:bands": [{"name": band, "common_name": key}],
                    "raster:bands": [raster],
                }
            ),
        }
        for key, band in ASSETS.items()
    }
    item["assets"]["qa_pixel"] = {"href": server.files.url(tif), "roles": ["cloud"]}
    return item


@pytest.fixture(scope="module")
def landsat_items(stac_server: StacServer, naip_scenes: list[Path]) -> StacServer:
    stac_server.load_collection(collection_json(COLLECTION, "per-band Landsat C2 L2 assets"))
    stac_server.load_items(
        [
            _item(
                stac_server,
                naip_scenes[0],
                "LC08_L2SP_016035_20230415",
                "2023-04-15T15:50:00Z",
                False,
            ),
            _item(
                stac_server,
                naip_scenes[0],
                "LC09_L2SP_016035_20230501",
                "2023-05-01T15:50:00Z",
                True,
            ),
        ]
    )
    return stac_server


def _source(tmp_path: Path, server: StacServer, imagery: Path, assets: str) -> StacSource:
    monitor = (
        f'source = "stac"\nurl = "{server.url}"\ncollection = "{COLLECTION}"\n'
        f"lookback_days = 30\nassets = {{ {assets} }}"
    )
    bands = ["red", "green", "blue", "nir08"]
    region = write_region(
        tmp_path / "region", "landsat-bands", [imagery], bands, ["water"], monitor
    )
    return StacSource(load_region(region))


def test_swapped_band_assets_are_refused(
    landsat_items: StacServer, naip_scenes: list[Path], tmp_path: Path
) -> None:
    source = _source(
        tmp_path,
        landsat_items,
        naip_scenes[0],
        'red = "nir08", green = "green", blue = "blue", nir08 = "red"',
    )
    with pytest.raises(ConfigError) as err:
        source.discover({}, None)
    message = str(err.value)
    assert "band 'red' is asset 'nir08'" in message
    assert "call nir08" in message
    assert 'map red = "red"' in message


def test_band_assets_in_another_order_stack_by_name(
    landsat_items: StacServer, naip_scenes: list[Path], tmp_path: Path
) -> None:
    # the mapping's order is the stack's, and a region may call Landsat's nir08 "nir"
    source = _source(
        tmp_path,
        landsat_items,
        naip_scenes[0],
        'blue = "blue", nir = "nir08", red = "red", green = "green"',
    )
    scenes = source.discover({}, None)
    assert sorted(s.name for s in scenes) == [
        "LC08_L2SP_016035_20230415",
        "LC09_L2SP_016035_20230501",
    ]
    assert source.band_names() == ["blue", "nir", "red", "green"]
    for scene in scenes:
        specs = [parse_asset_spec(spec) for spec in scene.assets.values()]
        assert [href.rsplit("/", 1)[-1] for href, _, _ in specs] == [naip_scenes[0].name] * 4
        # the items' raster:bands scale and offset travel with each band
        assert {scaling for _, _, scaling in specs} == {(2.75e-05, -0.2)}
        assert list(scene.assets) == ["blue", "nir", "red", "green"]


def test_assets_without_band_names_are_taken_as_mapped(
    landsat_items: StacServer, naip_scenes: list[Path], tmp_path: Path
) -> None:
    # qa_pixel names no band: nothing to check it against, the mapping is trusted
    source = _source(
        tmp_path, landsat_items, naip_scenes[0], 'red = "qa_pixel", green = "green", blue = "blue"'
    )
    assert len(source.discover({}, None)) == 2
