"""The chip index from the cut rows: footprints, guard bands, split checks, metadata."""

from __future__ import annotations

import logging
import os
from collections.abc import Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import numpy.typing as npt
import rasterio.features
from pyproj import Transformer
from shapely.geometry.base import BaseGeometry

from geotl import __version__
from geotl.bands import band_keys
from geotl.chips.boxes import (
    MIN_BOX_PX,
    MIN_VISIBLE_FRACTION,
    flat_boxes,
)
from geotl.chips.cut import ChipRow, _mask_writer, chip_transform
from geotl.chips.guard import GuardChip, GuardReport, apply_guard_bands, guard_boxes
from geotl.chips.labels import (
    IGNORE,
    class_pixel_counts,
)
from geotl.chips.scenes import ChipScene, block_size
from geotl.chips.split import SPLITS, assign_blocks, block_key
from geotl.chips.tiff import ChipTiffWriter
from geotl.config import Region
from geotl.errors import GeotlInputError
from geotl.io.vectors import content_sha256, crs_name, read_labels

log = logging.getLogger(__name__)


COMMON_CRS = "EPSG:4326"


@dataclass(frozen=True)
class ChipSummary:
    """What ``chip_region`` produced."""

    out_dir: Path
    counts: dict[str, int]
    n_objects: int
    n_skipped_nodata: int = 0
    n_skipped_incomplete: int = 0
    n_scenes: int = 0
    n_scenes_too_small: int = 0
    objects_per_split: dict[str, int] = field(default_factory=dict)
    n_small_boxes: int = 0
    pixels_per_split: dict[str, int] = field(default_factory=dict)  # labelled (class) pixels
    # the same per class: {class: {split: pixels}} (in the line when there are several)
    class_pixels_per_split: dict[str, dict[str, int]] = field(default_factory=dict)
    guard: GuardReport = field(default_factory=lambda: GuardReport(guard_px=0))

    @property
    def n_chips(self) -> int:
        """Chips in the index."""
        return sum(self.counts.values())

    def line(self) -> str:
        """The one-line summary printed at the end of ``geotl chip``."""
        per_split = ", ".join(f"{self.counts.get(s, 0)} {s}" for s in SPLITS)
        objects = ", ".join(f"{self.objects_per_split.get(s, 0)} {s}" for s in SPLITS)
        pixels = ", ".join(f"{self.pixels_per_split.get(s, 0)} {s}" for s in SPLITS)
        took = ", ".join(f"{n} {s}" for s, n in sorted(self.guard.object_pixels.items()))
        took_objects = sum(self.guard.object_pixels.values())
        background = self.guard.total_pixels() - took_objects
        text = (
            f"{self.n_chips} chips ({per_split}) from {self.n_scenes} scene(s); "
            f"{self.n_objects} labelled objects ({objects}); object pixels ({pixels}); "
            f"guard bands of {self.guard.guard_px} px took {took_objects} more object pixels"
            + (f" ({took})" if took else "")
            + f" and {background} background pixels"
        )
        if len(self.class_pixels_per_split) > 1:  # a class missing from a split shows
            text += f"; object pixels per class ({' / '.join(SPLITS)}): " + ", ".join(
                f"{c} " + " / ".join(str(by.get(s, 0)) for s in SPLITS)
                for c, by in self.class_pixels_per_split.items()
            )
        skipped = []
        if self.n_skipped_nodata:
            skipped.append(f"{self.n_skipped_nodata} mostly nodata")
        if self.n_skipped_incomplete:
            skipped.append(f"{self.n_skipped_incomplete} outside complete_within")
        if skipped:
            text += "; skipped " + ", ".join(skipped)
        return text


def footprints_common(rows: list[ChipRow], scenes: list[ChipScene]) -> list[BaseGeometry]:
    """Chip footprints in EPSG:4326 (edges densified so reprojection stays faithful)."""
    out: list[BaseGeometry | None] = [None] * len(rows)
    by_scene: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        by_scene.setdefault(r.scene.scene_id, []).append(i)
    for s in scenes:
        idx = by_scene.get(s.scene_id, [])
        if not idx:
            continue
        series = gpd.GeoSeries([rows[i].footprint_native for i in idx], crs=s.info.crs)
        common = series.to_crs(COMMON_CRS).values
        for i, g in zip(idx, common, strict=True):
            out[i] = g
    return [g for g in out if g is not None]


