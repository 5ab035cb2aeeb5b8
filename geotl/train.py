"""Train a region model: chips + base model -> artefact (``model.safetensors`` + ``model.json``).

Design choices (see also the README):

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
  own statistics. A ``model:`` base with the same bands keeps its card's normalisation, so
  the reused encoder/decoder see inputs exactly as they were trained on.
- **Several regions**: each region's chips are sampled with equal total weight per epoch.
- Training runs through a Lightning ``LightningModule`` (CPU by default, CUDA + 16-bit mixed
  precision with ``device="cuda"``: bf16 where the GPU has it, else fp16); early stopping
  on validation IoU restores the best epoch's weights. Same seed on CPU gives the same weights and metrics.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from geotl.bands import canonical_band
from geotl.config import Region
from geotl.errors import BandMismatchError, BaseModelError, GeotlInputError, LabelError
from geotl.models.artefact import (
    BaseModelRef,
    ModelCard,
    Normalisation,
    RegionRecord,
    write_artefact,
)
from geotl.models.catalogue import load_base

__all__ = [
    "ChipData",
    "TrainOptions",
    "compute_normalisation",
    "load_region_chips",
    "resolve_chips_dir",
    "select_objects",
    "train_model",
]

log = logging.getLogger(__name__)

IGNORE = 255


@dataclass(frozen=True)
class TrainOptions:
    """Options of ``geotl train``; ``None`` falls back to the region's ``[model]`` table."""

    chips: tuple[Path, ...] = ()
    base: str | None = None
    max_labels: int | None = None
    epochs: int | None = None
    freeze: str | None = None
    seed: int = 0
    device: str = "cpu"
    batch_size: int | None = None
    lr: float | None = None
    encoder_lr: float | None = None
    loss: str | None = None
    patience: int | None = None
    encoder: str | None = None  # architecture for --base none / file:
    overwrite: bool = False
    num_workers: int = 0


@dataclass
class ChipData:
    """One region's training or validation chips, in memory (raw units)."""

    region: str
    images: np.ndarray  # (N, C, H, W) float32, raw units; nodata pixels set to mean later
    masks: np.ndarray  # (N, H, W) uint8, 255 ignore
    valid: np.ndarray  # (N, H, W) bool, pixel has data
    chip_ids: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.images.shape[0])


# ---------------------------------------------------------------------------- chips


def resolve_chips_dir(
    region: Region, chips_dir: Path | None, default: Path, overwrite: bool
) -> Path:
    """The chips folder for ``region``: given, or created by chipping into ``default``.

    Raises:
        GeotlInputError: the given folder is missing or holds chips of another region.
    """
    from geotl.chips import chip_region, read_chip_index

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
    return Path(chips_dir)


def select_objects(object_ids: list[list[int]], max_labels: int | None, seed: int) -> set[int]:
    """Sample whole objects deterministically: the first ``max_labels`` of a seeded permutation.

    >>> sorted(select_objects([[1, 2], [2, 3], []], None, 0))
    [1, 2, 3]
    >>> len(select_objects([[1, 2], [2, 3], [4]], 2, 0))
    2
    """
    ids = sorted({int(i) for ids in object_ids for i in ids})
    if max_labels is None or max_labels >= len(ids):
        return set(ids)
    order = np.random.default_rng(seed).permutation(len(ids))
    return {ids[i] for i in order[:max_labels]}


