"""Scores of a segmentation or instances model on a split's chips: pixels and objects.

Pixel metrics: IoU and F1 per class from the confusion matrix over all chips (ignore pixels
excluded). Object metrics: per chip, predicted polygons (the task's object extractor,
:mod:`geotl.predict.objects`, on the chip's probabilities: instance models are scored on
their separated objects) are matched one-to-one to the label polygons clipped to the chip
(:func:`~geotl.evaluate.matching.match_objects`). Each pixel is scored once: ground
that edge chips share with a neighbour, or that overlapping tiles of one acquisition (even
in two UTM zones) both hold, counts in the first chip only. Objects are judged
as their parts on the chip's labelled ground, on both sides alike: the chip's border and
the edge of the ignore pixels (nodata, outside ``[labels] complete_within``) cut them
alike, and one cut into separate pieces counts as those pieces (:func:`_pieces`). A part
smaller than the region's ``[predict] min_area_m2`` is left out on both sides, so an
object lying wholly (or all but a sliver) where the labels say nothing is neither right
nor wrong. Where the labels are sample polygons drawn inside each class (training-area
labelling, ``complete_within`` = the label file), a predicted field is thus scored by its
part inside the polygons, not dropped for spilling beyond them. Only the classes the
region labels are scored (:class:`~geotl.evaluate.chips.ScoredClasses`): a model class it
does not label counts as background.

Count error: predicted objects / labelled objects, per chip (``count_per_chip``), over all
chips (``count_ratio``, with a CI) and the median over chips with labels; 1.0 is the right
count, below 1 merged (or missed) objects, above 1 split (or spurious) ones.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import shapely
import torch

from geotl.config import Region
from geotl.evaluate.chips import load_split, scored_classes
from geotl.evaluate.matching import MATCH_IOU, match_objects
from geotl.evaluate.scores import (
    bootstrap_ci,
    count_ratio,
    exact_ci_note,
    fold_confusion,
    object_score_ci,
    rounded,
)
from geotl.metrics import pixel_scores, precision_recall_f1

if TYPE_CHECKING:
    import pandas as pd
    from affine import Affine
    from shapely.geometry.base import BaseGeometry

    from geotl.predict.objects import ObjectExtractor
    from geotl.train.data import ChipData

__all__ = ["evaluate_chips", "object_counts_by_seed_threshold", "segmentation_scores"]


def evaluate_chips(
    artefact: Any, region: Region, cdir: Path, split: str, batch_size: int, n_boot: int, seed: int
) -> dict[str, Any]:
    """Pixel IoU/F1 and object P/R/F1 (with CIs) of a model on the ``split`` chips of ``cdir``.

    Raises:
        GeotlInputError: bands that do not fit the model, no chips in the split.
    """
    from geotl.chips import read_chip_index
    from geotl.predict.scene import check_model_bands

    card = artefact.card
    index = read_chip_index(cdir)
    check_model_bands(
        card.bands,
        list(index.meta.get("bands", region.imagery.bands)),
        region.path,
        what="the region's",
        fix="evaluate on a region with those bands, or a model trained on these",
    )
    data = load_split(card, region, cdir, split)
    scored = scored_classes(card, region)
    confs, objs = _chip_counts(
        artefact, region, cdir, index.frame.set_index("chip_id"), data, batch_size
    )
    # a class the region does not label: its pixels background, its objects not scored
    confs = fold_confusion(confs, scored.lut)
    objs = objs[..., scored.lut[1:] > 0]
    return {
        "region": region.name,
        "split": split,
        "chips": len(data),
        **scored.report(),
        "match_iou": MATCH_IOU,
        # the watershed's: which objects were scored (old cards: the default, 0.6)
        **({"seed_threshold": card.seed_threshold} if card.task == "instances" else {}),
        "bootstrap": {"resamples": n_boot, "level": 0.95, "unit": "test chip", "seed": seed},
        **segmentation_scores(confs, objs, scored.names, list(data.chip_ids), n_boot, seed),
    }


def object_counts_by_seed_threshold(
    artefact: Any, region: Region, cdir: Path, split: str, seed_thresholds: list[float]
) -> np.ndarray:
    """Object ``(tp, fp, fn)`` per class on the ``split`` chips at each seed threshold.

    How training scores an instance model's seed thresholds on its val chips: the objects
    are scored exactly as ``geotl evaluate`` scores them (:func:`_chip_counts`), the
    network run once per chip and its objects extracted at each threshold.

    Returns:
        ``(len(seed_thresholds), 3, classes)`` counts summed over the chips.

    Raises:
        GeotlInputError: no chips in the split.
    """
    from geotl.chips import read_chip_index
    from geotl.predict.objects import extractor_for

    card = artefact.card
    data = load_split(card, region, cdir, split)
    extractors = [
        extractor_for(card.task, len(card.classes), seed_threshold=t) for t in seed_thresholds
    ]
    frame = read_chip_index(cdir).frame.set_index("chip_id")
    _, objs = _counts(artefact, region, cdir, frame, data, 16, extractors)
    return objs.sum(axis=1)


def _chip_counts(
    artefact: Any,
    region: Region,
    cdir: Path,
    frame: pd.DataFrame,
    data: ChipData,
    batch_size: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Per chip: the pixel confusion matrix and the object ``(tp, fp, fn)`` per class.

    The objects are the card's extractor's (:func:`_counts`).

    Returns:
        ``(chips, classes + 1, classes + 1)`` and ``(chips, 3, classes)`` counts.
    """
    from geotl.predict.objects import extractor_for

    card = artefact.card
    extractor = extractor_for(card.task, len(card.classes), seed_threshold=card.seed_threshold)
    confs, objs = _counts(artefact, region, cdir, frame, data, batch_size, [extractor])
    return confs, objs[0]


