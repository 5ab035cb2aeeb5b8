#!/usr/bin/env python
"""Benchmark geotl monitor.

1. Overhead of one monitor pass over a plain ``geotl predict`` of the same scene
   (goal <= 1.1), with the tests' tiny water detector (the worst case: the cheapest model).
   Measured directly (noisy on a shared machine) and as ``(predict + bookkeeping) /
   predict``, where bookkeeping is the same pass with cached detections (no model run). Both load the model and write GeoJSON; the pass also takes the lock,
   lists the folder, reads/writes the SQLite state, computes the valid-data footprint,
   compares with the previous pass (reads its GeoJSON), writes the changes GeoJSON and
   rebuilds history.csv + latest.geojson. Runs alternate; medians are compared.
2. Time to decide that nothing is new on a catalogue of 10,000 items:
   a. folder source: 10,000 files in the watched folder, all already in the state;
   b. STAC source (``--stac``, needs PostgreSQL + PostGIS): 10,000 items in pgstac served by
      stac-fastapi, all already processed; the search asks only for items since the last pass.

Usage:
    .venv/bin/python scripts/bench_monitor.py [--repeats 5] [--items 10000] [--stac]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "monitor"))

from monitor_helpers import NAIP_BANDS, NAIP_REGEX, write_region  # noqa: E402

from geotl.config import load_region  # noqa: E402
from geotl.models.artefact import BaseModelRef, ModelCard, Normalisation, write_artefact  # noqa: E402
from geotl.models.network import NetworkSpec, build_network  # noqa: E402
from geotl.monitor import MonitorOptions, MonitorState, run_monitor  # noqa: E402
from geotl.monitor.sources import Scene, make_source  # noqa: E402
from geotl.predict import PredictOptions, predict_scenes  # noqa: E402

SERIES = REPO.parent / "shared" / "data" / "naip-landsat-timeseries" / "naip"


def make_model(out: Path, tiny: bool) -> Path:
    """A U-Net with random weights: efficientnet-lite0 (realistic cost) or the tiny test net."""
    import torch

    torch.manual_seed(0)
    if tiny:
        spec = NetworkSpec(
            encoder="tu-mobilenetv3_small_050",
            in_channels=4,
            num_classes=2,
            encoder_depth=3,
            decoder_channels=(32, 16, 8),
        )
    else:
        spec = NetworkSpec(encoder="tu-efficientnet_lite0", in_channels=4, num_classes=2)
    card = ModelCard(
        name="bench",
        classes=["water"],
        bands=NAIP_BANDS,
        normalisation=Normalisation(mean=[100.0] * 4, std=[40.0] * 4),
        chip_size_px=256,
        resolution_m=5.0,
        network=spec,
        base=BaseModelRef(id="none", architecture="unet", licence="MIT", commercial_use=True),
        freeze="none",
        threshold=0.5,
    )
    write_artefact(out, build_network(spec), card)
    return out


def bench_overhead(work: Path, repeats: int) -> dict[str, float]:
    from tinymodel import build_tiny_model, water_rule

    scenes = sorted(SERIES.glob("m_*.tif"))
    previous, target = scenes[-2], scenes[-1]
    # the tests' tiny water detector: real-looking detections (lakes) at the lowest model cost,
    # so this is the worst case for the monitor's relative overhead
    model = work / "model"
    build_tiny_model(model, scenes[:2], NAIP_BANDS, 5.0, "water", water_rule, name="bench-water")
    region_file = write_region(
        work / "region",
        "bench",
        [previous],
        NAIP_BANDS,
        ["water"],
        'source = "folder"\npaths = ["incoming/*.tif"]',
        datetime_regex=NAIP_REGEX,
        min_area_m2=200.0,
    )
    incoming = region_file.parent / "incoming"
    incoming.mkdir()
    os.symlink(previous, incoming / previous.name)
    region = load_region(region_file)
    warm = work / "warm"
    run_monitor(region, MonitorOptions(out_dir=warm, model_dir=model))  # the previous pass
    os.symlink(target, incoming / target.name)
    options = PredictOptions.from_region(region, progress=False)

    predict_s: list[float] = []
    monitor_s: list[float] = []
    for i in range(repeats):
        out_geojson = work / f"predict-{i}.geojson"
        t0 = time.perf_counter()
        predict_scenes(model, [target], out_geojson, options=options, overwrite=True)
        predict_s.append(time.perf_counter() - t0)

        out = work / f"monitor-{i}"
        shutil.copytree(warm, out)
        t0 = time.perf_counter()
        summary = run_monitor(region, MonitorOptions(out_dir=out, model_dir=model))
        monitor_s.append(time.perf_counter() - t0)
        assert [p.scene for p in summary.processed] == [target.stem], summary
        n_pred = len(json.loads(out_geojson.read_text())["features"])
        assert summary.processed[0].detections == n_pred, (summary.processed[0].detections, n_pred)
    # the monitor's own work, without the model: the same pass with cached detections
    from geotl.models.artefact import load_artefact
    from geotl.predict import predict_scene

    cached = predict_scene(load_artefact(model), target, options).features

    def detector(_artefact, _path, _scene):  # type: ignore[no-untyped-def]
        return cached.copy()

    book_s: list[float] = []
    for i in range(repeats):
        out = work / f"bookkeeping-{i}"
        shutil.copytree(warm, out)
        t0 = time.perf_counter()
        run_monitor(region, MonitorOptions(out_dir=out, model_dir=model), detector=detector)
        book_s.append(time.perf_counter() - t0)
    med_p, med_m, med_b = (
        statistics.median(predict_s),
        statistics.median(monitor_s),
        statistics.median(book_s),
    )
    # context: plain predict with a realistically sized network (EfficientNet-Lite0 U-Net)
    lite0 = make_model(work / "model-lite0", tiny=False)
    lite0_s: list[float] = []
    for i in range(repeats):
        t0 = time.perf_counter()
        predict_scenes(
            lite0, [target], work / f"lite0-{i}.geojson", options=options, overwrite=True
        )
        lite0_s.append(time.perf_counter() - t0)
    med_l = statistics.median(lite0_s)
    return {
        "detections": len(cached),
        "predict_s_median": round(med_p, 3),
        "monitor_pass_s_median": round(med_m, 3),
        "ratio_measured": round(med_m / med_p, 3),
        "bookkeeping_s_median": round(med_b, 3),
        "ratio_from_bookkeeping": round((med_p + med_b) / med_p, 3),
        "lite0_predict_s_median": round(med_l, 3),
        "lite0_ratio_from_bookkeeping": round((med_l + med_b) / med_l, 3),
        "predict_s": [round(v, 3) for v in predict_s],  # type: ignore[dict-item]
        "monitor_pass_s": [round(v, 3) for v in monitor_s],  # type: ignore[dict-item]
        "bookkeeping_s": [round(v, 3) for v in book_s],  # type: ignore[dict-item]
        "lite0_predict_s": [round(v, 3) for v in lite0_s],  # type: ignore[dict-item]
    }


def _fill_state(state: MonitorState, scenes: list[Scene], source: str, model_id: str) -> None:
    now = datetime.now(UTC)
    state.record_scenes(scenes, source, model_id, now)
    with state.transaction() as db:
        db.execute(
            "UPDATE jobs SET status = 'done', attempts = 1, finished = ?, duration_s = 1.0, detections = 0, "
            "pass_path = NULL, changes_path = NULL WHERE model_id = ?",
            (now.isoformat(timespec="microseconds"), model_id),
        )


def bench_folder_nothing_new(work: Path, items: int) -> dict[str, float]:
    model = make_model(work / "model-tiny", tiny=True)
    from geotl.models.artefact import read_card

    model_id = read_card(model).model_id
    anchor = sorted(SERIES.glob("m_*.tif"))[0]
    region_file = write_region(
        work / "region-10k",
        "bench-10k",
        [anchor],
        NAIP_BANDS,
        ["water"],
        'source = "folder"\npaths = ["incoming/*.tif"]',
        datetime_regex=NAIP_REGEX,
    )
    incoming = region_file.parent / "incoming"
    incoming.mkdir()
    start = datetime(1990, 1, 1)
    for i in range(items):
        day = (start + timedelta(days=i)).strftime("%Y%m%d")
        os.symlink(anchor, incoming / f"pass_{i:05d}_{day}.tif")
    region = load_region(region_file)
    source = make_source(region)
    t0 = time.perf_counter()
    scenes = source.discover({}, None)
    first_listing_s = time.perf_counter() - t0
    out = work / "out-10k"
    with MonitorState(out / "bench-10k" / "state.sqlite") as state:
        _fill_state(state, scenes, "folder", model_id)
    # the decision alone: list + stat the folder, compare with the state, ask for due jobs
    with MonitorState(out / "bench-10k" / "state.sqlite") as state:
        t0 = time.perf_counter()
        known = state.known_fingerprints()
        new = source.discover(known, state.latest_acquired())
        due = state.due_jobs(model_id, datetime.now(UTC))
        decide_s = time.perf_counter() - t0
    assert new == [] and due == []
    # a whole `geotl monitor --once` run (lock, model load, state, decision); the first run
    # writes history.csv / latest.geojson once, the second is the steady state
    run_monitor(region, MonitorOptions(out_dir=out, model_dir=model))
    t0 = time.perf_counter()
    summary = run_monitor(region, MonitorOptions(out_dir=out, model_dir=model))
    run_s = time.perf_counter() - t0
    assert summary.passes == [] and summary.found == 0
    return {
        "items": items,
        "first_listing_s (new files: regex dates)": round(first_listing_s, 3),
        "decide_nothing_new_s": round(decide_s, 3),
        "monitor_once_run_s": round(run_s, 3),
    }


def bench_stac_nothing_new(work: Path, items: int) -> dict[str, float]:
    from stac_server import StacServer, collection_json, item_json

    model = work / "model-tiny"
    if not model.exists():
        make_model(model, tiny=True)
    from geotl.models.artefact import read_card

    model_id = read_card(model).model_id
    anchor = sorted(SERIES.glob("m_*.tif"))[0]
    server = StacServer(SERIES.parent, workdir=None)
    try:
        files = server.files
        assert files is not None
        server.load_collection(collection_json("bench", "10k items"))
        template = item_json("bench", "x", anchor, files.url(anchor), "2000-01-01T00:00:00Z", 1.0)
        start = datetime(1990, 1, 1, tzinfo=UTC)
        batch = []
        t0 = time.perf_counter()
        for i in range(items):
            item = json.loads(json.dumps(template))
            item["id"] = f"pass-{i:05d}"
            item["properties"]["datetime"] = (
                (start + timedelta(days=i)).isoformat().replace("+00:00", "Z")
            )
            batch.append(item)
        server.load_items(batch)
        load_s = time.perf_counter() - t0
        monitor = (
            f'source = "stac"\nurl = "{server.url}"\ncollection = "bench"\nmax_cloud = 50\n'
            'assets = { red = "image:1", green = "image:2", blue = "image:3", nir = "image:4" }'
        )
        region = load_region(
            write_region(
                work / "region-stac", "bench-stac", [anchor], NAIP_BANDS, ["water"], monitor
            )
        )
        source = make_source(region)
        t0 = time.perf_counter()
        scenes = source.discover({}, None)
        full_listing_s = time.perf_counter() - t0
        assert len(scenes) == items, len(scenes)
        out = work / "out-stac"
        with MonitorState(out / "bench-stac" / "state.sqlite") as state:
            _fill_state(state, scenes, "stac", model_id)
        with MonitorState(out / "bench-stac" / "state.sqlite") as state:
            t0 = time.perf_counter()
            latest = state.latest_acquired()
            assert latest is not None
            new = source.discover(state.known_fingerprints(), latest - timedelta(days=3))
            due = state.due_jobs(model_id, datetime.now(UTC))
            decide_s = time.perf_counter() - t0
        assert new == [] and due == []
        run_monitor(region, MonitorOptions(out_dir=out, model_dir=model))
        t0 = time.perf_counter()
        summary = run_monitor(region, MonitorOptions(out_dir=out, model_dir=model))
        run_s = time.perf_counter() - t0
        assert summary.passes == []
    finally:
        server.close()
    return {
        "items": items,
        "pgstac_load_s": round(load_s, 1),
        "full_search_all_items_s": round(full_listing_s, 3),
        "decide_nothing_new_s": round(decide_s, 3),
        "monitor_once_run_s": round(run_s, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument(
        "--stac", action="store_true", help="also benchmark the STAC source (PostgreSQL needed)"
    )
    parser.add_argument(
        "--tiny", action="store_true", help="overhead with the tiny test network (worst case)"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    import torch

    results: dict[str, object] = {"torch_threads": torch.get_num_threads(), "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="geotl-bench-monitor-") as tmp:
        work = Path(tmp)
        results["overhead"] = bench_overhead(work / "overhead", args.repeats)
        print(json.dumps(results, indent=2), flush=True)
        results["folder_nothing_new"] = bench_folder_nothing_new(work / "folder", args.items)
        print(json.dumps(results["folder_nothing_new"], indent=2), flush=True)
        if args.stac:
            results["stac_nothing_new"] = bench_stac_nothing_new(work / "stac", args.items)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