def _read_chip(path: Path) -> tuple[np.ndarray, Any, Any, float | None]:
    import rasterio

    with rasterio.open(path) as src:
        return src.read(), src.transform, src.crs, src.nodata


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
    import rasterio.features

    from geotl.chips import read_chip_index

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
    labels_by_crs: dict[str, Any] = {}
    images, masks, valids, ids = [], [], [], []
    class_names = list(index.meta.get("classes", region.classes))
    remap = _class_remap(class_names, region.classes)
    for r in rows:
        img, transform, crs, nodata = _read_chip(chips_dir / str(r.image))
        mask = _read_chip(chips_dir / str(r.mask))[0][0].astype(np.uint8)
        mask = remap[mask]
        valid = np.ones(mask.shape, dtype=bool)
        if nodata is not None and not (isinstance(nodata, float) and math.isnan(nodata)):
            valid = ~np.all(img == nodata, axis=0)
        elif nodata is not None:
            valid = ~np.all(np.isnan(img), axis=0)
        mask[~valid] = IGNORE
        extra = unsampled_by_chip.get(r.chip_id)
        if extra and sampled is not None:
            key = str(crs)
            if key not in labels_by_crs:
                from geotl.io.vectors import read_labels

                labels_by_crs[key] = read_labels(region, crs=crs).set_index("label_id")
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
        images.append(img[order].astype(np.float32))
        masks.append(mask)
        valids.append(valid)
        ids.append(str(r.chip_id))
    if not images:
        c = len(want)
        size = int(index.meta.get("size_px", region.chips.size_px))
        return ChipData(
            region.name,
            np.zeros((0, c, size, size), np.float32),
            np.zeros((0, size, size), np.uint8),
            np.zeros((0, size, size), bool),
            [],
        )
    return ChipData(region.name, np.stack(images), np.stack(masks), np.stack(valids), ids)


def _class_remap(chip_classes: list[str], classes: list[str]) -> np.ndarray:
    """Lookup table from chip mask values to the model's class indices (by name)."""
    table = np.full(256, IGNORE, dtype=np.uint8)
    table[0] = 0
    for i, name in enumerate(chip_classes, start=1):
        table[i] = classes.index(name) + 1 if name in classes else IGNORE
    return table


def compute_normalisation(data: list[ChipData]) -> Normalisation:
    """Per-band mean/std (raw units) over the valid pixels of the chips."""
    total = None
    count = 0
    sq = None
    for d in data:
        if not len(d):
            continue
        x = d.images.transpose(1, 0, 2, 3)[:, d.valid]  # (C, n_valid)
        s = x.astype(np.float64).sum(axis=1)
        s2 = (x.astype(np.float64) ** 2).sum(axis=1)
        total = s if total is None else total + s
        sq = s2 if sq is None else sq + s2
        count += x.shape[1]
    if total is None or sq is None or count == 0:
        raise LabelError("no valid training pixel: the chips are all nodata")
    mean = total / count
    std = np.sqrt(np.maximum(sq / count - mean**2, 0.0))
    std = np.where(std < 1e-6, 1.0, std)
    return Normalisation(mean=[float(v) for v in mean], std=[float(v) for v in std])


# ---------------------------------------------------------------------------- training


