"""The training loop: a Lightning module driving a :class:`~geotl.train.tasks.base.Task`.

Training runs on CPU by default, on CUDA with 16-bit mixed precision with
``device="cuda"`` (bf16 where the GPU has it, else fp16). Early stopping on the task's
validation score restores the best epoch's weights. Same seed on CPU gives the same
weights and metrics.
"""

from __future__ import annotations

import copy
import logging
import time
from pathlib import Path
from typing import Any, cast

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import EarlyStopping
from tqdm import tqdm

from geotl.bands import canonical_band
from geotl.chips import read_chip_index
from geotl.config import Region
from geotl.errors import BandMismatchError, BaseModelError, GeotlInputError, OutputExistsError
from geotl.io.atomic import prepare_output_dir
from geotl.models.adapt import BandPlan
from geotl.models.artefact import (
    BaseModelRef,
    ModelCard,
    Normalisation,
    RegionRecord,
    write_artefact,
)
from geotl.models.catalogue import LoadedBase, load_base
from geotl.models.network import NetworkSpec
from geotl.progress import progress_bar
from geotl.train.augment import flip_rotate
from geotl.train.data import (
    Batch,
    compute_normalisation,
    load_training_sets,
    make_loader,
    resolve_chips_dir,
)
from geotl.train.options import Settings, TrainOptions, resolve_settings
from geotl.train.tasks import Task, ValidationMetric, make_task

__all__ = ["KeepBest", "TrainModule", "train_model"]

log = logging.getLogger(__name__)


class TrainModule(pl.LightningModule):
    """Normalise, augment, and let the task compute loss and validation score.

    Args:
        task: what the network learns (targets, loss, validation metric).
        network: the network being trained (its state dict is the artefact's).
        norm: per-band mean/std applied to the raw batches.
        lr: learning rate of the decoder and head.
        encoder_lr: learning rate of the trainable encoder parameters.
        epochs: the cosine schedule's length.
        frozen_prefixes: frozen modules; their batch-norm statistics stay pretrained.
        seed: seed of the augmentation generator.
    """

    def __init__(
        self,
        task: Task,
        network: torch.nn.Module,
        norm: Normalisation,
        lr: float,
        encoder_lr: float,
        epochs: int,
        frozen_prefixes: list[str],
        seed: int,
    ) -> None:
        super().__init__()
        self.task = task
        self.network = network
        self.lr = lr
        self.encoder_lr = encoder_lr
        self.epochs = epochs
        self.frozen_prefixes = frozen_prefixes
        self.seed = seed
        self.register_buffer(
            "mean", torch.tensor(norm.mean, dtype=torch.float32)[None, :, None, None]
        )
        self.register_buffer(
            "std", torch.tensor(norm.std, dtype=torch.float32)[None, :, None, None]
        )
        self.gen = torch.Generator().manual_seed(seed)
        self.val_metric: ValidationMetric | None = None
        self.last_val = -1.0
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

    def _prep(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        x, y, valid = batch
        mean, std = cast(torch.Tensor, self.mean), cast(torch.Tensor, self.std)
        x = (x.float() - mean) / std
        x = torch.where(valid[:, None], x, torch.zeros_like(x))
        return x, y

    def forward(self, x: torch.Tensor) -> Any:
        """The task's outputs for a normalised batch."""
        return self.task.forward(self.network, x)

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def on_train_epoch_start(self) -> None:
        """Start the epoch's training-phase clock."""
        self._sync()
        self._t_epoch = time.perf_counter()
        self._chips = 0

    def _end_train_phase(self) -> None:
        if self._t_epoch is not None:
            self._sync()
            self.epoch_train_seconds.append(time.perf_counter() - self._t_epoch)
            self.epoch_train_chips.append(self._chips)
            self._t_epoch = None

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        """Normalise, flip/rotate, then the task's loss."""
        self._chips += int(batch[0].shape[0])
        x, masks = self._prep(batch)
        if self.gen.device != x.device:  # augmentation codes drawn on the data's device
            self.gen = torch.Generator(device=x.device).manual_seed(self.seed)
        x, masks = flip_rotate(x, masks, self.gen)
        loss = self.task.training_loss(self.network, x, self.task.targets(masks))
        if self._loss_sum.device != loss.device:
            self._loss_sum = self._loss_sum.to(loss.device)
        self._loss_sum += loss.detach().double()
        self._loss_steps += 1
        return loss

    def on_validation_epoch_start(self) -> None:
        """Stop the training clock; a fresh validation accumulator."""
        self._end_train_phase()
        self.val_metric = self.task.validation_metric(self.device)

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        """Add a batch to the task's validation metric."""
        x, masks = self._prep(batch)
        assert self.val_metric is not None
        self.val_metric.update(self(x), self.task.targets(masks))

    def on_validation_epoch_end(self) -> None:
        """Log the pass's score as ``val_iou`` (what early stopping watches)."""
        assert self.val_metric is not None
        score = self.val_metric.compute()
        self.log("val_iou", score, prog_bar=False)
        self.last_val = score

    def on_train_epoch_end(self) -> None:
        """Record the epoch's mean loss and validation score."""
        self._end_train_phase()
        steps = self._loss_steps
        loss = float(self._loss_sum.item()) / steps if steps else float("nan")
        self._loss_sum = torch.zeros((), dtype=torch.float64, device=self._loss_sum.device)
        self._loss_steps = 0
        val = self.last_val if self.last_val >= 0 else float("nan")
        rec = {"epoch": self.current_epoch + 1, "train_loss": loss, "val_iou": val}
        self.history.append(rec)
        log.info(
            "epoch %d/%d  loss %.4f  val IoU %.4f  (%.1fs)",
            self.current_epoch + 1,
            self.epochs,
            loss,
            val,
            time.perf_counter() - self._t0,
        )

    def train(self, mode: bool = True) -> TrainModule:
        """Train mode, except frozen parts keep their pretrained batch-norm statistics."""
        super().train(mode)
        if mode:
            for name, module in self.network.named_modules():
                frozen = any(name == p or name.startswith(p + ".") for p in self.frozen_prefixes)
                if frozen and isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self

    def configure_optimizers(self) -> Any:
        """AdamW (encoder at its own rate), cosine decay over the epochs."""
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
        groups = [{"params": rest, "lr": self.lr}]
        if enc:
            groups.append({"params": enc, "lr": self.encoder_lr})
        opt = torch.optim.AdamW(groups, weight_decay=1e-4)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(self.epochs, 1))
        return {"optimizer": opt, "lr_scheduler": sched}


