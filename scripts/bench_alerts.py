#!/usr/bin/env python
"""Benchmark geotl's alerts.

1. Cost of the alert step per pass at scale: 10,000 objects in the current pass (and in each
   of the earlier passes persistence looks at) against 1,000 reference polygons, for the
   three kinds of reference test (outside / inside / unmatched) with persistence 2 of 3.
   Timed: ``evaluate_rules`` alone, and the whole hook the monitor runs after a pass
   (``AlertEngine.after_passes`` without a webhook: read the pass GeoJSONs, evaluate, match
   with known alerts, record in SQLite, write alerts.geojson). The baseline, measured in the
   same run: one monitor pass (``run_monitor``) of a full NAIP scene (934 x 723 px) with the
   tests' tiny water detector, the cheapest pass there is.
2. False alerts on the NAIP 10-date series with and without persistence. The series is
   monitored twice with the tiny water detector: as it is, and with every other date
   perturbed the way real passes are (a one-pixel grid shift, and a cloud mask: a nodata
   blob whose edge cuts lakes). Alerts for ``new`` water are then evaluated on the same
   passes with persistence 1 of 1 (off) and 2 of 3. An alert counts as false when the next
   pass that saw the ground there does not show the object (it did not persist), or when the
   object was already there in the pass before (a grid-shift or cloud-edge artefact, not a
   new object).

3. One delivery round with ``--delivery N`` open alerts over 50 passes: a webhook that
   refuses connections (nothing listens: every alert waits for its retry) against one that
   answers 200 at once, the baseline measured in the same run (both must try every alert).

Usage:
    .venv/bin/python scripts/bench_alerts.py [--repeats 3] [--objects 10000] [--refs 1000] [--crop 512]
    .venv/bin/python scripts/bench_alerts.py --delivery 2000 --skip-scale --skip-false
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

import geopandas as gpd
import numpy as np
import rasterio
from rasterio.windows import Window
from shapely.geometry import box, shape

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "monitor"))

from monitor_helpers import NAIP_BANDS, NAIP_REGEX, write_region  # noqa: E402
from tinymodel import build_tiny_model, water_rule  # noqa: E402

from geotl.config import AlertsConfig, load_region  # noqa: E402
from geotl.monitor import MonitorOptions, MonitorState, run_monitor  # noqa: E402
from geotl.monitor.alerts import AlertEngine, PassView, evaluate_rules  # noqa: E402
from geotl.monitor.alerts.reference import read_reference_layer  # noqa: E402
from geotl.monitor.changes import metric_crs, overlap_pairs  # noqa: E402
from geotl.monitor.sources import Scene  # noqa: E402

SERIES = REPO.parent / "shared" / "data" / "naip-landsat-timeseries" / "naip"
UTM = "EPSG:32614"
X0, Y0 = 480_000.0, 5_205_000.0


def synthetic_pass(
    rng: np.random.Generator, n: int, extent_m: float, base: np.ndarray
) -> gpd.GeoDataFrame:
    """``n`` objects: the base squares shifted by up to 2 m, 5 % of them replaced by others."""
    xy = base + rng.uniform(-2, 2, base.shape)
    swap = rng.random(n) < 0.05
    xy[swap, :2] = rng.uniform(0, extent_m, (int(swap.sum()), 2))
    geoms = [box(X0 + x, Y0 + y, X0 + x + s, Y0 + y + s) for x, y, s in xy]
    frame = gpd.GeoDataFrame(
        {
            "id": [str(i) for i in range(n)],
            "class": "clearing",
            "score": 0.9,
            "area_m2": [g.area for g in geoms],
        },
        geometry=geoms,
        crs=UTM,
    )
    return frame.to_crs("EPSG:4326")


def bench_scale(work: Path, n_objects: int, n_refs: int, repeats: int) -> dict[str, float]:
    rng = np.random.default_rng(0)
    extent = 30_000.0  # 30 km x 30 km: 10,000 objects of 20-60 m, like clearings or buildings
    base = np.column_stack(
        [
            rng.uniform(0, extent, n_objects),
            rng.uniform(0, extent, n_objects),
            rng.uniform(20, 60, n_objects),
        ]
    )
    passes_m = [synthetic_pass(rng, n_objects, extent, base) for _ in range(4)]
    footprint = gpd.GeoSeries(
        [box(X0 - 100, Y0 - 100, X0 + extent + 100, Y0 + extent + 100)], crs=UTM
    )
    fp = footprint.to_crs("EPSG:4326").iloc[0]
    t0 = datetime(2020, 1, 1, tzinfo=UTC)
    views = [
        PassView(f"k{i}", f"p{i}", t0 - timedelta(days=10 * i), fp, f)
        for i, f in enumerate(passes_m)
    ]
    # 1,000 reference polygons (permits, 200-800 m) over a quarter of the area, overlapping
    rx = rng.uniform(0, extent / 2, n_refs)
    ry = rng.uniform(0, extent / 2, n_refs)
    rs = rng.uniform(200, 800, n_refs)
    refs = gpd.GeoDataFrame(
        {"id": [f"P{i}" for i in range(n_refs)]},
        geometry=[
            box(X0 + x, Y0 + y, X0 + x + s, Y0 + y + s) for x, y, s in zip(rx, ry, rs, strict=True)
        ],
        crs=UTM,
    )
    ref_path = work / "permits.gpkg"
    refs.to_file(ref_path)
    layer = read_reference_layer(ref_path, "bench", None)
    results: dict[str, float] = {}
    for test in ("outside", "inside", "unmatched"):
        config = AlertsConfig.model_validate(
            {
                "persistence": {"passes": 2, "of": 3},
                "rule": [
                    {
                        "class": "clearing",
                        "when": "present",
                        test: "permits.gpkg",
                        "min_area_m2": 100,
                    }
                ],
            }
        )
        times = []
        for _ in range(repeats):
            layer._metric.clear()  # the projected reference is cached per monitor: count it
            start = time.perf_counter()
            fired = evaluate_rules(config, views, {"permits.gpkg": layer})
            times.append(time.perf_counter() - start)
        results[f"evaluate_{test}_s"] = statistics.median(times)
        results[f"fired_{test}"] = len(fired)
        print(
            f"evaluate_rules {test}: {statistics.median(times):.3f} s, {len(fired)} fired",
            flush=True,
        )

    # the whole hook on a state holding these four passes
    rdir = work / "scale-state"
    (rdir / "passes").mkdir(parents=True)
    from geotl.io.geojson import write_geojson

    region_file = work / "scale-region.toml"
    region_file.write_text(
        "\n".join(
            [
                'name = "scale"',
                'classes = ["clearing"]',
                "[imagery]",
                f'paths = ["{next(SERIES.glob("m_*.tif"))}"]',
                'bands = ["red", "green", "blue", "nir"]',
                "[monitor]",
                'paths = ["incoming/*.tif"]',
                "[monitor.alerts]",
                "persistence = { passes = 2, of = 3 }",
                "[[monitor.alerts.rule]]",
                'class = "clearing"',
                'when = "present"',
                f'outside = "{ref_path}"',
                "min_area_m2 = 100",
            ]
        )
        + "\n"
    )
    region = load_region(region_file)
    hook_s = []
    older, newest = list(reversed(views[1:])), views[0]
    for r in range(repeats):
        shutil.rmtree(rdir, ignore_errors=True)
        (rdir / "passes").mkdir(parents=True)
        with MonitorState(rdir / "state.sqlite") as state:
            engine = AlertEngine(region, state, rdir, None)

            def add(v: PassView, state: MonitorState = state) -> None:
                scene = Scene(
                    key=v.key,
                    name=v.scene,
                    acquired=v.acquired,
                    acquired_from="regex",
                    uri=v.key,
                    fingerprint="1",
                    footprint_wkt=fp.wkt,
                )
                state.record_scenes([scene], "folder", "m", t0)
                write_geojson(rdir / "passes" / f"{v.scene}.geojson", v.features)
                state.mark_done(
                    v.key,
                    "m",
                    now=t0,
                    duration_s=1,
                    pass_path=f"passes/{v.scene}.geojson",
                    changes_path=None,
                    detections=len(v.features),
                    new=None,
                    gone=None,
                    previous_scene=None,
                    footprint_wkt=fp.wkt,
                )

            for v in older:  # earlier runs: three passes, evaluated
                add(v)
            engine.after_passes("m", deliver=False)
            add(newest)  # this run's pass
            engine.forget_passes()  # a new run reads the earlier passes again
            start = time.perf_counter()
            result = engine.after_passes("m", deliver=False)
            hook_s.append(time.perf_counter() - start)
        print(
            f"hook run {r}: {hook_s[-1]:.2f} s, {result.evaluated} pass, {len(result.new)} new alerts",
            flush=True,
        )
    results["hook_per_pass_s"] = statistics.median(hook_s)
    return results


def bench_pass(work: Path, repeats: int, n_refs: int) -> dict[str, float]:
    """One monitor pass of a full NAIP scene with the tiny water detector, without and with
    alert rules (``outside`` ``n_refs`` reference polygons over the scene, persistence 2 of 3).

    Runs alternate; medians are compared. The previous pass (2019) is already processed and
    evaluated, so the timed pass is a steady-state one.
    """
    scenes = sorted(SERIES.glob("m_*.tif"))
    model = work / "model"
    if not model.exists():
        build_tiny_model(
            model, scenes[:2], NAIP_BANDS, 5.0, "water", water_rule, name="bench-water"
        )
    previous, target = scenes[-2], scenes[-1]
    with rasterio.open(previous) as ds:
        left, bottom, right, top = ds.bounds
        crs = ds.crs
    rng = np.random.default_rng(2)
    w, h = right - left, top - bottom
    xs, ys = rng.uniform(left, right - w / 10, n_refs), rng.uniform(bottom, top - h / 10, n_refs)
    sizes = rng.uniform(w / 60, w / 20, n_refs)
    refs = gpd.GeoDataFrame(
        {"id": [f"P{i}" for i in range(n_refs)]},
        geometry=[box(x, y, x + s, y + s) for x, y, s in zip(xs, ys, sizes, strict=True)],
        crs=crs,
    )
    timings: dict[str, list[float]] = {"plain": [], "alerts": []}
    regions = {}
    warm = {}
    for label in timings:
        region_file = write_region(
            work / f"pass-{label}",
            "bench",
            [previous],
            NAIP_BANDS,
            ["water"],
            'source = "folder"\npaths = ["incoming/*.tif"]',
            datetime_regex=NAIP_REGEX,
            min_area_m2=200.0,
        )
        if label == "alerts":
            refs.to_file(region_file.parent / "permits.gpkg")
            text = region_file.read_text() + (
                "\n[monitor.alerts]\npersistence = { passes = 2, of = 3 }\n"
                '[[monitor.alerts.rule]]\nclass = "water"\nwhen = "present"\n'
                'outside = "permits.gpkg"\nmin_area_m2 = 200\n'
            )
            region_file.write_text(text)
        incoming = region_file.parent / "incoming"
        incoming.mkdir()
        os.symlink(previous, incoming / previous.name)
        regions[label] = load_region(region_file)
        warm[label] = work / f"pass-warm-{label}"
        run_monitor(regions[label], MonitorOptions(out_dir=warm[label], model_dir=model))
        os.symlink(target, incoming / target.name)
    for i in range(repeats):
        for label in timings:
            out = work / f"pass-{label}-{i}"
            shutil.copytree(warm[label], out)
            start = time.perf_counter()
            summary = run_monitor(regions[label], MonitorOptions(out_dir=out, model_dir=model))
            timings[label].append(time.perf_counter() - start)
            assert len(summary.processed) == 1
    plain, alerts = (statistics.median(timings[k]) for k in ("plain", "alerts"))
    with MonitorState(
        work / f"pass-alerts-{repeats - 1}" / "bench" / "state.sqlite", readonly=True
    ) as st:
        detections = st.done_passes()[-1].detections or 0
        fired = len(st.alerts())
    print(
        f"NAIP pass: {plain:.2f} s plain, {alerts:.2f} s with alerts ({detections} objects, {fired} alerts)"
    )
    return {
        "naip_pass_s": plain,
        "naip_pass_with_alerts_s": alerts,
        "naip_alerts_ratio": alerts / plain,
        "naip_objects": detections,
        "naip_alerts": fired,
    }


def perturbed_series(work: Path, crop: int) -> tuple[Path, Path]:
    """Centre crops of the 10 dates: as they are, and with every other date shifted + clouded."""
    plain, perturbed = work / "plain", work / "perturbed"
    plain.mkdir()
    perturbed.mkdir()
    rng = np.random.default_rng(1)
    for k, scene in enumerate(sorted(SERIES.glob("m_*.tif"))):
        with rasterio.open(scene) as src:
            col = (src.width - crop) // 2
            row = (src.height - crop) // 2
            window = Window(col, row, min(crop, src.width), min(crop, src.height))
            data = src.read(window=window)
            profile = {
                **src.profile,
                "width": window.width,
                "height": window.height,
                "transform": src.window_transform(window),
                "nodata": 0,
            }
        with rasterio.open(plain / scene.name, "w", **profile) as dst:
            dst.write(data)
        if k % 2 == 1:
            # a one-pixel grid shift (5 m east) and a cloud mask: a disc of nodata
            profile["transform"] = profile["transform"] * profile["transform"].translation(1, 0)
            h, w = data.shape[1:]
            cy, cx = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w
            radius = rng.uniform(0.15, 0.25) * min(h, w)
            yy, xx = np.mgrid[0:h, 0:w]
            data = data.copy()
            data[:, (yy - cy) ** 2 + (xx - cx) ** 2 < radius**2] = 0
        with rasterio.open(perturbed / scene.name, "w", **profile) as dst:
            dst.write(data)
    return plain, perturbed


ALERT_RULES = """
[monitor.alerts]
persistence = {{ passes = {k}, of = {n} }}