def chip_blocks(rows: list[ChipRow], block_size_m: float) -> list[Hashable]:
    """The spatial block of each chip's centre, in one frame for the whole region.

    Scenes in one CRS are blocked in it. Scenes in several (the same ground delivered in two
    UTM zones, a reprojected copy) are blocked in the first projected one, so the same
    ground falls in the same block, and split, whichever scene it comes from; otherwise
    each scene's ground would be split on its own and the guard bands between them would
    take most of it.
    """
    scenes = {r.scene.scene_id: r.scene for r in rows}
    several = len({s.crs_label for s in scenes.values()}) > 1
    frame = next((s for s in scenes.values() if s.info.crs.is_projected), None) if several else None
    sizes = {k: block_size(frame or s, block_size_m) for k, s in scenes.items()}
    to_frame: dict[str, Transformer] = {}
    keys: list[Hashable] = []
    for r in rows:
        c, label = r.footprint_native.centroid, r.scene.crs_label
        x, y = c.x, c.y
        if frame is not None and label != frame.crs_label:
            if label not in to_frame:
                to_frame[label] = Transformer.from_crs(
                    r.scene.info.crs, frame.info.crs, always_xy=True
                )
            x, y = to_frame[label].transform(x, y)
        keys.append(block_key(frame.crs_label if frame else label, x, y, sizes[r.scene.scene_id]))
    return keys


def guard_bands(
    region: Region,
    rows: list[ChipRow],
    footprints: list[BaseGeometry],
    splits: list[str],
    tmp: Path,
    designated: dict[str, dict[str, list[BaseGeometry]]] | None = None,
    labels: dict[str, gpd.GeoDataFrame] | None = None,
) -> GuardReport:
    """Ignore pixels between splits in the chips' masks (rows' pixel counts updated).

    ``designated``: per scene id, the ``test`` / ``val`` areas in the scene's CRS.
    ``labels``: per scene id, the labels in the scene's CRS (``label_id`` column): a chip's
    objects whose every pixel a band took leave its ``object_ids``, so that the label
    budget never spends an object on a chip that no longer shows it, and the objects per
    split count what each split can learn from or score.
    """
    designated = designated or {}
    chips = [
        GuardChip(
            mask_path=tmp / "masks" / f"{r.chip_id}.tif",
            crs=r.scene.info.crs,
            transform=chip_transform(r.scene.info.transform, r.window),
            width=r.window.width,
            height=r.window.height,
            resolution_m=r.scene.info.resolution_m,
            footprint_native=r.footprint_native,
            areas=designated.get(r.scene.scene_id, {}),
        )
        for r in rows
    ]
    writers: dict[str, ChipTiffWriter] = {}
    shapes = {k: v.set_index("label_id").geometry for k, v in (labels or {}).items()}

    def write(i: int, mask: npt.NDArray[np.uint8], band: npt.NDArray[np.bool_]) -> None:
        r, chip = rows[i], chips[i]
        wkt = r.scene.info.crs.to_wkt()
        if wkt not in writers:
            writers[wkt] = _mask_writer(wkt)
        writers[wkt].write(os.fspath(chip.mask_path), mask, chip.transform)
        r.px = class_pixel_counts(mask, len(region.classes))
        if r.object_ids and labels is not None:
            r.object_ids = objects_left(
                r.object_ids, shapes[r.scene.scene_id], mask, chip.transform
            )
        if r.boxes is not None:
            r.boxes = guard_boxes(r.boxes, band)

    report, _ = apply_guard_bands(chips, footprints, COMMON_CRS, splits, region.guard_px, write)
    return report


def objects_left(
    object_ids: list[int], shapes: gpd.GeoSeries, mask: npt.NDArray[np.uint8], transform: Any
) -> list[int]:
    """The objects of a chip that keep a labelled (not ignore) pixel in its ``mask``.

    ``shapes``: the labels' geometries in the chip's CRS, indexed by ``label_id``.
    """
    kept = []
    for i in object_ids:
        if i not in shapes.index:
            kept.append(i)
            continue
        inside = rasterio.features.geometry_mask(
            list(shapes.loc[[i]]),
            out_shape=mask.shape,
            transform=transform,
            invert=True,
            all_touched=True,
        )
        if (mask[inside] != IGNORE).any():
            kept.append(i)
    return kept