class KeepBest(pl.Callback):
    """Keeps a copy of the network's weights at its best validation score."""

    def __init__(self) -> None:
        self.score = -1.0
        self.epoch = 0
        self.state: dict[str, torch.Tensor] | None = None

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Runs after this epoch's validation (the module has set ``last_val``)."""
        assert isinstance(pl_module, TrainModule)
        if pl_module.last_val > self.score:
            self.score = pl_module.last_val
            self.epoch = trainer.current_epoch + 1
            self.state = copy.deepcopy(pl_module.network.state_dict())


class EpochProgress(pl.Callback):
    """Moves a progress bar once per epoch (``geotl --progress json`` shows it to programs)."""

    def __init__(self, bar: tqdm[Any]) -> None:
        self.bar = bar

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """One epoch done."""
        self.bar.update(1)


def train_model(regions: list[Region], out_dir: str | Path, options: TrainOptions) -> ModelCard:
    """Chip (if needed), adapt the base model to the regions' bands and train the task.

    Args:
        regions: one or more regions with the same classes and mappable bands.
        out_dir: the model folder (``model.safetensors``, ``model.json``; ``chips/`` when
            the regions are chipped here).
        options: see :class:`~geotl.train.options.TrainOptions`.

    Returns:
        The card as written.

    Raises:
        GeotlInputError: bad regions, chips, base model or too few labels.
    """
    _check_inputs(regions, options)
    out = Path(out_dir)
    has_model = (out / "model.json").exists() or (out / "model.safetensors").exists()
    if has_model and not options.overwrite:
        raise OutputExistsError("a model exists here: pass --overwrite to replace it", out)
    if not options.chips:
        prepare_output_dir(out, options.overwrite)
    first = regions[0]
    settings = resolve_settings(regions, options)
    base = _load_base(settings, options.encoder, first)
    task = make_task(first.task, list(first.classes), settings.loss)
    chips_dirs = [
        resolve_chips_dir(
            r,
            options.chips[i] if options.chips else None,
            out / "chips" if len(regions) == 1 else out / "chips" / r.name,
            options.overwrite,
        )
        for i, r in enumerate(regions)
    ]
    band_order = list(first.imagery.bands)
    sets = load_training_sets(regions, chips_dirs, band_order, settings.max_labels, settings.seed)
    if base.card is not None and [canonical_band(b) for b in base.card.bands] == [
        canonical_band(b) for b in band_order
    ]:
        # a model: base with the same bands keeps its normalisation, so the reused
        # encoder/decoder see inputs exactly as they were trained on
        norm = base.card.normalisation
    else:
        norm = compute_normalisation(sets.train)

    pl.seed_everything(settings.seed, workers=True, verbose=False)
    network, spec, plan = _build_network(task, base, band_order, settings, options.encoder, first)
    frozen = (
        task.freeze(network, settings.freeze, keep_first_conv=bool(plan and plan.new))
        if base.entry.id != "none"
        else []
    )
    module = TrainModule(
        task,
        network,
        norm,
        settings.lr,
        settings.encoder_lr,
        settings.epochs,
        frozen,
        settings.seed,
    )
    best = KeepBest()
    # epochs are logged for people; programs get them as JSON progress lines
    epoch_bar = progress_bar(total=settings.epochs, desc="train", unit="epoch", terminal=False)
    cuda = options.device == "cuda"
    trainer = pl.Trainer(
        max_epochs=settings.epochs,
        accelerator="gpu" if cuda else "cpu",
        devices=1,
        precision=_precision(cuda),
        deterministic=not cuda,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[
            best,
            EpochProgress(epoch_bar),
            EarlyStopping("val_iou", mode="max", patience=settings.patience),
        ],
    )
    train_loader, val_loader = (
        make_loader(data, settings.batch_size, shuffle, settings.seed, options.num_workers, cuda)
        for data, shuffle in ((sets.train, True), (sets.val, False))
    )
    t0 = time.perf_counter()
    with epoch_bar:
        trainer.fit(module, train_loader, val_loader)
    seconds = time.perf_counter() - t0
    if best.state is not None:
        network.load_state_dict(best.state)
    network.eval()

    metrics: dict[str, Any] = {
        "val_iou": best.score,
        "best_epoch": best.epoch,
        "epochs_run": len(module.history),
        "train_seconds": round(seconds, 2),
        "history": module.history,
        "throughput": _throughput(module.epoch_train_seconds, module.epoch_train_chips),
    }
    if plan is not None:
        metrics["bands"] = {
            "matched": list(plan.matched),
            "new": list(plan.new),
            "dropped": list(plan.dropped),
        }
    card = _model_card(
        regions, task, chips_dirs[0], band_order, norm, spec, base, settings, sets.records, metrics
    )
    out.mkdir(parents=True, exist_ok=True)
    card = write_artefact(out, network, card)
    log.info("wrote %s (val IoU %.4f, best epoch %d, %.1fs)", out, best.score, best.epoch, seconds)
    return card


