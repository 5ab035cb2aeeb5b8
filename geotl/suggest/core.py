"""``suggest_areas``: where to label next, scored by the model's own uncertainty.

The scenes stream through the model with :func:`geotl.predict.predict_scene` (the same
windows, blending and band checks as ``geotl predict``), which also writes the blended
probabilities (a detector gives its boxes down to its own score floor instead); each
candidate square (:mod:`geotl.suggest.candidates`) is scored by the mean uncertainty of
its pixels and the ``n`` areas are picked greedily with an appearance-diversity discount
(both in :mod:`geotl.suggest.ranking`).

Squares are ``size_m`` on the ground along both axes: each scene's window is sized in
columns and rows by the ground size of its pixels along x and y at the scene centre
(:func:`geotl.io.rasters.ground_pixel_size_m`), so a scene in degrees (pixels narrower
east-west than north-south) gets windows with more columns than rows, and ``size_m`` is
what the areas measure, not a nominal figure.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import rasterio
import shapely
from rasterio.features import rasterize
from rasterio.windows import from_bounds
from rasterio.windows import transform as window_transform

from geotl.bands import canonical_band
from geotl.config import BACKGROUND, Region
from geotl.errors import BandMismatchError, GeotlInputError, RasterError, error_text
from geotl.io.atomic import check_output_file, check_writable
from geotl.io.rasters import (
    SceneInfo,
    ground_pixel_size_m,
    read_scene_info,
    read_valid,
)
from geotl.io.scratch import scratch_dir
from geotl.io.vectors import read_vector
from geotl.models.artefact import read_card
from geotl.models.detector import SCORE_THRESH
from geotl.predict.scene import check_scene_pixels
from geotl.suggest.candidates import (
    MAX_COMPLETE_FRACTION,
    Candidate,
    TakenAreas,
    read_taken_areas,
    scene_candidates,
)
from geotl.suggest.outputs import append_areas, write_areas
from geotl.suggest.ranking import (
    binary_entropy,
    box_uncertainty,
    entropy,
    hesitation,
    pick_diverse,
    standardise,
)

__all__ = ["COLUMNS", "SuggestOptions", "SuggestSummary", "suggest_areas"]

log = logging.getLogger(__name__)

COLUMNS = ["rank", "score", "why", "scene", "expected_objects", "size_m"]
DEFAULT_SIZE_CHIPS = 2  # default square: this many chip widths
MIN_SQUARE_PX = 16  # the smallest square, in pixels along each axis


@dataclass(frozen=True)
class SuggestOptions:
    """How many areas, how large, and where the region's test chips are.

    Attributes:
        n: how many areas to suggest.
        size_m: side of the squares (default: two chip widths of the region).
        chips_dir: the region's chips (for the test split; default: the model's
            ``chips/``, else the region is chipped into a temporary folder).
        append_to: also append the areas to this ``complete_within`` file.
        overwrite: replace existing outputs.
        device: ``cpu`` or ``cuda``.
        batch_size: windows per forward pass.
        resample: resample scenes at another ground resolution to the model's.
        progress: show progress bars.
    """

    n: int
    size_m: float | None = None
    chips_dir: Path | None = None
    append_to: Path | None = None
    overwrite: bool = False
    device: str = "cpu"
    batch_size: int = 8
    resample: bool = False
    progress: bool = True


@dataclass
class SuggestSummary:
    """What ``suggest_areas`` wrote."""

    gpkg: Path
    qml: Path
    contact_sheet: Path
    areas: gpd.GeoDataFrame
    n_candidates: int
    appended_to: Path | None = None
    dropped: dict[str, int] = field(default_factory=dict)


@dataclass
class _Scored:
    candidate: Candidate
    score: float
    features: np.ndarray
    expected_objects: int
    why: str


def _warn_append_not_complete_within(region: Region, append_to: Path) -> None:
    """Warn when ``--append-to`` is not the region's ``[labels] complete_within``.

    Squares appended elsewhere are invisible to the region: training reads their unlabelled
    pixels as unknown, and the next ``geotl suggest`` proposes the same squares again.
    """
    current = region.labels.complete_within if region.labels is not None else None
    if current is not None and _same_path(region.resolve(current), append_to):
        return
    log.warning(
        "%s: --append-to %s is not the region's [labels] complete_within (%s): training and "
        'the next suggest will not see these areas; set complete_within = "%s"',
        region.path,
        append_to,
        current or "none",
        append_to,
    )


def _check_append_not_labels(region: Region, append_to: Path) -> None:
    """Refuse ``--append-to`` the region's label file (``[labels] path``).

    A region may name its label file as ``complete_within`` too (each labelled polygon an
    area labelled completely), and the README's loop says to append to complete_within:
    the squares then went into the labels themselves, as features without a class, and a
    region without ``class_field`` reads every feature as ``classes[0]``: whole squares
    trained as one object.

    Raises:
        GeotlInputError: ``append_to`` is the label file.
    """
    if region.labels is None or not _same_path(region.resolve(region.labels.path), append_to):
        return
    read_as = (
        "features without a class"
        if region.labels.class_field
        else f"'{region.classes[0]}' objects, whole squares"
    )
    raise GeotlInputError(
        f"--append-to is the region's label file ([labels] path): the squares would be read "
        f"as labels ({read_as}); keep the complete areas in a file of their own ([labels] "
        'complete_within = "areas.gpkg") and append to that',
        append_to,
    )


def _same_path(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def suggest_areas(
    region: Region, model_dir: str | Path, out: str | Path, options: SuggestOptions
) -> SuggestSummary:
    """Suggest ``options.n`` squares to label next and write them (see the module doc).

    Args:
        region: the region (scenes, labels, complete and test areas).
        model_dir: a model trained for the region's classes and bands.
        out: the GeoPackage to write (``.qml`` and ``.png`` beside it).
        options: see :class:`SuggestOptions`.

    Returns:
        The summary, with the areas (scene CRS) in rank order.

    Raises:
        GeotlInputError: outputs exist without ``overwrite``; the model does not fit the
            region (bands, classes); no area is left or fewer than ``n``.
    """
    from geotl.models.artefact import load_artefact
    from geotl.predict import PredictOptions, predict_scene
    from geotl.predict.core import scene_names
    from geotl.predict.outputs.quicklook import ScenePicture

    out = Path(out)
    if options.n < 1:
        raise GeotlInputError(f"-n {options.n}: ask for at least one area")
    if out.suffix.lower() != ".gpkg":  # the file is a GeoPackage whatever its name says
        raise GeotlInputError("is written as gpkg: name it -o AREAS.gpkg", out)
    outputs = [out, out.with_suffix(".qml"), out.with_suffix(".png")]
    for p in outputs:
        check_output_file(p, options.overwrite)
    if options.append_to is not None:
        check_output_file(options.append_to, True)
        outputs.append(options.append_to)
    # a read-only folder is said now, not after every scene's prediction (minutes)
    check_writable(outputs)
    if options.append_to is not None:
        _check_append_not_labels(region, options.append_to)
        if options.append_to.exists():
            # read now, not after the scenes' prediction: an unreadable file found then
            # would leave the areas written and the append missing
            read_vector(options.append_to, "--append-to")
        _warn_append_not_complete_within(region, options.append_to)
    model_dir = Path(model_dir)
    card = read_card(model_dir)
    _check_fits(region, card.classes, card.bands, model_dir)
    n_bands = len(region.imagery.bands)
    scenes = [read_scene_info(p, n_bands) for p in region.scene_paths()]
    for s in scenes:
        # predict's check, now: a scene it refuses (another pixel size or shape without
        # --resample) was said only after the region was chipped (minutes)
        check_scene_pixels(
            s.crs, s.transform, s.width, s.height, card, options.resample, s.path, say=False
        )
    pixel_m = _pixel_sizes(scenes)
    size_m = options.size_m or DEFAULT_SIZE_CHIPS * region.chips.size_px * min(
        s.resolution_m for s in scenes
    )
    smallest = _smallest_m(scenes, pixel_m)
    if size_m < smallest:
        # a square of a few pixels says nothing to label, and one pixel each made 216,000
        # candidates that ran for many minutes before anything was said
        raise GeotlInputError(
            f"--size-m {size_m:g} is under {MIN_SQUARE_PX} pixels of these scenes: use "
            f"--size-m {math.ceil(smallest):g} or more",
            region.path,
        )
    if not region.split.test_within:
        log.warning(
            "%s: no [split] test_within: the test split is recomputed from the chips, so it "
            "moves when complete_within grows; fix it with test_within for a labelling loop",
            region.path,
        )
    taken = read_taken_areas(region, scenes, model_dir, options.chips_dir)
    candidates, dropped = _all_candidates(scenes, pixel_m, size_m, taken)
    what = _what_is_taken(region, taken.complete_source)
    if not candidates:
        smaller = _size_for(options.n, size_m, scenes, pixel_m, taken)
        fix = f"use --size-m {smaller:g}" if smaller else "add scenes"
        if not dropped["test"] and not dropped["complete"]:
            widest = max(
                min(s.width * pixel_m[s.path][0], s.height * pixel_m[s.path][1]) for s in scenes
            )
            raise GeotlInputError(
                f"no {size_m:g} m square fits in a scene (the widest is {widest:g} m across): "
                f"{fix}",
                region.path,
            )
        raise GeotlInputError(
            f"no {size_m:g} m square of the scenes is left outside {what} "
            f"({dropped['test']} overlap test areas, {dropped['complete']} are labelled): {fix}",
            region.path,
        )
    distinct = _distinct_squares(candidates)
    if options.n > distinct:
        smaller = _size_for(options.n, size_m, scenes, pixel_m, taken)
        hint = f" (--size-m {smaller:g} gives {options.n} or more)" if smaller else ""
        if distinct < len(candidates):  # passes of one area: say why there are fewer
            hint += _SAME_GROUND
        counted = "distinct" if distinct < len(candidates) else "candidate"
        _check_count(options.n, distinct, size_m, what, region, hint=hint, counted=counted)

    artefact = load_artefact(model_dir, options.device)
    popts = PredictOptions.from_region(
        region,
        batch_size=options.batch_size,
        resample=options.resample,
        progress=options.progress,
    )
    # what the outputs call each scene: passes of one file name in several folders
    # (a/plot.tif, b/plot.tif) stay apart, as in geotl predict
    names = dict(zip((s.path for s in scenes), scene_names([s.path for s in scenes]), strict=True))
    by_scene: dict[Path, list[Candidate]] = {}
    for c in candidates:
        by_scene.setdefault(c.scene.path, []).append(c)
    scored: list[_Scored] = []
    detections: dict[str, gpd.GeoDataFrame] = {}
    pictures: dict[str, ScenePicture] = {}
    max_nodata = region.chips.max_nodata_fraction
    detector = card.task == "detection"
    threshold = popts.threshold if popts.threshold is not None else card.threshold
    with scratch_dir("suggest") as tmp:
        for i, (path, cands) in enumerate(by_scene.items()):
            prob_path = tmp / f"prob_{i}.tif"
            if detector:  # every box down to the detector's floor: the unsure ones too
                det = predict_scene(artefact, path, replace(popts, threshold=SCORE_THRESH))
                seen = det.native[det.native["score"] >= threshold].reset_index(drop=True)
            else:
                det = predict_scene(artefact, path, replace(popts, probabilities_path=prob_path))
                seen = det.native
            detections[names[path]] = seen
            pictures[names[path]] = det.picture
            for c in cands:
                square = _read_square(c, max_nodata, region.imagery.nodata)
                if square is None:
                    dropped["nodata"] += 1
                    continue
                pixels, valid = square
                if detector:
                    u, fractions, why = _box_uncertainty(
                        c, valid, det.native, threshold, card.classes
                    )
                else:
                    u, fractions, why = _pixel_uncertainty(c, prob_path, card.classes)
                item = _scored(c, pixels, u, fractions, seen, why)
                if item is None:
                    dropped["nodata"] += 1
                else:
                    scored.append(item)
    if not scored:
        raise GeotlInputError(
            f"every candidate square is mostly nodata (over [chips] max_nodata_fraction = "
            f"{max_nodata:g}): check [imagery] nodata",
            region.path,
        )
    _check_count(options.n, len(scored), size_m, what, region, dropped["nodata"])
    features = standardise(np.stack([s.features for s in scored]))
    order = pick_diverse(
        [s.score for s in scored],
        features,
        options.n,
        _same_ground([s.candidate for s in scored]),
    )
    if len(order) < options.n:
        # passes of one area tile the same ground, which is labelled once: fewer squares
        # than scene-square pairs, and fewer than asked is what -n larger than the
        # candidates means
        _check_count(
            options.n,
            len(order),
            size_m,
            what,
            region,
            counted="distinct",
            hint=_SAME_GROUND,
        )
    areas = _frame([scored[i] for i in order], size_m, names)
    gpkg, qml, png = write_areas(out, areas, pictures, detections)
    summary = SuggestSummary(gpkg, qml, png, areas, len(scored), dropped=dropped)
    if options.append_to is not None:
        n = append_areas(options.append_to, areas)
        summary.appended_to = options.append_to
        log.info("appended %d area(s) to %s", n, options.append_to)
    log.info(
        "%d of %d candidate %g m squares suggested (dropped: %d test, %d labelled, %d nodata)",
        len(areas),
        len(scored),
        size_m,
        dropped["test"],
        dropped["complete"],
        dropped["nodata"],
    )
    return summary


def _check_fits(region: Region, classes: list[str], bands: list[str], model_dir: Path) -> None:
    if list(classes) != list(region.classes):
        raise GeotlInputError(
            f"the model at {model_dir} predicts classes {classes}, the region has "
            f"{region.classes}: use a model trained for these classes",
            region.path,
        )
    have = {canonical_band(b) for b in region.imagery.bands}
    missing = [b for b in bands if canonical_band(b) not in have]
    if missing:
        raise BandMismatchError(
            f"the model at {model_dir} needs bands {bands}, [imagery] bands are "
            f"{region.imagery.bands} (missing {missing}): use a model trained on these bands",
            region.path,
        )


def _what_is_taken(region: Region, complete_source: str) -> str:
    parts = ["test areas"]
    if complete_source == "complete_within":
        parts.append("[labels] complete_within")
    elif complete_source != "none":
        parts.append("the labelled area")
    return " and ".join(parts)


def _pixel_sizes(scenes: list[SceneInfo]) -> dict[Path, tuple[float, float]]:
    """Each scene's pixel on the ground (x, y metres), measured once for every size tried."""
    return {s.path: ground_pixel_size_m(s.crs, s.transform, s.width, s.height) for s in scenes}