def check_split(
    region: Region,
    rows: list[ChipRow],
    splits: list[str],
    objects_per_split: dict[str, int],
    pixels_per_split: dict[str, int],
    guard: GuardReport,
) -> str | None:
    """Advice when the split leaves training nothing (logged; ``geotl train`` raises it).

    Regions with designated areas (``test_within`` / ``val_within``) may be chipped for
    evaluation only; a region without any labelled object is left to training to report.
    """
    if any(r.forced for r in rows) or not any(objects_per_split.values()):
        return None
    if objects_per_split.get("train", 0) and pixels_per_split.get("train", 0):
        # a split with designated areas has no random share (pipeline says when none hit)
        fractions = {
            "val": 0.0 if region.split.val_within else region.split.val_fraction,
            "test": 0.0 if region.split.test_within else region.split.test_fraction,
        }
        empty = [s for s, f in fractions.items() if f > 0 and not objects_per_split.get(s, 0)]
        if empty:  # training can go on, but validation or evaluation would score nothing
            log.warning(
                "%s: the split left no labelled object in %s (objects per split %s): %s",
                region.path,
                " or ".join(empty),
                objects_per_split,
                _split_advice(region, rows),
            )
        guarded = [
            s
            for s, f in fractions.items()
            if f > 0 and objects_per_split.get(s, 0) and not pixels_per_split.get(s, 0)
        ]
        if guarded:  # objects there, but the bands between splits took all their pixels
            log.warning(
                "%s: %s (objects per split %s)",
                region.path,
                _guard_advice(guard, " and ".join(guarded)),
                objects_per_split,
            )
        return None
    if objects_per_split.get("train", 0):
        advice = _guard_advice(guard, "the train split")
    else:
        n_train = sum(1 for s in splits if s == "train")
        advice = (
            f"the split left no labelled object in train ({n_train} of {len(rows)} chips; "
            f"objects per split {objects_per_split}): {_split_advice(region, rows)}"
        )
    log.warning("%s: %s", region.path, advice)
    return advice


def _guard_advice(guard: GuardReport, what: str) -> str:
    """Guard bands took every object pixel of ``what``: the narrower band that keeps some."""
    return (
        f"the guard bands ([split] guard_px = {guard.guard_px}) took every object pixel of "
        f"{what}: set guard_px = {guard.guard_px // 4} or raise block_size_m"
    )


def _split_advice(region: Region, rows: list[ChipRow]) -> str:
    """Settings that give train, val and test labelled chips here, found by trying them."""
    split = region.split
    chip_m = region.chips.size_px * max(r.scene.info.resolution_m for r in rows)
    has_objects = [bool(r.object_ids) for r in rows]
    n = len(rows)
    fractions = list(
        dict.fromkeys(
            [
                (split.val_fraction, split.test_fraction),
                (min(split.val_fraction, 0.1), min(split.test_fraction, 0.1)),
                (min(split.val_fraction, 1 / n), min(split.test_fraction, 1 / n)),
            ]
        )
    )
    for seed in range(split.seed, split.seed + 20):
        for block_m in (split.block_size_m, chip_m):
            blocks = chip_blocks(rows, block_m)
            for val, test in fractions:
                got = assign_blocks(blocks, [None] * n, val, test, seed)
                if all(
                    any(s == want and o for s, o in zip(got, has_objects, strict=True))
                    for want, frac in (("train", 1.0), ("val", val), ("test", test))
                    if frac > 0
                ):
                    return (
                        f"use [split] block_size_m = {block_m:g}, val_fraction = {val:.3g}, "
                        f"test_fraction = {test:.3g}, seed = {seed} (one chip is {chip_m:g} m)"
                    )
    return (
        "the region is too small for a train/val/test split: add labels, or set val_fraction "
        f"= 0 and test_fraction = 0 ({n} chips of {chip_m:g} m)"
    )


