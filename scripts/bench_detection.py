"""Benchmark ``task = "detection"`` on NEON tree crowns: transfer to a new site, and speed.

Data: ``../shared/data/neon-trees`` (read in place, never copied into the repository).
Source sites HARV + OSBS, target site SJER (35 plots of 40 m, 202 crown boxes).

``--res-m`` resamples the plots (area average) into ``--work/data`` before anything else:
at 0.2 m a 40 m plot is one 200 px chip, a quarter of the pixels of the 0.1 m original,
which is what a busy 2-core CPU can train in minutes. ``--res-m 0.1`` uses the files as
they are (then ``--chip-px 400`` keeps one chip per plot).

Runs (``--runs``, comma separated ``BASE@BUDGET``; ``BUDGET`` a number of whole labelled
objects or ``all``; ``model:source`` is the detector trained on the source sites with all
their labels): each trains with :func:`geotl.train.train_model` and is scored on SJER's
test plots by :func:`geotl.evaluate.evaluate_model`: object precision, recall and F1 at IoU
0.4 and 0.5 and COCO AP50, with 95 % bootstrap intervals over test chips.

``--speed MODEL_DIR`` times ``predict_scene`` over a mosaic of ``--tiles`` x ``--tiles`` SJER
plots (one scene, 256 px windows with 64 px overlap) against the detector's bare forward
passes over the same windows and batches (reading, normalising, seam ownership, NMS in
scene coordinates and polygons are the overhead); runs alternate, ``--repeats`` each.

    .venv/bin/python scripts/bench_detection.py --work /tmp/bdet \\
        --runs "pkg:efficientnet-lite0@all,none@all,model:source@all" --epochs 8
    .venv/bin/python scripts/bench_detection.py --work /tmp/bdet --speed /tmp/bdet/runs/...
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DEFAULT_DATA = REPO.parent / "shared" / "data"
SOURCE_SITES = ("HARV", "OSBS")
TARGET_SITE = "SJER"

from bench_transfer import write_region  # noqa: E402  (scripts/ is this script's folder)

log = logging.getLogger("bench_detection")


def resample_site(data: Path, work: Path, site: str, res_m: float) -> Path:
    """The site's labelled plots at ``res_m`` (area average) in ``work/data/<site>``."""
    import rasterio
    from affine import Affine
    from rasterio.enums import Resampling

    src_dir = data / "neon-trees" / site / "images"
    if abs(res_m - 0.1) < 1e-9:
        return src_dir
    out = work / "data" / f"{site}-{res_m:g}m"
    out.mkdir(parents=True, exist_ok=True)
    for path in sorted(src_dir.glob("*.tif")):
        dst = out / path.name
        if dst.is_file():
            continue
        with rasterio.open(path) as ds:
            f = res_m / ds.res[0]
            h, w = max(1, round(ds.height / f)), max(1, round(ds.width / f))
            arr = ds.read(out_shape=(ds.count, h, w), resampling=Resampling.average)
            profile = ds.profile | {
                "height": h,
                "width": w,
                "transform": ds.transform @ Affine.scale(ds.width / w, ds.height / h),
            }
            profile.pop("blockxsize", None)
            profile.pop("blockysize", None)
            profile["tiled"] = False
        with rasterio.open(dst, "w", **profile) as out_ds:
            out_ds.write(arr)
    return out


def site_region(args: argparse.Namespace, site: str, test_fraction: float) -> Path:
    images = resample_site(args.data, args.work, site, args.res_m)
    labels = args.data / "neon-trees" / site / f"{site}_tree_crowns.geojson"
    return write_region(
        args.work / "regions" / f"det-{site.lower()}.toml",
        {"name": f"det-{site.lower()}", "task": "detection", "classes": ["tree"]},
        {
            "imagery": {"paths": [str(images / "*.tif")], "bands": ["red", "green", "blue"]},
            "labels": {"path": str(labels)},  # every box is a tree (HARV has empty labels)
            "chips": {"size_px": args.chip_px, "stride_px": args.chip_px},
            # one 40 m plot per block: whole plots go to train, val or test
            "split": {"block_size_m": 40.0, "val_fraction": 0.15, "test_fraction": test_fraction},
            "model": {"freeze": args.freeze, "batch_size": args.batch_size, "patience": 4},
            "predict": {"min_area_m2": 0.0, "nms_iou": 0.4},
        },
    )


def chips_for(region_path: Path, work: Path) -> Path:
    from geotl.chips import chip_region
    from geotl.config import load_region

    region = load_region(region_path)
    out = work / "chips" / region.name
    if not (out / "chipset.json").is_file():
        chip_region(region, out, overwrite=True)
    return out