[[monitor.alerts.rule]]
name = "water-new"
class = "water"
when = "new"
min_area_m2 = 500
"""


def _there(view: PassView, obj: object, crs: str) -> bool:
    """Whether ``view`` has an object matching ``obj`` (the monitor's own matching rule)."""
    if view.features.empty:
        return False
    geoms = np.asarray(view.features.to_crs(crs).geometry.values, dtype=object)
    mine = np.asarray(gpd.GeoSeries([obj], crs="EPSG:4326").to_crs(crs).values, dtype=object)
    pairs = overlap_pairs(mine, geoms)
    return bool((pairs.overlap >= 0.5).any())


def false_alerts(rdir: Path, region_file: Path, k: int, n: int) -> dict[str, int]:
    """Evaluate ``new`` alerts with persistence k of n on a monitored copy; count false ones.

    False: the object was already there in the last pass that saw the ground before it was
    first seen (an artefact of a shift or a cloud edge), or the next pass that saw the ground
    after the alert does not show it (it did not persist).
    """
    work = rdir.parent / f"{rdir.name}-{k}of{n}"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(rdir, work)
    text = region_file.read_text().split("[monitor.alerts]")[0]
    variant = region_file.with_name(f"{region_file.stem}-{k}of{n}.toml")
    variant.write_text(text.rstrip() + "\n" + ALERT_RULES.format(k=k, n=n))
    region = load_region(variant)
    with MonitorState(work / "state.sqlite") as state:
        engine = AlertEngine(region, state, work, None)
        model_id = state.done_passes()[0].model_id
        engine.evaluate_pending(model_id)
        alerts = state.alerts()
        passes = state.done_passes(model_id)
        views = [engine.pass_view(p) for p in passes]
    crs = metric_crs(views[0].footprint)
    order = {v.scene: i for i, v in enumerate(views)}
    counts = {"alerts": len(alerts), "false": 0, "confirmed": 0, "unconfirmable": 0}
    for alert in alerts:
        obj = shape(alert.geometry)
        point = obj.representative_point()
        fired, first = order[alert.fired_scene], order[alert.first_scene]
        later = [v for v in views[fired + 1 :] if v.footprint.covers(point)]
        before = [v for v in reversed(views[:first]) if v.footprint.covers(point)]
        if (before and _there(before[0], obj, crs)) or (later and not _there(later[0], obj, crs)):
            counts["false"] += 1
        elif later:
            counts["confirmed"] += 1
        else:
            counts["unconfirmable"] += 1
    return counts


def bench_false_alerts(work: Path, crop: int) -> dict[str, dict[str, int]]:
    model = work / "model"
    scenes = sorted(SERIES.glob("m_*.tif"))
    if not model.exists():
        build_tiny_model(
            model, scenes[:2], NAIP_BANDS, 5.0, "water", water_rule, name="bench-water"
        )
    plain, perturbed = perturbed_series(work, crop)
    out: dict[str, dict[str, int]] = {}
    for label, folder in (("plain", plain), ("shifted+clouds", perturbed)):
        region_file = write_region(
            work / f"region-{label}",
            "naip",
            [next(folder.glob("*.tif"))],
            NAIP_BANDS,
            ["water"],
            f'source = "folder"\npaths = ["{folder}/*.tif"]',
            datetime_regex=NAIP_REGEX,
            min_area_m2=200.0,
        )
        mon = work / f"mon-{label}"
        summary = run_monitor(
            load_region(region_file), MonitorOptions(out_dir=mon, model_dir=model)
        )
        print(f"{label}: {len(summary.processed)} passes", flush=True)
        for k, n in ((1, 1), (2, 3)):
            res = false_alerts(mon / "naip", region_file, k, n)
            out[f"{label} {k} of {n}"] = res
            print(f"{label} persistence {k} of {n}: {res}", flush=True)
    return out


def bench_delivery(work: Path, alerts: int, passes: int = 50) -> dict[str, object]:
    """One ``deliver_due`` round with ``alerts`` open alerts: refused webhook vs answering one."""
    import socket

    from alert_helpers import Receiver, fake_monitor_state

    from geotl.monitor.alerts.delivery import DeliveryPolicy, deliver_due

    scene = SERIES / "m_4709963_se_14_1_20090818.tif"
    out: dict[str, object] = {"alerts": alerts, "passes": passes}
    for mode in ("answers", "refused"):
        root = work / f"delivery-{mode}"
        fake_monitor_state(root, [scene] * passes, [alerts // passes] * passes)
        receiver = Receiver() if mode == "answers" else None
        if receiver is not None:
            url = receiver.url
        else:  # a port nothing listens on
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                url = f"http://127.0.0.1:{sock.getsockname()[1]}/hook"
        policy = DeliveryPolicy(url, timeout_s=5, retry_base_s=3600, wait_s=60)
        try:
            with MonitorState(root / "state.sqlite") as state:
                t0 = time.perf_counter()
                report = deliver_due(state, "naip-nd", policy, sleep=lambda s: None)
                wall = time.perf_counter() - t0
        finally:
            if receiver is not None:
                receiver.close()
        out[mode] = {"wall_s": round(wall, 2), "attempts": report.attempts}
        print(f"delivery, webhook {mode}: {wall:.2f} s, {report.attempts} attempts", flush=True)
    walls = {m: r["wall_s"] for m, r in out.items() if isinstance(r, dict)}
    out["refused_over_answers"] = round(walls["refused"] / walls["answers"], 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--objects", type=int, default=10_000)
    parser.add_argument("--refs", type=int, default=1_000)
    parser.add_argument(
        "--crop", type=int, default=512, help="NAIP crop (px) for the false-alert series"
    )
    parser.add_argument("--model", type=Path, help="reuse a tiny water model built before")
    parser.add_argument("--skip-scale", action="store_true")
    parser.add_argument("--skip-false", action="store_true")
    parser.add_argument(
        "--delivery", type=int, default=0, help="open alerts for one delivery round (0: skip)"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    work = Path(tempfile.mkdtemp(prefix="bench-alerts-"))
    report: dict[str, object] = {}
    if args.model is not None:
        shutil.copytree(args.model, work / "model")
    try:
        if not args.skip_scale:
            scale = bench_scale(work, args.objects, args.refs, args.repeats)
            scale.update(bench_pass(work, args.repeats, args.refs))
            report["scale"] = scale
        if not args.skip_false:
            report["false_alerts"] = bench_false_alerts(work, args.crop)
        if args.delivery:
            report["delivery"] = bench_delivery(work, args.delivery)
        print(json.dumps(report, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
