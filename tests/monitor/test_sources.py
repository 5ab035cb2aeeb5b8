"""Scene sources: acquisition times, discovery of new and changed files, AOI, VRT stacking."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import rasterio
from monitor_helpers import NAIP_BANDS, NAIP_REGEX, write_region
from rasterio.transform import from_origin

from geotl.config import SourceOptions, load_region
from geotl.errors import ConfigError, GeotlRuntimeError, SceneError
from geotl.monitor.sources import (
    SOURCES,
    FolderSource,
    Scene,
    SceneSource,
    StacSource,
    make_source,
    parse_datetime_text,
    region_aoi,
    safe_scene_name,
    write_scene_vrt,
)


def _tif(
    path: Path,
    tags: dict[str, str] | None = None,
    count: int = 4,
    dtype: str = "uint8",
    value: int = 9,
) -> Path:
    profile = {
        "driver": "GTiff",
        "width": 32,
        "height": 32,
        "count": count,
        "dtype": dtype,
        "crs": "EPSG:32614",
        "transform": from_origin(500000, 5200000, 5, 5),
        "nodata": 0,
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.full((count, 32, 32), value, dtype=dtype))
        if tags:
            dst.update_tags(**tags)
    return path


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("20190904", datetime(2019, 9, 4, tzinfo=UTC)),
        ("1985", datetime(1985, 1, 1, tzinfo=UTC)),
        ("201909", datetime(2019, 9, 1, tzinfo=UTC)),
        ("2021:05:04 10:30:00", datetime(2021, 5, 4, 10, 30, tzinfo=UTC)),
        ("20210504T103000", datetime(2021, 5, 4, 10, 30, tzinfo=UTC)),
        ("2021-05-04T10:30:00Z", datetime(2021, 5, 4, 10, 30, tzinfo=UTC)),
        ("2021-05-04T12:30:00+02:00", datetime(2021, 5, 4, 10, 30, tzinfo=UTC)),
    ],
)
def test_parse_datetime_text(text: str, expected: datetime) -> None:
    assert parse_datetime_text(text) == expected


def test_parse_datetime_text_rejects_garbage() -> None:
    with pytest.raises(ValueError):
        parse_datetime_text("not-a-date")


def test_safe_scene_name() -> None:
    assert safe_scene_name("a b/c:d") == "a_b_c_d"
    assert safe_scene_name("...") == "scene"


def _folder_region(tmp_path: Path, anchor: Path) -> Path:
    return write_region(
        tmp_path / "region",
        "r",
        [anchor],
        NAIP_BANDS,
        ["water"],
        'source = "folder"\npaths = ["incoming/*.tif", "more/**/*.tif"]',
        datetime_regex=NAIP_REGEX,
    )


def test_folder_source_times_new_and_changed_files(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    anchor = _tif(tmp_path / "anchor.tif")
    region_file = _folder_region(tmp_path, anchor)
    incoming = region_file.parent / "incoming"
    incoming.mkdir()
    (region_file.parent / "more" / "deep").mkdir(parents=True)
    by_name = _tif(incoming / "m_x_20190904.tif", {"TIFFTAG_DATETIME": "2001:01:01 00:00:00"})
    by_tag = _tif(
        region_file.parent / "more" / "deep" / "pass.tif",
        {"TIFFTAG_DATETIME": "2021:05:04 10:30:00"},
    )
    by_mtime = _tif(incoming / "undated.tif")
    os.utime(by_mtime, (1_500_000_000, 1_500_000_000))
    (incoming / ".tmp-partial.tif").write_bytes(b"half")
    (incoming / "m_x_20190904.tif.aux.xml").write_text("<PAMDataset/>")  # QGIS opened it
    (incoming / "m_x_20190904.tif.ovr").write_bytes(b"overviews")
    source = make_source(load_region(region_file))
    assert isinstance(source, FolderSource) and source.band_names() == NAIP_BANDS
    with caplog.at_level(logging.WARNING, logger="geotl"):
        found = {s.name: s for s in source.discover({}, None)}
    assert set(found) == {"m_x_20190904", "pass", "undated"}
    assert (found["m_x_20190904"].acquired, found["m_x_20190904"].acquired_from) == (
        datetime(2019, 9, 4, tzinfo=UTC),
        "regex",
    )
    assert (found["pass"].acquired, found["pass"].acquired_from) == (
        datetime(2021, 5, 4, 10, 30, tzinfo=UTC),
        "tiff-tag",
    )
    assert found["undated"].acquired_from == "mtime"
    assert found["undated"].acquired == datetime.fromtimestamp(1_500_000_000, tz=UTC)
    assert "modification time" in caplog.text and "undated.tif" in caplog.text
    # known and unchanged: not reported again; a replaced file is
    known = {s.key: s.fingerprint for s in found.values()}
    assert source.discover(known, None) == []
    _tif(by_name, count=3)
    again = source.discover(known, None)
    assert [s.name for s in again] == ["m_x_20190904"]
    del by_tag


def test_a_folder_that_does_not_exist_is_a_config_error(tmp_path: Path) -> None:
    region_file = _folder_region(tmp_path, _tif(tmp_path / "anchor.tif"))
    source = make_source(load_region(region_file))
    with pytest.raises(ConfigError, match="does not exist: create the folder"):
        source.discover({}, None)  # a typo in paths must not watch nothing, run after run
    (region_file.parent / "incoming").mkdir()
    with pytest.raises(ConfigError, match=r"'more/\*\*/\*.tif' looks in .*more, which"):
        source.discover({}, None)  # every glob's folder
    (region_file.parent / "more").mkdir()
    assert source.discover({}, None) == []  # empty folders: no new pass yet


def test_region_aoi_from_imagery_or_file(tmp_path: Path) -> None:
    anchor = _tif(tmp_path / "anchor.tif")
    region = load_region(_folder_region(tmp_path, anchor))
    aoi = region_aoi(region)
    minx, miny, maxx, maxy = aoi.bounds
    assert -99.1 < minx < maxx < -98.9 and 46.9 < miny < maxy < 47.0
    (tmp_path / "region" / "aoi.geojson").write_text(
        '{"type":"FeatureCollection","features":[{"type":"Feature","properties":{},'
        '"geometry":{"type":"Polygon","coordinates":[[[1,1],[2,1],[2,2],[1,2],[1,1]]]}}]}'
    )
    text = (
        (tmp_path / "region" / "r.toml")
        .read_text()
        .replace("[monitor]\n", '[monitor]\naoi = "aoi.geojson"\n')
    )
    (tmp_path / "region" / "r.toml").write_text(text)
    assert region_aoi(load_region(tmp_path / "region" / "r.toml")).bounds == (1.0, 1.0, 2.0, 2.0)


def test_an_aoi_away_from_the_imagery_is_warned_about_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    anchor = _tif(tmp_path / "anchor.tif")  # near lon -99.0, lat 46.9 (EPSG:32614)
    region_file = _folder_region(tmp_path, anchor)
    text = region_file.read_text().replace("[monitor]\n", '[monitor]\naoi = "aoi.geojson"\n')
    region_file.write_text(text)

    def write_aoi(ring: str) -> None:
        (region_file.parent / "aoi.geojson").write_text(
            '{"type":"FeatureCollection","features":[{"type":"Feature","properties":{},'
            f'"geometry":{{"type":"Polygon","coordinates":[{ring}]}}}}]}}'
        )

    # over the imagery: no warning
    write_aoi("[[-99.1,46.9],[-98.9,46.9],[-98.9,47.0],[-99.1,47.0],[-99.1,46.9]]")
    with caplog.at_level(logging.WARNING, logger="geotl.monitor"):
        region_aoi(load_region(region_file))
    assert not caplog.records
    # drawn in the imagery's UTM metres but written as GeoJSON (read as lon/lat): elsewhere;
    # said once, on one line
    (tmp_path / "utm").mkdir()
    region_file = region_file.rename(tmp_path / "utm" / "r.toml")
    write_aoi(
        "[[500000,5199840],[500160,5199840],[500160,5200000],[500000,5200000],[500000,5199840]]"
    )
    with caplog.at_level(logging.WARNING, logger="geotl.monitor"):
        region = load_region(region_file)
        assert region_aoi(region).bounds == (500000.0, 5199840.0, 500160.0, 5200000.0)
        region_aoi(region)
    [record] = caplog.records
    message = record.getMessage()
    assert message.startswith(str(region_file.parent / "aoi.geojson"))
    assert "monitor.aoi does not overlap the region's imagery" in message
    assert "the region is near lon -98.99" in message and "\n" not in message


def test_a_stac_url_answering_404_with_an_empty_body_is_a_one_line_error(
    tmp_path: Path,
) -> None:
    from stac_server import FileServer

    (tmp_path / "served").mkdir()
    server = FileServer(tmp_path / "served")  # a real HTTP server: 404 with no body
    try:
        url = f"http://127.0.0.1:{server.port}/stac"
        monitor = (
            f'source = "stac"\nurl = "{url}"\ncollection = "c"\n'
            'assets = { red = "image:1", green = "image:2", blue = "image:3", nir = "image:4" }'
        )
        anchor = _tif(tmp_path / "anchor.tif")
        region = load_region(
            write_region(tmp_path / "region", "r", [anchor], NAIP_BANDS, ["water"], monitor)
        )
        with pytest.raises(GeotlRuntimeError) as err:
            StacSource(region).discover({}, None)
    finally:
        server.close()
    message = str(err.value)
    assert "\n" not in message and message.startswith(url)
    assert "STAC search failed (APIError: HTTP 404)" in message and "[monitor] url" in message
    assert ("GET", "/stac", 404, 0) in server.log.entries


@pytest.mark.timeout(60)
def test_a_stac_api_that_never_answers_fails_the_run_instead_of_hanging_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import contextlib
    import socket
    import threading
    import time

    import geotl.monitor.sources.stac as stac_module

    monkeypatch.setattr(stac_module, "STAC_TIMEOUT_S", (1.0, 1.0))
    accepted: list[socket.socket] = []

    def hold(listener: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while True:
                accepted.append(listener.accept()[0])

    with socket.socket() as listener:  # accepts connections, never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        threading.Thread(target=hold, args=(listener,), daemon=True).start()
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        monitor = (
            f'source = "stac"\nurl = "{url}"\ncollection = "c"\n'
            'assets = { red = "image:1", green = "image:2", blue = "image:3", nir = "image:4" }'
        )
        anchor = _tif(tmp_path / "anchor.tif")
        region = load_region(
            write_region(tmp_path / "region", "r", [anchor], NAIP_BANDS, ["water"], monitor)
        )
        started = time.monotonic()
        with pytest.raises(GeotlRuntimeError) as err:
            StacSource(region).discover({}, None)
    elapsed = time.monotonic() - started
    for conn in accepted:
        conn.close()
    assert elapsed < 30
    assert len(accepted) == 1  # a read that timed out is not retried (six minutes by default)
    message = str(err.value)
    assert "\n" not in message and message.startswith(url)
    assert "timed out" in message and "STAC search failed" in message


def test_vrt_stacks_bands_from_assets(tmp_path: Path) -> None:
    a = _tif(tmp_path / "a.tif")
    b = _tif(tmp_path / "b.tif", count=1)
    scene = Scene(
        key="stac:c/x",
        name="x",
        acquired=datetime(2020, 1, 1, tzinfo=UTC),
        acquired_from="stac",
        uri="u",
        fingerprint="f",
        assets={"red": f"{a}#3", "nir": f"{b}#1"},
    )
    vrt = write_scene_vrt(scene, tmp_path / "work" / "x.vrt")
    with rasterio.open(vrt) as ds:
        assert ds.count == 2 and ds.crs.to_epsg() == 32614 and ds.nodata == 0
        assert ds.read().shape == (2, 32, 32)
    missing = Scene(**{**scene.__dict__, "assets": {"red": "missing:B04"}})
    with pytest.raises(SceneError, match="no asset 'B04'"):
        write_scene_vrt(missing, tmp_path / "work" / "y.vrt")
    too_few = Scene(**{**scene.__dict__, "assets": {"red": f"{b}#2"}})
    with pytest.raises(SceneError, match="asks for band 2"):
        write_scene_vrt(too_few, tmp_path / "work" / "z.vrt")


def test_vrt_of_assets_of_different_types_keeps_every_value(tmp_path: Path) -> None:
    # a uint8 asset (a scene classification, say) listed before uint16 reflectance
    scl = _tif(tmp_path / "scl.tif", count=1)
    b08 = _tif(tmp_path / "b08.tif", count=1, dtype="uint16", value=4321)
    scene = Scene(
        key="stac:c/y",
        name="y",
        acquired=datetime(2020, 1, 1, tzinfo=UTC),
        acquired_from="stac",
        uri="u",
        fingerprint="f",
        assets={"scl": f"{scl}#1", "nir": f"{b08}#1"},
    )
    with rasterio.open(write_scene_vrt(scene, tmp_path / "work" / "y.vrt")) as ds:
        assert ds.dtypes == ("uint16", "uint16")
        assert ds.read(1)[0, 0] == 9 and ds.read(2)[0, 0] == 4321


def test_every_registered_source_declares_its_keys() -> None:
    from geotl.config import SourceOptions, scene_sources
    from geotl.monitor.sources import SOURCES

    assert scene_sources() is SOURCES
    assert all(cls.kind == name for name, cls in SOURCES.items())
    assert all(issubclass(cls.Options, SourceOptions) for cls in SOURCES.values())


class _ListedOptions(SourceOptions):
    listing: str  # a text file: one "<date> <GeoTIFF>" line per pass


class _ListedSource(SceneSource):
    """A throwaway source, defined here as a plugin would be: its module and one registry line."""

    kind = "listed"
    Options = _ListedOptions
    options: _ListedOptions

    def band_names(self) -> list[str]:
        return list(self.region.imagery.bands)

    def discover(self, known: Mapping[str, str], since: datetime | None) -> list[Scene]:
        scenes = []
        for line in self.region.resolve(self.options.listing).read_text().splitlines():
            day, name = line.split()
            path = self.region.resolve(name)
            scene = Scene(
                key=str(path),
                name=path.stem,
                acquired=parse_datetime_text(day),
                acquired_from="file-name",
                uri=str(path),
                fingerprint=day,
            )
            if known.get(scene.key) != scene.fingerprint:
                scenes.append(scene)
        return scenes


def test_a_new_source_is_one_class_and_one_registry_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(SOURCES, _ListedSource.kind, _ListedSource)
    anchor = _tif(tmp_path / "anchor.tif")
    region_file = write_region(
        tmp_path / "region",
        "r",
        [anchor],
        NAIP_BANDS,
        ["water"],
        'source = "listed"\nlisting = "passes.txt"',
    )
    _tif(region_file.parent / "a.tif")
    (region_file.parent / "passes.txt").write_text("20200101 a.tif\n20210601 b.tif\n")
    source = make_source(load_region(region_file))
    assert isinstance(source, _ListedSource) and source.options.listing == "passes.txt"
    found = source.discover({}, None)
    assert [(s.name, s.acquired.year) for s in found] == [("a", 2020), ("b", 2021)]
    assert [s.name for s in source.discover({found[0].key: "20200101"}, None)] == ["b"]
    # its keys are checked like every other key of the region file
    text = region_file.read_text()
    for edit, message in [
        (
            ("listing =", "listin ="),
            r"r\.toml: unknown key 'monitor\.listin': remove it or fix its spelling",
        ),
        (('listing = "passes.txt"', ""), r"r\.toml: missing required key 'monitor\.listing'"),
        (("listing =", 'paths = ["*.tif"]\nlisting ='), r"unknown key 'monitor\.paths'"),
    ]:
        region_file.write_text(text.replace(*edit))
        with pytest.raises(ConfigError, match=message) as info:
            load_region(region_file)
        assert "\n" not in str(info.value)
    # unregistered, the name is refused
    region_file.write_text(text)
    monkeypatch.delitem(SOURCES, _ListedSource.kind)
    with pytest.raises(
        ConfigError, match=r"'monitor\.source': not a scene source: use one of \['folder', 'stac'\]"
    ):
        load_region(region_file)
