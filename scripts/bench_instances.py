"""Benchmark: separated objects (``task = "instances"``) vs plain segmentation, on objects.

For each region the same chips, base model, epochs and seed train two models, one per task,
and :func:`geotl.evaluate.evaluate_model` scores them on the test split: object precision,
recall and F1 at IoU >= 0.5 (95 % bootstrap CI over test chips), pixel IoU, and the count
ratio (predicted / labelled objects) with its CI. Regions (real data of ``../shared/data``,
read in place):

- **atlanta**: one SpaceNet 4 WorldView-2 pan tile, 0.5 m, 43 building footprints;
- **sjer**: NEON SJER plots, 0.1 m RGB, tree crowns (``--sjer-plots`` of the 35 plots).

Writes ``instances.json`` and ``instances.md`` (also printed) into ``--work``.

    .venv/bin/python scripts/bench_instances.py --epochs 6 --sjer-plots 12 --work /tmp/bi
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
sys.path.insert(0, str(REPO))

from geotl.chips import chip_region  # noqa: E402
from geotl.config import load_region  # noqa: E402
from geotl.evaluate import evaluate_model  # noqa: E402
from geotl.train import TrainOptions, train_model  # noqa: E402


def _toml(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    return str(value)


def write_region(path: Path, top: dict[str, Any], tables: dict[str, dict[str, Any]]) -> Path:
    """A region file from plain values."""
    lines = [f"{k} = {_toml(v)}" for k, v in top.items()]
    for name, table in tables.items():
        lines += ["", f"[{name}]", *(f"{k} = {_toml(v)}" for k, v in table.items())]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def regions(work: Path, task: str, sjer_plots: int, chip_px: int) -> dict[str, Path]:
    """The benchmark's region files for one task."""
    sjer = DATA / "neon-trees" / "SJER"
    plots = sorted((sjer / "images").glob("*.tif"))[:sjer_plots]
    model = {"base": "pkg:efficientnet-lite0", "freeze": "partial", "batch_size": 16}
    return {
        "atlanta": write_region(
            work / task / "atlanta.toml",
            {"name": "atlanta", "task": task, "classes": ["building"]},
            {
                "imagery": {
                    "paths": [str(DATA / "spacenet-atlanta" / "sample_geotiff.tif")],
                    "bands": ["pan"],
                },
                "labels": {"path": str(DATA / "spacenet-atlanta" / "geotiff_labels.geojson")},
                "chips": {"size_px": chip_px, "stride_px": chip_px},
                "split": {
                    "block_size_m": 2 * chip_px * 0.5,
                    "val_fraction": 0.15,
                    "test_fraction": 0.3,
                },
                "model": {**model, "base": "none"},
                "predict": {"min_area_m2": 10.0},
            },
        ),
        "sjer": write_region(
            work / task / "sjer.toml",
            {"name": "sjer", "task": task, "classes": ["tree"]},
            {
                "imagery": {"paths": [str(p) for p in plots], "bands": ["red", "green", "blue"]},
                "labels": {
                    "path": str(sjer / "SJER_tree_crowns.geojson"),
                    "class_field": "label",
                    "class_map": {"Tree": "tree"},
                },
                "chips": {"size_px": chip_px, "stride_px": chip_px},
                # one 40 m plot per block: whole plots go to train, val or test
                "split": {"block_size_m": 40.0, "val_fraction": 0.15, "test_fraction": 0.3},
                "model": model,
                "predict": {"min_area_m2": 0.5},
            },
        ),
    }


def main() -> None:
    """Train and score both tasks on each region; write the tables."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--sjer-plots", type=int, default=12)
    ap.add_argument("--chip-px", type=int, default=128)
    ap.add_argument("--regions", nargs="+", default=["atlanta", "sjer"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n-boot", type=int, default=500)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows: list[dict[str, Any]] = []
    for name in args.regions:
        chips: Path | None = None
        for task in ("segmentation", "instances"):
            region = load_region(regions(args.work, task, args.sjer_plots, args.chip_px)[name])
            if chips is None:  # the split is a pure function of the region: cut once
                chips = args.work / "chips" / name
                if not (chips / "chipset.json").is_file():
                    chip_region(region, chips)
            out = args.work / "models" / f"{name}-{task}"
            t0 = time.perf_counter()
            card = train_model(
                [region],
                out,
                TrainOptions(chips=(chips,), epochs=args.epochs, seed=0, overwrite=True),
            )
            train_s = time.perf_counter() - t0
            m = evaluate_model(out, region, chips_dir=chips, n_boot=args.n_boot)
            cls = region.classes[0]
            o = m["objects"][cls]
            rows.append(
                {
                    "region": name,
                    "task": task,
                    "test_chips": m["chips"],
                    "pixel_iou": m["pixel"]["per_class"][cls]["iou"],
                    "object_precision": o["precision"],
                    "object_recall": o["recall"],
                    "object_f1": o["f1"],
                    "object_f1_ci95": o["f1_ci95"],
                    "count_ratio": o["count_ratio"],
                    "count_ratio_ci95": o["count_ratio_ci95"],
                    "labelled": o["tp"] + o["fn"],
                    "train_s": round(train_s, 1),
                    "epochs_run": card.metrics.get("epochs_run"),
                }
            )
            print(json.dumps(rows[-1]), flush=True)

    def f(v: Any) -> str:
        return "-" if v is None else f"{v:.3f}"

    lines = [
        "| region | task | test chips | labelled objects | pixel IoU | object P | object R | object F1 [95 % CI] | count ratio [95 % CI] | train s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['region']} | {r['task']} | {r['test_chips']} | {r['labelled']} | {f(r['pixel_iou'])} "
            f"| {f(r['object_precision'])} | {f(r['object_recall'])} "
            f"| {f(r['object_f1'])} [{f(r['object_f1_ci95'][0])}, {f(r['object_f1_ci95'][1])}] "
            f"| {f(r['count_ratio'])} [{f(r['count_ratio_ci95'][0])}, {f(r['count_ratio_ci95'][1])}] "
            f"| {r['train_s']} |"
        )
    table = "\n".join(lines)
    print(table)
    args.work.mkdir(parents=True, exist_ok=True)
    (args.work / "instances.json").write_text(json.dumps(rows, indent=2) + "\n")
    (args.work / "instances.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
