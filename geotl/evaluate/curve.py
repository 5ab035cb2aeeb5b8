"""Label-efficiency curves: train and evaluate at several label budgets, per base model."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from geotl.config import Region
from geotl.errors import GeotlInputError, OutputExistsError
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
    overwrite: bool = False,
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
        overwrite: replace a JSON file at ``out_json`` that is not this region's curve table
            (a curve table of the region is resumed: its finished points are kept).

    Raises:
        OutputExistsError: ``out_json`` holds another file (a metrics JSON, another
            region's curve) and ``overwrite`` is false.
    """
    import re

    from geotl.chips import read_chip_index
    from geotl.chips.assemble import stale_reason
    from geotl.evaluate.chips import check_test_split
    from geotl.io.atomic import check_output_file
    from geotl.models.bases.kind import require_supported
    from geotl.models.catalogue import check_licence, get_entry
    from geotl.train import resolve_chips_dir, train_model

    check_test_split(region)  # each point is scored on the test split: none, no curve
    # every base refused now, before chipping and hours of training on the others
    for base in bases:
        entry = get_entry(base)
        require_supported(entry)
        check_licence(entry, region.model.require_commercial_licence)
    out = Path(out_dir)
    json_path = Path(out_json) if out_json else out / "curve.json"
    if out_json:  # a folder that does not exist fails now, not after the first model
        check_output_file(json_path)
    if json_path.is_file() and not overwrite and not _is_curve_of(json_path, region.name):
        raise OutputExistsError(
            f"exists and is not a label curve of region '{region.name}' (which --curve would "
            "resume): pass --overwrite to replace it, or give --out another file",
            json_path,
        )
    out.mkdir(parents=True, exist_ok=True)
    chips = options.chips[0] if options.chips else None
    default = out / "chips"
    overwrite = options.overwrite
    if chips is None and default.exists():
        # a previous curve's chips are reused; anything else there (a model folder's chips
        # of other regions) is not this region's and must not be overwritten
        meta = read_chip_index(default).meta if (default / "chipset.json").is_file() else {}
        if meta.get("region") != region.name:
            raise GeotlInputError(
                f"holds chips of another region than {region.name} (is {out} a model folder?): "
                "give --curve a folder of its own for its models, or pass --chips",
                default,
            )
        why = stale_reason(region, meta)
        if why is None:
            chips = default
        elif (out / "model.json").is_file():  # a model's own chips are not the curve's to replace
            raise GeotlInputError(
                f"holds the chips of the model in {out}, {why}: give --curve a folder of its "
                "own for its models, or pass --chips",
                default,
            )
        else:  # the curve's own chips, cut before the labels were edited: cut them again
            log.warning("curve: the chips in %s are not used: %s; chipping again", default, why)
            overwrite = True
    cdir = resolve_chips_dir(region, chips, default, overwrite)
    settings = _settings(region, options, read_chip_index(cdir).split_sha(), n_boot)
    done = _done_rows(json_path, region.name, settings)
    task = region.task
    multi = len(region.classes) > 1 and task != "detection"  # a detector's scores pool classes
    rows: list[dict[str, Any]] = []
    table = {
        "region": region.name,
        "task": task,
        # the class each row scores: a detector's AP50 and F1 pool its classes
        "class": region.classes[0]
        if task != "detection" or len(region.classes) == 1
        else "all classes",
        # several classes (segmentation): each row has every class's scores and their mean
        **({"classes": list(region.classes)} if multi else {}),
        "bases": bases,
        "budgets": budgets,
        "rows": rows,
        "complete": False,
        "settings": settings,
    }
    for base in bases:
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", base)
        for budget in budgets:
            mdir = out / slug / str(budget)
            kept_row = done.get((base, budget))
            if (
                kept_row is not None
                and _model_id(mdir) == kept_row.get("model")
                # an earlier version's row of several classes had the first one's scores only
                and (not multi or "per_class" in kept_row)
            ):
                log.info("curve: base %s, %d labels: done by an earlier run, kept", base, budget)
                rows.append(kept_row)
                continue
            log.info("curve: base %s, %d labels", base, budget)
            opts = replace(options, base=base, max_labels=budget, chips=(cdir,), overwrite=True)
            card = train_model([region], mdir, opts)
            m = evaluate_model(mdir, region, chips_dir=cdir, n_boot=n_boot, seed=options.seed)
            fg = card.classes[0]
            kept = card.kept
            if kept != "network":
                # the base's network played no part in this row's scores
                log.warning(
                    "curve: base %s, %d labels: the %s was kept, not a network trained from "
                    "the base, so this row does not compare bases (%s)",
                    base,
                    budget,
                    kept,
                    # geotl evaluate --curve takes --no-pixel-model as geotl train does
                    f"pass --no-pixel-model, or set pixel_model = false in [model] of "
                    f"{region.path.name}"
                    if kept == "pixel model"
                    else "train longer: --steps, or more labels",
                )
            row: dict[str, Any] = {
                "base": base,
                "budget": budget,
                "labels_used": card.regions[0].labels_used,
                "train_seconds": card.metrics.get("train_seconds"),
                "steps_run": card.metrics.get("steps_run"),
            }
            if "detection" in m:  # boxes: AP50, and object F1 at IoU 0.5
                at = m["detection"]["iou_0.5"]
                row |= {
                    "ap50": m["detection"]["ap50"],
                    "ap50_ci95": m["detection"]["ap50_ci95"],
                    "object_f1": at["f1"],
                    "object_f1_ci95": at["f1_ci95"],
                }
            else:
                row |= _class_scores(m, fg)
                if multi:
                    row["per_class"] = {c: _class_scores(m, c) for c in card.classes}
                    row["mean"] = {
                        "pixel_iou": m["pixel"]["mean_iou"],
                        "pixel_iou_ci95": m["pixel"]["mean_iou_ci95"],
                    }
            rows.append(row | {"model": card.model_id, "kept": kept})
            # each point as it is done: a curve stopped half-way keeps what it finished
            _write(table, json_path)
    table["complete"] = True
    _write(table, json_path)
    return table