def _augment(
    x: torch.Tensor, y: torch.Tensor, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random flips and 90-degree rotations, per sample (square chips).

    Code ``c`` in 0..7 per sample: flip left-right if ``c & 4``, then rotate ``c & 3``
    quarter turns. Whole-batch ``torch.where`` selections: no host round trip, so a GPU
    never waits on the CPU here (``gen`` lives on the data's device).
    """
    n = x.shape[0]
    codes = torch.randint(0, 8, (n,), generator=gen, device=gen.device).to(x.device)
    flip = (codes & 4) != 0
    turns = codes & 3
    xo = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
    yo = torch.where(flip.view(-1, 1, 1), y.flip(-1), y)
    xr, yr = xo, yo
    for k in (1, 2, 3):
        sel = turns == k
        xr = torch.where(sel.view(-1, 1, 1, 1), torch.rot90(xo, k, (-2, -1)), xr)
        yr = torch.where(sel.view(-1, 1, 1), torch.rot90(yo, k, (-2, -1)), yr)
    return xr, yr


def _confusion(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Confusion counts (rows truth, columns prediction), ignore pixels left out."""
    nn = num_classes * num_classes
    ok = target != IGNORE
    idx = torch.where(ok, target.long() * num_classes + pred.long(), nn).flatten()
    counts = torch.zeros(nn + 1, dtype=torch.long, device=idx.device)
    counts.index_add_(0, idx, torch.ones_like(idx))
    return counts[:nn].reshape(num_classes, num_classes)


def iou_from_confusion(conf: np.ndarray) -> np.ndarray:
    """Per-class IoU from a confusion matrix (rows truth, columns prediction); NaN if absent."""
    tp = np.diag(conf).astype(np.float64)
    denom = conf.sum(0) + conf.sum(1) - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denom > 0, tp / denom, np.nan)


def _make_module(
    network: torch.nn.Module,
    num_classes: int,
    norm: Normalisation,
    loss_name: str,
    lr: float,
    encoder_lr: float,
    epochs: int,
    frozen_prefixes: list[str],
    seed: int,
) -> Any:
    import lightning.pytorch as pl
    import segmentation_models_pytorch as smp

    class SegmentationModule(pl.LightningModule):
        """U-Net training with ce+dice/focal loss, ignore index 255, flips/rot90."""

        def __init__(self) -> None:
            super().__init__()
            self.network = network
            self.register_buffer(
                "mean", torch.tensor(norm.mean, dtype=torch.float32)[None, :, None, None]
            )
            self.register_buffer(
                "std", torch.tensor(norm.std, dtype=torch.float32)[None, :, None, None]
            )
            self.ce = torch.nn.CrossEntropyLoss(ignore_index=IGNORE)
            self.dice = smp.losses.DiceLoss("multiclass", ignore_index=IGNORE)
            self.focal = smp.losses.FocalLoss("multiclass", ignore_index=IGNORE)
            self.gen = torch.Generator().manual_seed(seed)
            self.val_conf = torch.zeros(num_classes, num_classes, dtype=torch.long)
            # summed on the device, read once per epoch (a read per step would sync a GPU)
            self._loss_sum = torch.zeros((), dtype=torch.float64)
            self._loss_steps = 0
            self.history: list[dict[str, float]] = []
            self._t0 = time.perf_counter()
            # throughput: seconds of each epoch's training phase (validation excluded)
            self.epoch_train_seconds: list[float] = []
            self.epoch_train_chips: list[int] = []
            self._t_epoch: float | None = None
            self._chips = 0

        def _prep(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
            x, y, valid = batch
            x = (x.float() - self.mean) / self.std
            x = torch.where(valid[:, None], x, torch.zeros_like(x))
            return x, y.long()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = self.network(x)
            return out

        def _loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            if (y != IGNORE).sum() == 0:
                return logits.sum() * 0.0
            if loss_name == "ce":
                return cast(torch.Tensor, self.ce(logits, y))
            if loss_name == "dice":
                return cast(torch.Tensor, self.dice(logits, y))
            if loss_name == "focal":
                return cast(torch.Tensor, self.focal(logits, y))
            return cast(torch.Tensor, self.ce(logits, y) + self.dice(logits, y))

        def _sync(self) -> None:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)

        def on_train_epoch_start(self) -> None:
            self._sync()
            self._t_epoch = time.perf_counter()
            self._chips = 0

        def _end_train_phase(self) -> None:
            if self._t_epoch is not None:
                self._sync()
                self.epoch_train_seconds.append(time.perf_counter() - self._t_epoch)
                self.epoch_train_chips.append(self._chips)
                self._t_epoch = None

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            self._chips += int(batch[0].shape[0])
            x, y = self._prep(batch)
            if self.gen.device != x.device:  # augmentation codes drawn on the data's device
                self.gen = torch.Generator(device=x.device).manual_seed(seed)
            x, y = _augment(x, y, self.gen)
            loss = self._loss(self(x), y)
            if self._loss_sum.device != loss.device:
                self._loss_sum = self._loss_sum.to(loss.device)
            self._loss_sum += loss.detach().double()
            self._loss_steps += 1
            return loss

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            x, y = self._prep(batch)
            pred = self(x).argmax(1)
            self.val_conf += _confusion(pred, y, num_classes)

        def on_validation_epoch_start(self) -> None:
            self._end_train_phase()
            self.val_conf = torch.zeros(
                num_classes, num_classes, dtype=torch.long, device=self.device
            )

        def on_validation_epoch_end(self) -> None:
            iou = iou_from_confusion(self.val_conf.cpu().numpy())
            fg = iou[1:]
            val_iou = float(np.nanmean(fg)) if np.isfinite(fg).any() else 0.0
            self.log("val_iou", val_iou, prog_bar=False)
            self._last_val = val_iou

        def on_train_epoch_end(self) -> None:
            self._end_train_phase()
            steps = self._loss_steps
            loss = float(self._loss_sum.item()) / steps if steps else float("nan")
            self._loss_sum = torch.zeros((), dtype=torch.float64, device=self._loss_sum.device)
            self._loss_steps = 0
            val = getattr(self, "_last_val", float("nan"))
            rec = {"epoch": self.current_epoch + 1, "train_loss": loss, "val_iou": val}
            self.history.append(rec)
            log.info(
                "epoch %d/%d  loss %.4f  val IoU %.4f  (%.1fs)",
                self.current_epoch + 1,
                epochs,
                loss,
                val,
                time.perf_counter() - self._t0,
            )

        def train(self, mode: bool = True) -> SegmentationModule:
            super().train(mode)
            if mode:  # frozen parts keep their pretrained batch-norm statistics
                for name, module in self.network.named_modules():
                    frozen = any(name == p or name.startswith(p + ".") for p in frozen_prefixes)
                    if frozen and isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                        module.eval()
            return self

        def configure_optimizers(self) -> Any:
            enc = [
                p
                for n, p in self.network.named_parameters()
                if n.startswith("encoder.") and p.requires_grad
            ]
            rest = [
                p
                for n, p in self.network.named_parameters()
                if not n.startswith("encoder.") and p.requires_grad
            ]
            groups = [{"params": rest, "lr": lr}]
            if enc:
                groups.append({"params": enc, "lr": encoder_lr})
            opt = torch.optim.AdamW(groups, weight_decay=1e-4)
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(epochs, 1))
            return {"optimizer": opt, "lr_scheduler": sched}

    return SegmentationModule()


