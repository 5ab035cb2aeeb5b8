"""Evaluate a model on a region's test split; label-efficiency curves.

Pixel metrics: IoU and F1 per class from the confusion matrix over all test chips
(ignore pixels excluded). Object metrics: per test chip, predicted polygons
(:func:`geotl.predict.vectorise.vectorise` of the class map) are matched one-to-one to the
label polygons clipped to the chip, greedily by IoU, a pair counting when IoU >= 0.5;
objects smaller than the region's ``[predict] min_area_m2`` are left out on both sides.
Objects cut by a chip border are judged as their parts in that chip, on both sides alike.

Count error: predicted objects / labelled objects, per test chip (``count_per_chip``),
over all test chips (``count_ratio``, with a CI) and the median over chips with labels;
1.0 is the right count, below 1 merged (or missed) objects, above 1 split (or spurious) ones.

Instance models (``task = "instances"``) are scored on their separated objects: the chip's
probabilities go through the same object extractor as prediction
(:mod:`geotl.predict.objects`).

Detection models (``task = "detection"``) are scored on boxes instead: object P/R/F1 at
IoU 0.4 and 0.5 against the chip index's boxes and COCO AP50 (:func:`detection_scores`).

Confidence intervals: percentile bootstrap over test chips (resampling chips with
replacement, recomputing each metric from the summed counts), 95 % by default.
"""

from __future__ import annotations

import json
import logging
import tempfile
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from geotl.config import Region
from geotl.errors import GeotlInputError
from geotl.io.atomic import atomic_path, atomic_write_text
from geotl.metrics import pixel_scores, precision_recall_f1

__all__ = [
    "average_precision_50",
    "bootstrap_ci",
    "detection_scores",
    "evaluate_model",
    "find_chips",
    "label_curve",
    "match_boxes",
    "match_objects",
]

log = logging.getLogger(__name__)

MATCH_IOU = 0.5


def match_objects(
    pred: list[Any], truth: list[Any], min_iou: float = MATCH_IOU
) -> tuple[int, int, int]:
    """One-to-one greedy matching of polygons by IoU; returns (tp, fp, fn).

    >>> from shapely.geometry import box
    >>> match_objects([box(0, 0, 1, 1), box(5, 5, 6, 6)], [box(0, 0, 1, 1.2)])
    (1, 1, 0)
    """
    import shapely

    if not pred or not truth:
        return 0, len(pred), len(truth)
    pairs = []
    tree = shapely.STRtree(truth)
    for i, p in enumerate(pred):
        for j in tree.query(p, predicate="intersects"):
            t = truth[int(j)]
            inter = p.intersection(t).area
            union = p.area + t.area - inter
            if union > 0 and inter / union >= min_iou:
                pairs.append((inter / union, i, int(j)))
    pairs.sort(reverse=True)
    used_p: set[int] = set()
    used_t: set[int] = set()
    for _, i, j in pairs:
        if i not in used_p and j not in used_t:
            used_p.add(i)
            used_t.add(j)
    tp = len(used_p)
    return tp, len(pred) - tp, len(truth) - tp


def _count_ratio(counts: np.ndarray) -> np.ndarray:
    """Predicted / labelled objects from summed ``(..., 2, classes)`` counts."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(counts[:, 1] > 0, counts[:, 0] / counts[:, 1], np.nan)


def bootstrap_ci(
    per_chip: np.ndarray, stat: Any, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap over chips of ``stat(sum of resampled per-chip counts)``.

    Args:
        per_chip: ``(n_chips, ...)`` additive counts per chip.
        stat: function of the summed counts (vectorised over a leading resample axis).
        n_boot: number of resamples.
        seed: seed of the resampling.
        level: confidence level of the interval.
    """
    n = per_chip.shape[0]
    if n == 0:
        nan = np.full(np.shape(stat(per_chip.sum(0)[None]))[1:], np.nan)
        return nan, nan
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    sums = np.stack([per_chip[row].sum(0) for row in idx])
    values = stat(sums)
    alpha = (1 - level) / 2
    with warnings.catch_warnings():
        # a class absent from every resample has no score: its interval is NaN, not a warning
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanquantile(values, alpha, axis=0), np.nanquantile(values, 1 - alpha, axis=0)


