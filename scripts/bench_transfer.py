"""Benchmark: does pretraining pay? Pretrained bases vs random initialisation per label budget.

Real regions of ``../shared/data`` (read in place, never copied):

- **neon**: NEON airborne RGB, 0.1 m, tree crowns, site to site. A *source* model is
  trained on the source sites (default HARV + OSBS, one model across both regions, all
  their labels) and then used as the base ``model:source`` for the *target* site
  (default SJER), next to ``pkg:efficientnet-lite0`` (ImageNet) and ``none``. The source
  model is also scored on the target as it is (budget 0: no target label at all).
- **s2**: Sentinel-2 false colour (B08/B04/B03 = nir/red/green, 10 m), agricultural fields
  in Flanders; labels are complete only inside the 16 windows of the locations file
  (``complete_within``). Bases: ``pkg:efficientnet-lite0`` (red/green matched, nir new),
  ``pkg:ukis-csmask-4b`` (Sentinel-2 cloud-mask encoder: all three bands matched), ``none``.
- **spacenet**: one SpaceNet 4 WorldView-2 pan tile (0.5 m), 43 buildings (the spacenet
  bases).
- **pivots**: a Landsat-like 3-band tile in a custom Albers CRS (30 m), 19 centre pivots
  labelled in its east strip; the label file's wrong CRS is overridden in the region file
  (the spacenet bases, the s2 chip size).

For every region, base and label budget (whole labelled objects of the train split, see
``geotl train --max-labels``) it trains with :func:`geotl.train.train_model` and scores the
test split with :func:`geotl.evaluate.evaluate_model`: pixel IoU and F1 of the object class
and object F1 (IoU >= 0.5), each with a 95 % bootstrap interval over test chips, plus the
training time. Writes ``transfer.json``, ``transfer.md`` (also printed on stdout) and one
PNG of the label-efficiency curves per region into ``--work``.

Usage::

    .venv/bin/python scripts/bench_transfer.py --quick --threads 1          # small CPU run
    .venv/bin/python scripts/bench_transfer.py --device cuda --epochs 30 \\
        --budgets 10,30,100,1000 --seeds 0,1,2 --work /tmp/transfer-gpu     # the real thing

Recipes (``--recipes``, issue 8), every one on the same chips and scored the same way:

- ``new``: geotl's defaults (``--steps`` optimizer steps, random windows, augmentation,
  warm-up + cosine, validation every ``--val-every`` steps with early stopping);
- ``plain``: ``scripts/baseline_plain.py`` (an smp U-Net trained the textbook way, the same
  ``--steps``) on the same train chips (the label budget applied to their masks exactly as
  geotl applies it) plus the val chips geotl uses for model selection; its weights are
  wrapped into a model card and scored by ``evaluate_model`` like geotl's;
- ``old``: geotl's training before issue 8 (``--epochs`` passes over the chip grid), run in
  a subprocess from ``--old-src`` (a checkout of geotl at that commit, e.g. a git worktree of
  ``d0e9d07``).

Region files (absolute paths into ``--data``) and chips go to ``--work``; ``--resume`` reuses
runs whose ``result.json`` is there.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data"

log = logging.getLogger("bench_transfer")

FULL = {
    "budgets": "10,30,100",
    "epochs": 20,
    "source_epochs": 20,
    "n_boot": 1000,
    "neon_chip_px": 128,
    "neon_bases": "pkg:efficientnet-lite0,model:source,none",
    "s2_bases": "pkg:efficientnet-lite0,pkg:ukis-csmask-4b,none",
}
QUICK = {
    "budgets": "10,40",
    "epochs": 3,
    "source_epochs": 3,
    "n_boot": 300,
    "neon_chip_px": 64,
    "neon_bases": "pkg:efficientnet-lite0,model:source,none",
    "s2_bases": "pkg:efficientnet-lite0,pkg:ukis-csmask-4b,none",
}


# ---------------------------------------------------------------------------- region files


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML for {value!r}")


def write_region(path: Path, top: dict[str, Any], tables: dict[str, dict[str, Any]]) -> Path:
    """Write a region TOML (top-level keys, then one ``[table]`` per entry)."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in top.items()]
    for name, table in tables.items():
        lines += ["", f"[{name}]"] + [f"{k} = {_toml_value(v)}" for k, v in table.items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def neon_region(work: Path, data: Path, site: str, chip_px: int, freeze: str) -> Path:
    """One NEON site (all its labelled plots) as a region."""
    d = data / "neon-trees" / site
    return write_region(
        work / "regions" / f"neon-{site.lower()}.toml",
        {"name": f"neon-{site.lower().replace('_', '-')}", "classes": ["tree"]},
        {
            "imagery": {"paths": [str(d / "images" / "*.tif")], "bands": ["red", "green", "blue"]},
            "labels": {
                "path": str(d / f"{site}_tree_crowns.geojson"),
                "class_field": "label",
                "class_map": {"Tree": "tree"},
                "unmapped": "skip",  # HARV has crowns with an empty label
            },
            "chips": {"size_px": chip_px, "stride_px": chip_px},
            # one 40 m plot per block: whole plots go to train, val or test
            "split": {"block_size_m": 40.0, "val_fraction": 0.15, "test_fraction": 0.25},
            "model": {"freeze": freeze, "batch_size": 16},
            "predict": {"min_area_m2": 0.5},
        },
    )


def s2_region(work: Path, data: Path, chip_px: int, freeze: str) -> Path:
    """Sentinel-2 fields of Flanders, labels complete inside the locations windows."""
    d = data / "s2-fields-flanders"
    return write_region(
        work / "regions" / "s2-fields.toml",
        {"name": "s2-fields", "classes": ["field"]},
        {
            "imagery": {
                "paths": [str(d / "BEFL-TEST-s2_2023-05-01_2023-07-01_B08-B04-B03_min_byte.tif")],
                "bands": ["nir", "red", "green"],
            },
            "labels": {
                "path": str(d / "fields_BEFL-s2-fields-2023_polygons.gpkg"),
                "class_field": "label_name",
                "class_map": {"field": "field"},
                "complete_within": str(d / "fields_BEFL-s2-fields-2023_locations.gpkg"),
            },
            "chips": {"size_px": chip_px, "stride_px": chip_px},
            # one 640 m labelling window per block
            "split": {"block_size_m": 640.0, "val_fraction": 0.15, "test_fraction": 0.25},
            "model": {"freeze": freeze, "batch_size": 16},
            "predict": {"min_area_m2": 500.0},
        },
    )


def spacenet_region(work: Path, data: Path, chip_px: int, freeze: str, band: str = "pan") -> Path:
    """SpaceNet 4 Atlanta: one 900 px WorldView-2 pan tile (0.5 m), 43 buildings.

    ``band``: the name the region gives the tile's band (``nir``: one an RGB base lacks).
    """
    d = data / "spacenet-atlanta"
    return write_region(
        work / "regions" / "spacenet.toml",
        {"name": "spacenet-atlanta", "classes": ["building"]},
        {
            "imagery": {"paths": [str(d / "sample_geotiff.tif")], "bands": [band]},
            "labels": {"path": str(d / "geotiff_labels.geojson")},
            "chips": {"size_px": chip_px, "stride_px": chip_px},
            # 128 m blocks: about 2 x 2 chips of 128 px at 0.5 m
            "split": {"block_size_m": 128.0, "val_fraction": 0.15, "test_fraction": 0.25},
            "model": {"freeze": freeze, "batch_size": 16},
            "predict": {"min_area_m2": 4.0},
        },
    )


#: the pivots tile's labels cover its east strip only (pivots further west are unlabelled):
#: labels are complete inside this box of the tile's Albers metres
PIVOTS_COMPLETE = (-663600.0, 2118400.0, -658065.0, 2130165.0)


def pivots_region(work: Path, data: Path, chip_px: int, freeze: str) -> Path:
    """Landsat-like 3-band tile (custom Albers, 30 m), 19 centre pivots in its east strip.

    The label file declares EPSG:4326 but holds the raster's Albers metres: the region
    overrides its CRS (``[labels] crs``), as a user would. Labels are complete only inside
    :data:`PIVOTS_COMPLETE`; the band order is taken as red, green, blue (the file does
    not name them).
    """
    import geopandas as gpd
    import rasterio
    from shapely.geometry import box

    d = data / "landsat-pivots"
    tif = d / "sample_geotiff_custom_proj.tif"
    with rasterio.open(tif) as src:
        crs = src.crs.to_wkt()
    area = work / "regions" / "pivots-complete.gpkg"
    area.parent.mkdir(parents=True, exist_ok=True)
    gpd.GeoDataFrame(geometry=[box(*PIVOTS_COMPLETE)], crs=crs).to_file(area, driver="GPKG")
    return write_region(
        work / "regions" / "pivots.toml",
        {"name": "landsat-pivots", "classes": ["pivot"]},
        {
            "imagery": {"paths": [str(tif)], "bands": ["red", "green", "blue"]},
            "labels": {
                "path": str(d / "geotiff_custom_proj_labels.geojson"),
                "crs": crs,
                "complete_within": str(area),
            },
            "chips": {"size_px": chip_px, "stride_px": chip_px},
            # 1.92 km blocks: 2 x 2 chips of 32 px at 30 m, a pivot or two each
            "split": {"block_size_m": 1920.0, "val_fraction": 0.15, "test_fraction": 0.25},
            "model": {"freeze": freeze, "batch_size": 16},
            "predict": {"min_area_m2": 50000.0},
        },
    )


def chips_for(region_path: Path, work: Path) -> Path:
    """Chip a region once per region-file content (reused by every run)."""
    from geotl.chips import chip_region
    from geotl.config import load_region

    region = load_region(region_path)
    digest = hashlib.sha256(region_path.read_bytes()).hexdigest()[:10]
    out = work / "chips" / f"{region.name}-{digest}"
    if not (out / "chipset.json").is_file():
        log.info("chipping %s into %s", region.name, out)
        chip_region(region, out, overwrite=True)
    return out


# ---------------------------------------------------------------------------- runs


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def _scores(metrics: dict[str, Any], cls: str) -> dict[str, Any]:
    px = metrics["pixel"]["per_class"][cls]
    obj = metrics["objects"][cls]
    truth = {name: v["pixels"] for name, v in metrics["pixel"]["per_class"].items()}
    total = sum(truth.values())
    return {
        "test_chips": metrics["chips"],
        # IoU of the trivial model that calls every pixel the class (the floor to beat)
        "all_class_iou": round(truth[cls] / total, 4) if total else None,
        "pixel_iou": px["iou"],
        "pixel_iou_ci95": px["iou_ci95"],
        "pixel_f1": px["f1"],
        "pixel_f1_ci95": px["f1_ci95"],
        "object_f1": obj["f1"],
        "object_f1_ci95": obj["f1_ci95"],
    }


def run_one(
    regions: list[Path],
    chips: list[Path],
    out: Path,
    base: str,
    budget: int | None,
    seed: int,
    args: argparse.Namespace,
    evaluate_on: tuple[Path, Path] | None,
    recipe: str = "new",
) -> dict[str, Any]:
    """Train one model with a recipe (or reuse it with --resume), score it on ``evaluate_on``."""
    from geotl.config import load_region
    from geotl.models.artefact import read_card
    from geotl.train import TrainOptions, train_model

    result_file = out / "result.json"
    if args.resume and result_file.is_file():
        log.info("reusing %s", result_file)
        return dict(json.loads(result_file.read_text()))
    loaded = [load_region(p) for p in regions]
    t0 = time.perf_counter()
    if recipe == "plain":
        card = train_plain(loaded[0], chips[0], out, base, budget, seed, args)
    elif recipe == "old":
        card = train_old(regions, chips, out, base, budget, seed, args, evaluate_on is not None)
    else:
        opts = TrainOptions(
            chips=tuple(chips),
            base=base,
            max_labels=budget,
            steps=args.steps if evaluate_on else args.source_steps,
            val_every=args.val_every,
            seed=seed,
            device=args.device,
            batch_size=args.batch_size,
            freeze=args.freeze,
            # a source model is a base for the target: its network, never a per-pixel model
            pixel_model=None if evaluate_on else False,
            overwrite=True,
        )
        card = train_model(loaded, out, opts)
    wall = time.perf_counter() - t0
    card = read_card(out)
    row: dict[str, Any] = {
        "model_dir": str(out),
        "model": card.model_id,
        "labels_used": sum(r.labels_used for r in card.regions),
        "labels_available": sum(r.labels_available for r in card.regions),
        "train_chips": sum(r.chips_train for r in card.regions),
        "recipe": recipe,
        "steps_run": card.metrics.get("steps_run"),
        "best_step": card.metrics.get("best_step"),
        "val_iou": card.metrics.get("val_iou"),
        "train_seconds": card.metrics.get("train_seconds"),
        "train_wall_seconds": round(wall, 2),
    }
    if evaluate_on is not None:
        row.update(score(out, *evaluate_on, args))
    result_file.write_text(json.dumps(row, indent=2) + "\n")
    return row


def budget_chips(
    region: Any, chips: Path, budget: int | None, seed: int, out: Path, splits: str = "train,val"
) -> Path:
    """The chips the plain script trains on: ``splits``' chips under the label budget.

    The budget is drawn over all of ``splits``' objects together, by the rule geotl's refit
    uses (``geotl.train.load_refit_sets``): at budget B the plain script on train + val and
    geotl with ``refit`` learn from the same B objects. Masks are written as geotl's
    training sees them (pixels of unsampled objects ignore); images are linked, not copied.
    """
    import pandas as pd
    import rasterio

    from geotl.chips import read_chip_index
    from geotl.train import load_region_chips, select_objects

    index = read_chip_index(chips)
    if (out / "chips.parquet").is_file():
        return out
    names = splits.split(",")
    object_ids = [list(v) for s in names for v in index.split(s)["object_ids"]]
    sampled = select_objects(object_ids, budget, seed)
    bands = list(index.meta["bands"])
    (out / "masks").mkdir(parents=True, exist_ok=True)
    rows = []
    for split in names:
        data = load_region_chips(
            region, chips, split, bands, sampled if budget is not None else None, seed
        )
        for chip_id, mask in zip(data.chip_ids, data.masks, strict=True):
            with rasterio.open(chips / f"masks/{chip_id}.tif") as src:
                profile = {
                    k: v for k, v in src.profile.items() if k not in ("blockxsize", "blockysize")
                }
            with rasterio.open(out / f"masks/{chip_id}.tif", "w", **profile) as dst:
                dst.write(mask[None])
            rows.append({"chip_id": chip_id, "split": split, "mask": f"masks/{chip_id}.tif"})
    for r in rows:
        r["image"] = str(chips / f"images/{r['chip_id']}.tif")
    pd.DataFrame(rows).to_parquet(out / "chips.parquet")
    (out / "chipset.json").write_text((chips / "chipset.json").read_text())
    return out


def train_plain(
    region: Any,
    chips: Path,
    out: Path,
    base: str,
    budget: int | None,
    seed: int,
    args: argparse.Namespace,
    splits: str = "train,val",
) -> Any:
    """Run scripts/baseline_plain.py on ``splits`` and wrap its weights into a model card."""
    import numpy as np
    import pandas as pd
    from safetensors.torch import load_file

    from geotl.chips import read_chip_index
    from geotl.models.artefact import (
        BaseModelRef,
        ModelCard,
        Normalisation,
        RegionRecord,
        write_artefact,
    )
    from geotl.models.network import NetworkSpec, build_network

    init = {"pkg:efficientnet-lite0": "imagenet", "none": "none"}.get(base)
    if init is None:
        raise SystemExit(f"--recipes plain: base {base} is not measured (imagenet / none only)")
    data = budget_chips(region, chips, budget, seed, out.parent / f"{out.name}-chips", splits)
    raw = out.parent / f"{out.name}-plain"
    cmd = [
        sys.executable,
        str(REPO / "scripts" / "baseline_plain.py"),
        "--chips", str(data), "--out", str(raw), "--init", init,
        "--steps", str(args.steps), "--seed", str(seed), "--splits", splits,
        "--threads", str(torch.get_num_threads()), "--device", args.device,
    ]  # fmt: skip
    subprocess.run(cmd, check=True)
    rec = json.loads((raw / "plain.json").read_text())
    spec = NetworkSpec(
        encoder=rec["encoder"], in_channels=rec["in_channels"], num_classes=rec["num_classes"]
    )
    network = build_network(spec)
    network.load_state_dict(load_file(raw / "model.safetensors"))
    index = read_chip_index(chips)
    available = len(
        {int(i) for s in splits.split(",") for ids in index.split(s)["object_ids"] for i in ids}
    )
    record = RegionRecord(
        name=region.name,
        path=str(region.path),
        labels_available=available,
        labels_used=min(budget, available) if budget is not None else available,
        chips_train=len(pd.read_parquet(data / "chips.parquet", columns=["split"])),
    )
    card = ModelCard(
        name=f"plain-{region.name}",
        classes=list(rec["classes"]),
        bands=list(rec["bands"]),
        normalisation=Normalisation(mean=rec["mean"], std=rec["std"]),
        chip_size_px=int(index.meta["size_px"]),
        resolution_m=float(np.median(index.frame["resolution_m"])),
        network=spec,
        base=BaseModelRef(id=f"plain:{init}", architecture=rec["encoder"], licence="n/a",
                          commercial_use=False),
        freeze="none",
        label_budget=budget,
        regions=[record],
        seed=seed,
        min_area_m2=region.predict.min_area_m2,
        simplify_px=region.predict.simplify_px,
        metrics={"train_seconds": rec["train_seconds"], "steps_run": rec["steps"],
                 "best_step": rec["steps"], "val_iou": None},
    )  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    return write_artefact(out, network, card)


def train_old(
    regions: list[Path],
    chips: list[Path],
    out: Path,
    base: str,
    budget: int | None,
    seed: int,
    args: argparse.Namespace,
    target: bool,
) -> Any:
    """geotl's training before issue 8, from --old-src, in a subprocess."""
    from geotl.models.artefact import read_card

    if args.old_src is None:
        raise SystemExit("--recipes old needs --old-src (a checkout of geotl before issue 8)")
    epochs = args.epochs_resolved if target else args.source_epochs_resolved
    code = (
        "import sys, json, torch; from pathlib import Path\n"
        "import geotl; print('old geotl:', geotl.__file__, file=sys.stderr)\n"
        f"torch.set_num_threads({torch.get_num_threads()})\n"
        "from geotl.config import load_region\n"
        "from geotl.train import TrainOptions, train_model\n"
        "a = json.loads(sys.argv[1])\n"
        "train_model([load_region(p) for p in a['regions']], Path(a['out']), TrainOptions("
        "chips=tuple(Path(c) for c in a['chips']), base=a['base'], max_labels=a['budget'], "
        "epochs=a['epochs'], seed=a['seed'], batch_size=a['batch_size'], freeze=a['freeze'], "
        "overwrite=True))\n"
    )
    payload = {
        "regions": [str(p) for p in regions], "chips": [str(c) for c in chips],
        "out": str(out), "base": base, "budget": budget, "epochs": epochs, "seed": seed,
        "batch_size": args.batch_size, "freeze": args.freeze,
    }  # fmt: skip
    old_src = Path(args.old_src).resolve()
    env = {**os.environ, "PYTHONPATH": str(old_src)}
    # cwd: ``python -c`` puts the working folder first on sys.path
    subprocess.run(
        [sys.executable, "-c", code, json.dumps(payload)], check=True, env=env, cwd=old_src
    )
    return read_card(out)


def score(
    model_dir: Path, region_path: Path, chips: Path, args: argparse.Namespace
) -> dict[str, Any]:
    """Test-split scores of a model on a region, with the evaluation time."""
    from geotl.config import load_region
    from geotl.evaluate import evaluate_model

    region = load_region(region_path)
    t0 = time.perf_counter()
    metrics = evaluate_model(
        model_dir,
        region,
        chips_dir=chips,
        device=args.device,
        n_boot=args.n_boot_resolved,
        seed=0,
    )
    out = _scores(metrics, region.classes[0])
    out["eval_seconds"] = round(time.perf_counter() - t0, 2)
    return out


def bench_region(
    key: str,
    target: Path,
    bases: list[str],
    budgets: list[int],
    seeds: list[int],
    args: argparse.Namespace,
    source: tuple[list[Path], str] | None = None,
) -> list[dict[str, Any]]:
    """Every base x budget x seed on one target region (plus the source model for neon)."""
    from geotl.config import load_region

    work: Path = args.work
    region = load_region(target)
    target_chips = chips_for(target, work)
    rows: list[dict[str, Any]] = []
    for seed in seeds:
        source_dir: Path | None = None
        if source is not None and any(b == "model:source" for b in bases):
            src_regions, src_label = source
            src_chips = [chips_for(p, work) for p in src_regions]
            source_dir = work / "runs" / key / f"source-{_slug(src_label)}" / f"s{seed}"
            log.info("%s: source model on %s (seed %d)", key, src_label, seed)
            src = run_one(
                src_regions, src_chips, source_dir, args.source_base, None, seed, args, None
            )
            zero = score(source_dir, target, target_chips, args)
            rows.append(
                {
                    "region": region.name,
                    "base": f"model:source ({src_label})",
                    "budget": 0,
                    "seed": seed,
                    "recipe": "new",
                    **{k: src[k] for k in ("model_dir", "model", "steps_run", "best_step")},
                    "labels_used": 0,
                    "train_chips": 0,
                    "train_seconds": 0.0,
                    "source_train_seconds": src["train_seconds"],
                    "source_labels_used": src["labels_used"],
                    **zero,
                }
            )
        for base in bases:
            base_id = base
            label = base
            if base == "model:source":
                assert source is not None and source_dir is not None
                base_id = f"model:{source_dir}"
                label = f"model:source ({source[1]})"
            for budget, recipe in ((b, r) for b in budgets for r in args.recipe_list):
                if recipe == "plain" and base not in ("pkg:efficientnet-lite0", "none"):
                    continue  # the plain script has no model: source of its own here
                out = work / "runs" / key / recipe / _slug(base) / f"{budget}-s{seed}"
                log.info("%s: %s, base %s, %d labels, seed %d", key, recipe, label, budget, seed)
                row = run_one(
                    [target],
                    [target_chips],
                    out,
                    base_id,
                    budget,
                    seed,
                    args,
                    (target, target_chips),
                    recipe,
                )
                rows.append(
                    {"region": region.name, "base": label, "budget": budget, "seed": seed, **row}
                )
    return rows


# ---------------------------------------------------------------------------- report


def _ci(value: float | None, ci: list[float | None]) -> str:
    if value is None:
        return "n/a"
    lo, hi = ci
    if lo is None or hi is None:
        return f"{value:.3f}"
    return f"{value:.3f} [{lo:.3f}, {hi:.3f}]"


def markdown(rows: list[dict[str, Any]]) -> str:
    """The results table; ``Δ IoU`` is against ``none`` at the same budget and seed."""
    none = {
        (r["region"], r["budget"], r["seed"], r.get("recipe")): r["pixel_iou"]
        for r in rows
        if r["base"] == "none"
    }
    head = (
        "| region | recipe | base | budget | labels used | train chips | pixel IoU [95 % CI] "
        "| Δ IoU vs none | pixel F1 [95 % CI] | object F1 [95 % CI] | steps (best) | train s |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for r in rows:
        ref = none.get((r["region"], r["budget"], r["seed"], r.get("recipe")))
        delta = (
            f"{r['pixel_iou'] - ref:+.3f}"
            if ref is not None and r["pixel_iou"] is not None and r["base"] != "none"
            else ""
        )
        train_s = (
            f"{r['train_seconds']:.0f}"
            if r["budget"]
            else f"0 (source: {r.get('source_train_seconds', 0):.0f})"
        )
        lines.append(
            f"| {r['region']} | {r.get('recipe', 'new')} | {r['base']} | {r['budget']}"
            + (f" (seed {r['seed']})" if r["seed"] else "")
            + f" | {r['labels_used']} | {r['train_chips']} | {_ci(r['pixel_iou'], r['pixel_iou_ci95'])}"
            f" | {delta} | {_ci(r['pixel_f1'], r['pixel_f1_ci95'])}"
            f" | {_ci(r['object_f1'], r['object_f1_ci95'])} | {r['steps_run']} ({r['best_step']})"
            f" | {train_s} |"
        )
    floors = {r["region"]: r.get("all_class_iou") for r in rows}
    notes = [
        f"\n{region}: a model that calls every test pixel the class scores pixel IoU {v:.3f}."
        for region, v in floors.items()
        if v is not None
    ]
    return head + "\n".join(lines) + "\n" + "".join(notes) + ("\n" if notes else "")


def plot(rows: list[dict[str, Any]], work: Path) -> list[str]:
    """One label-efficiency PNG per region (geotl's own curve plot)."""
    from geotl.evaluate import plot_curve

    paths = []
    for region in sorted({r["region"] for r in rows}):
        mine = [
            r
            for r in rows
            if r["region"] == region
            and r["budget"] > 0
            and r["seed"] == rows[0]["seed"]
            and r.get("recipe", "new") == "new"
        ]
        bases = list(dict.fromkeys(r["base"] for r in mine))
        cls = {"neon": "tree", "spac": "building"}.get(region[:4], "field")
        path = work / f"transfer-{region}.png"
        plot_curve({"region": region, "class": cls, "bases": bases, "rows": mine}, path)
        paths.append(str(path))
    return paths


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; the markdown table goes to stdout, JSON/MD/PNG to --work."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared data folder")
    ap.add_argument("--work", type=Path, default=Path("/tmp/geotl-bench-transfer"))
    ap.add_argument(
        "--regions", default="neon,s2", help="comma-separated: neon, s2, spacenet, pivots"
    )
    ap.add_argument("--budgets", default=None, help=f"label budgets (default {FULL['budgets']})")
    ap.add_argument("--seeds", default="0", help="training seeds, e.g. 0,1,2")
    ap.add_argument(
        "--epochs", type=int, default=None, help=f"max epochs per run ({FULL['epochs']})"
    )
    ap.add_argument(
        "--source-epochs", type=int, default=None, help="max epochs of the source model"
    )
    ap.add_argument(
        "--source-base", default="pkg:efficientnet-lite0", help="base of the source model"
    )
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--freeze", default="partial", choices=["none", "backbone", "partial"])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--n-boot", type=int, default=None, help="bootstrap resamples (1000)")
    ap.add_argument("--neon-target", default="SJER", help="target site")
    ap.add_argument("--neon-sources", default="HARV,OSBS", help="source sites, comma-separated")
    ap.add_argument("--neon-chip-px", type=int, default=None, help="NEON chip size (128)")
    ap.add_argument("--neon-bases", default=None, help="bases for the NEON target")
    ap.add_argument("--s2-chip-px", type=int, default=32)
    ap.add_argument("--spacenet-chip-px", type=int, default=128)
    ap.add_argument("--spacenet-bases", default="pkg:efficientnet-lite0,none")
    ap.add_argument("--s2-bases", default=None, help="bases for Sentinel-2")
    ap.add_argument("--recipes", default="new,plain", help="new, plain, old (comma-separated)")
    ap.add_argument("--steps", type=int, default=100, help="optimizer steps (new and plain)")
    ap.add_argument("--source-steps", type=int, default=400, help="steps of the source model")
    ap.add_argument("--val-every", type=int, default=None, help="new: validate every N steps")
    ap.add_argument("--old-src", type=Path, default=None, help="geotl checkout before issue 8")
    ap.add_argument("--quick", action="store_true", help="small CPU run: " + json.dumps(QUICK))
    ap.add_argument("--resume", action="store_true", help="reuse finished runs in --work")
    args = ap.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )
    if args.threads:
        torch.set_num_threads(args.threads)
    defaults = QUICK if args.quick else FULL

    def pick(name: str) -> Any:
        value = getattr(args, name)
        return defaults[name] if value is None else value

    args.recipe_list = [r for r in args.recipes.split(",") if r]
    args.epochs_resolved = pick("epochs")
    args.source_epochs_resolved = pick("source_epochs")
    args.n_boot_resolved = pick("n_boot")
    budgets = [int(v) for v in str(pick("budgets")).split(",") if v.strip()]
    seeds = [int(v) for v in args.seeds.split(",") if v.strip()]
    if not args.data.is_dir():
        ap.error(f"--data {args.data}: folder not found (the shared data, e.g. ../shared/data)")
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: no CUDA device here")
    args.data = args.data.resolve()  # region files hold absolute paths
    args.work = args.work.resolve()
    work: Path = args.work
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    rows: list[dict[str, Any]] = []
    keys = [k.strip() for k in args.regions.split(",") if k.strip()]
    for key in keys:
        if key == "neon":
            chip_px = pick("neon_chip_px")
            target = neon_region(work, args.data, args.neon_target, chip_px, args.freeze)
            sites = [s.strip() for s in args.neon_sources.split(",") if s.strip()]
            sources = [neon_region(work, args.data, s, chip_px, args.freeze) for s in sites]
            bases = [b for b in pick("neon_bases").split(",") if b]
            rows += bench_region(
                key, target, bases, budgets, seeds, args, (sources, "+".join(sites))
            )
        elif key == "pivots":
            target = pivots_region(work, args.data, args.s2_chip_px, args.freeze)
            bases = [b for b in args.spacenet_bases.split(",") if b]
        elif key == "spacenet":
            target = spacenet_region(work, args.data, args.spacenet_chip_px, args.freeze)
            bases = [b for b in args.spacenet_bases.split(",") if b]
            rows += bench_region(key, target, bases, budgets, seeds, args)
        elif key == "s2":
            target = s2_region(work, args.data, args.s2_chip_px, args.freeze)
            bases = [b for b in pick("s2_bases").split(",") if b]
            rows += bench_region(key, target, bases, budgets, seeds, args)
        else:
            ap.error(f"--regions: unknown region {key!r} (use neon, s2, spacenet, pivots)")
    table = markdown(rows)
    pngs = plot(rows, work)
    record = {
        "command": " ".join(
            ["scripts/bench_transfer.py", *(sys.argv[1:] if argv is None else argv)]
        ),
        "device": args.device,
        "device_name": torch.cuda.get_device_name()
        if args.device == "cuda"
        else platform.processor(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "settings": {
            "recipes": args.recipe_list,
            "steps": args.steps,
            "source_steps": args.source_steps,
            "val_every": args.val_every,
            "old_src": str(args.old_src) if args.old_src else None,
            "epochs": args.epochs_resolved,
            "source_epochs": args.source_epochs_resolved,
            "budgets": budgets,
            "seeds": seeds,
            "batch_size": args.batch_size,
            "freeze": args.freeze,
            "n_boot": args.n_boot_resolved,
            "neon": {
                "target": args.neon_target,
                "sources": args.neon_sources,
                "chip_px": pick("neon_chip_px"),
            },
            "s2": {"chip_px": args.s2_chip_px},
        },
        "wall_seconds": round(time.perf_counter() - t0, 1),
        "rows": rows,
        "plots": pngs,
    }
    (work / "transfer.json").write_text(json.dumps(record, indent=2) + "\n")
    (work / "transfer.md").write_text(table)
    print(table)
    log.info(
        "wrote %s, %s and %d plot(s) in %.0fs",
        work / "transfer.json",
        work / "transfer.md",
        len(pngs),
        record["wall_seconds"],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
