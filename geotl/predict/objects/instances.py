"""``task = "instances"``: touching objects separated by a seeded watershed.

The network gives, per pixel, the class probabilities (softmax over background + classes)
and two sigmoid maps learnt from the label polygons (:mod:`geotl.chips.targets`): the
object **border** and the **contact** zone between touching objects. Per pixel:

* class map and score as for segmentation;
* seed score = P(class) x (1 - P(border)) x (1 - P(contact)): high in object interiors,
  low where objects meet.

Each 4-connected region of a class (a *component*, which may hold several touching objects)
is split on its own: seeds are the connected parts of the component whose seed score reaches
:data:`SEED_THRESHOLD` (at least ``min_seed_px`` pixels), and scikit-image's watershed
grows them over the component, downhill in seed score. A component without a seed stays
one object. Because a component is split from its own pixels only (cut to its bounding
box), the split is the same whatever window it is read from: window-by-window extraction
equals whole-scene extraction as long as every component is read whole, which the halo
loop (:func:`geotl.predict.vectorise.objects_by_windows`) ensures. Memory is bounded as for
segmentation: by the window plus the largest component.

>>> cm = np.zeros((5, 9), dtype=np.uint8); cm[1:4, 1:8] = 1
>>> seed = np.zeros((5, 9), dtype=np.float32); seed[2, 2] = seed[2, 6] = 0.9
>>> labels, classes = split_instances(cm, seed, min_seed_px=1)
>>> labels[2].tolist(), classes
([0, 1, 1, 1, 1, 2, 2, 2, 0], [0, 1, 1])
"""

from __future__ import annotations

import numpy as np
import torch
from affine import Affine
from rasterio.windows import Window
from scipy import ndimage
from skimage.segmentation import watershed

from geotl.predict.objects.base import ObjectExtractor
from geotl.predict.vectorise import (
    NODATA_CLASS,
    VectorObject,
    WindowExtractor,
    class_map_from_foreground,
    vectorise_labels,
)

__all__ = [
    "INSTANCE_CHANNELS",
    "SEED_THRESHOLD",
    "InstanceExtractor",
    "split_component",
    "split_instances",
]

INSTANCE_CHANNELS = ("border", "contact")
"""The extra network outputs of an instance model, after background + classes."""

SEED_THRESHOLD = 0.6  # chosen on the demo plot (docs: BENCHMARKS.md, issue 9 section)
_CROSS = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=bool)


def split_component(mask: np.ndarray, seed: np.ndarray, min_seed_px: int) -> tuple[np.ndarray, int]:
    """Split one connected component into objects: ``(labels 1..n on mask, n)``.

    Args:
        mask: boolean ``(h, w)``, one 4-connected component (cut to its bounding box).
        seed: seed score ``(h, w)``.
        min_seed_px: seeds with fewer pixels are ignored.
    """
    markers, n = ndimage.label(mask & (seed >= SEED_THRESHOLD), structure=_CROSS)
    if n > 0:
        sizes = np.bincount(markers.ravel(), minlength=n + 1)
        keep = sizes >= max(min_seed_px, 1)
        keep[0] = False
        n = int(keep.sum())
        if n > 1:
            lut = np.zeros(keep.size, dtype=np.int32)
            lut[keep] = np.arange(1, n + 1, dtype=np.int32)
            grown = watershed(-seed.astype(np.float64), lut[markers], mask=mask, connectivity=1)
            return grown.astype(np.int32), n
    return mask.astype(np.int32), 1