def index_frame(
    region: Region,
    rows: list[ChipRow],
    footprints: list[BaseGeometry],
    splits: list[str],
) -> gpd.GeoDataFrame:
    """The chip index: one row per chip (split, footprint, pixel counts, objects, boxes)."""
    keep = range(len(rows))
    cols: dict[str, list[Any]] = {
        "chip_id": [],
        "scene": [],
        "scene_crs": [],
        "row_off": [],
        "col_off": [],
        "height": [],
        "width": [],
        "split": [],
        "image": [],
        "mask": [],
        "resolution_m": [],
        "nodata_fraction": [],
        "px_background": [],
        **{f"px_{c}": [] for c in region.classes},
        "px_ignore": [],
        "n_objects": [],
        "object_ids": [],
        # object boxes in chip pixels, flat [x0, y0, x1, y1, ...] (geotl.chips.boxes)
        "boxes": [],
        "box_classes": [],
        "box_object_ids": [],
        "ignore_boxes": [],
    }
    for i in keep:
        r = rows[i]
        cols["chip_id"].append(r.chip_id)
        cols["scene"].append(str(r.scene.info.path))
        cols["scene_crs"].append(r.scene.crs_label)
        cols["row_off"].append(r.window.row_off)
        cols["col_off"].append(r.window.col_off)
        cols["height"].append(r.window.height)
        cols["width"].append(r.window.width)
        cols["split"].append(splits[i])
        cols["image"].append(f"images/{r.chip_id}.tif")
        cols["mask"].append(f"masks/{r.chip_id}.tif")
        cols["resolution_m"].append(r.scene.info.resolution_m)
        cols["nodata_fraction"].append(r.nodata_fraction)
        cols["px_background"].append(r.px[0])
        for k, c in enumerate(region.classes):
            cols[f"px_{c}"].append(r.px[k + 1])
        cols["px_ignore"].append(r.px[-1])
        cols["n_objects"].append(len(r.object_ids))
        cols["object_ids"].append(r.object_ids)
        cb = r.boxes
        cols["boxes"].append(flat_boxes(cb.boxes) if cb is not None else [])
        cols["box_classes"].append(cb.classes.tolist() if cb is not None else [])
        cols["box_object_ids"].append(cb.object_ids.tolist() if cb is not None else [])
        cols["ignore_boxes"].append(flat_boxes(cb.ignore) if cb is not None else [])
    frame = gpd.GeoDataFrame(
        cols, geometry=gpd.GeoSeries([footprints[i] for i in keep], crs=COMMON_CRS)
    )
    for c in ("row_off", "col_off", "height", "width", "px_background", "px_ignore", "n_objects"):
        frame[c] = frame[c].astype("int64")
    for c in region.classes:
        frame[f"px_{c}"] = frame[f"px_{c}"].astype("int64")
    return frame


def chipset_meta(
    region: Region,
    scenes: list[ChipScene],
    frame: gpd.GeoDataFrame,
    summary: ChipSummary,
    labels: gpd.GeoDataFrame,
) -> dict[str, Any]:
    """``chipset.json``: how the chips were made (region, scenes, labels, split, summary)."""
    assert region.labels is not None
    per_scene = frame["scene"].value_counts().to_dict()
    return {
        "geotl_version": __version__,
        "region": region.name,
        "region_path": str(region.path),
        "task": region.task,
        "classes": list(region.classes),
        "mask_values": {
            "0": "background",
            **{str(i + 1): c for i, c in enumerate(region.classes)},
            str(IGNORE): "ignore",
        },
        "bands": list(region.imagery.bands),
        "size_px": region.chips.size_px,
        "stride_px": region.chips.stride,
        "max_nodata_fraction": region.chips.max_nodata_fraction,
        "labels": {
            "path": str(region.labels_path()),
            "class_field": region.labels.class_field,
            "class_map": region.labels.class_map,
            "unmapped": region.labels.unmapped,
            "crs": region.labels.crs,
            "complete_within": region.labels.complete_within,
            "layer": region.labels.layer,
            "point_box_m": region.labels.point_box_m,
        },
        "split": {"method": "spatial blocks + guard bands", **split_settings(region)},
        INPUTS_KEY: label_inputs(region),
        LABEL_READING_KEY: LABEL_READING,
        CUT_RULES_KEY: CUT_RULES,
        "counts": {
            **summary.counts,
            "guard": {
                "chips": summary.guard.chips,
                "pixels": summary.guard.pixels,
                "object_pixels": summary.guard.object_pixels,
            },
            "pixels_per_split": summary.pixels_per_split,
            "pixels_per_class_per_split": summary.class_pixels_per_split,
            "skipped_nodata": summary.n_skipped_nodata,
            "skipped_incomplete": summary.n_skipped_incomplete,
            "objects": summary.n_objects,
            "objects_per_split": summary.objects_per_split,
            "labels_repaired": int(labels.attrs.get("n_repaired", 0)),
            "labels_unmapped_skipped": int(labels.attrs.get("n_unmapped", 0)),
            "labels_ignored": int(labels.attrs.get("n_dropped", 0)),
            "boxes_too_small": summary.n_small_boxes,
        },
        "boxes": {
            "units": "chip pixels, flat [x0, y0, x1, y1, ...], origin the chip's top-left corner",
            "rule": (
                "an object cut by the chip edge keeps its clipped box when at least "
                f"{MIN_VISIBLE_FRACTION:g} of its box area is inside the chip; otherwise the "
                "clipped part is an ignore box (no loss there)"
            ),
            "min_visible_fraction": MIN_VISIBLE_FRACTION,
            "min_box_px": MIN_BOX_PX,
        },
        "scenes": [
            {
                "path": str(s.info.path),
                "scene_id": s.scene_id,
                "crs": crs_name(s.info.crs),
                "width": s.info.width,
                "height": s.info.height,
                "dtype": s.info.dtype,
                "nodata": s.nodata,
                "resolution_m": s.info.resolution_m,
                "pixel_aspect": round(s.info.pixel_aspect, 4),
                "lossy": list(s.info.lossy),
                "chips": int(per_scene.get(str(s.info.path), 0)),
            }
            for s in scenes
        ],
    }


