"""Fixtures of the monitor tests: real image series, tiny models, region files, a STAC API."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from monitor_helpers import NAIP_BANDS, NAIP_REGEX, PERU_BANDS, write_region
from stac_server import StacServer, find_pg_bin, postgis_available
from tinymodel import build_tiny_model, clearing_rule, water_rule


@pytest.fixture(scope="session")
def series_root(shared_data: Path) -> Path:
    root = shared_data / "naip-landsat-timeseries"
    if not root.is_dir():
        pytest.skip(f"{root} not found")
    return root


@pytest.fixture(scope="session")
def naip_scenes(series_root: Path) -> list[Path]:
    scenes = sorted((series_root / "naip").glob("m_*.tif"))
    assert len(scenes) == 10
    return scenes


@pytest.fixture(scope="session")
def peru_scenes(series_root: Path) -> list[Path]:
    scenes = sorted((series_root / "landsat_peru").glob("*.tif"))
    assert len(scenes) == 8
    return scenes


@pytest.fixture(scope="session")
def naip_small(tmp_path_factory: pytest.TempPathFactory, naip_scenes: list[Path]) -> list[Path]:
    """256 x 256 px crops of the ten NAIP dates (same names, same grid): fast passes."""
    import rasterio
    from rasterio.windows import Window

    folder = tmp_path_factory.mktemp("naip-small")
    out = []
    for scene in naip_scenes:
        with rasterio.open(scene) as src:
            window = Window(300, 200, 256, 256)
            profile = {
                **src.profile,
                "width": 256,
                "height": 256,
                "transform": src.window_transform(window),
                "blockxsize": 128,
                "blockysize": 128,
                "tiled": True,
            }
            with rasterio.open(folder / scene.name, "w", **profile) as dst:
                dst.write(src.read(window=window))
        out.append(folder / scene.name)
    return out


@pytest.fixture(scope="session")
def naip_model(tmp_path_factory: pytest.TempPathFactory, naip_scenes: list[Path]) -> Path:
    """A tiny water detector for the NAIP series (4 bands, 5 m)."""
    out = tmp_path_factory.mktemp("models") / "naip-water"
    build_tiny_model(
        out, naip_scenes[:2], NAIP_BANDS, 5.0, "water", water_rule, name="naip-water", steps=40
    )
    return out


@pytest.fixture(scope="session")
def naip_model_v2(tmp_path_factory: pytest.TempPathFactory, naip_scenes: list[Path]) -> Path:
    """Another version of the NAIP water model (other seed: another model id)."""
    out = tmp_path_factory.mktemp("models") / "naip-water-v2"
    build_tiny_model(
        out,
        naip_scenes[:2],
        NAIP_BANDS,
        5.0,
        "water",
        water_rule,
        name="naip-water",
        seed=1,
        steps=8,
    )
    return out


@pytest.fixture(scope="session")
def peru_model(tmp_path_factory: pytest.TempPathFactory, peru_scenes: list[Path]) -> Path:
    """A tiny clearing detector for the Peru Landsat series (4 bands, ~90 m)."""
    out = tmp_path_factory.mktemp("models") / "peru-clearing"
    build_tiny_model(
        out,
        peru_scenes[:2],
        PERU_BANDS,
        89.5,
        "clearing",
        clearing_rule,
        name="peru-clearing",
        steps=40,
    )
    return out


@pytest.fixture
def naip_region(tmp_path: Path, naip_scenes: list[Path]) -> Path:
    """A folder-source region for the NAIP series; passes arrive in ``incoming/``."""
    (tmp_path / "region" / "incoming").mkdir(parents=True)
    return write_region(
        tmp_path / "region",
        "naip-nd",
        naip_scenes[:1],
        NAIP_BANDS,
        ["water"],
        'source = "folder"\npaths = ["incoming/*.tif"]',
        datetime_regex=NAIP_REGEX,
        min_area_m2=200.0,
    )


@pytest.fixture(scope="session")
def stac_server(
    series_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StacServer]:
    """A real STAC API (pgstac + stac-fastapi) on 127.0.0.1 serving the series' GeoTIFFs."""
    pg_bin = find_pg_bin()
    if pg_bin is None or not postgis_available(pg_bin):
        pytest.skip("PostgreSQL + PostGIS not installed: run scripts/install_system_deps.sh")
    server = StacServer(series_root, workdir=None)
    try:
        yield server
    finally:
        server.close()