def _window_px(size_m: float, pixel_m: tuple[float, float]) -> tuple[int, int]:
    """Columns and rows of a window ``size_m`` on the ground along both axes.

    >>> _window_px(6.4, (0.1, 0.1))
    (64, 64)
    >>> _window_px(1500.0, (19.2, 30.9))  # degrees at 51.5 N: more columns than rows
    (78, 49)
    """
    return max(1, round(size_m / pixel_m[0])), max(1, round(size_m / pixel_m[1]))


def _all_candidates(
    scenes: list[SceneInfo],
    pixel_m: dict[Path, tuple[float, float]],
    size_m: float,
    taken: TakenAreas,
) -> tuple[list[Candidate], dict[str, int]]:
    """Every scene's candidate squares of ``size_m``, and how many were dropped and why."""
    candidates: list[Candidate] = []
    dropped = {"test": 0, "complete": 0, "nodata": 0}
    for s in scenes:
        found, n_test, n_done = scene_candidates(
            s, _window_px(size_m, pixel_m[s.path]), taken.test[s.path], taken.complete[s.path]
        )
        candidates += found
        dropped["test"] += n_test
        dropped["complete"] += n_done
    return candidates, dropped


def _smallest_m(scenes: list[SceneInfo], pixel_m: dict[Path, tuple[float, float]]) -> float:
    """The smallest square worth suggesting: :data:`MIN_SQUARE_PX` of every scene's coarser axis."""
    return MIN_SQUARE_PX * max(max(pixel_m[s.path]) for s in scenes)


