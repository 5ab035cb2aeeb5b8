"""The pass loop over a real STAC API (pgstac + stac-fastapi on 127.0.0.1), no mocked HTTP."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from monitor_helpers import NAIP_BANDS, PERU_BANDS, write_region
from stac_server import StacServer, collection_json, item_json

from geotl.config import load_region
from geotl.errors import ConfigError, GeotlRuntimeError
from geotl.monitor import MonitorOptions, StacSource, monitor_status, run_monitor

pytestmark = [pytest.mark.stac, pytest.mark.slow]


def _naip_when(tif: Path) -> str:
    d = tif.stem[-8:]
    return f"{d[:4]}-{d[4:6]}-{d[6:]}T17:30:00Z"


def _history(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _stac_region(
    tmp_path: Path,
    server: StacServer,
    name: str,
    imagery: Path,
    bands: list[str],
    collection: str,
    classes: list[str],
    min_area_m2: float,
    max_cloud: float | None = None,
    lookback_days: float | None = None,
) -> Path:
    assets = ", ".join(f'{b} = "image:{i}"' for i, b in enumerate(bands, start=1))
    cloud = f"max_cloud = {max_cloud}\n" if max_cloud is not None else ""
    if lookback_days is not None:
        cloud += f"lookback_days = {lookback_days}\n"
    monitor = f'source = "stac"\nurl = "{server.url}"\ncollection = "{collection}"\n{cloud}assets = {{ {assets} }}'
    return write_region(
        tmp_path / "region", name, [imagery], bands, classes, monitor, min_area_m2=min_area_m2
    )


def test_naip_stream_through_stac(
    stac_server: StacServer,
    naip_scenes: list[Path],
    peru_scenes: list[Path],
    naip_model: Path,
    tmp_path: Path,
) -> None:
    server = stac_server
    files = server.files
    assert files is not None
    server.load_collection(collection_json("naip-nd", "NAIP North Dakota test series"))
    clouds = [5, 10, 85, 0, 20, 15, 30, 2, 45, 8]  # the third pass is too cloudy
    items = [
        item_json("naip-nd", s.stem, s, files.url(s), _naip_when(s), c)
        for s, c in zip(naip_scenes, clouds, strict=True)
    ]
    # an item elsewhere (Peru) in the same collection: outside the region's AOI
    items.append(
        item_json(
            "naip-nd",
            "far-away",
            peru_scenes[0],
            files.url(peru_scenes[0]),
            "2015-06-01T00:00:00Z",
            0,
        )
    )
    server.load_items([*items[:5], items[-1]])

    region_file = _stac_region(
        tmp_path,
        server,
        "naip-stac",
        naip_scenes[0],
        NAIP_BANDS,
        "naip-nd",
        ["water"],
        200.0,
        max_cloud=50,
    )
    region = load_region(region_file)
    opts = MonitorOptions(out_dir=tmp_path / "out", model_dir=naip_model)
    files.log.clear()
    first = run_monitor(region, opts)
    assert first.exit_code == 0
    assert [p.scene for p in first.processed] == [naip_scenes[i].stem for i in (0, 1, 3, 4)]
    # assets were read by HTTP range requests, never downloaded whole
    tif_gets = [e for e in files.log.entries if e[0] == "GET" and e[1].endswith(".tif")]
    assert tif_gets and all(status == 206 for _, _, status, _ in tif_gets)
    sizes = {p.name: p.stat().st_size for p in naip_scenes}
    per_file: dict[str, int] = {}
    for _, path, _, sent in tif_gets:
        per_file[Path(path).name] = per_file.get(Path(path).name, 0) + sent
    assert all(sent <= 1.5 * sizes[name] for name, sent in per_file.items())

    # the rest of the series is published; the next run asks only for what is newer
    server.load_items(items[5:10])
    second = run_monitor(region, opts)
    assert [p.scene for p in second.processed] == [s.stem for s in naip_scenes[5:]]
    assert run_monitor(region, opts).processed == []

    rdir = tmp_path / "out" / "naip-stac"
    history = _history(rdir / "history.csv")
    expected = [s.stem for i, s in enumerate(naip_scenes) if i != 2]
    assert [h["scene"] for h in history] == expected
    assert [h["previous_scene"] for h in history] == ["", *expected[:-1]]
    assert all(int(h["detections"]) > 0 for h in history)
    latest = json.loads((rdir / "latest.geojson").read_text())
    assert {f["properties"]["scene"] for f in latest["features"]} == {naip_scenes[-1].stem}
    status = monitor_status(region, tmp_path / "out")
    assert status.by_status == {"done": 9}


def test_unreachable_asset_fails_alone_and_peru_stream(
    stac_server: StacServer, peru_scenes: list[Path], peru_model: Path, tmp_path: Path
) -> None:
    server = stac_server
    files = server.files
    assert files is not None
    server.load_collection(collection_json("peru", "Landsat Peru epochs"))
    items = [
        item_json("peru", f"peru-{s.stem}", s, files.url(s), f"{s.stem}-07-01T15:00:00Z", 1.0)
        for s in peru_scenes
    ]
    broken = item_json(
        "peru",
        "peru-broken",
        peru_scenes[0],
        files.url(peru_scenes[0]).replace("1985.tif", "gone.tif"),
        "1987-07-01T15:00:00Z",
        1.0,
    )
    server.load_items([*items, broken])
    region = load_region(
        _stac_region(
            tmp_path, server, "peru-stac", peru_scenes[0], PERU_BANDS, "peru", ["clearing"], 20000.0
        )
    )
    opts = MonitorOptions(out_dir=tmp_path / "out", model_dir=peru_model)
    summary = run_monitor(region, opts)
    assert summary.exit_code == 1
    assert [p.scene for p in summary.processed] == [f"peru-{s.stem}" for s in peru_scenes]
    assert [p.scene for p in summary.failed] == ["peru-broken"]
    failed = monitor_status(region, tmp_path / "out").failed
    assert failed[0].name == "peru-broken" and "cannot be read" in (failed[0].error or "")
    assert failed[0].next_attempt is not None
    history = _history(tmp_path / "out" / "peru-stac" / "history.csv")
    assert [h["scene"] for h in history] == [f"peru-{s.stem}" for s in peru_scenes]
    # the item is fixed in the catalogue
    fixed = item_json(
        "peru",
        "peru-broken",
        peru_scenes[1],
        files.url(peru_scenes[1]),
        "1987-07-01T15:00:00Z",
        1.0,
    )
    fixed["properties"]["updated"] = "2024-01-01T00:00:00Z"
    server.load_items([fixed])
    # within its backoff the item is left alone; a forced retry reads the item again
    assert run_monitor(region, opts).passes == []
    retry = run_monitor(
        region, MonitorOptions(out_dir=tmp_path / "out", model_dir=peru_model, retry_failed=True)
    )
    assert [p.scene for p in retry.processed] == ["peru-broken"] and retry.exit_code == 0


def test_unreachable_api_is_a_runtime_error(
    naip_scenes: list[Path], naip_model: Path, tmp_path: Path
) -> None:
    monitor = (
        'source = "stac"\nurl = "http://127.0.0.1:9/stac"\ncollection = "x"\n'
        'assets = { red = "image:1", green = "image:2", blue = "image:3", nir = "image:4" }'
    )
    region = load_region(
        write_region(tmp_path, "down", naip_scenes[:1], NAIP_BANDS, ["water"], monitor)
    )
    with pytest.raises(GeotlRuntimeError, match="STAC search failed"):
        run_monitor(region, MonitorOptions(out_dir=tmp_path / "out", model_dir=naip_model))
    assert StacSource(region).band_names() == NAIP_BANDS


def test_a_mistyped_collection_is_a_config_error_naming_the_collections(
    stac_server: StacServer, naip_scenes: list[Path], naip_model: Path, tmp_path: Path
) -> None:
    server = stac_server
    server.load_collection(collection_json("naip-quiet", "a collection with no items yet"))
    region_file = _stac_region(
        tmp_path, server, "typo", naip_scenes[0], NAIP_BANDS, "naip-quiet", ["water"], 0.0
    )
    # an existing collection with nothing over the AOI is quiet, not wrong
    assert StacSource(load_region(region_file)).discover({}, None) == []
    region_file.write_text(region_file.read_text().replace('"naip-quiet"', '"naip-qiuet"'))
    with pytest.raises(ConfigError, match="collection 'naip-qiuet' is not a collection of") as err:
        StacSource(load_region(region_file)).discover({}, None)
    assert err.value.exit_code == 2 and err.value.path == region_file
    assert "naip-quiet" in str(err.value) and "\n" not in str(err.value)
    # the region's first monitor run leaves nothing behind (it kept an empty state, passes/
    # and changes/); a folder that existed before keeps what it held
    out = tmp_path / "out"
    options = MonitorOptions(out_dir=out, model_dir=naip_model)
    with pytest.raises(ConfigError, match="naip-qiuet"):
        run_monitor(load_region(region_file), options)
    assert not out.exists()
    (out / "notes").mkdir(parents=True)
    with pytest.raises(ConfigError, match="naip-qiuet"):
        run_monitor(load_region(region_file), options)
    assert sorted(p.name for p in out.iterdir()) == ["notes"]


def test_an_asset_key_no_item_has_is_a_config_error_naming_the_keys(
    stac_server: StacServer, naip_scenes: list[Path], naip_model: Path, tmp_path: Path
) -> None:
    server = stac_server
    files = server.files
    assert files is not None
    server.load_collection(collection_json("naip-keys", "items with one asset, 'image'"))
    tif = naip_scenes[0]
    server.load_items([item_json("naip-keys", "one", tif, files.url(tif), _naip_when(tif), 1.0)])
    region_file = _stac_region(
        tmp_path, server, "keys", tif, NAIP_BANDS, "naip-keys", ["water"], 0.0
    )
    assert len(StacSource(load_region(region_file)).discover({}, None)) == 1
    region_file.write_text(region_file.read_text().replace('red = "image:1"', 'red = "imgae:1"'))
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match=r"has an asset 'imgae' \(they have: image\)") as err:
        run_monitor(load_region(region_file), MonitorOptions(out_dir=out, model_dir=naip_model))
    assert err.value.exit_code == 2 and err.value.path == region_file
    assert "\n" not in str(err.value) and not out.exists()  # nothing written, no pass failed


def test_an_item_missing_an_asset_or_in_mixed_crss_waits_for_a_new_version(
    stac_server: StacServer,
    naip_scenes: list[Path],
    peru_scenes: list[Path],
    naip_model: Path,
    tmp_path: Path,
) -> None:
    server = stac_server
    files = server.files
    assert files is not None
    server.load_collection(collection_json("naip-two-assets", "rgb in one asset, nir in another"))

    def item(name: str, rgb: Path, nir: Path | None, when: str) -> dict[str, Any]:
        out = item_json("naip-two-assets", name, rgb, files.url(rgb), when, 1.0, asset_key="rgb")
        if nir is not None:
            out["assets"]["nir"] = {**out["assets"]["rgb"], "href": files.url(nir)}
        return out

    good = item("good", naip_scenes[0], naip_scenes[0], _naip_when(naip_scenes[0]))
    missing = item("no-nir", naip_scenes[1], None, _naip_when(naip_scenes[1]))
    mixed = item("mixed-crs", naip_scenes[2], peru_scenes[0], _naip_when(naip_scenes[2]))
    server.load_items([good, missing, mixed])
    monitor = (
        f'source = "stac"\nurl = "{server.url}"\ncollection = "naip-two-assets"\n'
        'assets = { red = "rgb:1", green = "rgb:2", blue = "rgb:3", nir = "nir:4" }'
    )
    region = load_region(
        write_region(
            tmp_path / "region", "two-assets", naip_scenes[:1], NAIP_BANDS, ["water"], monitor
        )
    )
    # no backoff: a failure that is retried at all is retried by the very next run
    opts = MonitorOptions(out_dir=tmp_path / "out", model_dir=naip_model, retry_base_s=0.0)
    first = run_monitor(region, opts)
    assert [p.scene for p in first.processed] == ["good"]
    assert {p.scene: p.next_attempt for p in first.failed} == {"no-nir": None, "mixed-crs": None}
    errors = {f.name: f.error or "" for f in monitor_status(region, tmp_path / "out").failed}
    assert "item has no asset 'nir' for band 'nir'" in errors["no-nir"]
    assert "cannot stack" in errors["mixed-crs"]
    assert run_monitor(region, opts).passes == []  # the same item version is not retried

    # a new version of the item (its asset added) is processed by the next run
    fixed = item("no-nir", naip_scenes[1], naip_scenes[1], _naip_when(naip_scenes[1]))
    fixed["properties"]["updated"] = "2024-01-01T00:00:00Z"
    server.load_items([fixed])
    again = run_monitor(region, opts)
    assert [p.scene for p in again.processed] == ["no-nir"] and again.failed == []


def test_max_cloud_keeps_items_that_do_not_state_their_cloud_cover(
    stac_server: StacServer,
    naip_scenes: list[Path],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = stac_server
    files = server.files
    assert files is not None
    server.load_collection(collection_json("naip-clouds", "items with and without cloud cover"))
    clear, cloudy, unknown = (
        item_json("naip-clouds", name, s, files.url(s), _naip_when(s), cloud)
        for name, s, cloud in zip(
            ("clear", "cloudy", "unknown"), naip_scenes[:3], (5.0, 80.0, 0.0), strict=True
        )
    )
    del unknown["properties"]["eo:cloud_cover"]
    server.load_items([clear, cloudy, unknown])
    region = load_region(
        _stac_region(
            tmp_path,
            server,
            "clouds",
            naip_scenes[0],
            NAIP_BANDS,
            "naip-clouds",
            ["water"],
            0.0,
            50,
        )
    )
    with caplog.at_level(logging.INFO, logger="geotl.monitor"):
        found = StacSource(region).discover({}, None)
    assert sorted(s.name for s in found) == ["clear", "unknown"]
    assert "STAC item unknown states no eo:cloud_cover: kept" in caplog.text


def test_an_item_published_late_is_found_within_lookback_days(
    stac_server: StacServer, naip_scenes: list[Path], naip_model: Path, tmp_path: Path
) -> None:
    """A catalogue that backfills an older item: found once lookback_days reaches back to it.

    The search starts a fixed three days before the newest item seen: an item published
    later than that was never processed.
    """
    server, files = stac_server, stac_server.files
    assert files is not None
    server.load_collection(collection_json("naip-late", "NAIP items published late"))
    items = [item_json("naip-late", s.stem, s, files.url(s), _naip_when(s), 0) for s in naip_scenes]
    server.load_items([items[1]])
    runs = {}
    for name, days in (("default", None), ("backfill", 20 * 365)):
        region = load_region(
            _stac_region(
                tmp_path / name,
                server,
                f"naip-{name}",
                naip_scenes[0],
                NAIP_BANDS,
                "naip-late",
                ["water"],
                200.0,
                lookback_days=days,
            )
        )
        opts = MonitorOptions(out_dir=tmp_path / name / "out", model_dir=naip_model)
        runs[name] = (region, opts)
        assert [p.scene for p in run_monitor(region, opts).processed] == [naip_scenes[1].stem]
    server.load_items([items[0]])  # an earlier pass, published after the later one was seen
    assert run_monitor(*runs["default"]).processed == []
    late = run_monitor(*runs["backfill"]).processed
    assert [p.scene for p in late] == [naip_scenes[0].stem]