def label_inputs(region: Region) -> dict[str, str]:
    """Digest of each label file the chips' masks and split follow, by its role.

    ``labels``, ``complete_within``, ``test_within``, ``val_within`` (those the region
    names and that exist). The digest is of the features a file holds
    (:func:`geotl.io.vectors.content_sha256`), not of its bytes: a GeoPackage written again
    with the same features has other bytes (its time stamps) and the same digest. Chips
    whose files changed since (``geotl suggest --append-to`` grows ``complete_within``)
    hold stale masks: :func:`stale_reason` compares these.
    """
    assert region.labels is not None
    roles = {
        "labels": region.labels.path,
        "complete_within": region.labels.complete_within,
        "test_within": region.split.test_within,
        "val_within": region.split.val_within,
    }
    out = {}
    for role, rel in roles.items():
        if not rel or "://" in str(rel) or str(rel).startswith("/vsi"):
            continue
        path = region.resolve(rel)
        if path.is_file():
            out[role] = content_sha256(path)
    return out


#: chipset.json's record of :func:`label_inputs` (``inputs_sha256`` held bytes' digests)
INPUTS_KEY = "inputs_content_sha256"
#: how label files are read into objects, recorded in chipset.json (absent: 1). 2: each part
#: of a multi-part feature is an object of its own (:func:`geotl.io.vectors.read_labels`);
#: 3: part j >= 1 of the feature at position i is object ``j * n_features + i``, the same
#: whether the whole file or only the scenes' part of it is read (2 numbered them on from
#: the features read)
LABEL_READING_KEY = "label_reading"
LABEL_READING = 3
#: how the split and the chips' objects were made, recorded in chipset.json. 2: scenes in
#: several CRSs are blocked in one frame (the same ground falls in one split whichever scene
#: shows it; each CRS was split on its own before), and a chip's ``object_ids`` leave the
#: objects its guard bands hid wholly (before, a label budget spent labels on them and the
#: card counted them). Chips without the key: see :func:`cut_rules`
CUT_RULES_KEY = "cut_rules"
CUT_RULES = 2


