"""Training data: chips folders, the label budget, normalisation and batches.

- **Label budget** (``max_labels``): whole labelled objects are sampled from the train
  split only, by a seeded permutation of their label ids. Training uses the chips that
  hold a sampled object; inside them, pixels of *unsampled* objects are set to ignore
  (255), so the model never learns from a label outside the budget and never learns
  "background" where an unsampled object lies. Chips without any object (pure background)
  are kept, at most as many as there are object chips, chosen by the same seed.
- **Normalisation**: per-band mean/std of the selected training chips, in the files' raw
  units (nodata excluded), stored in the card. Base recipes assume units (ImageNet 0-255,
  Sentinel-2 reflectance x 10000...) a region's files rarely share; re-estimating the
  mean/std on the target keeps the recipe's form (standardised inputs) with the target's
  own statistics.
- **Class prior**: a label budget shifts the classes' balance: pixels of unsampled objects
  are ignore while the background around them stays labelled (Sentinel-2 fields at 10 of
  82 objects: 5 % of the labelled train pixels are field, 55 % of the val pixels).
  :func:`prior_offsets` gives the logit offsets that correct it in the loss (logit
  adjustment, Menon et al., ICLR 2021), so the model's probabilities follow the val chips'
  balance, which no budget thins.
- **Several regions**: each region's chips are sampled with equal total weight.
- **Random windows**: training batches hold whole chips; :mod:`geotl.train.augment`
  cuts a fresh random window out of each on the device, every step.
- **Several devices**: every process draws the same seeded sequence of chips and takes its
  rank's slice of each step's batch (:class:`BatchShare`), so N processes see exactly the
  chips one process would, each step's batch split N ways.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import rasterio
import rasterio.features
import torch
from rasterio.errors import RasterioIOError
from torch.utils.data import DataLoader, Sampler, WeightedRandomSampler

from geotl.bands import canonical_band
from geotl.chips import ChipIndex, chip_region, read_chip_index
from geotl.chips.assemble import stale_reason
from geotl.chips.boxes import ChipBoxes, index_boxes
from geotl.chips.labels import IGNORE
from geotl.config import Region
from geotl.errors import BandMismatchError, GeotlInputError, LabelError, RasterError
from geotl.io.nodata import valid_mask
from geotl.io.rasters import open_raster
from geotl.io.vectors import chip_areas, label_key, read_labels
from geotl.models.artefact import Normalisation, RegionRecord

__all__ = [
    "BandSums",
    "Batch",
    "BatchShare",
    "ChipData",
    "ChipDataset",
    "TrainingSets",
    "band_sums",
    "class_shares",
    "compute_normalisation",
    "labels_available",
    "load_refit_sets",
    "load_region_chips",
    "load_training_sets",
    "make_loader",
    "normalise",
    "pooled_normalisation",
    "prior_offsets",
    "resolve_chips_dir",
    "select_objects",
    "share_budget",
    "split_budget",
]

log = logging.getLogger(__name__)

# (raw image, mask with 255 ignore, pixel-has-data, object boxes or None) of a batch of chips
Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[ChipBoxes] | None]


@dataclass
class ChipData:
    """One region's training or validation chips, in memory (raw units)."""

    region: str
    # (N, C, H, W) raw units in the chip files' dtype (uint8 imagery: 1 byte a value, not
    # 4); whoever computes with them casts (nodata pixels are zeroed after normalising)
    images: np.ndarray
    masks: np.ndarray  # (N, H, W) uint8, 255 ignore
    valid: np.ndarray  # (N, H, W) bool, pixel has data
    chip_ids: list[str] = field(default_factory=list)
    boxes: list[ChipBoxes] | None = None  # per chip: object boxes (chip index), for detection

    def __len__(self) -> int:
        return int(self.images.shape[0])