def _split_window(
    class_map: np.ndarray,
    seed: np.ndarray,
    min_seed_px: int,
    core: Window | None = None,
    cut_edges: tuple[bool, bool, bool, bool] = (False, False, False, False),
) -> tuple[np.ndarray, list[int]] | None:
    """Label objects; only components with a pixel in ``core`` (in the array) when given.

    ``cut_edges`` (top, left, bottom, right): edges of the array that are not scene edges;
    returns None when a component of the core touches one (it may continue outside).
    """
    labels = np.zeros(class_map.shape, dtype=np.int32)
    label_class: list[int] = [0]
    h, w = class_map.shape
    for cls in np.unique(class_map):
        cls_i = int(cls)
        if cls_i in (0, NODATA_CLASS):
            continue
        comp, n = ndimage.label(class_map == cls, structure=_CROSS)
        in_core = np.ones(n + 1, dtype=bool)
        if core is not None:
            in_core[:] = False
            in_core[np.unique(comp[core.toslices()])] = True
        for k, sl in enumerate(ndimage.find_objects(comp), start=1):
            if sl is None or not in_core[k]:
                continue
            top, left, bottom, right = cut_edges
            if (
                (top and sl[0].start == 0)
                or (left and sl[1].start == 0)
                or (bottom and sl[0].stop == h)
                or (right and sl[1].stop == w)
            ):
                return None
            mask = comp[sl] == k
            parts, m = split_component(mask, seed[sl], min_seed_px)
            base = len(label_class) - 1
            view = labels[sl]
            view[mask] = parts[mask] + base
            label_class.extend([cls_i] * m)
    return labels, label_class


def split_instances(
    class_map: np.ndarray, seed: np.ndarray, min_seed_px: int = 4
) -> tuple[np.ndarray, list[int]]:
    """Objects of a whole class map: ``(labels int32 (H, W), class of each label)``.

    Args:
        class_map: ``uint8 (H, W)``, 0 background, 255 no data.
        seed: seed score ``(H, W)``.
        min_seed_px: seeds with fewer pixels are ignored.
    """
    out = _split_window(class_map, seed, min_seed_px)
    assert out is not None
    return out


def _min_seed_px(min_pixels: int) -> int:
    # a seed is an object's interior core, as large as the drop limit (``min_pixels``: half
    # the region's min_area_m2): smaller cores are noise that would split one object in two
    return max(4, min_pixels)


class InstanceExtractor(ObjectExtractor):
    """Softmax classes + sigmoid border/contact; planes: class, score, seed; watershed."""

    planes = 3

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
        logits = logits.float()
        k = self.n_classes + 1
        return torch.cat(
            [torch.softmax(logits[:, :k], dim=1)[:, 1:], torch.sigmoid(logits[:, k:])], 1
        )

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
        labels, label_class = split_instances(
            planes[0].astype(np.uint8), planes[2], _min_seed_px(min_pixels)
        )
        return vectorise_labels(
            labels,
            label_class,
            transform,
            scores=planes[1],
            simplify_px=simplify_px,
            min_pixels=min_pixels,
        )

    def window_extractor(
        self,
        scene_shape: tuple[int, int],
        transform: Affine,
        *,
        simplify_px: float,
        min_pixels: int,
    ) -> WindowExtractor:
        """An object belongs to the core window holding its first pixel."""
        scene_h, scene_w = scene_shape
        min_seed = _min_seed_px(min_pixels)

        def extract(
            planes: np.ndarray,
            read_window: Window,
            core_window: Window,
        ) -> tuple[list[VectorObject], bool]:
            r_row, r_col = read_window.row_off, read_window.col_off
            r_h, r_w = read_window.height, read_window.width
            c_row, c_col = core_window.row_off, core_window.col_off
            c_h, c_w = core_window.height, core_window.width
            local_core = Window(c_col - r_col, c_row - r_row, c_w, c_h)
            cut = (r_row > 0, r_col > 0, r_row + r_h < scene_h, r_col + r_w < scene_w)
            split = _split_window(planes[0].astype(np.uint8), planes[2], min_seed, local_core, cut)
            if split is None:
                return [], False
            labels, label_class = split
            objects = vectorise_labels(
                labels,
                label_class,
                transform,
                scores=planes[1],
                simplify_px=simplify_px,
                min_pixels=min_pixels,
                row_off=r_row,
                col_off=r_col,
            )
            owned = [
                o
                for o in objects
                if c_row <= o.first_px[0] < c_row + c_h and c_col <= o.first_px[1] < c_col + c_w
            ]
            return owned, True

        return extract