def _freeze(network: torch.nn.Module, mode: str, keep_first_conv: bool) -> list[str]:
    """Freeze encoder parameters; returns the module-name prefixes that are frozen."""
    if mode == "none":
        return []
    encoder = cast(torch.nn.Module, network.encoder)
    names = [n for n, _ in encoder.named_parameters()]
    if mode == "backbone":
        cut = len(names)
    else:  # partial: stem and early stages (everything before the stride-16 stage)
        late: set[int] = set()
        stages = getattr(encoder, "get_stages", None)
        if callable(stages):
            try:
                for mods in stages().values():
                    for m in mods:
                        late.update(id(p) for p in m.parameters())
            except Exception:
                late = set()
        params = dict(encoder.named_parameters())
        if late:
            cut = next((i for i, n in enumerate(names) if id(params[n]) in late), len(names))
        else:
            info = getattr(getattr(encoder, "model", None), "feature_info", None)
            cut = len(names) // 3
            if info is not None:
                early = [
                    m for m, r in zip(info.module_name(), info.reduction(), strict=False) if r <= 8
                ]
                if early:
                    last = "model." + early[-1]
                    idx = [i for i, n in enumerate(names) if n.startswith(last + ".")]
                    if idx:
                        cut = idx[-1] + 1
    frozen = names[:cut]
    first_conv = names[0] if names else ""
    params = dict(encoder.named_parameters())
    for n in frozen:
        if keep_first_conv and n == first_conv:
            continue
        params[n].requires_grad_(False)
    prefixes = sorted({"encoder." + n.rsplit(".", 1)[0] for n in frozen})
    log.info("freeze=%s: %d of %d encoder tensors frozen", mode, len(frozen), len(names))
    return prefixes


def _compact(images: np.ndarray) -> np.ndarray:
    """The smallest exact dtype for raw chip values (uint8 imagery stays 1 byte a value).

    Chips are held as float32 for the statistics; the training data is kept in the files'
    own integer range when it fits, which quarters the memory and the bytes each batch
    moves (to a GPU too); ``_prep`` casts to float on the device.
    """
    if images.size == 0 or not np.isfinite(images).all():
        return images
    lo, hi = float(images.min()), float(images.max())
    if not np.array_equal(images, np.floor(images)):
        return images
    for dtype in (np.uint8, np.int16, np.uint16):
        info = np.iinfo(dtype)
        if info.min <= lo and hi <= info.max:
            return images.astype(dtype)
    return images