def _counts(
    artefact: Any,
    region: Region,
    cdir: Path,
    frame: pd.DataFrame,
    data: ChipData,
    batch_size: int,
    extractors: list[ObjectExtractor],
) -> tuple[np.ndarray, np.ndarray]:
    """Per chip: the pixel confusion matrix and, per extractor, the object counts.

    Each chip is scored on the pixels it owns (:func:`~geotl.evaluate.chips.owned_pixels`:
    ground shared with an earlier chip, of its scene or of another tile of its acquisition,
    is scored there). Objects, predicted and labelled
    alike, are judged as their parts in that ground less its ignore pixels (nodata, outside
    ``complete_within``: there the labels say nothing), and left out when that part is
    smaller than the region's ``min_area_m2`` (measured on the ground, whatever the CRS's
    units).

    ``extractors`` turn the same planes into objects one after the other (an instance
    model at several seed thresholds); the first one's planes are scored.

    Returns:
        ``(chips, classes + 1, classes + 1)`` and ``(extractors, chips, 3, classes)`` counts.
    """
    import geopandas as gpd
    import rasterio

    from geotl.chips.labels import IGNORE
    from geotl.evaluate.chips import owned_pixels
    from geotl.io.rasters import ground_resolution_m
    from geotl.io.vectors import chip_areas, label_key, read_labels
    from geotl.predict.core import PredictOptions
    from geotl.predict.vectorise import min_pixels_for
    from geotl.train.metrics import confusion

    card = artefact.card
    num_classes = len(card.classes) + 1
    labels_by_crs: dict[tuple[str, float | None], gpd.GeoDataFrame] = {}
    min_area = PredictOptions(min_area_m2=region.predict.given("min_area_m2")).min_area_for(card)
    rows = frame.loc[list(data.chip_ids)]
    within = chip_areas(rows)  # the labels over these chips, not a whole national layer
    owned = owned_pixels(rows, data.masks, region.imagery.datetime_regex)
    confs = np.zeros((len(data), num_classes, num_classes), dtype=np.int64)
    extractor = extractors[0]
    # tp, fp, fn per class
    objs = np.zeros((len(extractors), len(data), 3, num_classes - 1), dtype=np.int64)
    net = artefact.network
    with torch.no_grad():
        for start in range(0, len(data), batch_size):
            x = artefact.normalise(data.images[start : start + batch_size])
            x = np.where(data.valid[start : start + batch_size, None], x, 0.0).astype(np.float32)
            logits = net(torch.from_numpy(x).to(artefact.device))
            probs = extractor.probabilities(logits).cpu().numpy()
            for k in range(probs.shape[0]):
                i = start + k
                truth = np.where(owned[i], data.masks[i], IGNORE).astype(data.masks.dtype)
                planes = extractor.finalise(probs[k], data.valid[i], card.threshold)
                p = planes[0].astype(np.uint8)
                confs[i] = confusion(
                    torch.from_numpy(p), torch.from_numpy(truth), num_classes
                ).numpy()
                row = rows.iloc[i]
                with rasterio.open(cdir / str(row["image"])) as src:
                    transform, crs, bounds = src.transform, src.crs, src.bounds
                    ground = _Ground.of(
                        owned[i],
                        truth == IGNORE,
                        transform,
                        bounds,
                        min_area,
                        ground_resolution_m(crs, transform, src.width, src.height),
                    )
                key = label_key(crs, bounds)
                if key not in labels_by_crs:
                    labels_by_crs[key] = read_labels(region, crs, key[1], within=within)
                labels = labels_by_crs[key]
                near = labels.iloc[labels.sindex.query(ground.area, predicate="intersects")]
                truths = [
                    ground.scored(list(near.loc[near["class"] == name].geometry))
                    for name in card.classes
                ]
                for e, ex in enumerate(extractors):
                    # the smallest object as prediction sees it (geotl.predict.core), so that
                    # seeds are filtered alike
                    objects = ex.extract(
                        planes,
                        transform,
                        simplify_px=0.0,
                        min_pixels=min_pixels_for(min_area, ground.px_m2),
                    )
                    for c, tc in enumerate(truths, start=1):
                        pc = ground.scored([o.geometry for o in objects if o.class_index == c])
                        objs[e, i, :, c - 1] = match_objects(pc, tc)
    return confs, objs