def _size_for(
    n: int,
    size_m: float,
    scenes: list[SceneInfo],
    pixel_m: dict[Path, tuple[float, float]],
    taken: TakenAreas,
) -> float | None:
    """The largest of a few smaller squares (2 significant digits) giving ``n`` distinct squares.

    None when even squares of :data:`MIN_SQUARE_PX` pixels along each axis of every scene (its coarser
    axis: the longer side of a pixel) do not.
    """
    smallest = _smallest_m(scenes, pixel_m)
    size = size_m
    while size * 0.8 >= smallest:
        size = float(f"{size * 0.8:.2g}")
        if _distinct_squares(_all_candidates(scenes, pixel_m, size, taken)[0]) >= n:
            return size
    return None


def _check_count(
    n: int,
    available: int,
    size_m: float,
    what: str,
    region: Region,
    nodata: int = 0,
    hint: str = "",
    counted: str = "candidate",
) -> None:
    if n > available:
        extra = f" ({nodata} more are mostly nodata)" if nodata else ""
        raise GeotlInputError(
            f"-n {n} but only {available} {counted} {size_m:g} m square(s) lie outside "
            f"{what}{extra}: ask for at most {available} or lower --size-m{hint}",
            region.path,
        )


@contextlib.contextmanager
def _reading(path: Path) -> Iterator[Any]:
    """``rasterio.open(path)``; a GDAL failure while reading is a one-line RasterError."""
    try:
        with rasterio.open(path) as ds:
            yield ds
    except rasterio.errors.RasterioError as exc:
        raise RasterError(f"read failed ({error_text(exc, 160)})", path) from exc