def _check_inputs(regions: list[Region], options: TrainOptions) -> None:
    """Regions that can train together, and options that fit them and the machine."""
    if not regions:
        raise GeotlInputError("give at least one region file")
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


def _load_base(settings: Settings, encoder: str | None, first: Region) -> LoadedBase:
    try:
        return load_base(
            settings.base, require_commercial=settings.require_commercial, encoder=encoder
        )
    except BaseModelError as exc:
        if exc.path is not None:
            raise
        # the base id and the licence demand come from the region file unless --base is given
        raise BaseModelError(exc.message, first.path) from exc


def _build_network(
    task: Task,
    base: LoadedBase,
    band_order: list[str],
    settings: Settings,
    encoder: str | None,
    first: Region,
) -> tuple[torch.nn.Module, NetworkSpec, BandPlan | None]:
    try:
        return task.build_network(base, band_order, settings.seed, encoder)
    except BandMismatchError as exc:
        if exc.path is not None:
            raise
        raise BandMismatchError(exc.message, first.path) from exc  # name the region file


def _model_card(
    regions: list[Region],
    task: Task,
    chips_dir: Path,
    band_order: list[str],
    norm: Normalisation,
    spec: NetworkSpec,
    base: LoadedBase,
    settings: Settings,
    records: list[RegionRecord],
    metrics: dict[str, Any],
) -> ModelCard:
    first = regions[0]
    index = read_chip_index(chips_dir)
    res = float(np.median(index.frame["resolution_m"])) if len(index.frame) else 0.0
    entry = base.entry
    return ModelCard(
        name="-".join(r.name for r in regions)[:80],
        classes=list(first.classes),
        bands=band_order,
        normalisation=norm,
        chip_size_px=int(index.meta.get("size_px", first.chips.size_px)),
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
        freeze=settings.freeze,
        label_budget=settings.max_labels,
        regions=records,
        seed=settings.seed,
        epochs=settings.epochs,
        metrics=metrics,
        **task.card_fields(first),
    )


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
