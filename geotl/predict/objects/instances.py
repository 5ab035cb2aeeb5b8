"""``task = "instances"``: touching objects separated by a seeded watershed.

The network gives, per pixel, the class probabilities (softmax over background + classes)
and two sigmoid maps learnt from the label polygons (:mod:`geotl.chips.targets`): the
object **border** and the **contact** zone between touching objects. Per pixel:

* class map and score as for segmentation;
* seed score = P(class) x (1 - P(border)) x (1 - P(contact)): high in object interiors,
  low where objects meet.

Each 4-connected region of a class (a *component*, which may hold several touching objects)
is split on its own: seeds are the connected parts of the component whose seed score reaches
the seed threshold (at least ``min_seed_px`` pixels), and scikit-image's watershed
grows them over the component, downhill in seed score. A component without a seed stays
one object. How strong the border and contact maps come out differs from region to region,
and with it how many seeds a threshold gives (too few: touching objects merge; too many:
objects split), so the card carries it (``seed_threshold``:
:data:`~geotl.models.artefact.SEED_THRESHOLD` unless the training region set one, with the
val chips' object F1 at a grid of thresholds as a guide). Because a component is split
from its own pixels only (cut to its bounding box), the split is the same whatever window
it is read from: window-by-window extraction equals whole-scene extraction as long as
every component is read whole, which the halo loop
(:func:`geotl.predict.vectorise.objects_by_windows`) ensures. Components that touch (of
different classes) make a *cluster*, a 4-connected region of foreground, which belongs
to the core window that holds its first pixel (segmentation's rule, applied to clusters):
that window reads it whole, splits its components and gives all their objects, so a
cluster across many windows (a closed canopy) is read whole and split once, not once per
window it touches. The objects of a cluster are simplified together, as one coverage
(:func:`geotl.predict.vectorise.vectorise_labels`'s ``groups``): touching objects keep
exactly shared edges, neither overlapping nor leaving gaps, in windows as in the whole
scene.

A cluster wider or taller than :data:`WIDE_PX` (a closed canopy over a country scene
approaches the whole scene) is not read whole: memory would grow with it. It is split in
the fixed tiles of the scene grid (:data:`TILE_PX`, from the scene's top-left pixel, so
the same whatever the windows, strips or blocks), each read with :data:`TILE_HALO_PX`
around it: the seeds whole in that read grow over the tile's read, and each pixel takes
the seed its own tile gave it (exactly once). An object is named by its seed's first
pixel, the same from every tile that sees the seed, and belongs to the core window
holding that pixel, which gathers its pixels from the tiles around it. Near a tile's
edge, a seed beyond the halo no longer competes, so objects differ a little from the
whole-cluster split (``tests/predict/test_instances_tiled.py`` measures it); pixels no
seed reaches are split at the tiles' edges, and the objects of a wide cluster are
simplified one by one. Memory is bounded by the window and :data:`WIDE_PX` around it.

>>> cm = np.zeros((5, 9), dtype=np.uint8); cm[1:4, 1:8] = 1
>>> seed = np.zeros((5, 9), dtype=np.float32); seed[2, 2] = seed[2, 6] = 0.9
>>> labels, classes = split_instances(cm, seed, min_seed_px=1)
>>> labels[2].tolist(), classes
([0, 1, 1, 1, 1, 2, 2, 2, 0], [0, 1, 1])
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from affine import Affine
from rasterio.windows import Window
from scipy import ndimage
from skimage import measure
from skimage.segmentation import watershed

from geotl.models.artefact import SEED_THRESHOLD
from geotl.predict.objects.base import ObjectExtractor, PlaneReader, class_probabilities
from geotl.predict.vectorise import (
    NODATA_CLASS,
    EarlierRead,
    VectorObject,
    WindowExtractor,
    class_map_from_foreground,
    classes_present,
    drop_small,
    first_pixel,
    flood_owned,
    labels_starting_in,
    touches_cut_edge,
    vectorise_labels,
    whole_in,
)

if TYPE_CHECKING:
    import torch

__all__ = [
    "INSTANCE_CHANNELS",
    "SEED_THRESHOLD",
    "TILE_HALO_PX",
    "TILE_PX",
    "WIDE_PX",
    "InstanceExtractor",
    "split_component",
    "split_instances",
]

INSTANCE_CHANNELS = ("border", "contact")
"""The extra network outputs of an instance model, after background + classes."""

_CROSS = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=bool)

WIDE_PX = 1024
"""A cluster at most this many pixels wide and tall (1 Mpx of box: 102 m at 0.1 m) is read
whole and split exactly; a wider one is split by tiles (:data:`TILE_PX`). A core window is
read at most this far around it, which bounds the vectoriser's memory."""
TILE_PX = 1024
"""The tiles of the scene grid (from its top-left pixel) that split wide clusters."""
TILE_HALO_PX = 256
"""How far around its tile a tile's watershed reads (25.6 m at 0.1 m): seeds whole in it
grow into the tile as they would in the whole cluster, unless a seed beyond it is nearer."""
TILE_CACHE = 9
"""Tiles kept split for the next cores: the 3 x 3 around a core of :data:`TILE_PX`, about
8 bytes a pixel each (72 MB). Along a row of cores each tile is split once, so about three
times in all (once per row of cores around it): bounded memory, for time."""
_CLASS_ROWS = 256  # rows of planes read at once when only the class plane is needed