def _class_scores(metrics: dict[str, Any], name: str) -> dict[str, Any]:
    """One class's pixel and object scores of an evaluation, as a curve row holds them.

    A class without labelled test pixels has no scores (None, not plotted): its IoU of 0
    would only say the model predicted some of it, and a curve of zeros with a CI of
    [0, 0] reads as a class the model never learns, at every budget.

    >>> m = {"pixel": {"per_class": {"water": {"iou": 0.0, "iou_ci95": [0.0, 0.0],
    ...     "f1": 0.0, "f1_ci95": [0.0, 0.0], "pixels": 0}},
    ...     "classes_without_test_pixels": ["water"]},
    ...     "objects": {"water": {"f1": 0.0, "f1_ci95": [0.0, 0.0]}}}
    >>> _class_scores(m, "water")["pixel_iou"], _class_scores(m, "water")["object_f1_ci95"]
    (None, [None, None])
    """
    px = metrics["pixel"]["per_class"][name]
    if name in metrics["pixel"].get("classes_without_test_pixels", []):
        keys = ("pixel_iou", "pixel_f1", "object_f1")
        return {k: v for key in keys for k, v in ((key, None), (f"{key}_ci95", [None, None]))}
    return {
        "pixel_iou": px["iou"],
        "pixel_iou_ci95": px["iou_ci95"],
        "pixel_f1": px["f1"],
        "pixel_f1_ci95": px["f1_ci95"],
        "object_f1": metrics["objects"][name]["f1"],
        "object_f1_ci95": metrics["objects"][name]["f1_ci95"],
    }


def _write(table: dict[str, Any], json_path: Path) -> None:
    """The table (JSON) and its plot (PNG beside it), each written atomically."""
    atomic_write_text(json_path, json.dumps(table, indent=2) + "\n")
    plot_curve(table, json_path.with_suffix(".png"))


def _settings(region: Region, options: Any, split_sha: str, n_boot: int) -> dict[str, Any]:
    """What a curve point's result follows besides its base and budget (JSON values).

    The training options, the region's ``[model]`` and ``[chips]`` tables, its label files
    and its split: a point of an earlier run is reused only when all of these are the same.
    """
    from dataclasses import asdict

    from geotl.chips.assemble import label_inputs

    per_point = ("chips", "base", "max_labels", "overwrite", "num_workers")
    settings = {
        "options": {k: v for k, v in asdict(options).items() if k not in per_point},
        "model": region.model.model_dump(mode="json"),
        "chips": region.chips.model_dump(mode="json"),
        "labels_sha256": label_inputs(region) if region.labels is not None else {},
        "split_sha": split_sha,
        "n_boot": n_boot,
    }
    return dict(json.loads(json.dumps(settings, default=str)))


