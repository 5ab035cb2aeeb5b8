"""Box prediction over a whole scene: overlapping windows, each object kept exactly once.

The detector runs on the same overlapping windows as segmentation
(:func:`geotl.predict.windows.plan_windows`); its boxes go to scene pixels, and two rules
keep every object exactly once across window seams:

1. **Ownership of the box centre.** Each window owns a *core*: along each axis the scene
   is cut in the middle of every overlap, so the cores tile the scene without gaps or
   overlaps. A window keeps only the boxes whose centre lies in its core. An object no
   wider than the overlap is seen whole by the window that owns its centre (and a
   neighbour's clipped view of it has its centre outside that neighbour's core), so it is
   neither lost nor duplicated.
2. **Joining the cut views of an object wider than the overlap.** No window need see
   such an object whole: the window on each side of the seam gives a box cut by its own
   edge (and each owns that box's centre). Two boxes of one class, one cut by a window's
   far edge and the other by the next window's near edge, that both cover most of the
   strip the two windows share and agree across the seam (IoU of their extents along it
   at least :data:`SEAM_JOIN_IOU`), are one object: their union (the higher score).
3. **Reading a cut object again, placed to see it whole.** A real detector's two views of
   an object wider than the overlap do not always meet rule 2 (one view stops short of
   the seam, or its centre falls in the other window's core and it is dropped), and a lone
   cut view would come out clipped at the seam. So a kept box that is not joined and
   ends within :data:`_NEAR_EDGE_PX` of an edge of its window inside the scene is
   detected again in one window placed to hold it with room on the cut side (as
   segmentation reads a window again wider); the box of the same class there that holds
   most of the cut view, and is itself not cut, replaces it.
4. **Non-maximum suppression in scene coordinates** (per class, ``nms_iou``) removes what
   rules 1 to 3 cannot: the same object predicted by two windows with centres that fall
   on either side of a core boundary.

Memory holds one batch of windows and the scene's boxes (a few numbers per object), not
the scene. Boxes stay on valid imagery: a box mostly on nodata (fewer than half its
pixels valid) is dropped, and the others are cut back to the rows and columns of their
valid pixels, so no box reaches past a swath's edge or into a masked hole's margin.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import shapely
from affine import Affine
from rasterio.windows import Window
from shapely.geometry.base import BaseGeometry

from geotl.io.rasters import read_normalised
from geotl.models.artefact import Artefact
from geotl.predict.engine import DetectionEngine
from geotl.predict.stream import StreamStats
from geotl.predict.windows import WindowPlan

__all__ = [
    "SEAM_JOIN_IOU",
    "BoxObject",
    "Detections",
    "artefact_detector",
    "axis_cores",
    "detect_boxes",
    "fit_to_valid",
    "join_cut_boxes",
]

# how closely two cut views of one object must agree across the seam (their extents along
# it) to be joined, and how near a window's edge a box's side must lie to be cut by it
SEAM_JOIN_IOU = 0.5
_CUT_PX = 2.0
# a kept box this near an edge of its window inside the scene may be a clipped view
_NEAR_EDGE_PX = 8.0

# boxes (n, 4) x0 y0 x1 y1 in window pixels, scores (n,), class ids (n,) for one window
Detections = tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.int64]]
Detector = Callable[[npt.NDArray[np.float32]], list[Detections]]


@dataclass(frozen=True)
class BoxObject:
    """One detected object: its box polygon (scene CRS), class id (1-based) and score."""

    geometry: BaseGeometry
    class_index: int
    score: float
    first_px: tuple[int, int, int, int]  # the box's pixel rows and columns: the object's id


def axis_cores(offsets: Sequence[int], window_px: int, length: int) -> list[tuple[float, float]]:
    """Per window along one axis, the half-open core ``[start, end)`` it owns.

    Neighbouring cores meet in the middle of the two windows' overlap; the first core
    starts at 0 and the last ends at ``length``.

    >>> axis_cores([0, 48, 72], 64, 136)
    [(0, 56.0), (56.0, 92.0), (92.0, 136)]
    """
    size = min(window_px, length)
    cores: list[tuple[float, float]] = []
    for i, off in enumerate(offsets):
        lo = 0 if i == 0 else (off + offsets[i - 1] + size) / 2
        hi = length if i == len(offsets) - 1 else (offsets[i + 1] + off + size) / 2
        cores.append((lo, hi))
    return cores


def artefact_detector(artefact: Artefact, nms_iou: float) -> Detector:
    """The artefact's detector as a :data:`Detector` (CUDA: float16 autocast).

    An artefact opened with ONNX Runtime runs its exported graph instead
    (:class:`geotl.predict.engine.DetectionEngine`).
    """
    engine = artefact.engine
    if isinstance(engine, DetectionEngine):
        return partial(engine.detections, nms_iou=nms_iou)
    import torch

    device = artefact.device
    amp = device.type == "cuda"
    net = artefact.network
    cast(Any, net).nms_thresh = nms_iou  # the same suppression inside each window as across windows

    def detect(batch: npt.NDArray[np.float32]) -> list[Detections]:
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.float16, enabled=amp):
            out = net(torch.from_numpy(batch).to(device, non_blocking=True))
        return [
            (
                o["boxes"].float().cpu().numpy(),
                o["scores"].float().cpu().numpy(),
                o["labels"].cpu().numpy().astype(np.int64),
            )
            for o in out
        ]

    return detect


def _read_batch(
    source: Any,
    band_indexes: list[int],
    mask_bands: tuple[int, ...],
    batch: list[Window],
    model_px: int,
    normalise: Callable[[np.ndarray], np.ndarray],
) -> tuple[npt.NDArray[np.float32], list[npt.NDArray[np.bool_]]]:
    arr = np.zeros((len(batch), len(band_indexes), model_px, model_px), dtype=np.float32)
    valids = []
    for k, w in enumerate(batch):
        norm, valid = read_normalised(source, band_indexes, mask_bands, w, normalise)
        arr[k, :, : w.height, : w.width] = norm  # smaller scenes: zero padding, no mirrored objects
        valids.append(valid)
    return arr, valids


def detect_boxes(
    detect: Detector,
    source: Any,
    band_indexes: list[int],
    plan: WindowPlan,
    *,
    normalise: Callable[[np.ndarray], np.ndarray],
    model_px: int,
    batch_size: int = 8,
    score_threshold: float = 0.5,
    nms_iou: float = 0.5,
    progress: Callable[[int], object] | None = None,
    mask_bands: tuple[int, ...] = (),
) -> tuple[list[BoxObject], StreamStats]:
    """Detect objects over a whole scene, window by window (see the module docstring).

    Args:
        detect: a window batch ``(B, C, model_px, model_px)`` -> boxes per window.
        source: an open rasterio dataset or WarpedVRT at the model's resolution.
        band_indexes: 1-based source bands in the model's band order.
        plan: the window plan over ``source``.
        normalise: raw window ``(C, h, w)`` -> normalised float32.
        model_px: the detector's input size (>= the plan's window, a multiple of 32).
        batch_size: windows per forward pass.
        score_threshold: drop boxes scored lower.
        nms_iou: boxes of one class overlapping more than this are one object.
        progress: called with the number of windows done after each batch.
        mask_bands: the bands whose GDAL masks are read beside the nodata value
            (:func:`geotl.io.rasters.mask_bands` of the scene's data bands).

    Returns:
        The objects (box polygons in the scene CRS via ``source.transform``), best score
        first, and timings.
    """
    t_start = time.perf_counter()
    height, width = plan.scene_shape
    row_cores = axis_cores(plan.row_offsets, plan.window_px, height)
    col_cores = axis_cores(plan.col_offsets, plan.window_px, width)
    stats = StreamStats(windows=len(plan.windows))
    kept_boxes: list[npt.NDArray[np.float32]] = []
    kept_scores: list[npt.NDArray[np.float32]] = []
    kept_labels: list[npt.NDArray[np.int64]] = []
    kept_cut: list[npt.NDArray[np.bool_]] = []
    kept_near: list[npt.NDArray[np.bool_]] = []
    indexes = list(range(len(plan.windows)))
    batches = [indexes[i : i + batch_size] for i in range(0, len(indexes), batch_size)]

    def read(batch: list[int]) -> tuple[Any, list[Any], float]:
        t0 = time.perf_counter()
        windows = [plan.windows[k] for k in batch]
        arr, valids = _read_batch(source, band_indexes, mask_bands, windows, model_px, normalise)
        return arr, valids, time.perf_counter() - t0

    with ThreadPoolExecutor(max_workers=1) as reader:  # reads the next batch meanwhile
        pending = reader.submit(read, batches[0]) if batches else None
        for i, batch in enumerate(batches):
            assert pending is not None
            arr, valids, read_s = pending.result()
            stats.read_s += read_s
            pending = reader.submit(read, batches[i + 1]) if i + 1 < len(batches) else None
            t0 = time.perf_counter()
            results = detect(arr)
            stats.model_s += time.perf_counter() - t0
            stats.batches += 1
            stats.valid_windows += sum(bool(v.any()) for v in valids)
            for k, valid, (boxes, scores, labels) in zip(batch, valids, results, strict=True):
                w = plan.windows[k]
                grid_row, grid_col = plan.grid_position(k)
                core = (row_cores[grid_row], col_cores[grid_col])
                keep = _owned(boxes, scores, labels, w, score_threshold, core)
                if keep.any():
                    b = boxes[keep].copy()
                    b[:, [0, 2]] = np.clip(b[:, [0, 2]], 0, w.width)
                    b[:, [1, 3]] = np.clip(b[:, [1, 3]], 0, w.height)
                    cut = _cut_sides(b, w, (height, width))
                    near = _cut_sides(b, w, (height, width), _NEAR_EDGE_PX)
                    b, on_valid = fit_to_valid(b, valid)
                    b[:, [0, 2]] += w.col_off
                    b[:, [1, 3]] += w.row_off
                    kept_boxes.append(b[on_valid])
                    kept_scores.append(scores[keep][on_valid])
                    kept_labels.append(labels[keep][on_valid])
                    kept_cut.append(cut[on_valid])
                    kept_near.append(near[on_valid])
            if progress is not None:
                progress(len(batch))
    if kept_boxes:
        all_boxes = np.concatenate(kept_boxes)
        joined = join_cut_boxes(
            all_boxes,
            np.concatenate(kept_scores),
            np.concatenate(kept_labels),
            np.concatenate(kept_cut),
        )
        # a box left as it was (not joined) that ends near its window's inner edge: which sides
        all_near = np.concatenate(kept_near)
        lone = {tuple(b): n for b, n in zip(all_boxes.tolist(), all_near, strict=True) if n.any()}
        redo = [(i, lone[tuple(b)]) for i, b in enumerate(joined[0].tolist()) if tuple(b) in lone]
        if redo:
            read_whole = partial(_read_batch, source, band_indexes, mask_bands, model_px=model_px)
            _see_whole(
                detect, read_whole, normalise, joined, redo, plan, score_threshold, batch_size
            )
        kept_boxes, kept_scores, kept_labels = [joined[0]], [joined[1]], [joined[2]]
    objects = _nms_objects(kept_boxes, kept_scores, kept_labels, nms_iou, source.transform)
    stats.objects = len(objects)
    stats.wall_s = time.perf_counter() - t_start
    return objects, stats


def _cut_sides(
    boxes: npt.NDArray[np.float32],
    w: Window,
    scene_shape: tuple[int, int],
    margin_px: float = _CUT_PX,
) -> npt.NDArray[np.bool_]:
    """Which sides (x0 y0 x1 y1) of window boxes lie on an edge of the window inside the scene."""
    h, wd = scene_shape
    inner = np.array(
        [w.col_off > 0, w.row_off > 0, w.col_off + w.width < wd, w.row_off + w.height < h]
    )
    at_edge = np.column_stack(
        [
            boxes[:, 0] <= margin_px,
            boxes[:, 1] <= margin_px,
            boxes[:, 2] >= w.width - margin_px,
            boxes[:, 3] >= w.height - margin_px,
        ]
    )
    return np.asarray(at_edge & inner)


def _whole_view_window(
    box: Sequence[float], near: Sequence[bool], window_px: int, scene_shape: tuple[int, int]
) -> Window | None:
    """A window that holds ``box`` with room on its cut sides; None when it cannot fit.

    Along an axis cut on one side the window ends just past the box's other side (all the
    room goes to the cut side); cut on both sides or neither, it is centred on the box.

    >>> _whole_view_window((100, 10, 252, 50), (False, False, True, False), 256, (300, 600))
    Window(col_off=84, row_off=0, width=256, height=256)
    """
    h, wd = scene_shape
    x0, y0, x1, y1 = box
    offsets = []
    for lo, hi, cut_lo, cut_hi, length in (
        (x0, x1, near[0], near[2], wd),
        (y0, y1, near[1], near[3], h),
    ):
        size = min(window_px, length)
        if hi - lo > size - 4 * _NEAR_EDGE_PX and size < length:
            return None  # no window sees it whole with room around it
        if cut_hi and not cut_lo:
            off = lo - 2 * _NEAR_EDGE_PX
        elif cut_lo and not cut_hi:
            off = hi + 2 * _NEAR_EDGE_PX - size
        else:
            off = (lo + hi - size) / 2
        offsets.append((int(np.clip(round(off), 0, length - size)), size))
    (col, width), (row, height) = offsets
    return Window(col, row, width, height)


def _see_whole(
    detect: Detector,
    read: Callable[..., tuple[npt.NDArray[np.float32], list[npt.NDArray[np.bool_]]]],
    normalise: Callable[[np.ndarray], np.ndarray],
    joined: tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.int64]],
    redo: list[tuple[int, npt.NDArray[np.bool_]]],
    plan: WindowPlan,
    score_threshold: float,
    batch_size: int,
) -> None:
    """Rule 3: detect each ``redo`` box again in a window placed to see it whole (in place).

    ``redo``: (index into ``joined``, which sides x0 y0 x1 y1 end near an inner window edge).

    The box of the same class there that holds most of the cut view (at least half of it)
    and is not near an inner edge of that window replaces the cut view, with its score.
    """
    boxes, scores, labels = joined
    scene_shape = plan.scene_shape
    jobs: list[tuple[int, Window]] = []
    for i, near in redo:
        win = _whole_view_window(boxes[i].tolist(), near.tolist(), plan.window_px, scene_shape)
        if win is not None:
            jobs.append((i, win))
    for s in range(0, len(jobs), batch_size):
        part = jobs[s : s + batch_size]
        arr, valids = read([w for _, w in part], normalise=normalise)
        for (i, w), valid, (wb, ws, wl) in zip(part, valids, detect(arr), strict=True):
            wb = wb.copy()
            wb[:, [0, 2]] = np.clip(wb[:, [0, 2]], 0, w.width)
            wb[:, [1, 3]] = np.clip(wb[:, [1, 3]], 0, w.height)
            whole = ~_cut_sides(wb, w, scene_shape, _NEAR_EDGE_PX).any(axis=1)
            wb, on_valid = fit_to_valid(wb, valid)
            ok = (ws >= score_threshold) & (wl == labels[i]) & whole & on_valid
            if not ok.any():
                continue
            wb[:, [0, 2]] += w.col_off
            wb[:, [1, 3]] += w.row_off
            cut_view = shapely.box(*boxes[i].tolist())
            cand = shapely.box(wb[:, 0], wb[:, 1], wb[:, 2], wb[:, 3])
            share = np.where(ok, shapely.area(shapely.intersection(cand, cut_view)), 0.0)
            k = int(np.argmax(share))
            if share[k] >= 0.5 * cut_view.area:
                boxes[i], scores[i] = wb[k], ws[k]


def join_cut_boxes(
    boxes: npt.NDArray[np.float32],
    scores: npt.NDArray[np.float32],
    labels: npt.NDArray[np.int64],
    cut: npt.NDArray[np.bool_],
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Join the views of objects cut by window edges on both sides of a seam (rule 2).

    Args:
        boxes: ``(n, 4)`` x0 y0 x1 y1 in scene pixels.
        scores: ``(n,)``.
        labels: ``(n,)`` class ids.
        cut: ``(n, 4)`` which sides (x0 y0 x1 y1) lie on an edge of their window that is
            not the scene's.

    Returns:
        Boxes, scores and labels, each set of joined views replaced by its union.

    >>> b = np.array([[150, 10, 256, 50], [192, 12, 290, 50], [300, 0, 340, 9]], np.float32)
    >>> cut = np.array([[0, 0, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]], bool)
    >>> j = join_cut_boxes(b, np.array([0.9, 0.8, 0.7], np.float32), np.ones(3, np.int64), cut)
    >>> j[0].tolist(), [round(s, 2) for s in j[1].tolist()]
    ([[150.0, 10.0, 290.0, 50.0], [300.0, 0.0, 340.0, 9.0]], [0.9, 0.7])
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(boxes)
    pairs: list[tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]] = []
    shapes = shapely.box(boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3])
    # seams across x (columns), then across y (rows): the axis's sides, the other axis's
    for lo, hi, a_lo, a_hi in ((0, 2, 1, 3), (1, 3, 0, 2)):
        ends, starts = np.flatnonzero(cut[:, hi]), np.flatnonzero(cut[:, lo])
        if not len(ends) or not len(starts):
            continue
        # only boxes that meet can be views of one object (a spatial index, not all pairs)
        i, j = shapely.STRtree(shapes[starts]).query(shapes[ends], predicate="intersects")
        p, q = ends[i], starts[j]
        near, far = boxes[q, lo], boxes[p, hi]  # the strip the two windows share
        strip = far - near
        inter = np.minimum(boxes[p, a_hi], boxes[q, a_hi]) - np.maximum(
            boxes[p, a_lo], boxes[q, a_lo]
        )
        union = np.maximum(boxes[p, a_hi], boxes[q, a_hi]) - np.minimum(
            boxes[p, a_lo], boxes[q, a_lo]
        )
        same = (
            (p != q)
            & (labels[p] == labels[q])
            & (strip > 0)
            # both cover most of the strip, and agree along the seam
            & (boxes[p, lo] <= near + strip / 2)
            & (boxes[q, hi] >= far - strip / 2)
            & (inter >= SEAM_JOIN_IOU * np.maximum(union, 1e-9))
        )
        pairs.append((p[same], q[same]))
    if not pairs:
        return boxes, scores, labels
    a, b = np.concatenate([x for x, _ in pairs]), np.concatenate([y for _, y in pairs])
    graph = coo_matrix((np.ones(len(a), dtype=bool), (a, b)), shape=(n, n))
    _, roots = connected_components(graph, directed=False)
    _, first, group = np.unique(roots, return_index=True, return_inverse=True)
    if len(first) == n:
        return boxes, scores, labels
    k = len(first)
    out = np.empty((k, 4), dtype=np.float64)
    out[:, :2], out[:, 2:] = np.inf, -np.inf
    np.minimum.at(out[:, 0], group, boxes[:, 0])
    np.minimum.at(out[:, 1], group, boxes[:, 1])
    np.maximum.at(out[:, 2], group, boxes[:, 2])
    np.maximum.at(out[:, 3], group, boxes[:, 3])
    best = np.full(k, -np.inf)
    np.maximum.at(best, group, scores.astype(np.float64))
    order = np.argsort(first, kind="stable")  # first-seen order
    return (
        out[order].astype(np.float32),
        best[order].astype(np.float32),
        labels[first[order]].astype(np.int64),
    )


def fit_to_valid(
    boxes: npt.NDArray[np.float32], valid: npt.NDArray[np.bool_], min_valid: float = 0.5
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
    """Boxes cut back to their valid pixels, and which of them are mostly on valid pixels.

    Args:
        boxes: ``(n, 4)`` x0 y0 x1 y1 in the pixels of ``valid`` (inside it).
        valid: ``(h, w)`` True where the imagery has data.
        min_valid: the smallest share of a box's pixels that must be valid to keep it.

    Returns:
        The boxes, each shrunk to the bounds of its valid pixels (unchanged when all are
        valid), and a mask of those to keep.

    >>> valid = np.ones((10, 10), dtype=bool); valid[:, 6:] = False
    >>> b, keep = fit_to_valid(np.array([[2, 1, 8, 4], [5, 1, 9, 4]], np.float32), valid)
    >>> b[0].tolist(), keep.tolist()
    ([2.0, 1.0, 6.0, 4.0], [True, False])
    """
    out = boxes.copy()
    keep = np.ones(len(boxes), dtype=bool)
    h, w = valid.shape
    for i, (x0, y0, x1, y1) in enumerate(boxes.tolist()):
        c0, r0 = min(int(np.floor(x0)), w - 1), min(int(np.floor(y0)), h - 1)
        c1, r1 = max(int(np.ceil(x1)), c0 + 1), max(int(np.ceil(y1)), r0 + 1)
        sub = valid[r0:r1, c0:c1]
        if sub.mean() < min_valid:
            keep[i] = False
        elif not sub.all():
            rows = np.flatnonzero(sub.any(axis=1))
            cols = np.flatnonzero(sub.any(axis=0))
            out[i] = (
                max(x0, c0 + cols[0]),
                max(y0, r0 + rows[0]),
                min(x1, c0 + cols[-1] + 1),
                min(y1, r0 + rows[-1] + 1),
            )
    return out, keep


def _owned(
    boxes: npt.NDArray[np.float32],
    scores: npt.NDArray[np.float32],
    labels: npt.NDArray[np.int64],
    w: Window,
    score_threshold: float,
    core: tuple[tuple[float, float], tuple[float, float]],
) -> npt.NDArray[np.bool_]:
    """Boxes of a class scored high enough whose centre lies in the window's core.

    ``core``: the window's core rows and columns (scene pixels, ends exclusive).
    """
    if len(boxes) == 0:
        return np.zeros(0, dtype=bool)
    cx = (np.clip(boxes[:, 0], 0, w.width) + np.clip(boxes[:, 2], 0, w.width)) / 2
    cy = (np.clip(boxes[:, 1], 0, w.height) + np.clip(boxes[:, 3], 0, w.height)) / 2
    (r0, r1), (c0, c1) = core
    sx, sy = cx + w.col_off, cy + w.row_off
    keep = (scores >= score_threshold) & (sx >= c0) & (sx < c1) & (sy >= r0) & (sy < r1)
    # class 0 is the detector's unused background logit (RetinaNet scores it as a class):
    # no object, and it would be named after the last class (classes[-1])
    return np.asarray(keep & (labels > 0))


def _nms_objects(
    boxes: list[npt.NDArray[np.float32]],
    scores: list[npt.NDArray[np.float32]],
    labels: list[npt.NDArray[np.int64]],
    nms_iou: float,
    transform: Affine,
) -> list[BoxObject]:
    if not boxes:
        return []
    import torch
    from torchvision.ops import batched_nms  # 1.2 s to import: only when boxes are made

    b = np.concatenate(boxes).astype(np.float64)
    s = np.concatenate(scores)
    lab = np.concatenate(labels)
    keep = batched_nms(
        torch.from_numpy(b), torch.from_numpy(s.astype(np.float64)), torch.from_numpy(lab), nms_iou
    ).numpy()
    b, s, lab = b[keep], s[keep], lab[keep]
    polys = shapely.box(b[:, 0], b[:, 1], b[:, 2], b[:, 3])
    t = transform
    polys = shapely.transform(
        polys,
        lambda xy: np.stack(
            [t.a * xy[:, 0] + t.b * xy[:, 1] + t.c, t.d * xy[:, 0] + t.e * xy[:, 1] + t.f], axis=1
        ),
    )
    # right-hand (counter-clockwise) exteriors whatever the sign of the pixel size
    polys = shapely.orient_polygons(polys) if hasattr(shapely, "orient_polygons") else polys
    return [
        BoxObject(
            geometry=g,
            class_index=int(c),
            score=float(sc),
            first_px=(int(bb[1]), int(bb[0]), int(np.ceil(bb[3])), int(np.ceil(bb[2]))),
        )
        for g, c, sc, bb in zip(polys, lab, s, b, strict=True)
    ]