class _ChipDataset(torch.utils.data.Dataset[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]):
    def __init__(self, data: list[ChipData]) -> None:
        self.x = torch.from_numpy(_compact(np.concatenate([d.images for d in data])))
        self.y = torch.from_numpy(np.concatenate([d.masks for d in data]))
        self.valid = torch.from_numpy(np.concatenate([d.valid for d in data]))
        self.region_sizes = [len(d) for d in data]

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.x[i], self.y[i], self.valid[i]

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A whole batch in one gather per tensor (the DataLoader calls this per batch)."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        return self.x[idx], self.y[idx], self.valid[idx]


def _batch_as_is(
    batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return batch


def _loader(
    data: list[ChipData],
    batch_size: int,
    shuffle: bool,
    seed: int,
    num_workers: int,
    pin_memory: bool = False,
) -> Any:
    from torch.utils.data import DataLoader, WeightedRandomSampler

    ds = _ChipDataset(data)
    gen = torch.Generator().manual_seed(seed)
    common: dict[str, Any] = {
        "batch_size": batch_size,
        "num_workers": num_workers,
        "collate_fn": _batch_as_is,
        "pin_memory": pin_memory,
    }
    if not shuffle:
        return DataLoader(ds, shuffle=False, **common)
    # every region gets the same total sampling weight per epoch
    weights = torch.cat([torch.full((n,), 1.0 / n) for n in ds.region_sizes if n])
    n_samples = max(len(ds), batch_size)
    sampler = WeightedRandomSampler(
        cast(Any, weights),
        n_samples,
        replacement=len(ds.region_sizes) > 1 or n_samples > len(ds),
        generator=gen,
    )
    # a last batch of one chip breaks batch norm where the encoder's output is 1 x 1 px
    return DataLoader(ds, sampler=sampler, drop_last=n_samples % batch_size == 1, **common)


def _labels_available(chips_dir: Path, split: str) -> int:
    from geotl.chips import read_chip_index

    frame = read_chip_index(chips_dir).split(split)
    return len({int(i) for ids in frame["object_ids"] for i in ids})


def train_model(regions: list[Region], out_dir: str | Path, options: TrainOptions) -> ModelCard:
    """Chip (if needed), adapt the base model to the regions' bands and train a U-Net.

    Args:
        regions: one or more regions with the same classes and mappable bands.
        out_dir: the model folder (``model.safetensors``, ``model.json``; ``chips/`` when
            the regions are chipped here).
        options: see :class:`TrainOptions`.

    Returns:
        The card as written.

    Raises:
        GeotlInputError: bad regions, chips, base model or too few labels.
    """
    import lightning.pytorch as pl

    from geotl.io.atomic import prepare_output_dir
    from geotl.models.adapt import build_adapted_network

    if not regions:
        raise GeotlInputError("give at least one region file")
    out = Path(out_dir)
    first = regions[0]
    for r in regions[1:]:
        if r.classes != first.classes:
            raise GeotlInputError(
                f"classes {r.classes} differ from {first.name}'s {first.classes}: train regions with the same classes",
                r.path,
            )
        if sorted(canonical_band(b) for b in r.imagery.bands) != sorted(
            canonical_band(b) for b in first.imagery.bands
        ):
            raise BandMismatchError(
                f"bands {r.imagery.bands} differ from {first.name}'s {first.imagery.bands}", r.path
            )
    if first.task == "detection":
        log.warning(
            "%s: task = 'detection' is trained as segmentation of the object outlines (boxes "
            "become filled polygons, predictions are polygons with scores)",
            first.path,
        )
    if options.chips and len(options.chips) != len(regions):
        raise GeotlInputError(
            f"{len(options.chips)} --chips folder(s) for {len(regions)} region(s): give one per region, in order"
        )
    if options.device not in ("cpu", "cuda"):
        raise GeotlInputError(f"--device {options.device!r}: use cpu or cuda")
    if options.device == "cuda" and not torch.cuda.is_available():
        raise GeotlInputError("--device cuda but no CUDA device is available: use --device cpu")
    has_model = (out / "model.json").exists() or (out / "model.safetensors").exists()
    if has_model and not options.overwrite:
        from geotl.errors import OutputExistsError

        raise OutputExistsError("a model exists here: pass --overwrite to replace it", out)
    if not options.chips:
        prepare_output_dir(out, options.overwrite)

    cfg = first.model
    base_id = options.base or cfg.base
    epochs = options.epochs or cfg.epochs
    freeze = options.freeze or cfg.freeze
    batch_size = options.batch_size or cfg.batch_size
    lr = options.lr or cfg.lr
    encoder_lr = options.encoder_lr or cfg.encoder_lr or lr * 0.1
    loss = options.loss or cfg.loss
    patience = options.patience or cfg.patience
    max_labels = options.max_labels if options.max_labels is not None else cfg.max_labels
    require_commercial = any(r.model.require_commercial_licence for r in regions)
    seed = options.seed

    try:
        base = load_base(base_id, require_commercial=require_commercial, encoder=options.encoder)
    except BaseModelError as exc:
        if exc.path is not None:
            raise
        # the base id and the licence demand come from the region file unless --base is given
        raise BaseModelError(exc.message, first.path) from exc

    # chips per region
    chips_dirs: list[Path] = []
    for i, r in enumerate(regions):
        given = options.chips[i] if options.chips else None
        default = out / "chips" if len(regions) == 1 else out / "chips" / r.name
        chips_dirs.append(resolve_chips_dir(r, given, default, options.overwrite))

    band_order = list(first.imagery.bands)
    budgets = _split_budget(max_labels, len(regions))
    train_data: list[ChipData] = []
    val_data: list[ChipData] = []
    records: list[RegionRecord] = []
    for r, cdir, budget in zip(regions, chips_dirs, budgets, strict=True):
        from geotl.chips import read_chip_index

        index = read_chip_index(cdir)
        train_frame = index.split("train")
        available = _labels_available(cdir, "train")
        if available == 0:
            raise LabelError(
                f"no labelled object in the train split of {r.name} ({len(train_frame)} train chips): "
                "add labels, or lower [split] val_fraction/test_fraction or block_size_m",
                r.path,
            )
        sampled = select_objects([list(v) for v in train_frame["object_ids"]], budget, seed)
        td = load_region_chips(
            r, cdir, "train", band_order, sampled if budget is not None else None, seed
        )
        vd = load_region_chips(r, cdir, "val", band_order, None, seed)
        train_data.append(td)
        val_data.append(vd)
        records.append(
            RegionRecord(
                name=r.name,
                path=str(r.path),
                labels_available=available,
                labels_used=len(sampled),
                chips_train=len(td),
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
    if not any(len(v) for v in val_data):
        log.warning("no validation chips: early stopping watches the training chips instead")
        val_data = train_data

    if base.card is not None and [canonical_band(b) for b in base.card.bands] == [
        canonical_band(b) for b in band_order
    ]:
        norm = base.card.normalisation
    else:
        norm = compute_normalisation(train_data)

    pl.seed_everything(seed, workers=True, verbose=False)
    try:
        network, spec, plan = build_adapted_network(
            base, band_order, list(first.classes), seed=seed, encoder=options.encoder
        )
    except BandMismatchError as exc:
        if exc.path is not None:
            raise
        raise BandMismatchError(exc.message, first.path) from exc  # name the region file
    frozen = (
        _freeze(network, freeze, keep_first_conv=bool(plan and plan.new))
        if base.entry.id != "none"
        else []
    )
    module = _make_module(
        network, spec.num_classes, norm, loss, lr, encoder_lr, epochs, frozen, seed
    )

    best: dict[str, Any] = {"iou": -1.0, "state": None, "epoch": 0}

    class _KeepBest(pl.Callback):
        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            # runs after this epoch's validation (module hooks set _last_val)
            val = float(getattr(pl_module, "_last_val", -1.0))
            if val > best["iou"]:
                best.update(
                    iou=val,
                    epoch=trainer.current_epoch + 1,
                    state=copy.deepcopy(pl_module.network.state_dict()),
                )

    from lightning.pytorch.callbacks import EarlyStopping

    cuda = options.device == "cuda"
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="gpu" if cuda else "cpu",
        devices=1,
        precision=_precision(cuda),
        deterministic=not cuda,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[_KeepBest(), EarlyStopping("val_iou", mode="max", patience=patience)],
    )
    train_loader = _loader(train_data, batch_size, True, seed, options.num_workers, cuda)
    val_loader = _loader(val_data, batch_size, False, seed, options.num_workers, cuda)
    t0 = time.perf_counter()
    trainer.fit(module, train_loader, val_loader)
    seconds = time.perf_counter() - t0
    if best["state"] is not None:
        network.load_state_dict(best["state"])
    network.eval()

    metrics: dict[str, Any] = {
        "val_iou": best["iou"],
        "best_epoch": best["epoch"],
        "epochs_run": len(module.history),
        "train_seconds": round(seconds, 2),
        "history": module.history,
        "throughput": _throughput(module.epoch_train_seconds, module.epoch_train_chips),
    }
    entry = base.entry
    if plan is not None:
        metrics["bands"] = {
            "matched": list(plan.matched),
            "new": list(plan.new),
            "dropped": list(plan.dropped),
        }
    index0 = __import__("geotl.chips", fromlist=["read_chip_index"]).read_chip_index(chips_dirs[0])
    res = float(np.median(index0.frame["resolution_m"])) if len(index0.frame) else 0.0
    card = ModelCard(
        name="-".join(r.name for r in regions)[:80],
        task=first.task,
        classes=list(first.classes),
        bands=band_order,
        normalisation=norm,
        chip_size_px=int(index0.meta.get("size_px", first.chips.size_px)),
        resolution_m=res,
        network=spec,
        base=BaseModelRef(
            id=entry.id,
            architecture=entry.architecture,
            licence=entry.licence,
            commercial_use=entry.commercial_use,
            sha256=entry.sha256,
            pretraining=entry.pretraining,
        ),
        freeze=freeze,
        label_budget=max_labels,
        regions=records,
        seed=seed,
        epochs=epochs,
        threshold=first.predict.threshold,
        min_area_m2=first.predict.min_area_m2,
        simplify_px=first.predict.simplify_px,
        metrics=metrics,
    )
    out.mkdir(parents=True, exist_ok=True)
    card = write_artefact(out, network, card)
    log.info(
        "wrote %s (val IoU %.4f, best epoch %d, %.1fs)", out, best["iou"], best["epoch"], seconds
    )
    return card


def _precision(cuda: bool) -> Any:
    """bf16 mixed precision where the GPU has it (no loss scaler, so no sync per step)."""
    if not cuda:
        return "32-true"
    return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"


def _throughput(seconds: list[float], chips: list[int]) -> dict[str, Any]:
    """Training-phase throughput (validation excluded); the first epoch is warm-up."""
    steady_s = sum(seconds[1:]) if len(seconds) > 1 else sum(seconds)
    steady_n = sum(chips[1:]) if len(chips) > 1 else sum(chips)
    return {
        "epoch_train_seconds": [round(v, 4) for v in seconds],
        "epoch_train_chips": list(chips),
        "chips_per_s": round(steady_n / steady_s, 3) if steady_s > 0 else None,
    }


def _split_budget(max_labels: int | None, n: int) -> list[int | None]:
    """The total label budget shared evenly between regions (remainder to the first ones)."""
    if max_labels is None:
        return [None] * n
    if max_labels < n:
        raise GeotlInputError(f"--max-labels {max_labels} is below the number of regions ({n})")
    return [max_labels // n + (1 if i < max_labels % n else 0) for i in range(n)]
