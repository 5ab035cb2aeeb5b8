"""Label-efficiency curves: train and evaluate at several label budgets, per base model."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from geotl.config import Region
from geotl.errors import GeotlInputError
from geotl.evaluate.core import evaluate_model
from geotl.io.atomic import atomic_path, atomic_write_text

__all__ = ["label_curve", "plot_curve"]

log = logging.getLogger(__name__)


def label_curve(
    region: Region,
    out_dir: str | Path,
    budgets: list[int],
    bases: list[str],
    options: Any,
    *,
    out_json: str | Path | None = None,
    n_boot: int = 1000,
) -> dict[str, Any]:
    """Train and evaluate at each label budget for each base; write JSON table + PNG plot.

    Args:
        region: the region (its train split feeds training, its test split scores).
        out_dir: folder for the curve's models (``<base>/<budget>/``) and shared chips.
        budgets: label budgets (objects).
        bases: base model ids.
        options: :class:`geotl.train.TrainOptions` applied to every run (its ``base`` and
            ``max_labels`` are replaced per run).
        out_json: where the JSON table goes (default ``out_dir/curve.json``; the PNG beside it).
        n_boot: bootstrap resamples per evaluation.
    """
    import re

    from geotl.models.bases.kind import require_supported
    from geotl.models.catalogue import check_licence, get_entry
    from geotl.train import resolve_chips_dir, train_model

    # every base refused now, before chipping and hours of training on the others
    for base in bases:
        entry = get_entry(base)
        require_supported(entry)
        check_licence(entry, region.model.require_commercial_licence)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path = Path(out_json) if out_json else out / "curve.json"
    chips = options.chips[0] if options.chips else None
    default = out / "chips"
    if chips is None and default.exists():
        # a previous curve's chips are reused; anything else there (a model folder's chips
        # of other regions) is not this region's and must not be overwritten
        if not _chips_of(default, region.name):
            raise GeotlInputError(
                f"holds chips of another region than {region.name} (is {out} a model folder?): "
                "give --curve a folder of its own for its models, or pass --chips",
                default,
            )
        chips = default
    cdir = resolve_chips_dir(region, chips, default, options.overwrite)
    rows: list[dict[str, Any]] = []
    for base in bases:
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", base)
        for budget in budgets:
            mdir = out / slug / str(budget)
            log.info("curve: base %s, %d labels", base, budget)
            opts = replace(options, base=base, max_labels=budget, chips=(cdir,), overwrite=True)
            card = train_model([region], mdir, opts)
            m = evaluate_model(mdir, region, chips_dir=cdir, n_boot=n_boot, seed=options.seed)
            fg = card.classes[0]
            kept = _kept(card.metrics)
            if kept != "network":
                # the base's network played no part in this row's scores
                log.warning(
                    "curve: base %s, %d labels: the %s was kept, not a network trained from "
                    "the base, so this row does not compare bases (train with --no-pixel-model "
                    "or more steps)",
                    base,
                    budget,
                    kept,
                )
            rows.append(
                {
                    "base": base,
                    "budget": budget,
                    "labels_used": card.regions[0].labels_used,
                    "train_seconds": card.metrics.get("train_seconds"),
                    "steps_run": card.metrics.get("steps_run"),
                    "pixel_iou": m["pixel"]["per_class"][fg]["iou"],
                    "pixel_iou_ci95": m["pixel"]["per_class"][fg]["iou_ci95"],
                    "pixel_f1": m["pixel"]["per_class"][fg]["f1"],
                    "pixel_f1_ci95": m["pixel"]["per_class"][fg]["f1_ci95"],
                    "object_f1": m["objects"][fg]["f1"],
                    "object_f1_ci95": m["objects"][fg]["f1_ci95"],
                    "model": card.model_id,
                    "kept": kept,
                }
            )
    table = {
        "region": region.name,
        "class": region.classes[0],
        "bases": bases,
        "budgets": budgets,
        "rows": rows,
    }
    atomic_write_text(json_path, json.dumps(table, indent=2) + "\n")
    plot_curve(table, json_path.with_suffix(".png"))
    return table


def _chips_of(folder: Path, name: str) -> bool:
    """Whether ``folder`` holds chips cut for the region ``name``."""
    from geotl.chips import read_chip_index

    if not (folder / "chipset.json").is_file():
        return False
    return bool(read_chip_index(folder).meta.get("region") == name)


def _kept(metrics: dict[str, Any]) -> str:
    """What training kept: "network", "pixel model" or "base weights" (none trained better)."""
    if (metrics.get("pixel_model") or {}).get("kept"):
        return "pixel model"
    if metrics.get("kept_base"):
        return "base weights"
    return "network"


def plot_curve(table: dict[str, Any], path: Path) -> None:
    """PNG of pixel IoU (with 95 % CI band) against labels used, one line per base."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for base in table["bases"]:
        rows = sorted(
            (r for r in table["rows"] if r["base"] == base), key=lambda r: r["labels_used"]
        )
        x = [r["labels_used"] for r in rows]
        y = [np.nan if r["pixel_iou"] is None else r["pixel_iou"] for r in rows]
        lo = [np.nan if r["pixel_iou_ci95"][0] is None else r["pixel_iou_ci95"][0] for r in rows]
        hi = [np.nan if r["pixel_iou_ci95"][1] is None else r["pixel_iou_ci95"][1] for r in rows]
        ax.plot(x, y, marker="o", label=base)
        ax.fill_between(x, lo, hi, alpha=0.2)
    ax.set_xscale("log")
    ax.set_xlabel("labelled objects used for training")
    ax.set_ylabel(f"test pixel IoU ({table['class']})")
    ax.set_title(f"label efficiency: {table['region']}")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