def resolve_chips_dir(
    region: Region, chips_dir: Path | None, default: Path, overwrite: bool
) -> Path:
    """The chips folder for ``region``: given, or created by chipping into ``default``.

    Raises:
        GeotlInputError: the given folder is missing or holds chips of another region.
    """
    if chips_dir is None:
        log.info("chipping %s into %s", region.name, default)
        chip_region(region, default, overwrite=overwrite)
        chips_dir = default
    if not Path(chips_dir).is_dir():
        raise GeotlInputError(
            "chips folder not found: run 'geotl chip REGION.toml --out DIR' or drop --chips",
            chips_dir,
        )
    index = read_chip_index(chips_dir)
    name = index.meta.get("region")
    if name != region.name:
        raise GeotlInputError(
            f"chips were cut for region '{name}', not '{region.name}': pass the chips of this region "
            "or drop --chips to chip it",
            chips_dir,
        )
    # cut at another size, with another [split], or before a label or area file changed:
    # their masks and split follow the old ones (suggest --append-to grows complete_within)
    why = stale_reason(region, index.meta, named_since=False)
    if why is not None:
        raise GeotlInputError(
            f"these chips no longer fit {region.path.name}: {why}: chip again (geotl chip "
            "--overwrite) or drop --chips",
            chips_dir,
        )
    return Path(chips_dir)


def select_objects(
    object_ids: list[list[int]],
    max_labels: int | None,
    seed: int,
    object_class: dict[int, str] | None = None,
) -> set[int]:
    """Sample whole objects deterministically: the first ``max_labels`` of a seeded permutation.

    With ``object_class`` (each object's class) and a budget of at least as many objects
    as there are classes, every class keeps at least one object: a class of 5 % of the
    objects would be left out of a 10-label draw about 60 % of the time, and the model
    would never see it. A missing class takes the place of the last drawn object of the
    class drawn most; one class (or no classes) gives exactly the plain draw.

    >>> sorted(select_objects([[1, 2], [2, 3], []], None, 0))
    [1, 2, 3]
    >>> len(select_objects([[1, 2], [2, 3], [4]], 2, 0))
    2
    >>> kinds = {i: "tree" for i in range(1, 20)} | {20: "snag"}
    >>> "snag" in {kinds[i] for i in select_objects([list(range(1, 21))], 2, 0, kinds)}
    True
    """
    ids = sorted({int(i) for ids in object_ids for i in ids})
    if max_labels is None or max_labels >= len(ids):
        return set(ids)
    order = [ids[i] for i in np.random.default_rng(seed).permutation(len(ids))]
    chosen = order[:max_labels]
    if object_class is None:
        return set(chosen)
    classes = {object_class.get(i) for i in ids}
    if len(classes) < 2 or len(classes) > max_labels:
        return set(chosen)
    drawn = [object_class.get(j) for j in chosen]
    missing = classes - set(drawn)
    for i in order[max_labels:]:
        if not missing:
            break
        kind = object_class.get(i)
        if kind not in missing:
            continue
        # more draws than classes: the class drawn most has two or more, so none goes missing
        most = max(set(drawn), key=lambda c: (drawn.count(c), str(c)))
        last = max(k for k, c in enumerate(drawn) if c == most)
        chosen[last], drawn[last] = i, kind
        missing.discard(kind)
    return set(chosen)


def object_classes(region: Region, index: ChipIndex | None = None) -> dict[int, str] | None:
    """Each labelled object's class (by ``label_id``), for a region of several classes.

    The chips were checked against the label file (:func:`stale_reason`), so their object
    ids are this file's ``label_id``. None for a region of one class: nothing to balance.
    With ``index``, only the labels over its chips are read (a national layer's others
    are never in them).
    """
    if len(region.classes) < 2 or region.labels is None:
        return None
    labels = read_labels(region, within=chip_areas(index.frame) if index is not None else None)
    return dict(
        zip(labels["label_id"].astype(int).tolist(), labels["class"].astype(str), strict=True)
    )


def labels_available(chips_dir: Path, split: str) -> int:
    """Number of distinct labelled objects in one split of a chips folder."""
    return len(_objects(read_chip_index(chips_dir), (split,)))


def _objects(index: ChipIndex, splits: tuple[str, ...]) -> set[int]:
    """The distinct labelled objects of these splits of a chip index."""
    return {int(i) for s in splits for ids in index.split(s)["object_ids"] for i in ids}