def train_and_score(
    args: argparse.Namespace,
    regions: list[Path],
    out: Path,
    base: str,
    budget: int | None,
    target: Path | None,
) -> dict[str, Any]:
    """Train (or reuse ``result.json``) and score on the target's test split."""
    from geotl.config import load_region
    from geotl.evaluate import evaluate_model
    from geotl.train import TrainOptions, train_model

    result_file = out / "result.json"
    if result_file.is_file():
        return dict(json.loads(result_file.read_text()))
    chips = tuple(chips_for(p, args.work) for p in regions)
    opts = TrainOptions(
        chips=chips,
        base=base,
        max_labels=budget,
        epochs=None if args.steps else args.epochs,
        steps=args.steps,
        val_every=args.val_every,
        seed=args.seed,
        device=args.device,
        batch_size=args.batch_size,
        freeze=args.freeze,
        overwrite=True,
    )
    t0 = time.perf_counter()
    card = train_model([load_region(p) for p in regions], out, opts)
    row: dict[str, Any] = {
        "model_dir": str(out),
        "labels_used": sum(r.labels_used for r in card.regions),
        "train_chips": sum(r.chips_train for r in card.regions),
        "steps_run": card.metrics.get("steps_run"),
        "best_step": card.metrics.get("best_step"),
        "threshold": card.threshold,
        "train_s": round(time.perf_counter() - t0, 1),
    }
    if target is not None:
        metrics = evaluate_model(
            out,
            load_region(target),
            chips_dir=chips_for(target, args.work),
            n_boot=args.n_boot,
            device=args.device,
        )
        row["test_chips"] = metrics["chips"]
        row["detection"] = metrics["detection"]
    result_file.write_text(json.dumps(row, indent=2) + "\n")
    return row


def run_grid(args: argparse.Namespace) -> list[dict[str, Any]]:
    target = site_region(args, TARGET_SITE, 0.3)
    sources = [site_region(args, s, 0.0) for s in SOURCE_SITES]
    rows = []
    for spec in [s.strip() for s in args.runs.split(",") if s.strip()]:
        base, _, budget_s = spec.rpartition("@")
        budget = None if budget_s == "all" else int(budget_s)
        base_id = base
        if base == "model:source":
            src_dir = args.work / "runs" / "source"
            log.info("source detector on %s", "+".join(SOURCE_SITES))
            train_and_score(args, sources, src_dir, args.source_base, None, None)
            base_id = f"model:{src_dir}"
        out = args.work / "runs" / base.replace(":", "_").replace("/", "_") / budget_s
        log.info("run %s with %s labels", base, budget_s)
        row = train_and_score(args, [target], out, base_id, budget, target)
        rows.append({"base": base, "budget": budget_s, **row})
        print(table_row(rows[-1]), flush=True)
    return rows


def _ci(d: dict[str, Any], key: str) -> str:
    v, ci = d.get(key), d.get(f"{key}_ci95") or [None, None]
    if v is None:
        return "n/a"
    lo = "?" if ci[0] is None else f"{ci[0]:.2f}"
    hi = "?" if ci[1] is None else f"{ci[1]:.2f}"
    return f"{v:.2f} [{lo}, {hi}]"


def table_row(row: dict[str, Any]) -> str:
    d = row["detection"]
    a, b = d["iou_0.4"], d["iou_0.5"]
    return (
        f"| {row['base']} | {row['budget']} ({row['labels_used']}) | {row['train_chips']} | "
        f"{_ci(a, 'precision')} | {_ci(a, 'recall')} | {_ci(a, 'f1')} | {_ci(b, 'f1')} | "
        f"{_ci(d, 'ap50')} | {row['threshold']:.2f} | {row['steps_run']} ({row['best_step']}) | "
        f"{row['train_s']:.0f} |"
    )


def mosaic(args: argparse.Namespace, tiles: int) -> Path:
    """A ``tiles`` x ``tiles`` mosaic of the target's plots (one scene with window seams)."""
    import rasterio
    from affine import Affine

    images = resample_site(args.data, args.work, TARGET_SITE, args.res_m)
    plots = sorted(images.glob("*.tif"))
    out = args.work / "data" / f"{TARGET_SITE}-mosaic-{tiles}x{tiles}-{args.res_m:g}m.tif"
    if out.is_file():
        return out
    with rasterio.open(plots[0]) as ds:
        size, profile, t = min(ds.height, ds.width), ds.profile, ds.transform
    canvas = np.full((3, tiles * size, tiles * size), 255, np.uint8)
    k = 0
    for path in plots:
        with rasterio.open(path) as ds:
            if min(ds.height, ds.width) < size:
                continue
            r, c = divmod(k, tiles)
            canvas[:, r * size : (r + 1) * size, c * size : (c + 1) * size] = ds.read()[
                :, :size, :size
            ]
        k += 1
        if k == tiles * tiles:
            break
    profile.update(
        height=canvas.shape[1], width=canvas.shape[2], tiled=True, blockxsize=256, blockysize=256
    )
    profile["transform"] = Affine(t.a, 0, t.c, 0, t.e, t.f)
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(canvas)
    return out