@dataclass(frozen=True)
class _Ground:
    """Where a chip's objects are scored: its owned ground, less the ignore pixels."""

    area: BaseGeometry  # the chip's owned ground
    labelled: BaseGeometry  # the part of it the labels describe (ignore pixels taken out)
    pixel_area: float  # one pixel, in the CRS's units squared
    px_m2: float  # one pixel on the ground, m²
    min_area_m2: float

    @classmethod
    def of(
        cls,
        owned: np.ndarray,
        ignore: np.ndarray,
        transform: Affine,
        bounds: Any,
        min_area_m2: float,
        resolution_m: float,
    ) -> _Ground:
        from shapely.geometry import box

        area = box(*bounds) if owned.all() else _pixels_shape(owned, transform)
        labelled = area if not (ignore & owned).any() else _pixels_shape(owned & ~ignore, transform)
        return cls(
            area=area,
            labelled=labelled,
            pixel_area=abs(transform.a * transform.e - transform.b * transform.d),
            px_m2=resolution_m * resolution_m,
            min_area_m2=min_area_m2,
        )

    def scored(self, geoms: list[BaseGeometry]) -> list[BaseGeometry]:
        """The parts of ``geoms`` on this ground's labelled pixels that count: big enough.

        The edge of the labelled ground (``complete_within``, nodata) is treated as a chip's
        edge: a predicted field that spills beyond the sample polygon an analyst drew is
        judged by its part inside it, as the label is, not dropped (scored 0) for lying
        mostly where the labels say nothing.
        """
        if not geoms:
            return []
        parts = _pieces(geoms, shapely.intersection(np.asarray(geoms, dtype=object), self.labelled))
        px = shapely.area(parts) / self.pixel_area
        keep = (px >= 1.0) & (px * self.px_m2 >= self.min_area_m2)
        return [g for g, k in zip(parts.tolist(), keep.tolist(), strict=True) if k]


def _pieces(whole: list[BaseGeometry], clipped: np.ndarray) -> np.ndarray:
    """The clipped objects, each one the chip's ground cut apart split into its pieces.

    A U-shaped field or a crown whose middle lies outside the chip (or on ground an earlier
    chip owns) is seen in the chip as separate pieces: the extractor draws them as separate
    predicted objects, so they are scored as separate objects, labels and predictions
    alike (one labelled multi-part object against two right predictions would score as a
    miss and two false positives). A label that is a MultiPolygon of its own stays one
    object while clipping adds no piece.

    >>> from shapely.geometry import box
    >>> u = box(0, 0, 3, 3).difference(box(1, 1, 2, 3))  # a U, open at the top
    >>> [round(g.area, 1) for g in _pieces([u], np.array([u.intersection(box(0, 2, 3, 3))]))]
    [1.0, 1.0]
    """
    out: list[BaseGeometry] = []
    for g, part in zip(whole, clipped.tolist(), strict=True):
        polys = [q for q in shapely.get_parts(part).tolist() if q.geom_type == "Polygon"]
        if len(polys) > len(shapely.get_parts(g)):
            out.extend(polys)
        else:
            out.append(part)
    return np.asarray(out, dtype=object)


def _pixels_shape(mask: np.ndarray, transform: Affine) -> BaseGeometry:
    """The pixels where ``mask`` is True, as one (multi)polygon in the CRS."""
    from rasterio.features import shapes
    from shapely.geometry import shape

    if not mask.any():
        return shapely.Polygon()
    m = mask.astype(np.uint8)
    return shapely.union_all([shape(g) for g, _ in shapes(m, mask=mask, transform=transform)])