def find_chips(model_dir: Path, region: Region, chips_dir: Path | None, tmp: Path) -> Path:
    """The region's chips: given, else the model's ``chips/``, else cut into ``tmp``."""
    from geotl.chips import chip_region, read_chip_index
    from geotl.train import resolve_chips_dir

    if chips_dir is not None:
        return resolve_chips_dir(region, chips_dir, chips_dir, False)
    for cand in (model_dir / "chips", model_dir / "chips" / region.name):
        if (cand / "chipset.json").is_file() and read_chip_index(cand).meta.get(
            "region"
        ) == region.name:
            return cand
    log.info(
        "chipping %s for evaluation (the split is a pure function of the region file)", region.name
    )
    chip_region(region, tmp / "chips")
    return tmp / "chips"


def evaluate_model(
    model_dir: str | Path,
    region: Region,
    *,
    chips_dir: str | Path | None = None,
    out: str | Path | None = None,
    split: str = "test",
    device: str = "cpu",
    batch_size: int = 16,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Pixel IoU/F1 per class and object P/R/F1 of a model on a region's test split.

    Returns:
        The metrics dict (also written to ``out`` as JSON when given).

    Raises:
        ModelArtefactError: the model folder is incomplete.
        GeotlInputError: chips of another region, no test chips, bands that do not fit.
    """
    from geotl.models.artefact import load_artefact

    model_dir = Path(model_dir)
    artefact = load_artefact(model_dir, device)
    card = artefact.card
    if out is not None:
        from geotl.io.atomic import check_output_file

        check_output_file(Path(out))
    with tempfile.TemporaryDirectory(prefix="geotl-eval-") as tmpname:
        cdir = find_chips(model_dir, region, Path(chips_dir) if chips_dir else None, Path(tmpname))
        evaluate = _evaluate_boxes if card.task == "detection" else _evaluate_chips
        metrics = evaluate(artefact, region, cdir, split, batch_size, n_boot, seed)
    metrics["model"] = card.model_id
    metrics["model_dir"] = str(model_dir)
    if out is not None:
        atomic_write_text(Path(out), json.dumps(metrics, indent=2) + "\n")
    return metrics


def _evaluate_chips(
    artefact: Any, region: Region, cdir: Path, split: str, batch_size: int, n_boot: int, seed: int
) -> dict[str, Any]:
    import geopandas as gpd
    from shapely.geometry import box

    from geotl.chips import read_chip_index
    from geotl.io.vectors import read_labels
    from geotl.predict.objects import extractor_for
    from geotl.predict.scene import check_model_bands
    from geotl.train import load_region_chips
    from geotl.train.metrics import confusion

    card = artefact.card
    index = read_chip_index(cdir)
    check_model_bands(
        card.bands,
        list(index.meta.get("bands", region.imagery.bands)),
        region.path,
        what="the region's",
        fix="evaluate on a region with those bands, or a model trained on these",
    )
    region_for_classes = region.model_copy(update={"classes": list(card.classes)})
    data = load_region_chips(region_for_classes, cdir, split, list(card.bands))
    if not len(data):
        raise GeotlInputError(
            f"no {split} chips in {cdir}: lower block_size_m or raise test_fraction", region.path
        )
    num_classes = len(card.classes) + 1
    frame = index.frame.set_index("chip_id")
    labels_by_crs: dict[str, gpd.GeoDataFrame] = {}
    min_area = region.predict.min_area_m2
    confs = np.zeros((len(data), num_classes, num_classes), dtype=np.int64)
    objs = np.zeros((len(data), 3, num_classes - 1), dtype=np.int64)  # tp, fp, fn per class
    extractor = extractor_for(card.task, len(card.classes))
    import rasterio

    net = artefact.network
    with torch.no_grad():
        for start in range(0, len(data), batch_size):
            x = artefact.normalise(data.images[start : start + batch_size])
            x = np.where(data.valid[start : start + batch_size, None], x, 0.0).astype(np.float32)
            logits = net(torch.from_numpy(x).to(artefact.device))
            probs = extractor.probabilities(logits).cpu().numpy()
            for k in range(probs.shape[0]):
                i = start + k
                truth = data.masks[i]
                planes = extractor.finalise(probs[k], data.valid[i], card.threshold)
                p = planes[0].astype(np.uint8)
                confs[i] = confusion(
                    torch.from_numpy(p), torch.from_numpy(truth), num_classes
                ).numpy()
                chip_id = data.chip_ids[i]
                row = frame.loc[chip_id]
                with rasterio.open(cdir / str(row["image"])) as src:
                    transform, crs, bounds = src.transform, src.crs, src.bounds
                pixel_area = abs(transform.a * transform.e)
                # the smallest object as prediction sees it (geotl.predict.core), so that
                # seeds are filtered alike
                min_pixels = max(1, int(min_area / pixel_area * 0.5))
                objects = extractor.extract(
                    planes, transform, simplify_px=0.0, min_pixels=min_pixels
                )
                key = str(crs)
                if key not in labels_by_crs:
                    labels_by_crs[key] = read_labels(region, crs=crs)
                labels = labels_by_crs[key]
                chip_box = box(*bounds)
                near = labels.iloc[labels.sindex.query(chip_box, predicate="intersects")]
                for c, name in enumerate(card.classes, start=1):
                    pc = [
                        o.geometry
                        for o in objects
                        if o.class_index == c and o.geometry.area >= max(min_area, pixel_area)
                    ]
                    tc = [
                        g.intersection(chip_box) for g in near.loc[near["class"] == name].geometry
                    ]
                    tc = [g for g in tc if not g.is_empty and g.area >= max(min_area, pixel_area)]
                    objs[i, :, c - 1] = match_objects(pc, tc)

    total = confs.sum(0)
    iou, f1 = pixel_scores(total)
    iou_lo, iou_hi = bootstrap_ci(confs, lambda s: pixel_scores(s)[0], n_boot, seed)
    f1_lo, f1_hi = bootstrap_ci(confs, lambda s: pixel_scores(s)[1], n_boot, seed)
    tp, fp, fn = objs.sum(0)
    op, orc, of1 = precision_recall_f1(tp, fp, fn)
    of1_lo, of1_hi = bootstrap_ci(
        objs, lambda s: precision_recall_f1(s[:, 0], s[:, 1], s[:, 2])[2], n_boot, seed
    )
    predicted = objs[:, 0] + objs[:, 1]  # (chips, classes)
    labelled = objs[:, 0] + objs[:, 2]
    counts = np.stack([predicted, labelled], axis=1)
    ratio = _count_ratio(counts.sum(0)[None])[0]
    ratio_lo, ratio_hi = bootstrap_ci(counts, _count_ratio, n_boot, seed)
    with np.errstate(divide="ignore", invalid="ignore"):
        chip_ratio = np.where(labelled > 0, predicted / np.maximum(labelled, 1), np.nan)
    names = ["background", *card.classes]

    def _f(v: Any) -> float | None:
        v = float(v)
        return None if np.isnan(v) else round(v, 6)

    per_class = {
        name: {
            "iou": _f(iou[c]),
            "iou_ci95": [_f(iou_lo[c]), _f(iou_hi[c])],
            "f1": _f(f1[c]),
            "f1_ci95": [_f(f1_lo[c]), _f(f1_hi[c])],
            "pixels": int(total[c].sum()),
        }
        for c, name in enumerate(names)
    }
    objects_out = {
        name: {
            "precision": _f(op[c]),
            "recall": _f(orc[c]),
            "f1": _f(of1[c]),
            "f1_ci95": [_f(of1_lo[c]), _f(of1_hi[c])],
            "tp": int(tp[c]),
            "fp": int(fp[c]),
            "fn": int(fn[c]),
            "count_ratio": _f(ratio[c]),
            "count_ratio_ci95": [_f(ratio_lo[c]), _f(ratio_hi[c])],
            "count_ratio_median_chip": _f(np.nanmedian(chip_ratio[:, c]))
            if np.isfinite(chip_ratio[:, c]).any()
            else None,
            "count_per_chip": [
                {
                    "chip": data.chip_ids[i],
                    "predicted": int(predicted[i, c]),
                    "labelled": int(labelled[i, c]),
                }
                for i in range(len(data))
            ],
        }
        for c, name in enumerate(card.classes)
    }
    fg = confs[:, 1:, :].sum(1)  # noqa: F841  (kept for clarity of the mean below)
    mean_iou = float(np.nanmean(iou[1:])) if np.isfinite(iou[1:]).any() else float("nan")
    miou_lo, miou_hi = bootstrap_ci(
        confs, lambda s: np.nanmean(pixel_scores(s)[0][..., 1:], axis=-1), n_boot, seed
    )
    return {
        "region": region.name,
        "split": split,
        "chips": len(data),
        "match_iou": MATCH_IOU,
        "bootstrap": {"resamples": n_boot, "level": 0.95, "unit": "test chip", "seed": seed},
        "pixel": {
            "mean_iou": _f(mean_iou),
            "mean_iou_ci95": [_f(miou_lo), _f(miou_hi)],
            "per_class": per_class,
        },
        "objects": objects_out,
    }


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

    from geotl.train import resolve_chips_dir, train_model

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path = Path(out_json) if out_json else out / "curve.json"
    chips = options.chips[0] if options.chips else None
    cdir = (
        resolve_chips_dir(region, chips, out / "chips", options.overwrite)
        if chips or not (out / "chips" / "chipset.json").is_file()
        else out / "chips"
    )
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


# ---------------------------------------------------------------------------- detection

DETECTION_IOUS = (0.4, 0.5)
AP_RESAMPLES = 200  # AP is recomputed per resample (torchmetrics): fewer than the counts'


def match_boxes(
    pred: np.ndarray,
    truth: np.ndarray,
    min_iou: float,
    ignore: np.ndarray | None = None,
) -> tuple[int, int, int]:
    """One-to-one greedy matching of boxes by IoU (best pairs first); returns (tp, fp, fn).

    An unmatched prediction whose centre lies in an ``ignore`` box (an object mostly
    outside the chip, or not labelled) is neither a true nor a false positive.

    >>> t = np.array([[0, 0, 10, 10], [20, 0, 30, 10]], dtype=float)
    >>> match_boxes(np.array([[1, 0, 10, 10], [50, 50, 60, 60]], dtype=float), t, 0.5)
    (1, 1, 1)
    >>> match_boxes(np.array([[50, 50, 60, 60]], dtype=float), t, 0.5, np.array([[45, 45, 70, 70]]))
    (0, 0, 2)
    """
    from torchvision.ops import box_iou

    pred = np.asarray(pred, dtype=np.float64).reshape(-1, 4)
    truth = np.asarray(truth, dtype=np.float64).reshape(-1, 4)
    used_p: set[int] = set()
    if len(pred) and len(truth):
        iou = box_iou(torch.from_numpy(pred), torch.from_numpy(truth)).numpy()
        pi, ti = np.nonzero(iou >= min_iou)
        order = np.argsort(-iou[pi, ti], kind="stable")
        used_t: set[int] = set()
        for k in order.tolist():
            i, j = int(pi[k]), int(ti[k])
            if i not in used_p and j not in used_t:
                used_p.add(i)
                used_t.add(j)
    tp = len(used_p)
    fp_idx = [i for i in range(len(pred)) if i not in used_p]
    if ignore is not None and len(ignore) and fp_idx:
        ig = np.asarray(ignore, dtype=np.float64).reshape(-1, 4)
        c = (pred[fp_idx, :2] + pred[fp_idx, 2:]) / 2
        inside = (
            (c[:, None, 0] >= ig[None, :, 0])
            & (c[:, None, 0] <= ig[None, :, 2])
            & (c[:, None, 1] >= ig[None, :, 1])
            & (c[:, None, 1] <= ig[None, :, 3])
        ).any(axis=1)
        fp_idx = [i for i, hit in zip(fp_idx, inside.tolist(), strict=True) if not hit]
    return tp, len(fp_idx), len(truth) - tp


def average_precision_50(preds: list[dict[str, Any]], truths: list[dict[str, Any]]) -> float:
    """COCO-style AP at IoU 0.5 over chips (torchmetrics ``MeanAveragePrecision``).

    ``preds``: per chip ``boxes`` (n, 4), ``scores``, ``labels``; ``truths``: per chip
    ``boxes``, ``labels`` and ``ignore`` boxes (passed as COCO crowd regions: a detection
    on one is neither right nor wrong). NaN when no chip holds an object.
    """
    from torchmetrics.detection import MeanAveragePrecision

    metric = MeanAveragePrecision(box_format="xyxy", iou_type="bbox", iou_thresholds=[0.5])
    p_list, t_list = [], []
    for p, t in zip(preds, truths, strict=True):
        p_list.append(
            {
                "boxes": torch.as_tensor(p["boxes"], dtype=torch.float32).reshape(-1, 4),
                "scores": torch.as_tensor(p["scores"], dtype=torch.float32),
                "labels": torch.as_tensor(p["labels"], dtype=torch.int64),
            }
        )
        boxes = np.asarray(t["boxes"], dtype=np.float32).reshape(-1, 4)
        ignore = np.asarray(t.get("ignore", np.zeros((0, 4))), dtype=np.float32).reshape(-1, 4)
        labels = np.asarray(t["labels"], dtype=np.int64)
        t_list.append(
            {
                "boxes": torch.from_numpy(np.concatenate([boxes, ignore])),
                "labels": torch.from_numpy(
                    np.concatenate([labels, np.ones(len(ignore), np.int64)])
                ),
                "iscrowd": torch.from_numpy(
                    np.concatenate([np.zeros(len(boxes), np.int64), np.ones(len(ignore), np.int64)])
                ),
            }
        )
    if not any(len(t["boxes"]) for t in truths):
        return float("nan")
    metric.update(p_list, t_list)
    value = float(metric.compute()["map"])
    return value if value >= 0 else float("nan")  # torchmetrics: -1 when undefined


def detect_chips(
    artefact: Any, images: np.ndarray, valid: np.ndarray, batch_size: int = 8
) -> list[dict[str, np.ndarray]]:
    """Run a detection artefact on chips (raw units): boxes, scores, labels per chip.

    Chips are zero-padded to a multiple of 32 px; boxes are clipped to the chip. Scores go
    down to the detector's floor (0.05): thresholds are applied by the caller.
    """
    n, _, h, w = images.shape
    hp, wp = -(-h // 32) * 32, -(-w // 32) * 32
    net = artefact.network
    net.nms_thresh = artefact.card.nms_iou
    out: list[dict[str, np.ndarray]] = []
    with torch.inference_mode():
        for s in range(0, n, batch_size):
            x = artefact.normalise(images[s : s + batch_size])
            x = np.where(valid[s : s + batch_size, None], x, 0.0).astype(np.float32)
            x = np.pad(x, ((0, 0), (0, 0), (0, hp - h), (0, wp - w)))
            for o in net(torch.from_numpy(x).to(artefact.device)):
                b = o["boxes"].float().cpu().numpy()
                b[:, [0, 2]] = b[:, [0, 2]].clip(0, w)
                b[:, [1, 3]] = b[:, [1, 3]].clip(0, h)
                ok = (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
                out.append(
                    {
                        "boxes": b[ok],
                        "scores": o["scores"].float().cpu().numpy()[ok],
                        "labels": o["labels"].cpu().numpy().astype(np.int64)[ok],
                    }
                )
    return out


def detection_scores(
    preds: list[dict[str, np.ndarray]],
    truths: list[dict[str, np.ndarray]],
    classes: list[str],
    threshold: float,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Object P/R/F1 at IoU 0.4 and 0.5 (boxes scored >= ``threshold``) and AP50, with CIs.

    CIs: percentile bootstrap over chips (counts: ``n_boot`` resamples; AP:
    :data:`AP_RESAMPLES`, each a full torchmetrics computation).
    """
    k = len(classes)
    counts = np.zeros((len(preds), len(DETECTION_IOUS), 3, k), dtype=np.int64)
    for i, (p, t) in enumerate(zip(preds, truths, strict=True)):
        keep = p["scores"] >= threshold
        for c in range(1, k + 1):
            pb = p["boxes"][keep & (p["labels"] == c)]
            tb = t["boxes"][t["labels"] == c]
            for m, iou in enumerate(DETECTION_IOUS):
                counts[i, m, :, c - 1] = match_boxes(pb, tb, iou, t["ignore"])

    def _f(v: Any) -> float | None:
        v = float(v)
        return None if np.isnan(v) else round(v, 6)

    out: dict[str, Any] = {"score_threshold": threshold}
    for m, iou in enumerate(DETECTION_IOUS):
        per = counts[:, m].sum(axis=-1)  # all classes together: (chips, 3)
        tp, fp, fn = per.sum(0)
        p_, r_, f_ = precision_recall_f1(np.array(tp), np.array(fp), np.array(fn))
        lo, hi = bootstrap_ci(
            per,
            lambda s: np.stack(precision_recall_f1(s[:, 0], s[:, 1], s[:, 2]), axis=-1),
            n_boot,
            seed,
        )
        out[f"iou_{iou:g}"] = {
            "precision": _f(p_),
            "precision_ci95": [_f(lo[0]), _f(hi[0])],
            "recall": _f(r_),
            "recall_ci95": [_f(lo[1]), _f(hi[1])],
            "f1": _f(f_),
            "f1_ci95": [_f(lo[2]), _f(hi[2])],
            "tp": int(tp),
            "fp": int(fp),
            "fn": int(fn),
            "per_class": {
                name: dict(
                    zip(
                        ("tp", "fp", "fn"), (int(v) for v in counts[:, m, :, c].sum(0)), strict=True
                    )
                )
                for c, name in enumerate(classes)
            },
        }
    ap = average_precision_50(preds, truths)
    rng = np.random.default_rng(seed)
    n = len(preds)
    boots = []
    for _ in range(AP_RESAMPLES if n else 0):
        idx = rng.integers(0, n, size=n)
        boots.append(average_precision_50([preds[i] for i in idx], [truths[i] for i in idx]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ap_lo = float(np.nanquantile(boots, 0.025)) if boots else float("nan")
        ap_hi = float(np.nanquantile(boots, 0.975)) if boots else float("nan")
    out["ap50"] = _f(ap)
    out["ap50_ci95"] = [_f(ap_lo), _f(ap_hi)]
    out["objects"] = int(sum(len(t["boxes"]) for t in truths))
    out["predicted"] = int(sum(int((p["scores"] >= threshold).sum()) for p in preds))
    return out


def _evaluate_boxes(
    artefact: Any, region: Region, cdir: Path, split: str, batch_size: int, n_boot: int, seed: int
) -> dict[str, Any]:
    """Detection metrics of a detection model on a split's chips (boxes of the chip index)."""
    from geotl.chips import read_chip_index
    from geotl.chips.boxes import index_boxes
    from geotl.train import load_region_chips

    card = artefact.card
    index = read_chip_index(cdir)
    if "boxes" not in index.frame.columns:
        raise GeotlInputError(
            "these chips hold no object boxes (cut by an older geotl): rechip with --overwrite",
            cdir,
        )
    region_for_classes = region.model_copy(update={"classes": list(card.classes)})
    data = load_region_chips(region_for_classes, cdir, split, list(card.bands))
    if not len(data):
        raise GeotlInputError(
            f"no {split} chips in {cdir}: lower block_size_m or raise test_fraction", region.path
        )
    rows = index.frame.set_index("chip_id").loc[data.chip_ids]
    chip_classes = list(index.meta.get("classes", region.classes))
    truths: list[dict[str, np.ndarray]] = [
        {"boxes": b.boxes, "labels": b.classes, "ignore": b.ignore}
        for b in index_boxes(rows, chip_classes, list(card.classes))
    ]
    preds = detect_chips(artefact, data.images, data.valid, batch_size)
    scores = detection_scores(preds, truths, list(card.classes), card.threshold, n_boot, seed)
    return {
        "region": region.name,
        "split": split,
        "chips": len(data),
        "task": "detection",
        "bootstrap": {
            "resamples": n_boot,
            "ap_resamples": AP_RESAMPLES,
            "level": 0.95,
            "unit": "test chip",
            "seed": seed,
        },
        "detection": scores,
    }