def _even_shares(total: int, n: int) -> list[int]:
    """``total`` in ``n`` near-equal whole shares, the remainder to the first ones."""
    return [total // n + (1 if i < total % n else 0) for i in range(n)]


def split_budget(max_labels: int | None, n: int) -> list[int | None]:
    """The total label budget shared evenly between regions (remainder to the first ones).

    >>> split_budget(7, 2)
    [4, 3]
    """
    if max_labels is None:
        return [None] * n
    if max_labels < n:
        raise GeotlInputError(f"--max-labels {max_labels} is below the number of regions ({n})")
    return list(_even_shares(max_labels, n))


def share_budget(max_labels: int | None, available: list[int]) -> list[int | None]:
    """The label budget shared evenly between regions, none given more than it has.

    What a region cannot use goes to the others, so the regions together use
    ``max_labels`` objects whenever they hold that many.

    >>> share_budget(40, [39, 10])
    [30, 10]
    >>> share_budget(7, [9, 9])
    [4, 3]
    """
    shares = split_budget(max_labels, len(available))  # refuses fewer labels than regions
    if max_labels is None:
        return shares
    got = [0] * len(available)
    left = max_labels
    open_ = [i for i, a in enumerate(available) if a > 0]
    while left > 0 and open_:
        for i, e in zip(open_, _even_shares(left, len(open_)), strict=True):
            give = min(e, available[i] - got[i])
            got[i] += give
            left -= give
        open_ = [i for i in open_ if got[i] < available[i]]
    return list(got)


def class_shares(datasets: list[ChipData], num_classes: int) -> np.ndarray | None:
    """Each class's share of the labelled pixels, every region weighted equally.

    Masks hold class indexes (0 background), 255 ignore; None when no pixel is labelled.

    >>> d = ChipData("r", np.zeros((1, 1, 1, 4), np.float32),
    ...              np.array([[[0, 1, 1, 255]]], np.uint8), np.ones((1, 1, 4), bool), ["c"])
    >>> class_shares([d], 2).round(3).tolist()
    [0.333, 0.667]
    """
    shares = []
    for d in datasets:
        counts = np.zeros(num_classes, np.int64)
        for m in d.masks:  # chip by chip: no copy of a large region's masks
            counts += np.bincount(m.ravel(), minlength=256)[:num_classes]
        if counts.sum():
            shares.append(counts / counts.sum())
    return np.mean(shares, axis=0) if shares else None


def prior_offsets(train: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Logit offsets ``log(train share) - log(target share)`` per class, 0 where one is 0.

    Added to the logits in the training loss, they let the network's own logits model the
    target balance (logit adjustment). A class missing from either set gives no evidence
    of a shift and keeps offset 0.

    >>> prior_offsets(np.array([0.95, 0.05]), np.array([0.45, 0.55])).round(2).tolist()
    [0.75, -2.4]
    """
    seen = (train > 0) & (target > 0)
    out = np.zeros(len(train))
    out[seen] = np.log(train[seen]) - np.log(target[seen])
    return out


def _read_chip(
    chips_dir: Path, name: str, region: Region
) -> tuple[np.ndarray, Any, Any, float | None]:
    """A chip's pixels and grid; a missing or damaged chip is an input error saying to chip again.

    Every rank of a ``--devices N`` run loads every chip before training: without this, one
    bad chip file ended the run with a rasterio traceback (exit 1) instead of one line.
    """
    path = chips_dir / name
    try:
        with open_raster(path) as src:
            return src.read(), src.transform, src.crs, src.nodata
    except (RasterError, RasterioIOError) as exc:
        why = "damaged or cut short" if path.exists() else "missing"  # -v shows GDAL's words
        raise RasterError(
            f"chip {why}: cut the chips again (geotl chip {region.path.name} "
            f"--out {chips_dir} --overwrite) or drop --chips",
            path,
        ) from exc


def load_region_chips(
    region: Region,
    chips_dir: Path,
    split: str,
    band_order: list[str],
    sampled: set[int] | None = None,
    seed: int = 0,
) -> ChipData:
    """Load a split's chips into memory, bands reordered to ``band_order``.

    With ``sampled`` (train split under a label budget): keep chips holding a sampled
    object (pixels of unsampled objects -> ignore) plus at most as many object-free chips.
    """
    index = read_chip_index(chips_dir)
    frame = index.split(split).sort_values("chip_id")
    chip_bands = [canonical_band(b) for b in index.meta.get("bands", region.imagery.bands)]
    want = [canonical_band(b) for b in band_order]
    missing = [b for b in want if b not in chip_bands]
    if missing:
        raise BandMismatchError(
            f"chips of {region.name} have bands {chip_bands}, the model needs {want}: chip the region "
            "with matching [imagery] bands",
            chips_dir,
        )
    order = [chip_bands.index(b) for b in want]
    rows = list(frame.itertuples(index=False))
    unsampled_by_chip: dict[str, list[int]] = {}
    if sampled is not None:
        with_obj = [
            r for r in rows if len(r.object_ids) and any(int(i) in sampled for i in r.object_ids)
        ]
        empty = [r for r in rows if not len(r.object_ids)]
        rng = np.random.default_rng(seed + 1)
        keep_empty = [empty[i] for i in sorted(rng.permutation(len(empty))[: len(with_obj)])]
        rows = sorted(with_obj + keep_empty, key=lambda r: r.chip_id)
        for r in with_obj:
            unsampled = [int(i) for i in r.object_ids if int(i) not in sampled]
            if unsampled:
                unsampled_by_chip[r.chip_id] = unsampled
    labels_by_crs: dict[tuple[str, float | None], Any] = {}
    within = chip_areas(frame) if unsampled_by_chip else None  # only these chips' labels
    masks, valids, ids = [], [], []
    class_names = list(index.meta.get("classes", region.classes))
    boxes = None
    if "boxes" in frame.columns and rows:
        # unsampled objects' boxes become ignore boxes, as their pixels become ignore
        box_rows = frame.set_index("chip_id").loc[[str(r.chip_id) for r in rows]]
        boxes = index_boxes(box_rows, class_names, list(region.classes), sampled)
    remap = _class_remap(class_names, region.classes)
    stacked: np.ndarray | None = None  # filled chip by chip: no list of copies to stack
    for k, r in enumerate(rows):
        img, transform, crs, nodata = _read_chip(chips_dir, str(r.image), region)
        mask = _read_chip(chips_dir, str(r.mask), region)[0][0].astype(np.uint8)
        mask = remap[mask]
        valid = valid_mask(img, nodata)
        mask[~valid] = IGNORE
        extra = unsampled_by_chip.get(r.chip_id)
        if extra and sampled is not None:
            key = label_key(crs, rasterio.transform.array_bounds(*mask.shape, transform))
            if key not in labels_by_crs:
                labels_by_crs[key] = read_labels(region, crs, key[1], within=within).set_index(
                    "label_id"
                )
            labels = labels_by_crs[key]
            sampled_ids = [int(i) for i in r.object_ids if int(i) in sampled]
            drop = rasterio.features.geometry_mask(
                list(labels.loc[labels.index.intersection(extra)].geometry),
                out_shape=mask.shape,
                transform=transform,
                invert=True,
                all_touched=True,
            )
            keep = rasterio.features.geometry_mask(
                list(labels.loc[labels.index.intersection(sampled_ids)].geometry),
                out_shape=mask.shape,
                transform=transform,
                invert=True,
            )
            mask[drop & ~keep] = IGNORE
        chip = img[order]
        if stacked is None:
            stacked = np.empty((len(rows), *chip.shape), chip.dtype)
        elif chip.dtype != stacked.dtype:  # scenes of other dtypes in one region
            stacked = stacked.astype(np.result_type(stacked.dtype, chip.dtype))
        stacked[k] = chip
        masks.append(mask)
        valids.append(valid)
        ids.append(str(r.chip_id))
    if stacked is None:
        c = len(want)
        size = int(index.meta.get("size_px", region.chips.size_px))
        return ChipData(
            region.name,
            np.zeros((0, c, size, size), np.float32),
            np.zeros((0, size, size), np.uint8),
            np.zeros((0, size, size), bool),
            [],
        )
    return ChipData(region.name, stacked, np.stack(masks), np.stack(valids), ids, boxes)


def _class_remap(chip_classes: list[str], classes: list[str]) -> np.ndarray:
    """Lookup table from chip mask values to the model's class indices (by name)."""
    table = np.full(256, IGNORE, dtype=np.uint8)
    table[0] = 0
    for i, name in enumerate(chip_classes, start=1):
        table[i] = classes.index(name) + 1 if name in classes else IGNORE
    return table


@dataclass(frozen=True)
class BandSums:
    """Per-band sums of the valid pixels of some chips: they add up over regions.

    >>> a = BandSums(np.array([4.0]), np.array([10.0]), 2)  # pixels 1 and 3
    >>> (a + BandSums(np.array([4.0]), np.array([10.0]), 2)).normalisation()
    Normalisation(mean=[2.0], std=[1.0])
    """

    total: np.ndarray  # (C,) float64
    squares: np.ndarray  # (C,) float64
    count: int

    def __add__(self, other: BandSums) -> BandSums:
        return BandSums(
            self.total + other.total, self.squares + other.squares, self.count + other.count
        )

    @property
    def mean(self) -> list[float]:
        """Per-band mean (raw units)."""
        return [float(v) for v in self.total / max(1, self.count)]

    def normalisation(self) -> Normalisation:
        """Per-band mean and standard deviation (1 where a band is constant).

        Raises:
            LabelError: no valid pixel at all.
        """
        if self.count == 0:
            raise LabelError("no valid training pixel: the chips are all nodata")
        mean = self.total / self.count
        std = np.sqrt(np.maximum(self.squares / self.count - mean**2, 0.0))
        std = np.where(std < 1e-6, 1.0, std)
        return Normalisation(mean=[float(v) for v in mean], std=[float(v) for v in std])


def band_sums(data: ChipData) -> BandSums:
    """:class:`BandSums` of one set of chips, read chip by chip.

    One chip's valid pixels at a time in float64, never a copy of the whole set (a region
    of 3,000 chips of 4 x 256 x 256 px is 3 GB of float32; whole-set copies in float64
    would need two more of 6 GB each).
    """
    c = int(data.images.shape[1])
    total, squares, count = np.zeros(c), np.zeros(c), 0
    for image, valid in zip(data.images, data.valid, strict=True):
        x = image[:, valid].astype(np.float64)  # (C, n_valid)
        total += x.sum(axis=1)
        squares += np.einsum("ij,ij->i", x, x)
        count += x.shape[1]
    return BandSums(total, squares, count)


def pooled_normalisation(sums: list[BandSums]) -> Normalisation:
    """The normalisation of all the chips that ``sums`` summed.

    Raises:
        LabelError: no valid pixel at all.
    """
    pooled = sums[0] if sums else BandSums(np.zeros(0), np.zeros(0), 0)
    for more in sums[1:]:
        pooled = pooled + more
    return pooled.normalisation()


def normalise(
    x: torch.Tensor, valid: torch.Tensor, mean: torch.Tensor, std: torch.Tensor
) -> torch.Tensor:
    """Raw ``(B, C, H, W)`` to the network's input: ``(x - mean) / std``, nodata pixels 0.

    ``mean`` and ``std`` broadcast over ``x`` (shape ``(1, C, 1, 1)``); ``valid`` is
    ``(B, H, W)``.
    """
    x = (x.float() - mean) / std
    return torch.where(valid[:, None], x, torch.zeros_like(x))


def compute_normalisation(data: list[ChipData]) -> Normalisation:
    """Per-band mean/std (raw units) over the valid pixels of the chips."""
    return pooled_normalisation([band_sums(d) for d in data if len(d)])


def _compact(parts: list[np.ndarray], chunk: int = 64) -> np.ndarray:
    """``parts`` joined in the smallest exact dtype of their raw values (uint8 stays 1 byte).

    Chips are held in their files' dtype, which may be float32 even where the values are
    whole numbers; the training data is kept in the smallest integer range they fit, which
    quarters the memory and the bytes each batch moves (to a GPU too); the module casts to
    float on the device. The checks read ``chunk`` chips at a time and the join casts as
    it copies, so no float copy of the whole set is made beside the parts (3,000 chips of
    4 x 256 x 256 px: 3 GB of float32, joined into 0.8 GB of uint8).
    """
    blocks = (p[i : i + chunk] for p in parts for i in range(0, len(p), chunk))
    lo, hi, exact = np.inf, -np.inf, True
    for block in blocks:
        if not block.size:
            continue
        if not np.issubdtype(block.dtype, np.integer) and not (
            np.isfinite(block).all() and np.array_equal(block, np.floor(block))
        ):
            exact = False
            break
        lo, hi = min(lo, float(block.min())), max(hi, float(block.max()))
    dtype = np.result_type(*parts) if parts else np.dtype(np.float32)
    if exact and lo <= hi:
        for candidate in (np.uint8, np.int16, np.uint16):
            info = np.iinfo(candidate)
            if info.min <= lo and hi <= info.max:
                dtype = np.dtype(candidate)
                break
    return _join(parts, dtype)


def _join(parts: list[np.ndarray], dtype: Any = None) -> np.ndarray:
    """``parts`` concatenated (cast to ``dtype``); one part already of it is shared, not copied.

    One region's chips are the common case: its tensors then share the arrays the loaded
    chips hold, and training keeps one copy of them, not two.
    """
    dtype = np.result_type(*parts) if dtype is None else np.dtype(dtype)
    if len(parts) == 1 and parts[0].dtype == dtype and parts[0].flags.c_contiguous:
        return parts[0]
    return np.concatenate(parts, dtype=dtype, casting="unsafe")


class ChipDataset(torch.utils.data.Dataset[Batch]):
    """Chips of one or more regions as tensors (images kept in their compact raw dtype).

    Each region's :class:`ChipData` then holds views of its slice of the joined arrays, so
    the arrays it held before are freed: training keeps one copy of the chips, however
    many regions it joins.
    """

    def __init__(self, data: list[ChipData]) -> None:
        x = _compact([d.images for d in data])
        y = _join([d.masks for d in data])
        valid = _join([d.valid for d in data])
        start = 0
        for d in data:
            end = start + len(d)
            d.images, d.masks, d.valid = x[start:end], y[start:end], valid[start:end]
            start = end
        self.x, self.y, self.valid = map(torch.from_numpy, (x, y, valid))
        self.region_sizes = [len(d) for d in data]
        # object boxes travel with their chips when every region has them (detection)
        self.boxes = (
            [b for d in data for b in (d.boxes or [])]
            if all(d.boxes is not None for d in data)
            else None
        )

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def __getitem__(self, i: int) -> Batch:
        boxes = [self.boxes[i]] if self.boxes is not None else None
        return self.x[i], self.y[i], self.valid[i], boxes

    def __getitems__(self, indices: list[int]) -> Batch:
        """A whole batch in one gather per tensor (the DataLoader calls this per batch)."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        boxes = [self.boxes[i] for i in indices] if self.boxes is not None else None
        return self.x[idx], self.y[idx], self.valid[idx], boxes


def _batch_as_is(batch: Batch) -> Batch:
    return batch


class BatchShare(Sampler[int]):
    """One rank's slice of every batch that ``sampler`` draws for all ranks together.

    Args:
        sampler: the draw of one process (the same seed in every rank).
        batch_size: the global batch; each rank takes ``batch_size // world_size`` of it.
        rank: this process's global rank.
        world_size: processes in all.

    >>> list(BatchShare(range(8), 4, rank=1, world_size=2))
    [2, 3, 6, 7]
    >>> list(BatchShare(range(8), 4, rank=0, world_size=1)) == list(range(8))
    True
    """

    def __init__(self, sampler: Any, batch_size: int, rank: int, world_size: int) -> None:
        self.sampler = sampler
        self.batch_size = batch_size
        self.share = batch_size // world_size
        self.start = rank * self.share

    def __iter__(self) -> Any:
        drawn = list(self.sampler)
        for first in range(0, len(drawn) - self.batch_size + 1, self.batch_size):
            yield from drawn[first + self.start : first + self.start + self.share]

    def __len__(self) -> int:
        return len(self.sampler) // self.batch_size * self.share


def make_loader(
    data: list[ChipData],
    batch_size: int,
    seed: int,
    num_workers: int,
    pin_memory: bool = False,
    steps: int | None = None,
    rank: int = 0,
    world_size: int = 1,
) -> DataLoader[Batch]:
    """Batches of chips: ``steps`` random batches for training, else every chip in order.

    Training batches draw chips with replacement, every region with the same total
    weight; each batch is full (batch norm needs more than one sample per batch). With
    ``world_size`` processes, each gets its ``rank``'s share of every training batch
    (``batch_size`` is the global batch); validation batches are whole in every rank.
    """
    ds = ChipDataset(data)
    common: dict[str, Any] = {
        "num_workers": num_workers,
        "collate_fn": _batch_as_is,
        "pin_memory": pin_memory,
    }
    if steps is None:
        return DataLoader(ds, batch_size=batch_size, shuffle=False, **common)
    weights = torch.cat([torch.full((n,), 1.0 / n) for n in ds.region_sizes if n])
    sampler = WeightedRandomSampler(
        cast(Any, weights),
        steps * batch_size,
        replacement=True,
        generator=torch.Generator().manual_seed(seed),
    )
    share = BatchShare(sampler, batch_size, rank, world_size)
    return DataLoader(ds, batch_size=share.share, sampler=share, drop_last=True, **common)


@dataclass
class TrainingSets:
    """Every region's train and validation chips and what each contributed."""

    train: list[ChipData]
    val: list[ChipData]
    records: list[RegionRecord]


def load_training_sets(
    regions: list[Region],
    chips_dirs: list[Path],
    band_order: list[str],
    max_labels: int | None,
    seed: int,
) -> TrainingSets:
    """Load the regions' train chips (under the label budget, shared evenly) and val chips.

    Without any validation chip, the training chips stand in for them (with a warning).

    Raises:
        LabelError: a region has no labelled object in its train split.
    """
    sets = TrainingSets([], [], [])
    indexes = [read_chip_index(c) for c in chips_dirs]
    counts = [len(_objects(index, ("train",))) for index in indexes]
    budgets = share_budget(max_labels, counts)
    for r, cdir, index, available, budget in zip(
        regions, chips_dirs, indexes, counts, budgets, strict=True
    ):
        train_frame = index.split("train")
        if available == 0:
            advice = index.meta.get("split", {}).get("advice") or (
                "add labels, or lower [split] val_fraction/test_fraction or block_size_m"
            )
            raise LabelError(
                f"no labelled object in the train split of {r.name} ({len(train_frame)} train "
                f"chips): {advice}",
                r.path,
            )
        sampled = select_objects(
            [list(v) for v in train_frame["object_ids"]],
            budget,
            seed,
            object_classes(r, index) if budget is not None else None,
        )
        td = load_region_chips(
            r, cdir, "train", band_order, sampled if budget is not None else None, seed
        )
        if not ((td.masks > 0) & (td.masks != IGNORE)).any():
            guard = index.meta.get("split", {}).get("guard_px")
            raise LabelError(
                f"no object pixel left in the train split of {r.name}: the guard bands between "
                f"splits ([split] guard_px = {guard}) took them; lower guard_px or raise "
                "block_size_m, then chip again",
                r.path,
            )
        vd = load_region_chips(r, cdir, "val", band_order, None, seed)
        sets.train.append(td)
        sets.val.append(vd)
        sets.records.append(
            RegionRecord(
                name=r.name,
                path=str(r.path),
                labels_available=available,
                labels_used=len(sampled),
                chips_train=len(td),
                split_sha=index.split_sha(),
            )
        )
        log.info(
            "%s: %d of %d train objects, %d train chips, %d val chips",
            r.name,
            len(sampled),
            available,
            len(td),
            len(vd),
        )
    if not any(len(v) for v in sets.val):
        log.warning("no validation chips: early stopping watches the training chips instead")
        sets.val = sets.train
    return sets


def load_refit_sets(
    regions: list[Region],
    chips_dirs: list[Path],
    band_order: list[str],
    max_labels: int | None,
    seed: int,
) -> TrainingSets:
    """Every region's train and val chips as one training set, for the refit.

    Once validation has chosen the step, the final weights may learn from the val chips'
    labels too. The label budget is drawn over both splits' objects by the same seeded rule
    (:func:`select_objects`), so the refit still learns from at most ``max_labels``
    objects. ``val`` is empty: the refit runs without validation.
    """
    sets = TrainingSets([], [], [])
    splits = ("train", "val")
    indexes = [read_chip_index(c) for c in chips_dirs]
    available = [len(_objects(index, splits)) for index in indexes]
    budgets = share_budget(max_labels, available)
    for r, cdir, index, n_objects, budget in zip(
        regions, chips_dirs, indexes, available, budgets, strict=True
    ):
        object_ids = [list(v) for s in splits for v in index.split(s)["object_ids"]]
        sampled = select_objects(
            object_ids, budget, seed, object_classes(r, index) if budget is not None else None
        )
        loaded = [
            load_region_chips(r, cdir, s, band_order, sampled if budget is not None else None, seed)
            for s in splits
        ]
        parts = [d for d in loaded if len(d)] or loaded[:1]
        data = ChipData(
            r.name,
            np.concatenate([d.images for d in parts]),
            np.concatenate([d.masks for d in parts]),
            np.concatenate([d.valid for d in parts]),
            [i for d in parts for i in d.chip_ids],
            None
            if any(d.boxes is None for d in parts)
            else [b for d in parts for b in d.boxes or []],
        )
        sets.train.append(data)
        sets.records.append(
            RegionRecord(
                name=r.name,
                path=str(r.path),
                labels_available=n_objects,
                labels_used=len(sampled),
                chips_train=len(data),
                split_sha=index.split_sha(),
            )
        )
        log.info("%s refit: %d objects, %d train + val chips", r.name, len(sampled), len(data))
    return sets