def _mean_labelled_iou(conf: np.ndarray) -> np.ndarray:
    """Mean foreground IoU over the classes with labelled pixels (NaN: none has any).

    >>> float(_mean_labelled_iou(np.array([[8, 2, 0], [1, 3, 0], [0, 0, 0]])))  # class 2: none
    0.5
    """
    iou = pixel_scores(conf)[0][..., 1:]
    labelled = np.asarray(conf).sum(-1)[..., 1:] > 0
    kept = np.where(labelled, iou, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN: no labelled class
        return np.asarray(np.nanmean(kept, axis=-1))


def segmentation_scores(
    confs: np.ndarray,
    objs: np.ndarray,
    classes: list[str],
    chip_ids: list[str],
    n_boot: int,
    seed: int,
) -> dict[str, Any]:
    """The ``pixel`` and ``objects`` sections of the report, from per-chip counts.

    Args:
        confs: ``(chips, classes + 1, classes + 1)`` pixel confusion matrices.
        objs: ``(chips, 3, classes)`` object ``(tp, fp, fn)``.
        classes: class names (background not included).
        chip_ids: the chips, in the counts' order.
        n_boot: bootstrap resamples.
        seed: seed of the resampling.
    """
    total = confs.sum(0)
    iou, f1 = pixel_scores(total)
    iou_lo, iou_hi = bootstrap_ci(confs, lambda s: pixel_scores(s)[0], n_boot, seed)
    f1_lo, f1_hi = bootstrap_ci(confs, lambda s: pixel_scores(s)[1], n_boot, seed)
    tp, fp, fn = objs.sum(0)
    op, orc, of1 = precision_recall_f1(tp, fp, fn)
    # one set of resamples for all three: (precision, recall, F1) x class
    (op_lo, orc_lo, of1_lo), (op_hi, orc_hi, of1_hi), exact = object_score_ci(objs, n_boot, seed)
    predicted = objs[:, 0] + objs[:, 1]  # (chips, classes)
    labelled = objs[:, 0] + objs[:, 2]
    counts = np.stack([predicted, labelled], axis=1)
    ratio = count_ratio(counts.sum(0)[None])[0]
    ratio_lo, ratio_hi = bootstrap_ci(counts, count_ratio, n_boot, seed)
    with np.errstate(divide="ignore", invalid="ignore"):
        chip_ratio = np.where(labelled > 0, predicted / np.maximum(labelled, 1), np.nan)
    per_class = {
        name: {
            "iou": rounded(iou[c]),
            "iou_ci95": [rounded(iou_lo[c]), rounded(iou_hi[c])],
            "f1": rounded(f1[c]),
            "f1_ci95": [rounded(f1_lo[c]), rounded(f1_hi[c])],
            "pixels": int(total[c].sum()),
        }
        for c, name in enumerate(["background", *classes])
    }
    objects_out = {
        name: {
            "precision": rounded(op[c]),
            "precision_ci95": [rounded(op_lo[c]), rounded(op_hi[c])],
            "recall": rounded(orc[c]),
            "recall_ci95": [rounded(orc_lo[c]), rounded(orc_hi[c])],
            "f1": rounded(of1[c]),
            "f1_ci95": [rounded(of1_lo[c]), rounded(of1_hi[c])],
            "tp": int(tp[c]),
            "fp": int(fp[c]),
            "fn": int(fn[c]),
            **exact_ci_note(exact[:, c], int(tp[c] + fn[c]), int(tp[c] + fp[c])),
            "count_ratio": rounded(ratio[c]),
            "count_ratio_ci95": [rounded(ratio_lo[c]), rounded(ratio_hi[c])],
            "count_ratio_median_chip": rounded(np.nanmedian(chip_ratio[:, c]))
            if np.isfinite(chip_ratio[:, c]).any()
            else None,
            "count_per_chip": [
                {
                    "chip": chip_ids[i],
                    "predicted": int(predicted[i, c]),
                    "labelled": int(labelled[i, c]),
                }
                for i in range(len(chip_ids))
            ],
        }
        for c, name in enumerate(classes)
    }
    mean_iou = float(_mean_labelled_iou(total))
    miou_lo, miou_hi = bootstrap_ci(confs, _mean_labelled_iou, n_boot, seed)
    return {
        "pixel": {
            "mean_iou": rounded(mean_iou),
            "mean_iou_ci95": [rounded(miou_lo), rounded(miou_hi)],
            "per_class": per_class,
            # left out of the mean: an IoU there says only whether the model kept quiet
            "classes_without_test_pixels": [
                name for c, name in enumerate(classes, start=1) if not total[c].sum()
            ],
        },
        "objects": objects_out,
    }