def _read_square(
    c: Candidate, max_nodata: float, nodata: float | None
) -> tuple[np.ndarray, np.ndarray] | None:
    """The square's valid pixels ``(bands, n)`` and valid mask, or None if mostly nodata.

    Valid as chips count it (:func:`geotl.io.rasters.read_valid`): ``nodata`` (the region's
    ``[imagery] nodata``, default the file's) and the GDAL masks chips read.
    """
    with _reading(c.scene.path) as ds:
        # an alpha band is the mask, not a feature
        img, valid = read_valid(ds, c.scene.band_indexes, c.scene.mask_bands, c.window, nodata)
    if valid.size == 0 or 1.0 - valid.mean() > max_nodata:
        return None
    return img[:, valid].astype(np.float64), valid


def _pixel_uncertainty(
    c: Candidate, prob_path: Path, classes: list[str]
) -> tuple[np.ndarray, np.ndarray, str]:
    """Per valid pixel of the probabilities: uncertainty, class probabilities, and why.

    Class entropy; where the task also predicts maps of its own (an instance model's
    border and contact), their binary entropy where that is higher. The why names the two
    classes the square hesitates between (:func:`~geotl.suggest.ranking.hesitation`), or
    says the model cannot tell where objects meet or end when the border and contact maps
    carry most of the uncertainty.
    """
    n_classes = len(classes)
    with _reading(prob_path) as pr:
        pwin = from_bounds(*c.geometry.bounds, pr.transform).round_offsets().round_lengths()
        planes = pr.read(window=pwin, boundless=True, fill_value=-1.0).astype(np.float64)
    pvalid = (planes >= 0).all(axis=0)
    fg = planes[:n_classes, pvalid]
    probs = np.concatenate([1.0 - fg.sum(axis=0, keepdims=True), fg])
    u = entropy(probs)
    why = hesitation(u, probs, [BACKGROUND, *classes])
    if len(planes) > n_classes:
        edges = binary_entropy(planes[n_classes:, pvalid]).max(axis=0)
        if edges.sum() > u.sum():
            why = "where objects meet or end?"
        u = np.maximum(u, edges)
    return u, fg, why


