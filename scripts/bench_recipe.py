"""Recipe variants of geotl's training against the plain script, on one region's chips.

Issue 8 asks whether geotl's defaults beat a plain script (``scripts/baseline_plain.py``).
``bench_transfer.py`` answers it over regions, bases and budgets; this script answers the
narrower question "which ``[model]`` setting makes the difference" on one region: it chips
the region once (the region files of ``bench_transfer.py``), then trains every variant on
the same chips with the same steps and seed, and scores all of them with
``evaluate_model`` on the test split (pixel IoU and object F1 with 95 % bootstrap CIs).

Variants (``--variants``, comma-separated):

- ``default``: geotl's defaults (``freeze = "backbone"``, encoder at 0.1x, scale jitter 0.25);
- ``full``: the whole network trained, encoder at the decoder's rate (as the plain script);
- ``full_nojit``: ``full`` without scale jitter;
- ``full_win``: ``full`` with training windows of a whole chip instead of half a chip;
- ``partial``: early encoder stages frozen, the rest at the decoder's rate;
- ``nojit`` / ``partial_nojit``: ``default`` / ``partial`` without scale jitter;
- ``jit``: ``default`` with the scale jitter of the defaults before 2026-11-30 (0.25);
- ``default_last`` / ``full_last``: keep the last weights (``min_steps`` = steps: no
  selection by validation);
- ``design``: ``[model] epochs = 20`` as in DESIGN.md's region file (epochs of at least
  ``samples_per_epoch`` windows), instead of ``--steps``; ``design_old``: the same with
  epochs of one pass over the train chips (``samples_per_epoch = 1``: geotl before stop 19);
- ``refit`` / ``full_refit``: ``default`` / ``full`` with ``[model] refit = true`` (train
  again on train + val chips for the step validation chose);
- ``none`` / ``none_refit``: ``default`` / ``refit`` from random weights (``--base none``);
  ``none_old``: ``none`` with the encoder at a tenth of the rate (the default before stop 20);
- ``trainprior`` / ``none_trainprior``: ``default`` / ``none`` with ``[model] class_prior =
  "train"`` (no class-prior correction: geotl before stop 28); ``instances_trainprior``
  the same for ``instances``;
- ``nopixel`` / ``none_nopixel``: ``default`` / ``none`` with ``[model] pixel_model =
  false`` (the network always kept, never the per-pixel model: geotl before stop 31);
- ``plain``: ``scripts/baseline_plain.py`` on the same train (+ val) chips, the label budget
  drawn over both; ``plain_train``: on the train chips only (what geotl trains on without
  refit); ``plain_none`` / ``plain_train_none``: the same from random weights.

geotl's runs are also scored at the threshold 0.5 (argmax: ``pixel_iou_t05``), beside
the threshold their card chose on validation. Each result is one JSON line on stdout and
in ``WORK/results.jsonl``::

    .venv/bin/python scripts/bench_recipe.py --region neon --steps 300 \\
        --variants plain,default,full --work /tmp/recipe
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

import bench_transfer as bt  # noqa: E402

from geotl.config import load_region  # noqa: E402
from geotl.models.artefact import read_card  # noqa: E402
from geotl.train import TrainOptions, train_model  # noqa: E402

#: variant -> ([model] keys written into the region file, TrainOptions overrides;
#: ``window_px = "chip"``: windows of a whole chip)
VARIANTS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "default": ({}, {}),
    "full": ({"freeze": "none"}, {"encoder_lr": 1e-3}),
    "full_nojit": ({"freeze": "none", "scale_jitter": 0.0}, {"encoder_lr": 1e-3}),
    "full_win": ({"freeze": "none"}, {"encoder_lr": 1e-3, "window_px": "chip"}),
    "partial": ({"freeze": "partial"}, {"encoder_lr": 1e-3}),
    "nojit": ({"scale_jitter": 0.0}, {}),
    "jit": ({"scale_jitter": 0.25}, {}),
    "default_last": ({}, {"min_steps": "steps"}),
    "full_last": ({"freeze": "none"}, {"encoder_lr": 1e-3, "min_steps": "steps"}),
    "design": ({"epochs": 20}, {"steps": None}),
    "design_old": ({"epochs": 20, "samples_per_epoch": 1}, {"steps": None, "min_steps": 0}),
    "partial_nojit": ({"freeze": "partial", "scale_jitter": 0.0}, {"encoder_lr": 1e-3}),
    "refit": ({"refit": True}, {}),
    "full_refit": ({"freeze": "none", "refit": True}, {"encoder_lr": 1e-3}),
    "none": ({}, {"base": "none"}),
    "none_old": ({}, {"base": "none", "encoder_lr": 1e-4}),
    "none_refit": ({"refit": True}, {"base": "none"}),
    "trainprior": ({"class_prior": "train"}, {}),
    "none_trainprior": ({"class_prior": "train"}, {"base": "none"}),
    "nopixel": ({"pixel_model": False}, {}),
    "none_nopixel": ({"pixel_model": False}, {"base": "none"}),
    "instances": ({}, {}),
    "instances_trainprior": ({"class_prior": "train"}, {}),
    "design_instances": ({"epochs": 20}, {"steps": None}),
}
#: variants that change the region's task (issue 9: touching objects separated)
VARIANT_TASK: dict[str, str] = {
    "instances": "instances",
    "instances_trainprior": "instances",
    "design_instances": "instances",
}


def main() -> None:
    """Chip once, train every variant, print and append one JSON line per run."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--region", default="neon", choices=["neon", "spacenet", "s2", "pivots"])
    ap.add_argument("--site", default="SJER", help="NEON site")
    ap.add_argument("--chip-px", type=int, default=128)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--budget", type=int, default=None, help="labelled objects (default: all)")
    ap.add_argument("--base", default="pkg:efficientnet-lite0")
    ap.add_argument(
        "--band",
        default="pan",
        help="spacenet: the name given to the tile's one band (nir: a band no RGB base knows)",
    )
    ap.add_argument("--variants", default="plain,default,full")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--n-boot", type=int, default=300)
    ap.add_argument("--work", type=Path, default=Path("/tmp/geotl-recipe"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    work: Path = args.work
    if args.region == "neon":
        region_path = bt.neon_region(work, args.data, args.site, args.chip_px, "backbone")
    elif args.region == "spacenet":
        region_path = bt.spacenet_region(work, args.data, args.chip_px, "backbone", args.band)
    elif args.region == "pivots":
        region_path = bt.pivots_region(work, args.data, args.chip_px, "backbone")
    else:
        region_path = bt.s2_region(work, args.data, args.chip_px, "backbone")
    chips = bt.chips_for(region_path, work)
    table = tomllib.loads(region_path.read_text())
    ns = argparse.Namespace(
        device="cpu", n_boot_resolved=args.n_boot, steps=args.steps, resume=False
    )
    for variant in args.variants.split(","):
        out = work / f"{args.region}-{variant}-s{args.seed}-n{args.steps}-b{args.budget}"
        t0 = time.perf_counter()
        if variant.startswith("plain"):
            splits = "train" if variant.startswith("plain_train") else "train,val"
            bt.train_plain(
                load_region(region_path),
                chips,
                out,
                "none" if variant.endswith("_none") else args.base,
                args.budget,
                args.seed,
                ns,
                splits,
            )
        else:
            keys, overrides = VARIANTS[variant]
            r = copy.deepcopy(table)
            r["model"] = {k: v for k, v in r["model"].items() if k != "freeze"} | keys
            if variant in VARIANT_TASK:
                r["task"] = VARIANT_TASK[variant]
            top = {k: v for k, v in r.items() if not isinstance(v, dict)}
            tables = {k: v for k, v in r.items() if isinstance(v, dict)}
            path = bt.write_region(work / "regions" / f"{args.region}-{variant}.toml", top, tables)
            if overrides.get("window_px") == "chip":
                overrides = overrides | {"window_px": args.chip_px}
            if overrides.get("min_steps") == "steps":
                overrides = overrides | {"min_steps": args.steps}
            opts = TrainOptions(
                **{
                    "chips": (chips,),
                    "steps": args.steps,
                    "val_every": max(1, min(50, args.steps // 5)),
                }
                | {"base": args.base}
                | overrides,
                max_labels=args.budget,
                seed=args.seed,
                overwrite=True,
            )
            train_model([load_region(path)], out, opts)
        wall = time.perf_counter() - t0
        scores = bt.score(out, region_path, chips, ns)
        card = read_card(out)
        argmax = scores
        if card.threshold != 0.5:  # also score the same weights at 0.5 (argmax)
            alt = out.parent / f"{out.name}-t05"
            shutil.copytree(out, alt, dirs_exist_ok=True)
            meta = json.loads((alt / "model.json").read_text())
            (alt / "model.json").write_text(json.dumps(meta | {"threshold": 0.5}))
            argmax = bt.score(alt, region_path, chips, ns)
        row = {
            "region": args.region,
            "budget": args.budget,
            "variant": variant,
            "seed": args.seed,
            "steps": args.steps,
            "wall_s": round(wall, 1),
            "best_step": card.metrics.get("best_step"),
            "refit_steps": (card.metrics.get("refit") or {}).get("steps"),
            "labels_used": sum(r.labels_used for r in card.regions),
            "val_iou": card.metrics.get("val_iou"),
            "pixel_model": card.metrics.get("pixel_model"),
            "threshold": card.threshold,
            "pixel_iou_t05": argmax["pixel_iou"],
            "object_f1_t05": argmax["object_f1"],
            **{
                k: scores[k]
                for k in (
                    "pixel_iou",
                    "pixel_iou_ci95",
                    "object_f1",
                    "object_f1_ci95",
                    "all_class_iou",
                )
            },
        }
        print(json.dumps(row), flush=True)
        with open(work / "results.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