def speed(args: argparse.Namespace, model_dir: Path) -> dict[str, Any]:
    """predict_scene over a mosaic of plots vs bare forward passes over the same windows."""
    import rasterio
    import torch
    from rasterio.windows import Window

    from geotl.models.artefact import load_artefact
    from geotl.predict import PredictOptions, predict_scene
    from geotl.predict.windows import plan_windows

    scene = mosaic(args, args.tiles)
    art = load_artefact(model_dir)
    window = 256
    opts = PredictOptions(window_px=window, batch_size=args.batch_size, progress=False)
    arrs = []  # the same windows, read and normalised beforehand
    with rasterio.open(scene) as ds:
        plan = plan_windows((ds.height, ds.width), window, window // 4)
        for w in plan.windows:
            raw = ds.read(window=Window(w.col_off, w.row_off, w.width, w.height))
            arrs.append(art.normalise(raw))
    batches = [
        torch.from_numpy(np.stack(arrs[i : i + args.batch_size]))
        for i in range(0, len(arrs), args.batch_size)
    ]
    art.network.nms_thresh = art.card.nms_iou

    def bare() -> float:
        t0 = time.perf_counter()
        with torch.inference_mode():
            for b in batches:
                art.network(b)
        return time.perf_counter() - t0

    def full() -> tuple[float, int]:
        t0 = time.perf_counter()
        n = len(predict_scene(art, scene, opts).features)
        return time.perf_counter() - t0, n

    bare()  # warm-up
    t_bare, t_full, n = [], [], 0
    for _ in range(args.repeats):
        t_bare.append(bare())
        t, n = full()
        t_full.append(t)
    engines: dict[str, Any] = {}
    if args.engines:  # the same scene through ONNX Runtime (fp32), alternating with torch
        from geotl.evaluate.matching import match_objects
        from geotl.predict.engine import load_model

        ort = load_model(model_dir, "onnxruntime", threads=args.threads)
        ref = predict_scene(art, scene, opts).features
        got = predict_scene(ort, scene, opts).features  # also the export's warm-up
        t_ort, t_torch = [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            predict_scene(ort, scene, opts)
            t_ort.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            predict_scene(art, scene, opts)
            t_torch.append(time.perf_counter() - t0)
        engines = {
            "torch_predict_s": [round(v, 2) for v in t_torch],
            "ort_predict_s": [round(v, 2) for v in t_ort],
            "ort_speedup_median": round(float(np.median(t_torch) / np.median(t_ort)), 3),
            "objects_torch_ort": [len(ref), len(got)],
            "boxes_matched_iou_0_999": match_objects(list(got.geometry), list(ref.geometry), 0.999)[
                0
            ],
            "scores_max_diff": float(
                np.abs(np.sort(got["score"].to_numpy()) - np.sort(ref["score"].to_numpy())).max()
            )
            if len(got) == len(ref) and len(ref)
            else None,
        }
    return engines | {
        "scene_px": list(plan.scene_shape),
        "windows": len(arrs),
        "window_px": window,
        "objects": n,
        "bare_s": [round(v, 2) for v in t_bare],
        "predict_s": [round(v, 2) for v in t_full],
        "ratio_min": round(min(t_full) / min(t_bare), 3),
        "ratio_median": round(float(np.median(t_full) / np.median(t_bare)), 3),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--res-m", type=float, default=0.2)
    p.add_argument("--chip-px", type=int, default=200)
    p.add_argument("--runs", default="pkg:efficientnet-lite0@all")
    p.add_argument("--source-base", default="pkg:efficientnet-lite0")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--steps", type=int, default=None, help="optimizer steps (wins over --epochs)")
    p.add_argument("--val-every", type=int, default=None, help="validate every N steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--freeze", default="partial")
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--speed", type=Path, help="a detection model folder: time prediction")
    p.add_argument("--tiles", type=int, default=4, help="speed: mosaic of tiles x tiles plots")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument(
        "--engines", action="store_true", help="speed: also predict with ONNX Runtime (fp32)"
    )
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    import torch

    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    if args.speed is not None:
        result = speed(args, args.speed)
        (args.work / "speed.json").write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result, indent=2))
        return
    rows = run_grid(args)
    (args.work / "detection.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(
        "| base | budget (labels used) | train chips | P@0.4 | R@0.4 | F1@0.4 | F1@0.5 | AP50 "
        "| score thr | steps (best) | train s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(table_row(row))


if __name__ == "__main__":
    main()
