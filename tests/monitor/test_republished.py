"""Re-published passes: one acquisition is one pass (a real STAC API, real NAIP files)."""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

import pytest
import rasterio
from monitor_helpers import NAIP_BANDS, NAIP_REGEX, copy_in, write_region
from rasterio.windows import Window
from stac_server import StacServer, collection_json, item_json

from geotl.config import load_region
from geotl.monitor import MonitorOptions, monitor_status, run_monitor
from geotl.monitor.status import format_status


def _naip_when(tif: Path) -> str:
    d = tif.stem[-8:]
    return f"{d[:4]}-{d[4:6]}-{d[6:]}T17:30:00Z"


def _history(rdir: Path) -> list[dict[str, str]]:
    with open(rdir / "history.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _s2_id(tif: Path, baseline: str, version: int) -> str:
    """A Sentinel-2-like item id: the same acquisition, another processing."""
    return f"S2B_14TNT_{tif.stem[-8:]}_{baseline}_{version}_L2A"


def _stac_region(
    tmp_path: Path, server: StacServer, collection: str, imagery: Path, republished: str | None
) -> Path:
    assets = ", ".join(f'{b} = "image:{i}"' for i, b in enumerate(NAIP_BANDS, start=1))
    policy = f'republished = "{republished}"\n' if republished else ""
    monitor = (
        f'source = "stac"\nurl = "{server.url}"\ncollection = "{collection}"\n{policy}'
        f"assets = {{ {assets} }}"
    )
    return write_region(
        tmp_path / "region",
        collection,
        [imagery],
        NAIP_BANDS,
        ["water"],
        monitor,
        min_area_m2=200.0,
    )


def _items(
    server: StacServer, collection: str, scenes: list[Path], baseline: str, version: int
) -> list[dict[str, Any]]:
    files = server.files
    assert files is not None
    return [
        item_json(collection, _s2_id(s, baseline, version), s, files.url(s), _naip_when(s), 0)
        for s in scenes
    ]


@pytest.mark.stac
@pytest.mark.slow
def test_a_reprocessed_item_is_recorded_not_a_second_pass(
    stac_server: StacServer,
    naip_scenes: list[Path],
    naip_model: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Earth Search re-publishes under a new id, Planetary Computer updates in place.

    Before: the new id was a third pass of two acquisitions (compared with its own
    acquisition as "the previous pass"), and the updated item was predicted again.
    """
    server, collection = stac_server, "s2-reprocessed"
    server.load_collection(collection_json(collection, "scenes re-published by a catalogue"))
    first, second = _items(server, collection, naip_scenes[:2], "N0400", 0)
    server.load_items([first, second])
    region = load_region(_stac_region(tmp_path, server, collection, naip_scenes[0], None))
    opts = MonitorOptions(out_dir=tmp_path / "out", model_dir=naip_model)
    assert len(run_monitor(region, opts).processed) == 2

    # the newest acquisition reprocessed under a new id, and its item updated in place
    [reprocessed] = _items(server, collection, naip_scenes[1:2], "N0500", 1)
    reprocessed["properties"]["updated"] = "2025-02-01T00:00:00Z"
    second["properties"]["updated"] = "2025-02-02T00:00:00Z"
    second["assets"]["image"]["href"] += "?v=2"
    server.load_items([reprocessed, second])
    with caplog.at_level(logging.WARNING, logger="geotl.monitor"):
        run = run_monitor(region, opts)
    assert run.passes == [] and run.exit_code == 0
    rdir = tmp_path / "out" / collection
    assert [h["scene"] for h in _history(rdir)] == [first["id"], second["id"]]
    assert f"{reprocessed['id']} re-publishes pass {second['id']}" in caplog.text
    assert f"STAC item {second['id']} was updated after its pass was done" in caplog.text
    text = format_status(monitor_status(region, tmp_path / "out"))
    assert f"{reprocessed['id']} re-publishes {second['id']}" in text
    assert f"{second['id']} updated in place" in text
    assert "scenes: 2 (done 2)" in text

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="geotl.monitor"):
        assert run_monitor(region, opts).passes == []  # recorded once, not said again
    assert "re-publishes" not in caplog.text


@pytest.mark.stac
@pytest.mark.slow
def test_republished_replace_predicts_the_pass_again_under_its_name(
    stac_server: StacServer, naip_scenes: list[Path], naip_model: Path, tmp_path: Path
) -> None:
    server, collection = stac_server, "s2-replaced"
    server.load_collection(collection_json(collection, "scenes re-published, replaced"))
    first, second = _items(server, collection, naip_scenes[:2], "N0400", 0)
    server.load_items([first, second])
    region = load_region(_stac_region(tmp_path, server, collection, naip_scenes[0], "replace"))
    opts = MonitorOptions(out_dir=tmp_path / "out", model_dir=naip_model)
    run_monitor(region, opts)
    rdir = tmp_path / "out" / collection
    files_before = sorted(p.name for p in (rdir / "passes").iterdir())

    [reprocessed] = _items(server, collection, naip_scenes[1:2], "N0500", 1)
    server.load_items([reprocessed])
    run = run_monitor(region, opts)
    # the pass is predicted again from the new item, and stays one pass under its name
    assert [p.scene for p in run.processed] == [second["id"]]
    history = _history(rdir)
    assert [h["scene"] for h in history] == [first["id"], second["id"]]
    assert history[1]["previous_scene"] == first["id"]
    assert sorted(p.name for p in (rdir / "passes").iterdir()) == files_before
    text = format_status(monitor_status(region, tmp_path / "out"))
    assert f"{second['id']} superseded: pass {second['id']} predicted again" in text
    # the superseded item, still in the catalogue, is not a pass again
    assert run_monitor(region, opts).passes == []
    # a later version supersedes the replacement in turn: still one pass, both recorded
    [latest] = _items(server, collection, naip_scenes[1:2], "N0511", 2)
    server.load_items([latest])
    assert [p.scene for p in run_monitor(region, opts).processed] == [second["id"]]
    assert [h["scene"] for h in _history(rdir)] == [first["id"], second["id"]]
    republished = monitor_status(region, tmp_path / "out").to_dict()["republished"]
    assert sorted((r["scene"], r["of"], r["replaced"]) for r in republished) == [
        (second["id"], second["id"], True),
        (reprocessed["id"], second["id"], True),
    ]


def _reencoded(src: Path, dest: Path, **options: Any) -> Path:
    """The same pixels written again (another processing run, other bytes)."""
    with rasterio.open(src) as ds:
        profile = {**ds.profile, **options}
        data = ds.read()
    with rasterio.open(dest, "w", **profile) as out:
        out.write(data)
    return dest


def _timed(scene: Path, prefix: str = "") -> str:
    """The scene's file name with a sensing time (``_20090818T170000``), as ESA names carry."""
    return prefix + scene.name.replace(".tif", "T170000.tif")


@pytest.mark.slow
def test_a_file_redelivered_under_another_name_is_not_a_second_pass(
    naip_small: list[Path], naip_scenes: list[Path], naip_model: Path, tmp_path: Path
) -> None:
    """Before: the re-delivered file (other bytes, the same sensing time and ground) was a
    second pass, with its own changes against the first."""
    region_file = write_region(
        tmp_path / "region",
        "naip-redelivered",
        naip_small[:1],
        NAIP_BANDS,
        ["water"],
        'source = "folder"\npaths = ["incoming/*.tif"]',
        datetime_regex=r"_(\d{8}T\d{6})\.tif$",
        min_area_m2=200.0,
    )
    region = load_region(region_file)
    opts = MonitorOptions(out_dir=tmp_path / "out", model_dir=naip_model)
    copy_in(region_file, naip_small[0], _timed(naip_small[0]))
    assert len(run_monitor(region, opts).processed) == 1

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    again = _reencoded(naip_small[0], scratch / "again.tif", compress="packbits")
    copy_in(region_file, again, _timed(naip_small[0], "v2_"))
    # two versions of the next acquisition arriving together: one pass
    copy_in(region_file, naip_small[1], _timed(naip_small[1]))
    copy_in(
        region_file,
        _reencoded(naip_small[1], scratch / "next.tif", compress="lzw"),
        _timed(naip_small[1], "v2_"),
    )
    # the same time over other ground (another quad, a neighbouring tile) is a pass
    west = scratch / "west.tif"
    with rasterio.open(naip_scenes[1]) as ds:
        window = Window(0, 0, 256, 256)
        with rasterio.open(
            west,
            "w",
            **{**ds.profile, "width": 256, "height": 256, "transform": ds.window_transform(window)},
        ) as out:
            out.write(ds.read(window=window))
    copy_in(region_file, west, _timed(naip_scenes[1], "west_"))
    run = run_monitor(region, opts)
    assert sorted(p.scene for p in run.processed) == sorted(
        [Path(_timed(naip_small[1], "v2_")).stem, Path(_timed(naip_scenes[1], "west_")).stem]
    )
    history = _history(tmp_path / "out" / "naip-redelivered")
    assert len(history) == 3 and history[1]["previous_scene"] == history[0]["scene"]
    text = format_status(monitor_status(region, tmp_path / "out"))
    first = Path(_timed(naip_small[0])).stem
    assert f"v2_{first} re-publishes {first}" in text
    assert "re-published: 2 " in text


@pytest.mark.slow
def test_two_passes_of_one_day_known_by_their_day_alone_are_two_passes(
    naip_small: list[Path], naip_model: Path, tmp_path: Path
) -> None:
    """Files dated by their day alone (a date in the name) cannot tell a re-delivery from a
    second pass that day (Sentinel-1A in the morning, 1B in the evening): both are passes,
    never one dropped as a re-publication of the other."""
    region_file = write_region(
        tmp_path / "region",
        "naip-same-day",
        naip_small[:1],
        NAIP_BANDS,
        ["water"],
        'source = "folder"\npaths = ["incoming/*.tif"]',
        datetime_regex=NAIP_REGEX,
        min_area_m2=200.0,
    )
    region = load_region(region_file)
    opts = MonitorOptions(out_dir=tmp_path / "out", model_dir=naip_model)
    copy_in(region_file, naip_small[0])
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    evening = _reencoded(naip_small[0], scratch / "evening.tif", compress="packbits")
    copy_in(region_file, evening, f"evening_{naip_small[0].name}")
    run = run_monitor(region, opts)
    assert len(run.processed) == 2
    assert "re-published" not in format_status(monitor_status(region, tmp_path / "out"))