def _box_uncertainty(
    c: Candidate, valid: np.ndarray, boxes: gpd.GeoDataFrame, threshold: float, classes: list[str]
) -> tuple[np.ndarray, np.ndarray, str]:
    """Per valid pixel of the square: the uncertainty of the best box over it, its class, why.

    Boxes are the detector's down to its score floor; the best box over a pixel decides
    whether an object is there (kept when it scores ``threshold`` or more). The why names
    the class of the unsure boxes (their pixels weighted by uncertainty): what the detector
    cannot decide about.
    """
    h, w = int(c.window.height), int(c.window.width)
    transform = window_transform(c.window, c.scene.transform)
    inside = boxes.iloc[boxes.sindex.query(c.geometry)] if len(boxes) else boxes
    # 1 + rank (by score) of the best box over each pixel, 0 where none: one rasterisation
    # gives both its score and its class
    rank = np.zeros((h, w), np.int32)
    scores = np.zeros(1, np.float32)
    ids = np.zeros(1, np.uint8)
    if len(inside):
        order = np.argsort(inside["score"].to_numpy(np.float32), kind="stable")
        shapes = zip(inside.geometry.to_numpy()[order], range(1, len(order) + 1), strict=True)
        rasterize(shapes, out=rank, transform=transform)  # later shapes win: the best box
        scores = np.concatenate([scores, inside["score"].to_numpy(np.float32)[order]])
        by_box = [classes.index(k) + 1 for k in inside["class"]]
        ids = np.concatenate([ids, np.array(by_box, dtype=np.uint8)[order]])
    best, cls = scores[rank], ids[rank]
    u = np.where(best > 0, box_uncertainty(best, threshold), 0.0)
    kept = best >= threshold
    fractions = np.stack([(cls == k) & kept for k in range(1, len(classes) + 1)])
    weight = np.bincount(cls[valid], weights=u[valid], minlength=len(classes) + 1)[1:]
    why = f"{classes[int(weight.argmax())]} or not?" if weight.max() > 0 else "no box here"
    return u[valid], fractions[:, valid].astype(np.float64), why


