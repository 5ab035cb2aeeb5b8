"""The pass loop over a folder source, with the real NAIP and Peru Landsat series."""

from __future__ import annotations

import csv
import itertools
import json
import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import geopandas as gpd
import pytest
from monitor_helpers import (
    copy_in,
    deliver,
    peru_folder_region,
    write_region,
)

from geotl.config import load_region
from geotl.errors import BandMismatchError, ConfigError
from geotl.models.artefact import read_card
from geotl.monitor import MonitorOptions, MonitorState, monitor_status, pass_stem, run_monitor


def _history(rdir: Path) -> list[dict[str, str]]:
    with open(rdir / "history.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _fc(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.mark.slow
def test_naip_series_as_a_stream_of_passes(
    naip_region: Path, naip_scenes: list[Path], naip_model: Path, tmp_path: Path
) -> None:
    region = load_region(naip_region)
    out = tmp_path / "out"
    opts = MonitorOptions(out_dir=out, model_dir=naip_model)
    rdir = out / "naip-nd"
    model_id = read_card(naip_model).model_id

    # nothing has arrived yet: an empty run writes empty outputs
    first = run_monitor(region, opts)
    assert first.exit_code == 0 and first.passes == []
    assert _fc(rdir / "latest.geojson")["features"] == []

    # passes arrive in three batches
    for batch in (naip_scenes[:3], naip_scenes[3:7], naip_scenes[7:]):
        deliver(naip_region, batch)
        summary = run_monitor(region, opts)
        assert summary.exit_code == 0
        assert [p.scene for p in summary.processed] == [s.stem for s in batch]

    history = _history(rdir)
    assert [h["scene"] for h in history] == [s.stem for s in naip_scenes]
    assert [h["acquired"][:10] for h in history] == [
        f"{s.stem[-8:-4]}-{s.stem[-4:-2]}-{s.stem[-2:]}" for s in naip_scenes
    ]
    assert history[0]["new"] == "" and history[0]["previous_scene"] == ""
    for prev, row in itertools.pairwise(history):
        assert row["previous_scene"] == prev["scene"]
        assert int(row["detections"]) > 0
    # the lakes change between years: some objects are new or gone somewhere in the series
    assert sum(int(h["new"]) + int(h["gone"]) for h in history[1:]) > 0

    for scene in naip_scenes:
        when = datetime.strptime(scene.stem[-8:], "%Y%m%d").replace(tzinfo=UTC)
        stem = pass_stem(when, scene.stem)
        fc = _fc(rdir / "passes" / f"{stem}.geojson")
        row = next(h for h in history if h["scene"] == scene.stem)
        assert len(fc["features"]) == int(row["detections"])
        props = fc["features"][0]["properties"]
        assert set(props) >= {"id", "class", "score", "area_m2", "scene", "acquired", "model"}
        assert props["model"] == model_id and props["acquired"].startswith(when.date().isoformat())
        changes = _fc(rdir / "changes" / f"{stem}.geojson")
        kinds = [f["properties"]["change"] for f in changes["features"]]
        if row["new"]:
            assert kinds.count("new") == int(row["new"]) and kinds.count("gone") == int(row["gone"])
            assert all(
                f["properties"]["previous_scene"] == row["previous_scene"]
                for f in changes["features"]
            )

    # latest.geojson = the newest pass (all passes share one footprint)
    latest = _fc(rdir / "latest.geojson")
    last = _fc(
        rdir
        / "passes"
        / f"{pass_stem(datetime(2020, 8, 31, tzinfo=UTC), naip_scenes[-1].stem)}.geojson"
    )
    assert sorted(f["id"] for f in latest["features"]) == sorted(f["id"] for f in last["features"])

    # nothing new: a rerun processes nothing and rewrites nothing
    mtime = (rdir / "history.csv").stat().st_mtime_ns
    again = run_monitor(region, opts)
    assert again.passes == [] and again.exit_code == 0
    assert (rdir / "history.csv").stat().st_mtime_ns == mtime

    status = monitor_status(region, out)
    assert status.by_status == {"done": 10} and not status.failed
    with MonitorState(rdir / "state.sqlite", readonly=True) as state:
        assert len(state.done_passes(model_id)) == 10
        assert all(p.attempts == 1 for p in state.done_passes(model_id))
    assert not list(rdir.rglob(".tmp-*"))


@pytest.mark.slow
def test_peru_landsat_series_with_year_only_dates(
    tmp_path: Path, peru_scenes: list[Path], peru_model: Path
) -> None:
    region_file = peru_folder_region(tmp_path / "region", peru_scenes[:1])
    region = load_region(region_file)
    opts = MonitorOptions(out_dir=tmp_path / "out", model_dir=peru_model)
    # epochs arrive out of order: the late 1990 pass is compared with 1985 and
    # becomes the previous pass of 1995 (whose changes are recomputed)
    deliver(region_file, [peru_scenes[0], *peru_scenes[2:5]])
    assert len(run_monitor(region, opts).processed) == 4
    rdir = tmp_path / "out" / "peru"
    assert _history(rdir)[1]["previous_scene"] == "1985"
    deliver(region_file, peru_scenes)
    summary = run_monitor(region, opts)
    assert [p.scene for p in summary.processed] == ["1990", "2010", "2015", "2020"]
    history = _history(rdir)
    assert [h["scene"] for h in history] == [s.stem for s in peru_scenes]
    assert [h["previous_scene"] for h in history] == ["", *[s.stem for s in peru_scenes[:-1]]]
    assert history[0]["acquired"].startswith("1985-01-01")
    assert all(int(h["detections"]) > 0 for h in history)


def test_failing_scene_is_recorded_retried_and_never_blocks(
    naip_region: Path, naip_small: list[Path], naip_model: Path, tmp_path: Path
) -> None:
    region = load_region(naip_region)
    out = tmp_path / "out"
    deliver(naip_region, naip_small[:2])
    corrupt = naip_region.parent / "incoming" / "m_4709963_se_14_1_20110101.tif"
    corrupt.write_bytes(b"II*\x00 this is not a GeoTIFF")
    opts = MonitorOptions(out_dir=out, model_dir=naip_model, retry_base_s=3600)
    summary = run_monitor(region, opts)
    assert summary.exit_code == 1
    assert [p.scene for p in summary.processed] == [s.stem for s in naip_small[:2]]
    assert [p.scene for p in summary.failed] == [corrupt.stem]
    status = monitor_status(region, out)
    assert [f.name for f in status.failed] == [corrupt.stem]
    assert status.failed[0].attempts == 1 and status.failed[0].next_attempt is not None
    assert "cannot be read" in (status.failed[0].error or "")
    assert "copy it again" in (status.failed[0].error or "")  # the fix, not only the symptom

    # within the backoff the failed scene is not retried; new passes still go through
    deliver(naip_region, naip_small[2:3])
    summary = run_monitor(region, opts)
    assert [p.scene for p in summary.processed] == [naip_small[2].stem] and not summary.failed

    # --retry-failed retries now: still corrupt, attempts grow, backoff doubles
    summary = run_monitor(
        region, MonitorOptions(out_dir=out, model_dir=naip_model, retry_failed=True)
    )
    assert [p.scene for p in summary.failed] == [corrupt.stem]
    first_retry = monitor_status(region, out).failed[0]
    assert first_retry.attempts == 2

    # the file is replaced by a good one: its fingerprint changes and it is processed at once
    corrupt.unlink()
    copy_in(naip_region, naip_small[3], corrupt.name)
    summary = run_monitor(region, opts)
    assert [p.scene for p in summary.processed] == [corrupt.stem] and summary.exit_code == 0
    assert monitor_status(region, out).by_status == {"done": 4}
    # changes of the pass after it (2012) are now computed against it (2011)
    rows = {h["scene"]: h for h in _history(out / "naip-nd")}
    assert rows[naip_small[2].stem]["previous_scene"] == corrupt.stem


def test_a_failed_file_removed_from_the_folder_is_forgotten(
    naip_region: Path, naip_model: Path, tmp_path: Path
) -> None:
    # the operator deletes a half-copied file: it was retried (and the run exited 1) until
    # its retries ran out, and status listed it as failed for ever
    region = load_region(naip_region)
    out = tmp_path / "out"
    broken = naip_region.parent / "incoming" / "m_4709963_se_14_1_20110101.tif"
    broken.write_bytes(b"II*\x00 half a copy")
    opts = MonitorOptions(out_dir=out, model_dir=naip_model, retry_failed=True)
    assert run_monitor(region, opts).exit_code == 1
    broken.unlink()
    summary = run_monitor(region, opts)
    assert summary.exit_code == 0 and not summary.failed
    status = monitor_status(region, out)
    assert status.scenes == 0 and not status.failed and status.last_run_outcome == "ok"
    # should it come back, it is a new scene
    broken.write_bytes(b"II*\x00 half a copy again")
    summary = run_monitor(region, opts)
    assert summary.found == 1 and [p.scene for p in summary.failed] == [broken.stem]
    assert monitor_status(region, out).failed[0].attempts == 1


def test_a_pass_at_another_resolution_waits_for_a_fix_then_resamples(
    naip_region: Path, naip_small: list[Path], naip_model: Path, tmp_path: Path
) -> None:
    import rasterio
    from rasterio.enums import Resampling

    region = load_region(naip_region)
    out = tmp_path / "out"
    coarse = naip_region.parent / "incoming" / naip_small[0].name
    coarse.parent.mkdir(exist_ok=True)
    with rasterio.open(naip_small[0]) as src:  # 10 m pixels for the 5 m model
        profile = {**src.profile, "width": 128, "height": 128}
        profile["transform"] = src.transform @ src.transform.scale(2, 2)
        with rasterio.open(coarse, "w", **profile) as dst:
            dst.write(src.read(out_shape=(src.count, 128, 128), resampling=Resampling.average))
    opts = MonitorOptions(out_dir=out, model_dir=naip_model)
    summary = run_monitor(region, opts)
    assert [p.scene for p in summary.failed] == [coarse.stem]
    failed = monitor_status(region, out).failed[0]
    assert "--resample" in (failed.error or "") and failed.next_attempt is None  # not retried
    resampled = MonitorOptions(out_dir=out, model_dir=naip_model, resample=True, retry_failed=True)
    summary = run_monitor(region, resampled)
    assert [p.scene for p in summary.processed] == [coarse.stem] and summary.exit_code == 0


def test_a_deleted_pass_file_is_predicted_again(
    naip_region: Path, naip_small: list[Path], naip_model: Path, tmp_path: Path
) -> None:
    region = load_region(naip_region)
    out = tmp_path / "out"
    deliver(naip_region, naip_small[:3])
    opts = MonitorOptions(out_dir=out, model_dir=naip_model)
    assert len(run_monitor(region, opts).processed) == 3
    passes = sorted((out / "naip-nd" / "passes").glob("*.geojson"))
    kept = passes[1].read_bytes()
    passes[1].unlink()  # a clean-up that went too far
    deliver(naip_region, naip_small[3:4])
    summary = run_monitor(region, opts)
    # the lost pass first (oldest first), then the new one, compared with it
    assert [p.scene for p in summary.processed] == [naip_small[1].stem, naip_small[3].stem]
    assert summary.exit_code == 0 and passes[1].read_bytes() == kept
    assert monitor_status(region, out).by_status == {"done": 4}
    assert len(_history(out / "naip-nd")) == 4


def test_exactly_once_per_model_and_reprocess(
    naip_region: Path,
    naip_small: list[Path],
    naip_model: Path,
    naip_model_v2: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    region = load_region(naip_region)
    out = tmp_path / "out"
    deliver(naip_region, naip_small[:3])
    assert (
        len(run_monitor(region, MonitorOptions(out_dir=out, model_dir=naip_model)).processed) == 3
    )
    # a new model without --reprocess: old passes stay, only new scenes use it
    v2 = MonitorOptions(out_dir=out, model_dir=naip_model_v2)
    assert run_monitor(region, v2).processed == []
    deliver(naip_region, naip_small[3:4])
    with caplog.at_level(logging.WARNING, logger="geotl.monitor"):
        assert [p.scene for p in run_monitor(region, v2).processed] == [naip_small[3].stem]
    # its changes are against the old model's pass: the log says they may be the model's
    crossed = [r.getMessage() for r in caplog.records if "which model" in r.getMessage()]
    assert len(crossed) == 1 and read_card(naip_model).model_id in crossed[0]
    assert "--reprocess" in crossed[0]
    # --reprocess redoes the three older scenes with the new model, once
    redo = MonitorOptions(out_dir=out, model_dir=naip_model_v2, reprocess=True)
    assert [p.scene for p in run_monitor(region, redo).processed] == [
        s.stem for s in naip_small[:3]
    ]
    assert run_monitor(region, redo).processed == []
    v2_id = read_card(naip_model_v2).model_id
    history = _history(out / "naip-nd")
    assert len(history) == 4 and {h["model"] for h in history} == {v2_id}
    latest = gpd.read_file(out / "naip-nd" / "latest.geojson")
    assert set(latest["model"]) == {v2_id}


def test_band_mismatch_and_missing_model_are_input_errors(
    naip_region: Path, peru_model: Path, tmp_path: Path
) -> None:
    region = load_region(naip_region)
    with pytest.raises(BandMismatchError, match="swir16"):
        run_monitor(region, MonitorOptions(out_dir=tmp_path / "out", model_dir=peru_model))
    with pytest.raises(ConfigError, match="--model"):
        run_monitor(region, MonitorOptions(out_dir=tmp_path / "out"))


def test_acquisition_time_falls_back_to_mtime(
    naip_region: Path,
    naip_small: list[Path],
    naip_model: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    region = load_region(naip_region)
    target = copy_in(naip_region, naip_small[0], "no-date-here.tif")
    os.utime(target, (1_600_000_000, 1_600_000_000))
    with caplog.at_level(logging.WARNING, logger="geotl"):
        summary = run_monitor(
            region, MonitorOptions(out_dir=tmp_path / "out", model_dir=naip_model)
        )
    assert summary.processed[0].acquired == datetime.fromtimestamp(1_600_000_000, tz=UTC)
    assert "modification time" in caplog.text
    assert (
        tmp_path / "out" / "naip-nd" / "passes" / "20200913T122640Z_no-date-here.geojson"
    ).exists()


def test_a_redone_pass_with_another_date_leaves_no_old_files(
    naip_region: Path, naip_small: list[Path], naip_model: Path, tmp_path: Path
) -> None:
    """A file dated by its modification time is replaced: one pass, one set of files."""
    region = load_region(naip_region)
    opts = MonitorOptions(out_dir=tmp_path / "out", model_dir=naip_model)
    rdir = tmp_path / "out" / "naip-nd"
    target = copy_in(naip_region, naip_small[0], "no-date-here.tif")
    os.utime(target, (1_600_000_000, 1_600_000_000))
    assert len(run_monitor(region, opts).processed) == 1
    copy_in(naip_region, naip_small[1], "no-date-here.tif")
    os.utime(target, (1_600_086_400, 1_600_086_400))
    assert len(run_monitor(region, opts).processed) == 1
    [row] = _history(rdir)
    assert row["pass_file"] == "passes/20200914T122640Z_no-date-here.geojson"
    for sub in ("passes", "changes"):
        assert [p.name for p in (rdir / sub).glob("*.geojson")] == [
            "20200914T122640Z_no-date-here.geojson"
        ]


def test_a_scheduled_pass_runs_without_torch(
    naip_region: Path, naip_small: list[Path], naip_model: Path, tmp_path: Path
) -> None:
    """Each cron run is a fresh process: after the first (which exports the model to ONNX
    for ONNX Runtime, once), the passes are predicted without importing torch."""
    import subprocess
    import sys

    run = (
        "import atexit, sys\n"
        "atexit.register(lambda: print('TORCH', 'torch' in sys.modules, file=sys.stderr))\n"
        "from geotl.cli.main import main\n"
        "sys.argv[0] = 'geotl'\n"
        "main()\n"
    )
    out = tmp_path / "out"
    args = ["monitor", str(naip_region), "--model", str(naip_model), "--out", str(out), "--once"]
    cache = str(tmp_path / "cache")  # this test's own: the first run exports the model
    said = []
    for scenes in (naip_small[:1], naip_small[1:3]):
        deliver(naip_region, scenes)
        proc = subprocess.run(
            [sys.executable, "-c", run, *args],
            capture_output=True,
            text=True,
            env={**os.environ, "OMP_NUM_THREADS": "1", "GEOTL_CACHE_DIR": cache},
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        said.append(next(ln for ln in proc.stderr.splitlines() if ln.startswith("TORCH")))
    assert said == ["TORCH True", "TORCH False"]
    with MonitorState(out / "naip-nd" / "state.sqlite", readonly=True) as state:
        assert len(state.done_passes()) == 3


@pytest.mark.parametrize("side", ["east", "west"])
def test_latest_keeps_an_object_across_a_newer_pass_edge_once(
    tmp_path: Path, naip_small: list[Path], naip_model: Path, side: str
) -> None:
    """A newer pass that covers part of an object: latest.geojson holds it once, whole."""
    import rasterio
    from rasterio.windows import Window

    (tmp_path / "region" / "incoming").mkdir(parents=True)
    region_file = write_region(
        tmp_path / "region",
        "edge",
        naip_small[:1],
        ["red", "green", "blue", "nir"],
        ["water"],
        'source = "folder"\npaths = ["incoming/*.tif"]',
        datetime_regex=r"_(\d{8})\.tif$",
    )
    scene = naip_small[1]
    copy_in(region_file, scene, "p_20100629.tif")
    region = load_region(region_file)
    opts = MonitorOptions(out_dir=tmp_path / "out", model_dir=naip_model)
    rdir = tmp_path / "out" / "edge"
    assert run_monitor(region, opts).exit_code == 0
    first = gpd.read_file(next((rdir / "passes").glob("*p_20100629.geojson")))
    # a later pass of the same image, cut through the middle of its largest object
    with rasterio.open(scene) as src:
        big = first.to_crs(src.crs).geometry.iloc[int(first["area_m2"].idxmax())]
        _, col0 = src.index(big.bounds[0], big.bounds[3])
        _, col1 = src.index(big.bounds[2], big.bounds[1])
        cut = (col0 + col1) // 2
        window = (
            Window(cut, 0, src.width - cut, src.height)
            if side == "east"
            else Window(0, 0, cut, src.height)
        )
        profile = {
            **src.profile,
            "width": window.width,
            "height": window.height,
            "transform": src.window_transform(window),
        }
        with rasterio.open(
            region_file.parent / "incoming" / f"{side}_20100703.tif", "w", **profile
        ) as dst:
            dst.write(src.read(window=window))
    assert run_monitor(region, opts).exit_code == 0

    latest = gpd.read_file(rdir / "latest.geojson").to_crs("EPSG:32614")
    # no two features of latest.geojson overlap (the object was there twice: whole from the
    # first pass, its eastern part from the second)
    left, right = latest.sindex.query(latest.geometry, predicate="intersects")
    overlaps = [
        latest.geometry.iloc[i].intersection(latest.geometry.iloc[j]).area
        for i, j in zip(left, right, strict=True)
        if i < j
    ]
    assert max(overlaps, default=0.0) < 1.0  # (counts differ: the strip's edge windows see
    # small objects otherwise, by model and thread count)
    # the same ground, the same image: the same water, to the footprint's seam
    assert latest["area_m2"].sum() == pytest.approx(first["area_m2"].sum(), rel=0.03)
    assert f"{side}_20100703.tif" in set(latest["scene"])


def test_the_same_pass_under_another_name_is_one_pass(
    naip_region: Path, naip_small: list[Path], naip_model: Path, tmp_path: Path
) -> None:
    region = load_region(naip_region)
    out = tmp_path / "out"
    opts = MonitorOptions(out_dir=out, model_dir=naip_model)
    deliver(naip_region, naip_small[:2])
    # the second pass delivered twice in one batch, under another name
    copy_in(naip_region, naip_small[1], "resent_" + naip_small[1].name)
    first = run_monitor(region, opts)
    assert [p.scene for p in first.processed] == [s.stem for s in naip_small[:2]]
    # the first pass again, later, under another name and date
    copy_in(naip_region, naip_small[0], "again_20210101.tif")
    assert run_monitor(region, opts).passes == []
    assert run_monitor(region, opts).passes == []  # remembered, not compared again
    history = _history(out / "naip-nd")
    assert [h["scene"] for h in history] == [s.stem for s in naip_small[:2]]
    assert len(list((out / "naip-nd" / "passes").glob("*.geojson"))) == 2

    # a copy that is then replaced by another image is a pass
    copy_in(naip_region, naip_small[2], "again_20210101.tif")
    later = run_monitor(region, opts)
    assert [p.scene for p in later.processed] == ["again_20210101"]
    assert later.processed[0].previous_scene == naip_small[1].stem


def test_a_moved_project_folder_keeps_its_passes(
    naip_region: Path, naip_small: list[Path], naip_model: Path, tmp_path: Path
) -> None:
    """Region file, incoming passes and --out moved together (mv keeps names and times)."""
    import shutil

    for scene in naip_small[:2]:
        copy_in(naip_region, scene)
    out = naip_region.parent / "out"
    first = run_monitor(load_region(naip_region), MonitorOptions(out_dir=out, model_dir=naip_model))
    assert len(first.processed) == 2
    moved = tmp_path / "moved"
    shutil.move(naip_region.parent, moved)
    region = load_region(moved / naip_region.name)
    opts = MonitorOptions(out_dir=moved / "out", model_dir=naip_model)
    again = run_monitor(region, opts)
    assert again.passes == [] and again.found == 0
    history = _history(moved / "out" / "naip-nd")
    assert [h["scene"] for h in history] == [s.stem for s in naip_small[:2]]
    status = monitor_status(region, moved / "out")
    assert status.by_status == {"done": 2} and status.scenes == 2
    # the next pass is compared with the moved ones
    copy_in(moved / naip_region.name, naip_small[2])
    later = run_monitor(region, opts)
    assert [p.previous_scene for p in later.processed] == [naip_small[1].stem]


def test_a_change_beyond_the_last_partial_pass_is_found(
    tmp_path: Path, naip_small: list[Path], naip_model: Path
) -> None:
    """A full pass, a strip of it, then a full pass again: changes where the strip did not
    look are found against the first pass (they were compared with the strip alone)."""
    import rasterio
    from rasterio.windows import Window
    from shapely.geometry import box

    from geotl.monitor.runner import predict_detector

    (tmp_path / "region" / "incoming").mkdir(parents=True)
    region_file = write_region(
        tmp_path / "region",
        "strips",
        naip_small[:1],
        ["red", "green", "blue", "nir"],
        ["water"],
        'source = "folder"\npaths = ["incoming/*.tif"]',
        datetime_regex=r"_(\d{8})\.tif$",
    )
    incoming = region_file.parent / "incoming"
    scene = naip_small[1]
    copy_in(region_file, scene, "a_20100629.tif")
    with rasterio.open(scene) as src:
        east = Window(128, 0, src.width - 128, src.height)
        profile = {
            **src.profile,
            "width": east.width,
            "height": east.height,
            "transform": src.window_transform(east),
        }
        with rasterio.open(incoming / "b_20100703.tif", "w", **profile) as dst:
            dst.write(src.read(window=east))
        strip_west_edge = src.xy(0, 128)[0]
        inner = box(*src.bounds).buffer(-170)  # away from the scene's edges (edge margin)
        crs = src.crs
    region = load_region(region_file)
    opts = MonitorOptions(out_dir=tmp_path / "out", model_dir=naip_model)
    assert len(run_monitor(region, opts).processed) == 2
    rdir = tmp_path / "out" / "strips"
    first = gpd.read_file(rdir / "passes" / "20100629T000000Z_a_20100629.geojson")
    geoms = first.to_crs(crs).geometry
    west = first[  # wholly west of b, mostly away from the scene's edges
        (geoms.bounds["maxx"] < strip_west_edge).to_numpy()
        & (geoms.intersection(inner).area >= 0.6 * geoms.area).to_numpy()
    ]
    assert len(west) > 0

    # the third pass sees the whole scene again (the same image, other bytes: no copy); the
    # west objects have gone
    with (
        rasterio.open(scene) as src,
        rasterio.open(incoming / "c_20100705.tif", "w", **src.profile) as dst,
    ):
        dst.write(src.read())
        dst.update_tags(PASS="c")
    detect = predict_detector(region, ["red", "green", "blue", "nir"])

    def drained(artefact: Any, path: Path, pass_scene: Any) -> gpd.GeoDataFrame:
        found = detect(artefact, path, pass_scene)
        x_found = found.to_crs(crs).representative_point().x.to_numpy()
        kept: gpd.GeoDataFrame = found[x_found >= strip_west_edge]
        return kept

    summary = run_monitor(region, opts, detector=drained)
    [c] = summary.processed
    assert c.previous_scene == "b_20100703"
    changes = gpd.read_file(rdir / "changes" / "20100705T000000Z_c_20100705.geojson")
    gone = changes[changes["change"] == "gone"]
    # gone since a, the last pass that saw that ground (compared with b alone: 0 gone)
    assert c.gone == len(gone) > 0
    gone_area = gone.to_crs(crs).union_all()
    for geom in west.to_crs(crs).geometry:
        assert geom.intersection(gone_area).area >= 0.5 * geom.area


def test_status_says_why_the_last_run_failed(
    naip_region: Path, naip_model: Path, tmp_path: Path
) -> None:
    """A run that ended in error showed "error" alone: the operator had to dig in the logs."""
    from geotl.errors import GeotlRuntimeError
    from geotl.monitor import format_status
    from geotl.monitor.runner import Monitor

    region = load_region(naip_region)
    out = tmp_path / "out"
    with Monitor(region, MonitorOptions(out_dir=out, model_dir=naip_model)) as monitor:

        def unreachable(*args: Any, **kwargs: Any) -> Any:
            raise GeotlRuntimeError("search failed (HTTP 503): the catalogue is down")

        real = monitor.source.discover
        monitor.source.discover = unreachable  # type: ignore[method-assign]
        with pytest.raises(GeotlRuntimeError):
            monitor.run_once()
        status = monitor_status(region, out)
        assert status.last_run_outcome == "error"
        assert "the catalogue is down" in format_status(status)
        assert status.to_dict()["last_run"]["error"].endswith("the catalogue is down")
        monitor.source.discover = real  # type: ignore[method-assign]
        assert monitor.run_once().exit_code == 0
    status = monitor_status(region, out)
    assert status.last_run_outcome == "ok" and status.last_run_error is None
    assert "catalogue" not in format_status(status)


def test_a_pass_the_model_sees_nothing_in_is_warned(
    naip_region: Path,
    naip_small: list[Path],
    naip_model: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # a pass the model does not fit (NAIP 2015 is hazy: water's NIR above 55 drove a water
    # model to 0 detections): every lake "gone", then all "new" on the next pass, unwarned
    import numpy as np
    import rasterio

    region = load_region(naip_region)
    deliver(naip_region, naip_small[1:2])  # 2010
    blank = copy_in(naip_region, naip_small[1], naip_small[2].name)  # "2012": no water seen
    with rasterio.open(blank, "r+") as ds:
        field = np.array([120, 130, 110, 200], dtype="uint8")[:, None, None]
        ds.write(np.broadcast_to(field, (4, ds.height, ds.width)))
    opts = MonitorOptions(out_dir=tmp_path / "out", model_dir=naip_model)
    with caplog.at_level("WARNING", logger="geotl.monitor.passes"):
        summary = run_monitor(region, opts)
    first, second = summary.processed
    assert first.detections and first.detections >= 10
    assert second.detections == 0 and second.gone and second.gone >= 5
    warned = [r.getMessage() for r in caplog.records if "no detections" in r.getMessage()]
    assert len(warned) == 1 and blank.stem in warned[0] and "may not fit" in warned[0]