def split_component(
    mask: np.ndarray, seed: np.ndarray, min_seed_px: int, seed_threshold: float = SEED_THRESHOLD
) -> tuple[np.ndarray, int]:
    """Split one connected component into objects: ``(labels 1..n on mask, n)``.

    Args:
        mask: boolean ``(h, w)``, one 4-connected component (cut to its bounding box).
        seed: seed score ``(h, w)``.
        min_seed_px: seeds with fewer pixels are ignored.
        seed_threshold: the seed score a seed pixel reaches.
    """
    seeded = mask & (seed >= seed_threshold)
    if np.count_nonzero(seeded) < 2 * max(min_seed_px, 1):
        # too few seed pixels for two seeds: one object, without labelling them (507 of
        # the 781 components in ``scripts/bench_predict.py --pipeline``'s scene)
        return mask.astype(np.int32), 1
    markers, n = ndimage.label(seeded, structure=_CROSS)
    if n > 0:
        sizes = np.bincount(markers.ravel(), minlength=n + 1)
        keep = sizes >= max(min_seed_px, 1)
        keep[0] = False
        n = int(keep.sum())
        if n > 1:
            lut = np.zeros(keep.size, dtype=np.int32)
            lut[keep] = np.arange(1, n + 1, dtype=np.int32)
            return _grow(lut[markers], mask, seed), n
    return mask.astype(np.int32), 1


