"""Scores of a detection model on a split's chips: boxes, not polygons.

A box is scored in the chip that owns its centre (:func:`owned_boxes`): ground that edge
chips share with a neighbour counts once. A box centred on ignore pixels (outside
``[labels] complete_within``, nodata) is neither right nor wrong, as segmentation's objects
lying there are: the labels say nothing there.

Object precision, recall and F1 at IoU 0.4 and 0.5 against the chip index's boxes
(:func:`~geotl.evaluate.matching.match_boxes`) and COCO AP50 (torchmetrics), each with a
bootstrap CI over chips (:func:`detection_scores`). Only the classes the region labels are
scored (:class:`~geotl.evaluate.chips.ScoredClasses`): boxes of another class are dropped.
Boxes smaller than ``min_area_m2`` are left out as predict leaves them out
(:func:`without_small_boxes`), so the scores describe the boxes predict writes.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from geotl.config import Region
from geotl.errors import GeotlInputError
from geotl.evaluate.chips import load_split, owned_pixels, scored_classes
from geotl.evaluate.matching import match_boxes
from geotl.evaluate.scores import exact_ci_note, object_score_ci, rounded
from geotl.metrics import precision_recall_f1

log = logging.getLogger(__name__)

__all__ = [
    "AP_RESAMPLES",
    "DETECTION_IOUS",
    "average_precision_50",
    "detect_chips",
    "detection_scores",
    "evaluate_boxes",
    "owned_boxes",
    "scored_ground",
    "without_small_boxes",
]

DETECTION_IOUS = (0.4, 0.5)
AP_RESAMPLES = 200  # AP is recomputed per resample (torchmetrics): fewer than the counts'


def average_precision_50(preds: list[dict[str, Any]], truths: list[dict[str, Any]]) -> float:
    """COCO-style AP at IoU 0.5 over chips (torchmetrics ``MeanAveragePrecision``).

    ``preds``: per chip ``boxes`` (n, 4), ``scores``, ``labels``; ``truths``: per chip
    ``boxes``, ``labels`` and ``ignore`` boxes (passed as COCO crowd regions: a detection
    on one is neither right nor wrong, whatever its class). NaN when no chip holds an
    object. Up to :data:`~geotl.models.detector.DETECTIONS_PER_WINDOW` boxes per chip
    count (COCO's 100 would cap the recall of dense chips: cars in a car park).
    """
    from torchmetrics.detection import MeanAveragePrecision

    from geotl.models.detector import DETECTIONS_PER_WINDOW

    metric = MeanAveragePrecision(
        box_format="xyxy",
        iou_type="bbox",
        iou_thresholds=[0.5],
        max_detection_thresholds=[1, 10, DETECTIONS_PER_WINDOW],
        extended_summary=True,  # pycocotools' own summary reads AP at 100 boxes only
    )
    # ignore boxes carry no class: each becomes a crowd region of every class
    classes = np.unique(
        np.concatenate(
            [np.asarray(d["labels"], dtype=np.int64).reshape(-1) for d in [*preds, *truths]]
            or [np.ones(1, np.int64)]
        )
    )
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
        crowd = np.tile(ignore, (len(classes), 1))
        t_list.append(
            {
                "boxes": torch.from_numpy(np.concatenate([boxes, crowd])),
                "labels": torch.from_numpy(
                    np.concatenate([labels, np.repeat(classes, len(ignore))])
                ),
                "iscrowd": torch.from_numpy(
                    np.concatenate([np.zeros(len(boxes), np.int64), np.ones(len(crowd), np.int64)])
                ),
            }
        )
    if not any(len(t["boxes"]) for t in truths):
        return float("nan")
    metric.update(p_list, t_list)
    # precision (IoU, recall, class, area, max boxes): all areas, the most boxes, as COCO
    # averages it (-1: a class without objects)
    precision = metric.compute()["precision"][0, :, :, 0, -1].numpy()
    valid = precision[precision > -1]
    return float(valid.mean()) if valid.size else float("nan")


def detect_chips(
    artefact: Any, images: np.ndarray, valid: np.ndarray, batch_size: int = 8
) -> list[dict[str, np.ndarray]]:
    """Run a detection artefact on chips (raw units): boxes, scores, labels per chip.

    Chips are zero-padded to a multiple of the network's stride (32 px); boxes are clipped
    to the chip. Scores go down to the detector's floor (0.05): thresholds are applied by
    the caller.
    """
    n, _, h, w = images.shape
    # zero-padded to the network's stride, as predict pads its windows (round_up_px)
    hp, wp = artefact.card.network.round_up_px(h), artefact.card.network.round_up_px(w)
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


def owned_boxes(
    preds: list[dict[str, np.ndarray]],
    truths: list[dict[str, np.ndarray]],
    owned: list[np.ndarray],
) -> tuple[list[dict[str, np.ndarray]], list[dict[str, np.ndarray]]]:
    """Each box scored in one chip only: the one owning its centre pixel.

    Edge chips overlap their neighbours (:func:`~geotl.evaluate.chips.owned_pixels`): in
    the shared ground a chip's predicted boxes are dropped and its labelled boxes become
    ignore boxes (a detection there is neither right nor wrong; the owning chip scores it).
    ``owned`` may also leave out the chip's ignore pixels (:func:`scored_ground`): a box
    centred where the labels say nothing is then treated alike.
    """

    def inside(boxes: np.ndarray, mask: np.ndarray) -> np.ndarray:
        h, w = mask.shape
        cx = np.clip(((boxes[:, 0] + boxes[:, 2]) / 2).astype(np.int64), 0, w - 1)
        cy = np.clip(((boxes[:, 1] + boxes[:, 3]) / 2).astype(np.int64), 0, h - 1)
        return np.asarray(mask[cy, cx], dtype=bool)

    out_p, out_t = [], []
    for p, t, mask in zip(preds, truths, owned, strict=True):
        if mask.all():
            out_p.append(p)
            out_t.append(t)
            continue
        keep = inside(p["boxes"].reshape(-1, 4), mask)
        out_p.append({k: v[keep] for k, v in p.items()})
        tb = np.asarray(t["boxes"]).reshape(-1, 4)
        mine = inside(tb, mask)
        ignore = np.asarray(t["ignore"]).reshape(-1, 4)
        out_t.append(
            {
                "boxes": tb[mine],
                "labels": np.asarray(t["labels"])[mine],
                "ignore": np.concatenate([ignore, tb[~mine]]).astype(tb.dtype),
            }
        )
    return out_p, out_t


def scored_ground(
    rows: Any, masks: np.ndarray, datetime_regex: str | None = None
) -> list[np.ndarray]:
    """Per chip, the pixels its boxes are scored on: owned, and not ignore.

    Outside ``complete_within`` (and on nodata) the labels say nothing: a box found there
    would otherwise count as a false positive, and on a region labelled only in a few
    windows most boxes lie there (42 of 47 on the Sentinel-2 fields of Flanders).

    >>> import pandas as pd
    >>> rows = pd.DataFrame({"scene": ["a"], "row_off": [0], "col_off": [0],
    ...     "height": [2], "width": [2]})
    >>> scored_ground(rows, np.array([[[0, 255], [1, 0]]]))[0].tolist()
    [[True, False], [True, True]]
    """
    from geotl.chips.labels import IGNORE

    owned = owned_pixels(rows, masks, datetime_regex)
    return [o & (mask != IGNORE) for o, mask in zip(owned, masks, strict=True)]


def without_small_boxes(
    preds: list[dict[str, np.ndarray]],
    truths: list[dict[str, np.ndarray]],
    min_px: list[float],
) -> tuple[list[dict[str, np.ndarray]], list[dict[str, np.ndarray]], int]:
    """Boxes under ``min_area_m2`` left out on both sides, as predict leaves them out.

    Predict drops boxes smaller than ``min_area_m2`` (:mod:`geotl.predict.core`), so a
    score that counted them would describe boxes nobody gets. A labelled box that small
    becomes an ignore box: predict cannot find it, and a larger box drawn on it is neither
    right nor wrong (as segmentation leaves such objects out on both sides).

    Args:
        preds: per chip ``boxes`` (n, 4) in chip pixels, ``scores``, ``labels``.
        truths: per chip ``boxes``, ``labels``, ``ignore``.
        min_px: per chip, ``min_area_m2`` in that chip's pixels.

    Returns:
        The predictions and truths without small boxes, and how many labelled boxes were
        left out.

    >>> p = {"boxes": np.array([[0.0, 0, 2, 2], [0, 0, 9, 9]]), "scores": np.ones(2),
    ...      "labels": np.ones(2, np.int64)}
    >>> t = {"boxes": np.array([[0.0, 0, 3, 3]]), "labels": np.ones(1, np.int64),
    ...      "ignore": np.zeros((0, 4))}
    >>> p2, t2, n = without_small_boxes([p], [t], [10.0])
    >>> p2[0]["boxes"].tolist(), len(t2[0]["boxes"]), t2[0]["ignore"].tolist(), n
    ([[0.0, 0.0, 9.0, 9.0]], 0, [[0.0, 0.0, 3.0, 3.0]], 1)
    """

    def area(boxes: np.ndarray) -> np.ndarray:
        b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        return np.asarray((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]))

    out_p, out_t, dropped = [], [], 0
    for p, t, px in zip(preds, truths, min_px, strict=True):
        if px <= 0:
            out_p.append(p)
            out_t.append(t)
            continue
        keep = area(p["boxes"]) >= px
        out_p.append({k: np.asarray(v)[keep] for k, v in p.items()})
        tb = np.asarray(t["boxes"]).reshape(-1, 4)
        big = area(tb) >= px
        dropped += int((~big).sum())
        ignore = np.asarray(t["ignore"]).reshape(-1, 4)
        out_t.append(
            {
                "boxes": tb[big],
                "labels": np.asarray(t["labels"])[big],
                "ignore": np.concatenate([ignore, tb[~big]]).astype(tb.dtype),
            }
        )
    return out_p, out_t, dropped


def _min_area_px(cdir: Path, rows: Any, min_area_m2: float) -> list[float]:
    """``min_area_m2`` in each chip's pixels (its ground resolution, whatever the CRS)."""
    import rasterio

    from geotl.io.rasters import ground_resolution_m

    if min_area_m2 <= 0:
        return [0.0] * len(rows)
    out = []
    for image in rows["image"]:
        with rasterio.open(cdir / str(image)) as src:
            res_m = ground_resolution_m(src.crs, src.transform, src.width, src.height)
        out.append(min_area_m2 / (res_m * res_m))
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

    out: dict[str, Any] = {"score_threshold": threshold}
    for m, iou in enumerate(DETECTION_IOUS):
        per = counts[:, m].sum(axis=-1)  # all classes together: (chips, 3)
        tp, fp, fn = per.sum(0)
        p_, r_, f_ = precision_recall_f1(np.array(tp), np.array(fp), np.array(fn))
        lo, hi, exact = object_score_ci(per, n_boot, seed)
        out[f"iou_{iou:g}"] = {
            "precision": rounded(p_),
            "precision_ci95": [rounded(lo[0]), rounded(hi[0])],
            "recall": rounded(r_),
            "recall_ci95": [rounded(lo[1]), rounded(hi[1])],
            "f1": rounded(f_),
            "f1_ci95": [rounded(lo[2]), rounded(hi[2])],
            "tp": int(tp),
            "fp": int(fp),
            "fn": int(fn),
            **exact_ci_note(exact, int(tp + fn), int(tp + fp)),
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
    out["ap50"] = rounded(ap)
    out["ap50_ci95"] = [rounded(ap_lo), rounded(ap_hi)]
    out["objects"] = int(sum(len(t["boxes"]) for t in truths))
    out["predicted"] = int(sum(int((p["scores"] >= threshold).sum()) for p in preds))
    # a class nobody labelled in the test chips reads tp = fn = 0 in per_class: name it, as
    # segmentation's classes_without_test_pixels does, so 0 recall is not read as a score
    out["classes_without_test_objects"] = [
        name
        for c, name in enumerate(classes, start=1)
        if not any((np.asarray(t["labels"]) == c).any() for t in truths)
    ]
    return out


def _scored_boxes(
    chips: list[dict[str, np.ndarray]], lut: np.ndarray
) -> list[dict[str, np.ndarray]]:
    """Boxes relabelled to the scored classes; those of a class the region lacks dropped.

    A box of such a class is no evidence either way: the region's labels do not mark that
    class. A labelled object it covers stays a miss of the object's own class.
    """
    out = []
    for chip in chips:
        labels = lut[np.asarray(chip["labels"], dtype=np.int64)]
        keep = labels > 0
        # ignore boxes carry no class: they stay as they are
        row = {k: v if k == "ignore" else np.asarray(v)[keep] for k, v in chip.items()}
        row["labels"] = labels[keep]
        out.append(row)
    return out


def evaluate_boxes(
    artefact: Any, region: Region, cdir: Path, split: str, batch_size: int, n_boot: int, seed: int
) -> dict[str, Any]:
    """Detection metrics of a detection model on the ``split`` chips of ``cdir``.

    The labelled boxes are the chip index's (cut with the chips).

    Raises:
        GeotlInputError: chips without boxes, no chips in the split.
    """
    from geotl.chips import read_chip_index
    from geotl.chips.boxes import index_boxes
    from geotl.predict.core import PredictOptions

    card = artefact.card
    index = read_chip_index(cdir)
    if "boxes" not in index.frame.columns:
        raise GeotlInputError(
            "these chips hold no object boxes (cut by an older geotl): rechip with --overwrite",
            cdir,
        )
    data = load_split(card, region, cdir, split)
    rows = index.frame.set_index("chip_id").loc[data.chip_ids]
    chip_classes = list(index.meta.get("classes", region.classes))
    truths: list[dict[str, np.ndarray]] = [
        {"boxes": b.boxes, "labels": b.classes, "ignore": b.ignore}
        for b in index_boxes(rows, chip_classes, list(card.classes))
    ]
    scored = scored_classes(card, region)
    preds = detect_chips(artefact, data.images, data.valid, batch_size)
    ground = scored_ground(rows, data.masks, region.imagery.datetime_regex)
    preds, truths = owned_boxes(preds, truths, ground)
    preds, truths = _scored_boxes(preds, scored.lut), _scored_boxes(truths, scored.lut)
    min_area = PredictOptions(min_area_m2=region.predict.given("min_area_m2")).min_area_for(card)
    n_labelled = sum(len(t["boxes"]) for t in truths)
    preds, truths, small = without_small_boxes(preds, truths, _min_area_px(cdir, rows, min_area))
    if small:
        log.warning(
            "%s: %d of the %d labelled %s boxes are smaller than min_area_m2 = %g m2: left "
            "out of the scores, as predict leaves such boxes out%s",
            region.path,
            small,
            n_labelled,
            split,
            min_area,
            ": predict finds none of them; lower [predict] min_area_m2 in the region file"
            if small == n_labelled
            else "",
        )
    scores = detection_scores(preds, truths, scored.names, card.threshold, n_boot, seed)
    scores["min_area_m2"] = min_area
    scores["objects_under_min_area"] = small
    return {
        "region": region.name,
        "split": split,
        "chips": len(data),
        **scored.report(),
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
