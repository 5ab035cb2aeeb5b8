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
scene. Memory is bounded as for segmentation: by the window plus the largest cluster.

>>> cm = np.zeros((5, 9), dtype=np.uint8); cm[1:4, 1:8] = 1
>>> seed = np.zeros((5, 9), dtype=np.float32); seed[2, 2] = seed[2, 6] = 0.9
>>> labels, classes = split_instances(cm, seed, min_seed_px=1)
>>> labels[2].tolist(), classes
([0, 1, 1, 1, 1, 2, 2, 2, 0], [0, 1, 1])
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from affine import Affine
from rasterio.windows import Window
from scipy import ndimage
from skimage.segmentation import watershed

from geotl.models.artefact import SEED_THRESHOLD
from geotl.predict.objects.base import ObjectExtractor, class_probabilities
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
    "InstanceExtractor",
    "split_component",
    "split_instances",
]

INSTANCE_CHANNELS = ("border", "contact")
"""The extra network outputs of an instance model, after background + classes."""

_CROSS = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=bool)


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
) -> tuple[np.ndarray, list[int], list[int], list[tuple[int, int]], tuple[slice, slice]]:
    """Label objects: ``(labels in box, class and group of each label, cut, box)``.

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
    """
    class_map = np.asarray(class_map, dtype=np.uint8)  # once, not per comparison
    label_class: list[int] = [0]
    groups: list[int] = [0]
    cut: list[tuple[int, int]] = []
    one: int | None = None  # the window's only class, when it has one
    owned: list[tuple[int, tuple[slice, slice], np.ndarray]] = []  # (group, box, in cluster)
    if earlier is not None and earlier.floods and read_window is not None and core is not None:
        assert scene_shape is not None
        foreground = class_map != 0
        foreground &= class_map != NODATA_CLASS
        found, cut = flood_owned(
            foreground.view(np.uint8), earlier.seeds, read_window, core, scene_shape, min_pixels
        )
        owned = [(k, box, mask) for k, (box, mask) in enumerate(found, start=1)]
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
                if touches_cut_edge(sl, read_window, scene_shape):
                    cut.append(first_pixel(clusters, k, sl, read_window))
                    continue
                if whole_in(done, sl, read_window, scene_shape):
                    continue
            owned.append((k, sl, clusters[sl] == k))
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
    return labels, label_class, groups, cut, (slice(top, bottom), slice(left, right))


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
    in_box, label_class, _, _, box = _split_window(
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
    """

    planes = 3

    def __init__(self, n_classes: int, seed_threshold: float = SEED_THRESHOLD) -> None:
        super().__init__(n_classes)
        self.seed_threshold = seed_threshold

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

    def extract(
        self, planes: np.ndarray, transform: Affine, *, simplify_px: float, min_pixels: int
    ) -> list[VectorObject]:
        """Separated objects of a whole array."""
        labels, label_class, groups, _, box = _split_window(
            planes[0],
            planes[2],
            _min_seed_px(min_pixels),
            seed_threshold=self.seed_threshold,
            min_pixels=min_pixels,
        )
        return vectorise_labels(
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

    def window_extractor(
        self,
        scene_shape: tuple[int, int],
        transform: Affine,
        *,
        simplify_px: float,
        min_pixels: int,
    ) -> WindowExtractor:
        """Each cluster, with all its objects, belongs to the core holding its first pixel.

        So each cluster of touching components is read whole, split and simplified once,
        by its owner.
        """
        min_seed = _min_seed_px(min_pixels)

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
            labels, label_class, groups, cut, box = _split_window(
                planes[0],
                planes[2],
                min_seed,
                seed_threshold=self.seed_threshold,
                min_pixels=min_pixels,
                core=local_core,
                read_window=read_window,
                scene_shape=scene_shape,
                earlier=earlier,
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
            return owned, cut

        return extract