def stale_reason(region: Region, meta: dict[str, Any], *, named_since: bool = True) -> str | None:
    """Why chips (their ``chipset.json`` ``meta``) no longer fit ``region``, or None.

    Chips follow the label, ``complete_within``, ``test_within`` and ``val_within`` files
    and the ``[chips]`` / ``[split]`` settings they were cut with; an edit since (``geotl
    suggest --append-to`` grows ``complete_within``) leaves their masks or split stale.

    Args:
        region: the region the chips are for, as its file reads now.
        meta: the chips' ``chipset.json`` record.
        named_since: a file named or dropped in the region since counts too (where stale
            chips are cut again); without it only files edited since (where ``--chips`` is
            refused).
    """
    cut_px = meta.get("size_px")
    if cut_px is not None and int(cut_px) != region.chips.size_px:
        return f"cut at {cut_px} px, the region has [chips] size_px = {region.chips.size_px}"
    cut_bands = meta.get("bands")
    if cut_bands is not None and band_keys(cut_bands) != band_keys(region.imagery.bands):
        # the chips' bands stay in file order under their old names: a model trained on them
        # would take the file's bands in the old meaning, and the region's in the new
        return (
            f"cut with [imagery] bands = {list(cut_bands)}, the region has "
            f"{list(region.imagery.bands)}"
        )
    cut_classes = meta.get("classes")
    added = [c for c in region.classes if cut_classes is not None and c not in cut_classes]
    if added:
        return f"cut without the class(es) {added} the region lists now"
    cut_labels = meta.get("labels") or {}
    for key in _LABEL_SETTINGS if region.labels is not None else ():
        if key in cut_labels and cut_labels[key] != getattr(region.labels, key):
            return (
                f"cut with [labels] {key} = {cut_labels[key]!r}, the region has "
                f"{getattr(region.labels, key)!r}"
            )
    cut = meta.get("split", {})
    differ = [
        f"{k} = {cut[k]!r} there, {v!r} now"
        for k, v in split_settings(region).items()
        if k in cut and cut[k] != v
    ]
    if differ:
        return f"cut with another [split] ({'; '.join(differ)})"
    reading = int(meta.get(LABEL_READING_KEY, 1))
    if reading < LABEL_READING and region.labels is not None:
        split = _multipart_features(region)
        if split:
            how = (
                "read each of them as one object (now one object per part)"
                if reading < 2
                else "numbered their parts otherwise (the ids a label budget draws by)"
            )
            return (
                f"cut by an earlier geotl, which, of the {split} multi-part label feature(s), {how}"
            )
    if cut_rules(meta) < CUT_RULES and (earlier := _earlier_cut(meta)) is not None:
        return f"cut by an earlier geotl, {earlier}"
    was = meta.get(INPUTS_KEY) or {}
    if was and region.labels is not None:
        now = label_inputs(region)
        # a file named, edited or dropped since (each changes the masks)
        roles = {**was, **now} if named_since else {r: 0 for r in was if r in now}
        changed = [role for role in roles if was.get(role) != now.get(role)]
        if changed:
            return f"the region's {' and '.join(changed)} file changed after they were cut"
    return None


def cut_rules(meta: dict[str, Any]) -> int:
    """The :data:`CUT_RULES` a ``chipset.json`` (``meta``) was cut by.

    Chips cut before the key was recorded are 2 when they record what only chips cut since
    rule 2 do (the guard bands' ``object_pixels``, :data:`LABEL_READING_KEY` or
    :data:`INPUTS_KEY`), else 1 (chips cut in the half hour between rule 2 and the first of
    those count as 1: chipped again, never used wrongly).

    >>> cut_rules({"cut_rules": 2}), cut_rules({"counts": {"guard": {"chips": {}}}})
    (2, 1)
    >>> cut_rules({"counts": {"guard": {"object_pixels": {"train": 10}}}})
    2
    """
    if CUT_RULES_KEY in meta:
        return int(meta[CUT_RULES_KEY])
    guard = (meta.get("counts") or {}).get("guard") or {}
    later = "object_pixels" in guard or LABEL_READING_KEY in meta or INPUTS_KEY in meta
    return 2 if later else 1


def _earlier_cut(meta: dict[str, Any]) -> str | None:
    """What chips of rule 1 (``meta``) hold that rule 2 would not, or None (nothing differs).

    The split differs only where the scenes are in several CRSs; the objects only where the
    guard bands took pixels from a chip.
    """
    crss = {str(s.get("crs")) for s in meta.get("scenes") or []}
    if len(crss) > 1:
        return (
            f"which split the scenes of each of their {len(crss)} CRSs on their own (the same "
            "ground could be in two splits)"
        )
    guard = ((meta.get("counts") or {}).get("guard") or {}).get("chips") or {}
    if any(int(n) for n in guard.values()):
        return (
            "whose chips beside the guard bands list objects the bands hid wholly (a label "
            "budget would spend labels on them, and the model card count them)"
        )
    return None


def _multipart_features(region: Region) -> int:
    """How many of the region's label features are read as several objects (0: unreadable)."""
    try:
        return int(read_labels(region).attrs.get("n_split", 0))
    except GeotlInputError:
        return 0  # a label file gone or broken: chipping again says so


#: ``[labels]`` settings that decide the masks (recorded in chipset.json's ``labels``)
_LABEL_SETTINGS = ("class_field", "class_map", "unmapped", "crs", "layer", "point_box_m")


def split_settings(region: Region) -> dict[str, Any]:
    """The region's settings that decide its split (``chipset.json``'s ``split``)."""
    return {
        "block_size_m": region.split.block_size_m,
        "val_fraction": region.split.val_fraction,
        "test_fraction": region.split.test_fraction,
        "seed": region.split.seed,
        "test_within": region.split.test_within,
        "val_within": region.split.val_within,
        "guard_px": region.guard_px,
    }