def _grow(markers: np.ndarray, mask: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """Grow ``markers`` over ``mask`` downhill in ``seed`` (scikit-image's watershed).

    Only the pixels the flood can reach are handed to the watershed: a seed pixel whose
    four neighbours are seed or outside the mask is labelled already and would only be
    pushed through the priority queue and popped again. In a closed canopy most pixels
    are such (806,272 of 974,016 in ``scripts/bench_predict.py --pipeline``'s canopy;
    its watershed took 0.34 s, now 0.06 s). The flood is the same; only the order among
    seed pixels of exactly equal score, which scikit-image leaves to its heap, can differ
    (5 pixels in that canopy, whose scores come in constant 8 px blocks).
    """
    seeded = markers > 0
    inner = ndimage.binary_erosion(seeded | ~mask, _CROSS, border_value=1) & seeded
    grown: np.ndarray = watershed(
        -seed.astype(np.float64),
        np.where(inner, 0, markers),
        mask=mask & ~inner,
        connectivity=1,
    ).astype(np.int32)
    grown[inner] = markers[inner]
    return grown


def _split_window(
    class_map: np.ndarray,
    seed: np.ndarray,
    min_seed_px: int,
    *,
    seed_threshold: float = SEED_THRESHOLD,
    min_pixels: int = 1,
    core: Window | None = None,
    read_window: Window | None = None,
    scene_shape: tuple[int, int] | None = None,
    earlier: EarlierRead | None = None,
    wide_px: int | None = None,
    decisive: bool = True,
) -> tuple[np.ndarray, list[int], list[int], list[tuple[int, int]], tuple[slice, slice], bool]:
    """Label objects: ``(labels in box, class and group of each label, cut, box, wide)``.

    Objects are split from components (4-connected regions of one class); the components
    that touch, of different classes, make a *cluster* (a 4-connected region of
    foreground), the unit that is owned, read whole and simplified as one coverage (the
    *group* of each of its labels), so that touching objects keep their shared edges.
    With ``core`` (in the array), only the clusters whose first pixel (raster order) it
    holds: the core window *owns* them and all their objects. With ``read_window`` (where
    the array lies in a scene of ``scene_shape``), owned clusters that touch an edge of it
    that is not the scene's may continue outside: they are left out and their first pixels
    (global) are ``cut``; so are the clusters an earlier read returned (``earlier``: only
    those through its seeds can be new, flooded from them,
    :func:`~geotl.predict.vectorise.flood_owned`). Components of fewer than ``min_pixels``
    pixels are left out too: every object split from them would be dropped as smaller.
    ``labels`` cover ``box`` only (the owned clusters' box); ``class_map`` may be the
    float plane of a class map.

    With ``wide_px``, a cluster whose box is wider or taller than it is *wide*: left out
    here, split by tiles instead (:func:`_tiled_objects`). Only a read that reaches
    ``wide_px`` beyond the core on every side that is not the scene's (``decisive``) can
    tell a wide cluster from a cut one: there, a cluster through the core that is cut is
    wider than ``wide_px``, and ``wide`` says whether a wide cluster has pixels in the core.
    A read that is not decisive cuts (``cut``) the wide clusters, and those cut through
    the core that it does not own, so that the core is read again up to the decisive read.
    """
    class_map = np.asarray(class_map, dtype=np.uint8)  # once, not per comparison
    label_class: list[int] = [0]
    groups: list[int] = [0]
    cut: list[tuple[int, int]] = []
    one: int | None = None  # the window's only class, when it has one
    owned: list[tuple[int, tuple[slice, slice], np.ndarray]] = []  # (group, box, in cluster)
    wide = False

    def too_wide(sl: tuple[slice, slice]) -> bool:
        return wide_px is not None and max(_side(sl[0]), _side(sl[1])) > wide_px

    if earlier is not None and earlier.floods and read_window is not None and core is not None:
        assert scene_shape is not None
        foreground = class_map != 0
        foreground &= class_map != NODATA_CLASS
        # with wide_px, every cluster through the seeds: the seeds of clusters through the
        # core that another core owns tell whether those are wide
        flooded = core if wide_px is None else Window(0, 0, class_map.shape[1], class_map.shape[0])
        found, cut_here = flood_owned(
            foreground.view(np.uint8), earlier.seeds, read_window, flooded, scene_shape, min_pixels
        )
        for k, (box, mask) in enumerate(found, start=1):
            first = (box[0].start, box[1].start + int(np.argmax(mask[0])))
            if too_wide(box):
                if decisive:
                    wide = True
                else:  # read again up to the decisive read
                    cut.append((first[0] + read_window.row_off, first[1] + read_window.col_off))
            elif (
                core.row_off <= first[0] < core.row_off + core.height
                and core.col_off <= first[1] < core.col_off + core.width
            ):
                owned.append((k, box, mask))
        if wide_px is not None and decisive:
            wide = wide or bool(cut_here)  # cut by a decisive read: wider than wide_px
        else:
            cut = sorted(cut + cut_here)
    else:
        classes = classes_present(class_map)
        one = classes[0] if len(classes) == 1 else None
        foreground = class_map == one if one is not None else np.isin(class_map, classes)
        clusters, n = ndimage.label(foreground, structure=_CROSS, output=np.int32)
        slices = drop_small(
            clusters, ndimage.find_objects(clusters), min_pixels, read_window, scene_shape
        )
        done = None if earlier is None else earlier.window
        ks = range(1, n + 1) if core is None else labels_starting_in(clusters, slices, core)
        for k in ks:
            sl = slices[k - 1]
            if sl is None:
                continue
            if read_window is not None and scene_shape is not None:
                if touches_cut_edge(sl, read_window, scene_shape) or too_wide(sl):
                    if wide_px is not None and decisive:
                        wide = True  # a cut cluster through the core is wider than wide_px
                    else:
                        cut.append(first_pixel(clusters, k, sl, read_window))
                    continue
                if whole_in(done, sl, read_window, scene_shape):
                    continue
            elif too_wide(sl):
                wide = True
                continue
            owned.append((k, sl, clusters[sl] == k))
        if wide_px is not None and core is not None and read_window is not None:
            assert scene_shape is not None
            # the clusters through the core that another core owns: one of them may be wide
            inside = clusters[
                core.row_off : core.row_off + core.height,
                core.col_off : core.col_off + core.width,
            ]
            through = np.bincount(inside.ravel(), minlength=n + 1)[1:] > 0
            through[[k - 1 for k in ks]] = False
            for j in (np.flatnonzero(through) + 1).tolist():
                sl = slices[j - 1]
                if sl is None or not (
                    touches_cut_edge(sl, read_window, scene_shape) or too_wide(sl)
                ):
                    continue
                if decisive:
                    wide = True
                else:
                    cut.append(first_pixel(clusters, j, sl, read_window))
            cut.sort()
    # labels over the owned clusters' box only: a wide read is mostly other cores' pixels
    top = min((sl[0].start for _, sl, _ in owned), default=0)
    left = min((sl[1].start for _, sl, _ in owned), default=0)
    bottom = max((sl[0].stop for _, sl, _ in owned), default=0)
    right = max((sl[1].stop for _, sl, _ in owned), default=0)
    labels = np.zeros((bottom - top, right - left), dtype=np.int32)
    for k, sl, in_cluster in owned:
        view = labels[sl[0].start - top : sl[0].stop - top, sl[1].start - left : sl[1].stop - left]
        seed_box = seed[sl]
        for cls_i, box, mask in _components(class_map[sl], in_cluster, min_pixels, one):
            parts, m = split_component(mask, seed_box[box], min_seed_px, seed_threshold)
            base = len(label_class) - 1
            view[box][mask] = parts[mask] + base
            label_class.extend([cls_i] * m)
            groups.extend([k] * m)
    return labels, label_class, groups, cut, (slice(top, bottom), slice(left, right)), wide


def _side(sl: slice) -> int:
    return int(sl.stop) - int(sl.start)


def _components(
    class_box: np.ndarray, in_cluster: np.ndarray, min_pixels: int, one: int | None = None
) -> list[tuple[int, tuple[slice, slice], np.ndarray]]:
    """``(class, box, mask in box)`` of each component of a cluster (cut to its box).

    The components of a cluster are found in its own box, so they and their order (class,
    then raster order) are the same whatever window the cluster is read from. ``one``: the
    only class of the window, when it has one (then the cluster is the component).
    """
    whole = (slice(0, in_cluster.shape[0]), slice(0, in_cluster.shape[1]))
    if one is not None:
        return [(one, whole, in_cluster)]
    classes = np.flatnonzero(np.bincount(class_box[in_cluster])).tolist()
    if len(classes) == 1:  # one class (every cluster of a one-class model): one component
        return [(classes[0], whole, in_cluster)]
    out: list[tuple[int, tuple[slice, slice], np.ndarray]] = []
    for cls_i in classes:
        comp, _ = ndimage.label(in_cluster & (class_box == cls_i), structure=_CROSS)
        for j, box in enumerate(ndimage.find_objects(comp), start=1):
            if box is None:
                continue
            mask = comp[box] == j
            if np.count_nonzero(mask) >= min_pixels:
                out.append((cls_i, box, mask))
    return out


@dataclass(frozen=True)
class _TileSplit:
    """What one tile's watershed made of its own pixels of wide clusters.

    Attributes:
        key_index: ``int32`` over the tile: 0 where no wide cluster is, else the row of
            ``keys`` of the object the pixel went to.
        keys: ``int64 (n + 1,)``: each object's key, the scene pixel ``row * width + col``
            of its seed's first pixel (or of its own, for a piece no seed reached); row 0
            unused.
        classes: the class of each key.
        scores: the tile's score plane (``float32``), where ``key_index`` is not 0.
    """

    key_index: np.ndarray
    keys: np.ndarray
    classes: np.ndarray
    scores: np.ndarray


def _tiles_around(
    core: Window, scene_shape: tuple[int, int], tile_px: int, reach: int
) -> list[Window]:
    """The tiles of the scene grid (``tile_px``) within ``reach`` of ``core``, raster order."""
    height, width = scene_shape
    r0 = max(core.row_off - reach, 0) // tile_px * tile_px
    c0 = max(core.col_off - reach, 0) // tile_px * tile_px
    r1 = min(core.row_off + core.height + reach, height)
    c1 = min(core.col_off + core.width + reach, width)
    return [
        Window(c, r, min(tile_px, width - c), min(tile_px, height - r))
        for r in range(r0, r1, tile_px)
        for c in range(c0, c1, tile_px)
    ]


def _wide_in_tile(
    read: PlaneReader, tile: Window, scene_shape: tuple[int, int], wide_px: int
) -> np.ndarray:
    """Which pixels of ``tile`` lie in a wide cluster (its box wider or taller than ``wide_px``).

    Read around the tile ``wide_px`` wide, the class plane only and in bands of rows: a
    cluster through the tile that this read cuts is wider than ``wide_px``; one it holds
    whole has its own box. The answer is the cluster's, whoever asks.
    """
    height, width = scene_shape
    r0, c0 = max(tile.row_off - wide_px, 0), max(tile.col_off - wide_px, 0)
    r1 = min(tile.row_off + tile.height + wide_px, height)
    c1 = min(tile.col_off + tile.width + wide_px, width)
    foreground = np.empty((r1 - r0, c1 - c0), dtype=bool)
    for r in range(r0, r1, _CLASS_ROWS):
        h = min(_CLASS_ROWS, r1 - r)
        cm = read(r, c0, h, c1 - c0)[0]
        np.not_equal(cm, 0, out=foreground[r - r0 : r - r0 + h])
        foreground[r - r0 : r - r0 + h] &= cm != NODATA_CLASS
    clusters, n = ndimage.label(foreground, structure=_CROSS, output=np.int32)
    del foreground
    inside = clusters[
        tile.row_off - r0 : tile.row_off - r0 + tile.height,
        tile.col_off - c0 : tile.col_off - c0 + tile.width,
    ]
    through = np.flatnonzero(np.bincount(inside.ravel(), minlength=n + 1)[1:]) + 1
    slices = ndimage.find_objects(clusters)
    read_window = Window(c0, r0, c1 - c0, r1 - r0)
    wide = np.zeros(n + 1, dtype=bool)
    for k in through.tolist():
        sl = slices[k - 1]
        assert sl is not None
        wide[k] = max(_side(sl[0]), _side(sl[1])) > wide_px or touches_cut_edge(
            sl, read_window, scene_shape
        )
    out: np.ndarray = wide[inside]
    return out


def _split_tile(
    read: PlaneReader,
    tile: Window,
    scene_shape: tuple[int, int],
    *,
    wide_px: int,
    halo_px: int,
    min_seed_px: int,
    seed_threshold: float,
) -> _TileSplit:
    """Split the wide clusters' pixels of one tile of the scene grid into objects.

    The tile is read with ``halo_px`` around it. Seeds are found as in
    :func:`split_component` (the connected parts of a class at or above the seed threshold,
    at least ``min_seed_px`` pixels), but only those whole in the read: they are the same
    seeds, with the same first pixel, in every tile whose read holds them. The watershed
    grows them over each class in the read, and each pixel of the tile takes the seed its
    own tile's watershed gave it. Pixels no seed reached are split into the 4-connected
    pieces they make in the tile, each its own object. Every pixel is decided once, by
    its tile, and named by a key that every tile gives the same seed.
    """
    height, width = scene_shape
    th, tw = tile.height, tile.width
    empty = _TileSplit(
        np.zeros((th, tw), np.int32),
        np.zeros(1, np.int64),
        np.zeros(1, np.int64),
        np.zeros((0, 0), np.float32),
    )
    wide = _wide_in_tile(read, tile, scene_shape, wide_px)
    if not wide.any():
        return empty
    r0, c0 = max(tile.row_off - halo_px, 0), max(tile.col_off - halo_px, 0)
    r1 = min(tile.row_off + th + halo_px, height)
    c1 = min(tile.col_off + tw + halo_px, width)
    read_window = Window(c0, r0, c1 - c0, r1 - r0)
    planes = read(r0, c0, r1 - r0, c1 - c0)
    class_map = np.asarray(planes[0], dtype=np.uint8)
    seed = planes[2]
    own = (
        slice(tile.row_off - r0, tile.row_off - r0 + th),
        slice(tile.col_off - c0, tile.col_off - c0 + tw),
    )
    key_index = np.zeros((th, tw), np.int32)
    keys: list[int] = [0]
    classes: list[int] = [0]
    tile_classes = class_map[own][wide]
    for cls_i in np.flatnonzero(np.bincount(tile_classes, minlength=NODATA_CLASS + 1)).tolist():
        if cls_i in (0, NODATA_CLASS):
            continue
        in_class = class_map == cls_i
        found, n = ndimage.label(
            in_class & (seed >= seed_threshold), structure=_CROSS, output=np.int32
        )
        keep = np.bincount(found.ravel(), minlength=n + 1) >= max(min_seed_px, 1)
        keep[0] = False
        firsts: list[int] = []
        for k, sl in enumerate(ndimage.find_objects(found), start=1):
            if sl is None or not keep[k]:
                continue
            if touches_cut_edge(sl, read_window, scene_shape):
                keep[k] = False  # may go on outside the read: not a seed here
                continue
            row, col = first_pixel(found, k, sl, read_window)
            firsts.append(row * width + col)
        grown = np.zeros((th, tw), np.int32)
        if firsts:
            lut = np.zeros(n + 1, dtype=np.int32)
            lut[keep] = np.arange(1, len(firsts) + 1, dtype=np.int32)
            grown = _grow(lut[found], in_class, seed)[own]
        del found, in_class
        mine = wide & (class_map[own] == cls_i)
        base = len(keys) - 1
        reached = mine & (grown > 0)
        key_index[reached] = grown[reached] + base
        keys.extend(firsts)
        # pieces no seed reached: each its own object, cut at the tile's edges
        pieces, _ = ndimage.label(mine & ~reached, structure=_CROSS, output=np.int32)
        base = len(keys) - 1
        for k, sl in enumerate(ndimage.find_objects(pieces), start=1):
            assert sl is not None
            row, col = first_pixel(pieces, k, sl, tile)
            keys.append(row * width + col)
        hit = pieces > 0
        key_index[hit] = pieces[hit] + base
        classes.extend([cls_i] * (len(keys) - len(classes)))
    scores = np.where(key_index > 0, planes[1][own], 0).astype(np.float32)
    return _TileSplit(key_index, np.asarray(keys, np.int64), np.asarray(classes, np.int64), scores)


def _tiled_objects(
    split_tile: Callable[[Window], _TileSplit],
    core: Window,
    scene_shape: tuple[int, int],
    transform: Affine,
    *,
    tile_px: int,
    halo_px: int,
    simplify_px: float,
    min_pixels: int,
) -> list[VectorObject]:
    """The objects of wide clusters that ``core`` owns: those whose key lies in it.

    A seed owned by the core is used only by tiles whose read holds it whole, so within
    ``halo_px`` of the core: those tiles hold all of its object. An object's pixels can
    come from several tiles and need not be 4-connected: each 4-connected part is one
    object. The objects are simplified one by one (touching ones may not keep exactly
    shared edges: unlike a cluster read whole, the objects of a wide cluster are never all
    in one read).
    """
    width = scene_shape[1]
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    for tile in _tiles_around(core, scene_shape, tile_px, halo_px):
        split = split_tile(tile)
        rows, cols = np.divmod(split.keys, width)
        mine = (
            (rows >= core.row_off)
            & (rows < core.row_off + core.height)
            & (cols >= core.col_off)
            & (cols < core.col_off + core.width)
        )
        mine[0] = False
        if not mine.any():
            continue
        r, c = np.nonzero(mine[split.key_index])
        if not len(r):
            continue
        idx = split.key_index[r, c]
        parts.append(
            (
                r + tile.row_off,
                c + tile.col_off,
                split.keys[idx],
                split.classes[idx],
                split.scores[r, c],
            )
        )
    if not parts:
        return []
    rows_px, cols_px, keys, classes, scores_px = (
        np.concatenate(x) for x in zip(*parts, strict=True)
    )
    top, left = int(rows_px.min()), int(cols_px.min())
    shape = (int(rows_px.max()) + 1 - top, int(cols_px.max()) + 1 - left)
    unique, inverse = np.unique(keys, return_inverse=True)
    by_key = np.zeros(shape, np.int32)
    by_key[rows_px - top, cols_px - left] = inverse.astype(np.int32) + 1
    scores = np.zeros(shape, np.float32)
    scores[rows_px - top, cols_px - left] = scores_px
    key_class = np.zeros(len(unique) + 1, np.int64)
    key_class[inverse + 1] = classes
    del rows_px, cols_px, keys, classes, scores_px, parts
    # each 4-connected part of a key's pixels is one object (raster order of first pixels)
    labels = measure.label(by_key, background=0, connectivity=1).astype(np.int32)
    n = int(labels.max())
    of_label = np.zeros(n + 1, np.int64)
    of_label[labels.ravel()] = by_key.ravel()
    label_class = key_class[of_label].tolist()
    label_class[0] = 0
    return vectorise_labels(
        labels,
        label_class,
        transform,
        scores=scores,
        simplify_px=simplify_px,
        min_pixels=min_pixels,
        row_off=top,
        col_off=left,
    )


def split_instances(
    class_map: np.ndarray,
    seed: np.ndarray,
    min_seed_px: int = 4,
    min_pixels: int = 1,
    seed_threshold: float = SEED_THRESHOLD,
) -> tuple[np.ndarray, list[int]]:
    """Objects of a whole class map: ``(labels int32 (H, W), class of each label)``.

    Args:
        class_map: ``uint8 (H, W)``, 0 background, 255 no data.
        seed: seed score ``(H, W)``.
        min_seed_px: seeds with fewer pixels are ignored.
        min_pixels: components with fewer pixels are left out (background).
        seed_threshold: the seed score a seed pixel reaches.
    """
    in_box, label_class, _, _, box, _ = _split_window(
        class_map, seed, min_seed_px, seed_threshold=seed_threshold, min_pixels=min_pixels
    )
    labels = np.zeros(class_map.shape, dtype=np.int32)
    labels[box] = in_box
    return labels, label_class


def _min_seed_px(min_pixels: int) -> int:
    # a seed is an object's interior core, as large as the drop limit (``min_pixels``: half
    # the region's min_area_m2): smaller cores are noise that would split one object in two
    return max(4, min_pixels)


class InstanceExtractor(ObjectExtractor):
    """Softmax classes + sigmoid border/contact; planes: class, score, seed; watershed.

    Args:
        n_classes: foreground classes of the model.
        seed_threshold: the seed score a seed pixel reaches (the card's ``seed_threshold``).

    The sizes of the tiled split (:data:`WIDE_PX`, :data:`TILE_PX`, :data:`TILE_HALO_PX`)
    are read when the extractor is made and travel with it (to a pool's processes too).
    """

    planes = 3

    def __init__(self, n_classes: int, seed_threshold: float = SEED_THRESHOLD) -> None:
        super().__init__(n_classes)
        self.seed_threshold = seed_threshold
        self.wide_px, self.tile_px, self.tile_halo_px = WIDE_PX, TILE_PX, TILE_HALO_PX

    @property
    def reach_px(self) -> int:
        """:data:`WIDE_PX`: a cluster through a core cut at that halo is split by tiles."""
        return self.wide_px

    @property
    def channels(self) -> int:
        """Class probabilities, then border and contact."""
        return self.n_classes + len(INSTANCE_CHANNELS)

    @property
    def outputs(self) -> int:
        """Background + classes, then border and contact logits."""
        return self.n_classes + 1 + len(INSTANCE_CHANNELS)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Softmax over the class logits (background dropped), sigmoid of the others."""
        import torch

        logits = logits.float()
        k = self.n_classes + 1
        return torch.cat([class_probabilities(logits[:, :k]), torch.sigmoid(logits[:, k:])], 1)

    def probability_names(self, classes: list[str]) -> list[str]:
        """The classes, then ``border`` and ``contact``."""
        return [*classes, *INSTANCE_CHANNELS]

    def probability_planes(self, blended: np.ndarray) -> np.ndarray:
        """Every blended channel: where objects meet is part of what the model predicts."""
        return blended

    def finalise(self, blended: np.ndarray, valid: np.ndarray, threshold: float) -> np.ndarray:
        """Class map, score and seed score of each pixel."""
        n = self.n_classes
        cm, sc = class_map_from_foreground(blended[:n], threshold, valid)
        border, contact = blended[n], blended[n + 1]
        seed = (sc * (1.0 - border) * (1.0 - contact)).astype(np.float32)
        return np.stack([cm.astype(np.float32), sc, seed])

    def _tile_splitter(
        self, read: PlaneReader, scene_shape: tuple[int, int], min_pixels: int
    ) -> Callable[[Window], _TileSplit]:
        """:func:`_split_tile` of a scene, the last :data:`TILE_CACHE` tiles kept.

        Neighbouring cores share tiles: kept, a tile is split about once per row of cores
        that needs it, and memory stays bounded by the cache.
        """
        cache: OrderedDict[tuple[int, int], _TileSplit] = OrderedDict()

        def split(tile: Window) -> _TileSplit:
            key = (tile.row_off, tile.col_off)
            if key in cache:
                cache.move_to_end(key)
                return cache[key]
            out = _split_tile(
                read,
                tile,
                scene_shape,
                wide_px=self.wide_px,
                halo_px=self.tile_halo_px,
                min_seed_px=_min_seed_px(min_pixels),
                seed_threshold=self.seed_threshold,
            )
            cache[key] = out
            while len(cache) > TILE_CACHE:
                cache.popitem(last=False)
            return out

        return split

    def extract(
        self, planes: np.ndarray, transform: Affine, *, simplify_px: float, min_pixels: int
    ) -> list[VectorObject]:
        """Separated objects of a whole array (wide clusters split by tiles, as by windows)."""
        labels, label_class, groups, _, box, wide = _split_window(
            planes[0],
            planes[2],
            _min_seed_px(min_pixels),
            seed_threshold=self.seed_threshold,
            min_pixels=min_pixels,
            wide_px=self.wide_px,
        )
        objects = vectorise_labels(
            labels,
            label_class,
            transform,
            scores=planes[1][box],
            simplify_px=simplify_px,
            min_pixels=min_pixels,
            row_off=box[0].start,
            col_off=box[1].start,
            groups=np.asarray(groups),
        )
        if wide:
            shape = (planes.shape[1], planes.shape[2])

            def read(r: int, c: int, h: int, w: int) -> np.ndarray:
                return planes[:, r : r + h, c : c + w]

            objects += _tiled_objects(
                self._tile_splitter(read, shape, min_pixels),
                Window(0, 0, shape[1], shape[0]),
                shape,
                transform,
                tile_px=self.tile_px,
                halo_px=self.tile_halo_px,
                simplify_px=simplify_px,
                min_pixels=min_pixels,
            )
            objects.sort(key=lambda o: (o.first_px, o.class_index))
        return objects

    def window_extractor(
        self,
        scene_shape: tuple[int, int],
        transform: Affine,
        *,
        simplify_px: float,
        min_pixels: int,
    ) -> WindowExtractor:
        """Without a reader of the scene, every cluster is read whole, however wide."""
        return self._window_extractor(None, scene_shape, transform, simplify_px, min_pixels)

    def reading_window_extractor(
        self,
        read: PlaneReader,
        scene_shape: tuple[int, int],
        transform: Affine,
        *,
        simplify_px: float,
        min_pixels: int,
    ) -> WindowExtractor:
        """Clusters up to :data:`WIDE_PX` read whole; wider ones split by tiles from ``read``."""
        return self._window_extractor(read, scene_shape, transform, simplify_px, min_pixels)

    def _window_extractor(
        self,
        read: PlaneReader | None,
        scene_shape: tuple[int, int],
        transform: Affine,
        simplify_px: float,
        min_pixels: int,
    ) -> WindowExtractor:
        """Each cluster, with all its objects, belongs to the core holding its first pixel.

        So each cluster of touching components is read whole, split and simplified once,
        by its owner. With ``read``, a wide cluster's objects belong to the core holding
        their key instead, made by :func:`_tiled_objects` in the core's decisive read.
        """
        min_seed = _min_seed_px(min_pixels)
        wide_px = None if read is None else self.wide_px
        split_tile = None if read is None else self._tile_splitter(read, scene_shape, min_pixels)

        def extract(
            planes: np.ndarray,
            read_window: Window,
            core_window: Window,
            earlier: EarlierRead | None,
        ) -> tuple[list[VectorObject], list[tuple[int, int]]]:
            r_row, r_col = read_window.row_off, read_window.col_off
            local_core = Window(
                core_window.col_off - r_col,
                core_window.row_off - r_row,
                core_window.width,
                core_window.height,
            )
            decisive = wide_px is not None and _reaches(
                read_window, core_window, scene_shape, wide_px
            )
            labels, label_class, groups, cut, box, wide = _split_window(
                planes[0],
                planes[2],
                min_seed,
                seed_threshold=self.seed_threshold,
                min_pixels=min_pixels,
                core=local_core,
                read_window=read_window,
                scene_shape=scene_shape,
                earlier=earlier,
                wide_px=wide_px,
                decisive=decisive,
            )
            # every object of an owned component is owned, wherever its own first pixel:
            # all of them lie in ``box``, traced there
            owned = vectorise_labels(
                labels,
                label_class,
                transform,
                scores=planes[1][box],
                simplify_px=simplify_px,
                min_pixels=min_pixels,
                row_off=r_row + box[0].start,
                col_off=r_col + box[1].start,
                groups=np.asarray(groups),
            )
            if wide:  # only in the decisive read, the core's last
                assert split_tile is not None
                owned += _tiled_objects(
                    split_tile,
                    core_window,
                    scene_shape,
                    transform,
                    tile_px=self.tile_px,
                    halo_px=self.tile_halo_px,
                    simplify_px=simplify_px,
                    min_pixels=min_pixels,
                )
            return owned, cut

        return extract


def _reaches(read_window: Window, core: Window, scene_shape: tuple[int, int], px: int) -> bool:
    """Whether ``read_window`` reaches ``px`` beyond ``core`` on each side, or the scene's edge.

    >>> _reaches(Window(0, 2, 10, 6), Window(4, 4, 2, 2), (8, 12), 2)
    True
    >>> _reaches(Window(0, 2, 10, 6), Window(4, 4, 2, 2), (8, 12), 3)
    False
    """
    height, width = scene_shape
    return bool(
        read_window.row_off <= max(core.row_off - px, 0)
        and read_window.col_off <= max(core.col_off - px, 0)
        and read_window.row_off + read_window.height >= min(core.row_off + core.height + px, height)
        and read_window.col_off + read_window.width >= min(core.col_off + core.width + px, width)
    )