def _scored(
    c: Candidate,
    pixels: np.ndarray,
    u: np.ndarray,
    fractions: np.ndarray,
    seen: gpd.GeoDataFrame,
    why: str,
) -> _Scored | None:
    """Mean uncertainty, appearance descriptor and expected objects of one square.

    ``pixels`` are the square's valid pixels ``(bands, n)``; ``u`` and ``fractions`` per
    pixel (model grid for probabilities, the square's pixels for boxes); ``seen`` the
    objects the model keeps; ``why`` what the model hesitates about there.
    """
    if u.size == 0:
        return None
    features = np.concatenate([pixels.mean(axis=1), pixels.std(axis=1), fractions.mean(axis=1)])
    n_obj = 0
    if len(seen):
        n_obj = int(seen.geometry.representative_point().within(c.geometry).sum())
    return _Scored(c, float(u.mean()), features, n_obj, why)


#: why fewer squares than scene-square pairs can be suggested (passes of one area)
_SAME_GROUND = " (the same ground in several scenes is one square)"


def _same_ground(items: list[Candidate]) -> list[list[int]]:
    """Per candidate, the others with more than a tenth of it on their ground.

    Scenes of one area at several dates tile the same ground: the same square in two
    passes is one square to label (the labels are one layer for all scenes), so a pick
    takes the other out of the pool, as complete areas do (``MAX_COMPLETE_FRACTION``).
    """
    if len({it.scene.path for it in items}) < 2:
        return [[] for _ in items]  # one scene's squares tile it without overlap
    main = items[0].scene.crs
    geoms = np.empty(len(items), dtype=object)
    by_crs: dict[str, list[int]] = {}
    for i, it in enumerate(items):
        by_crs.setdefault(it.scene.crs.to_wkt(), []).append(i)
    for idx in by_crs.values():  # one reprojection per CRS, not per square
        crs = items[idx[0]].scene.crs
        series = gpd.GeoSeries([items[i].geometry for i in idx], crs=crs)
        geoms[idx] = series.to_crs(main).to_numpy()
    areas = shapely.area(geoms)
    left, right = shapely.STRtree(geoms).query(geoms, predicate="intersects")
    keep = left != right
    left, right = left[keep], right[keep]
    shared = shapely.area(shapely.intersection(geoms[left], geoms[right]))
    out: list[list[int]] = [[] for _ in items]
    for i, j, a in zip(left, right, shared, strict=True):
        if a > MAX_COMPLETE_FRACTION * min(areas[i], areas[j]):
            out[int(i)].append(int(j))
    return out


def _distinct_squares(candidates: list[Candidate]) -> int:
    """How many squares of ``candidates`` can be suggested together, at most.

    Passes of one area tile the same ground, and a pick takes the squares on its ground
    out of the pool (:func:`_same_ground`), so the picks never outnumber the groups of
    squares that all share ground: counted here before any prediction, so a too-large
    ``-n`` is refused before minutes of it. Groups are formed greedily; a grid shifted
    between passes may leave more groups than picks, never fewer, so nothing that could
    be suggested is refused.
    """
    if len({c.scene.path for c in candidates}) < 2:
        return len(candidates)
    shared = _same_ground(candidates)
    groups: list[list[int]] = []
    group_of: dict[int, int] = {}
    for i, near in enumerate(shared):
        nbrs = set(near)
        fits = sorted({group_of[j] for j in nbrs if j in group_of})
        g = next((g for g in fits if all(j in nbrs for j in groups[g])), None)
        if g is None:
            g = len(groups)
            groups.append([])
        groups[g].append(i)
        group_of[i] = g
    return len(groups)


def _frame(items: list[_Scored], size_m: float, names: dict[Path, str]) -> gpd.GeoDataFrame:
    """The areas in rank order, in the CRS most of them share (others reprojected)."""
    crs_of = {it.candidate.scene.crs.to_wkt(): it.candidate.scene.crs for it in items}
    main = crs_of[Counter(it.candidate.scene.crs.to_wkt() for it in items).most_common(1)[0][0]]
    geoms = [
        gpd.GeoSeries([it.candidate.geometry], crs=it.candidate.scene.crs).to_crs(main).iloc[0]
        for it in items
    ]
    return gpd.GeoDataFrame(
        {
            "rank": np.arange(1, len(items) + 1, dtype=np.int64),
            "score": [round(it.score, 4) for it in items],
            "why": [it.why for it in items],
            "scene": [names[it.candidate.scene.path] for it in items],
            "expected_objects": np.array([it.expected_objects for it in items], dtype=np.int64),
            "size_m": round(size_m, 3),
        },
        geometry=gpd.GeoSeries(geoms, crs=main),
        crs=main,
    )