def _done_rows(
    json_path: Path, name: str, settings: dict[str, Any]
) -> dict[tuple[str, int], dict[str, Any]]:
    """The points an earlier run of the same curve finished, by (base, budget)."""
    try:
        old = json.loads(json_path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(old, dict) or old.get("region") != name or old.get("settings") != settings:
        return {}
    return {
        (str(r["base"]), int(r["budget"])): r
        for r in old.get("rows", [])
        if isinstance(r, dict) and "base" in r and "budget" in r
    }


def _is_curve_of(json_path: Path, name: str) -> bool:
    """Whether ``json_path`` holds a curve table of region ``name`` (one to resume)."""
    try:
        old = json.loads(json_path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(old, dict) and old.get("region") == name and "rows" in old


def _model_id(model_dir: Path) -> str | None:
    """The model id of ``model_dir``'s card, or None (no readable card)."""
    try:
        return str(json.loads((model_dir / "model.json").read_text())["model_id"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def plot_curve(table: dict[str, Any], path: Path) -> None:
    """PNG of pixel IoU (a detector's AP50), with 95 % CI band, against labels used, per base.

    With several classes the solid line is their mean IoU (with its CI band) and a dashed
    line each class's IoU: the first class alone hid a class the model never learnt.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # a detector has no pixel scores: its AP50
    key, label = (
        ("ap50", "test AP50")
        if table.get("task") == "detection"
        else ("pixel_iou", "test pixel IoU")
    )
    classes = table.get("classes") or []
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for base in table["bases"]:
        rows = sorted(
            (r for r in table["rows"] if r["base"] == base), key=lambda r: r["labels_used"]
        )
        x = [r["labels_used"] for r in rows]
        scores = [r.get("mean", {}) for r in rows] if classes else rows
        name = f"{base} (mean)" if classes else base
        (line,) = ax.plot(x, _values(scores, key), marker="o", label=name)
        lo = _values(scores, f"{key}_ci95", 0)
        ax.fill_between(x, lo, _values(scores, f"{key}_ci95", 1), alpha=0.2)
        for c in classes:
            per = [r.get("per_class", {}).get(c, {}) for r in rows]
            ax.plot(
                x,
                _values(per, key),
                "--",
                lw=1,
                marker=".",
                color=line.get_color(),
                label=f"{base}: {c}",
            )
    ax.set_xscale("log")
    ax.set_xlabel("labelled objects used for training")
    what = _mean_of(table, classes, key) if classes else table["class"]
    ax.set_ylabel(f"{label} ({what})")
    ax.set_title(f"label efficiency: {table['region']}")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def _mean_of(table: dict[str, Any], classes: list[str], key: str) -> str:
    """The axis label's word on the mean: of the classes with test scores, not of all.

    >>> rows = [{"per_class": {"a": {"pixel_iou": 0.5}, "b": {"pixel_iou": None}}}]
    >>> _mean_of({"rows": rows}, ["a", "b"], "pixel_iou")
    'mean of 1 class, dashed: each; b: no test pixels'
    """
    scored = [
        c
        for c in classes
        if any(r.get("per_class", {}).get(c, {}).get(key) is not None for r in table["rows"])
    ]
    n = len(scored)
    what = f"mean of {n} class{'' if n == 1 else 'es'}, dashed: each"
    if unscored := [c for c in classes if c not in scored]:
        what += f"; {', '.join(unscored)}: no test pixels"
    return what


def _values(scores: list[dict[str, Any]], key: str, index: int | None = None) -> list[float]:
    """``key`` (a CI's ``index`` end) of each score dict; NaN where missing or None.

    >>> _values([{"a": 0.5}, {"a": None}, {}], "a")
    [0.5, nan, nan]
    >>> _values([{"a_ci95": [0.1, 0.9]}], "a_ci95", 1)
    [0.9]
    """
    out = []
    for s in scores:
        v = s.get(key)
        if index is not None and v is not None:
            v = v[index]
        out.append(np.nan if v is None else float(v))
    return out
