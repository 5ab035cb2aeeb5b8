"""The training loop: a Lightning module driving a :class:`~geotl.train.tasks.base.Task`.

The recipe (issue 8): a number of optimizer steps, not chip-count epochs, so training
neither collapses on a small region nor explodes on a large one; every step draws fresh
random windows out of the train chips (:mod:`geotl.train.augment`); AdamW with linear
warm-up then cosine decay, per step; validation on the whole val chips every
``val_every`` steps; early stopping after ``patience`` validations without improvement,
never before ``min_steps``, restores the best weights validated at or after ``min_steps``.

Training runs on CPU by default, on CUDA with 16-bit mixed precision with
``device="cuda"`` (bf16 where the GPU has it, else fp16). Same seed on CPU gives the same
weights and metrics. ``devices`` / ``num_nodes`` run several processes with DDP
(:mod:`geotl.train.devices`); only global rank 0 writes the model folder.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import signal
import time
import warnings
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any, cast

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import EarlyStopping
from lightning.pytorch.trainer.states import TrainerFn
from tqdm import tqdm

from geotl.bands import canonical_band
from geotl.chips import ChipIndex, read_chip_index
from geotl.config import Region
from geotl.errors import (
    BandMismatchError,
    BaseModelError,
    GeotlInputError,
    OutputExistsError,
    RasterError,
)
from geotl.io.atomic import atomic_dir
from geotl.io.compression import lossy_codecs
from geotl.io.rasters import open_raster, other_units
from geotl.io.scratch import scratch_dir
from geotl.models.adapt import BandPlan
from geotl.models.artefact import (
    BaseModelRef,
    DeviceRecord,
    ModelCard,
    Normalisation,
    RegionRecord,
    require_device,
    write_artefact,
)
from geotl.models.catalogue import LoadedBase, load_base
from geotl.models.network import NetworkSpec
from geotl.predict.radiometry import decibel_units
from geotl.progress import progress_bar
from geotl.train.augment import Augment, default_window_px
from geotl.train.data import (
    Batch,
    ChipData,
    TrainingSets,
    band_sums,
    class_shares,
    load_refit_sets,
    load_training_sets,
    make_loader,
    normalise,
    pooled_normalisation,
    prior_offsets,
    resolve_chips_dir,
)
from geotl.train.devices import (
    DeviceLayout,
    launched_rank,
    process_lost_is_one_line,
    removed_if_forced_out,
    said_once,
    set_threads_per_process,
)
from geotl.train.metrics import ConfusionIoU
from geotl.train.options import (
    Schedule,
    Settings,
    TrainOptions,
    resolve_schedule,
    resolve_settings,
)
from geotl.train.pixel import MARGIN as PIXEL_MARGIN
from geotl.train.pixel import PixelCandidate, fit_pixel_candidate
from geotl.train.tasks import Task, ValidationMetric, make_task

__all__ = ["KeepBest", "StepProgress", "TrainModule", "best_seed_threshold", "train_model"]

log = logging.getLogger(__name__)


class TrainModule(pl.LightningModule):
    """Window and augment raw batches, normalise, and let the task compute loss and score.

    Args:
        task: what the network learns (targets, loss, validation metric).
        network: the network being trained (its state dict is the artefact's).
        norm: per-band mean/std applied to the raw batches.
        augment: random windows, turns and photometric jitter of training batches.
        schedule: steps, validation interval and warm-up.
        lr: learning rate of the decoder and head.
        encoder_lr: learning rate of the trainable encoder parameters.
        frozen_prefixes: frozen modules; their batch-norm statistics stay pretrained.
    """

    def __init__(
        self,
        task: Task,
        network: torch.nn.Module,
        norm: Normalisation,
        augment: Augment,
        schedule: Schedule,
        lr: float,
        encoder_lr: float,
        frozen_prefixes: list[str],
    ) -> None:
        super().__init__()
        self.task = task
        self.network = network
        self.augment = augment
        self.schedule = schedule
        self.lr = lr
        self.encoder_lr = encoder_lr
        self.frozen_prefixes = frozen_prefixes
        self.register_buffer(
            "mean", torch.tensor(norm.mean, dtype=torch.float32)[None, :, None, None]
        )
        self.register_buffer(
            "std", torch.tensor(norm.std, dtype=torch.float32)[None, :, None, None]
        )
        self.val_metric: ValidationMetric | None = None
        self.last_val = -1.0
        # the last pass's best threshold: {"value", "val_iou", "val_iou_argmax", "floor_iou"}
        self.last_threshold: dict[str, float] | None = None
        # summed on the device, read once per validation (a read per step would sync a GPU)
        self._loss_sum = torch.zeros((), dtype=torch.float64)
        self._loss_steps = 0
        self.history: list[dict[str, float]] = []
        self._t_start = time.perf_counter()
        # throughput of the training phases (validation excluded)
        self.train_seconds = 0.0
        self.train_windows = 0
        self._t_phase: float | None = None

    def _normalise(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        return normalise(x, valid, cast(torch.Tensor, self.mean), cast(torch.Tensor, self.std))

    def forward(self, x: torch.Tensor) -> Any:
        """The task's outputs for a normalised batch."""
        return self.task.forward(self.network, x)

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _start_phase(self) -> None:
        self._sync()
        self._t_phase = time.perf_counter()

    def _end_phase(self) -> None:
        if self._t_phase is not None:
            self._sync()
            self.train_seconds += time.perf_counter() - self._t_phase
            self._t_phase = None

    def on_train_start(self) -> None:
        """Start the training-phase clock; give each process its own augmentation draws."""
        if self.trainer.world_size > 1:
            # DDP re-seeds every rank alike; the same windows for each rank's chips would
            # waste the variety that one process gets
            torch.manual_seed(torch.initial_seed() + self.global_rank)
        self._start_phase()

    def on_train_end(self) -> None:
        """Stop the training-phase clock."""
        self._end_phase()

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        """A random window of each chip, augmented, then the task's loss."""
        x, masks, valid, boxes = batch
        self.train_windows += int(x.shape[0])
        x, valid, targets = self.task.augment_batch(self.augment, x.float(), masks, valid, boxes)
        x = self._normalise(x, valid)
        loss = self.task.training_loss(self.network, x, targets)
        if self._loss_sum.device != loss.device or self._loss_sum.is_inference():
            # (a validation before the first step resets it under inference mode)
            self._loss_sum = self._loss_sum.clone().to(loss.device)
        self._loss_sum += loss.detach().double()
        self._loss_steps += 1
        return loss

    def on_validation_epoch_start(self) -> None:
        """Stop the training clock; a fresh validation accumulator."""
        self._end_phase()
        self.val_metric = self.task.validation_metric(self.device)

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        """Add a batch of whole chips to the task's validation metric."""
        x, masks, valid, boxes = batch
        assert self.val_metric is not None
        targets = self.task.batch_targets(masks, boxes)
        self.val_metric.update(self(self._normalise(x, valid)), targets)

    def on_validation_epoch_end(self) -> None:
        """Log the score as ``val_iou`` (what early stopping watches) and the history."""
        assert self.val_metric is not None
        score = self.val_metric.compute()
        argmax = None
        if isinstance(self.val_metric, ConfusionIoU):
            self.last_threshold = self.val_metric.threshold_record()
            argmax = self.last_threshold["val_iou_argmax"]
        # the same score in every rank (each validates all val chips): the mean changes nothing
        self.log("val_iou", score, prog_bar=False, sync_dist=self.trainer.world_size > 1)
        self.last_val = score
        steps = self._loss_steps
        loss = float(self._loss_sum.item()) / steps if steps else float("nan")
        self._loss_sum = torch.zeros((), dtype=torch.float64, device=self._loss_sum.device)
        self._loss_steps = 0
        step = int(self.global_step)
        entry = {"step": step, "train_loss": loss, "val_iou": score}
        self.history.append(entry if argmax is None else entry | {"val_iou_argmax": argmax})
        if self.trainer.is_global_zero:  # one line per validation, not one per process
            log.info(
                "step %d/%d  loss %s  val %s %.4f  (%.1fs)",
                step,
                self.schedule.steps,
                f"{loss:.4f}" if steps else "-",  # the base's own score: no step, no loss
                self.task.score_name,
                score,
                time.perf_counter() - self._t_start,
            )
        self._start_phase()

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
        """AdamW (encoder at its own rate), linear warm-up then cosine decay, per step."""
        enc = [
            p
            for n, p in self.network.named_parameters()
            if n.startswith(self.task.encoder_prefix) and p.requires_grad
        ]
        rest = [
            p
            for n, p in self.network.named_parameters()
            if not n.startswith(self.task.encoder_prefix) and p.requires_grad
        ]
        groups = [{"params": rest, "lr": self.lr}]
        if enc:
            groups.append({"params": enc, "lr": self.encoder_lr})
        opt = torch.optim.AdamW(groups, weight_decay=1e-4)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt,
            partial(warmup_cosine, warmup=self.schedule.warmup_steps, total=self.schedule.steps),
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def warmup_cosine(step: int, warmup: int, total: int) -> float:
    """Learning-rate factor: linear warm-up over ``warmup`` steps, then cosine decay to 0.

    >>> [round(warmup_cosine(s, 2, 10), 3) for s in (0, 1, 2, 6, 10)]
    [0.5, 1.0, 1.0, 0.5, 0.0]
    """
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))


class KeepBest(pl.Callback):
    """Keeps a copy of the network's weights at its best validation score.

    Only validations at or after ``min_step`` compete: on a small validation set a barely
    trained network (warm-up, the first few dozen steps) can score best by chance, and
    keeping it threw most of the training away (SpaceNet Atlanta: best step 20 of 100, test
    IoU 0.08 against 0.28). Before ``min_step`` the latest weights are kept, so a run that
    ends earlier still has some.

    A validation outside fitting (``trainer.validate`` before the first step) scores the
    base model's own weights: :meth:`settle` keeps them when no trained step beat them.
    """

    def __init__(self, min_step: int = 0, score_name: str = "IoU") -> None:
        self.min_step = min_step
        self.score_name = score_name  # the task's (Task.score_name), for the log
        self.score = -1.0
        self.step = 0
        self.state: dict[str, torch.Tensor] | None = None
        self.threshold: dict[str, float] | None = None  # the kept pass's best threshold
        self.baseline: tuple[float, dict[str, torch.Tensor], dict[str, float] | None] | None
        self.baseline = None
        self.kept_base = False

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Runs after each validation (the module has set ``last_val``)."""
        assert isinstance(pl_module, TrainModule)
        state = pl_module.network.state_dict()
        if trainer.state.fn != TrainerFn.FITTING:
            self.baseline = (pl_module.last_val, copy.deepcopy(state), pl_module.last_threshold)
            return
        step = int(trainer.global_step)
        kept = None if self.state is None else (self.step, self.score)
        if replaces(step, pl_module.last_val, kept, self.min_step):
            self.score = pl_module.last_val
            self.step = step
            self.state = copy.deepcopy(state)
            self.threshold = pl_module.last_threshold

    def settle(self) -> None:
        """Fall back to the base's own weights where training never beat them on validation."""
        if self.baseline is None or (self.state is not None and self.score >= self.baseline[0]):
            return
        log.warning(
            "no trained step beat the base model's own weights on validation (val %s %.4f "
            "against %.4f): kept the base's weights",
            self.score_name,
            self.score,
            self.baseline[0],
        )
        self.score, self.state, self.threshold = self.baseline
        self.step = 0
        self.kept_base = True


def replaces(step: int, score: float, kept: tuple[int, float] | None, min_step: int) -> bool:
    """Whether a validation at ``step`` with ``score`` replaces the kept ``(step, score)``.

    >>> replaces(20, 0.5, None, 33)          # nothing kept yet
    True
    >>> replaces(40, 0.1, (20, 0.5), 33)     # the kept one is from before min_step
    True
    >>> replaces(60, 0.05, (40, 0.1), 33)    # from min_step on, only a better score
    False
    >>> replaces(80, 0.2, (40, 0.1), 33)
    True
    """
    if kept is None or step < min_step or kept[0] < min_step:
        return True
    return score > kept[1]


class EarlyStopAfter(EarlyStopping):
    """Early stopping that counts only the validations :class:`KeepBest` may keep.

    Lightning's ``EarlyStopping`` counts patience from the first validation, so a score
    from before ``min_step`` (which :class:`KeepBest` never keeps) could end the run the
    moment ``min_step`` is reached, keeping weights no better than those it could not keep.
    Here the first validation at or after ``min_step`` is the reference.
    """

    def __init__(self, min_step: int, patience: int) -> None:
        super().__init__("val_iou", mode="max", patience=patience)
        self.min_step = min_step

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.global_step < self.min_step:
            return
        super().on_validation_end(trainer, pl_module)
        if self.wait_count >= self.patience:  # Lightning's own message: "max_epochs=1 reached"
            log.info(
                "early stop at step %d: no better validation IoU in %d validations (best %.4f)",
                trainer.global_step,
                self.patience,
                float(self.best_score),
            )


class StepProgress(pl.Callback):
    """Moves a progress bar once per optimizer step (``geotl --progress json`` for programs)."""

    def __init__(self, bar: tqdm[Any]) -> None:
        self.bar = bar

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any
    ) -> None:
        """One step done."""
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
    # torchrun's processes all fail alike on a bad input: the first one says it
    with said_once():
        _check_inputs(regions, options)
        settings = resolve_settings(regions, options)
        layout = DeviceLayout(options.devices, options.num_nodes, options.strategy)
        layout.check(settings.batch_size, options.device)
        out = Path(out_dir)
        rank = launched_rank(layout)
        if rank == 0:
            has_model = (out / "model.json").exists() or (out / "model.safetensors").exists()
            if has_model and not options.overwrite:
                raise OutputExistsError("a model exists here: pass --overwrite to replace it", out)
            if options.chips:
                return _train(regions, out, out / "chips", options, settings, layout)
            for r in regions:  # the folder is replaced whole: never one holding the inputs
                r.check_output_dir(out)
            # the model and the chips cut for it appear together or not at all: a run that
            # fails or is interrupted leaves no folder that would stop the same command again
            # (also when a dead process's watch ends this one: removed_if_forced_out)
            with atomic_dir(out, options.overwrite) as tmp, removed_if_forced_out(tmp):
                return _train(regions, tmp, tmp / "chips", options, settings, layout)
        # other ranks chip the same regions into a folder of their own (no race on DIR/chips,
        # no shared file system needed) and write nothing else
        with scratch_dir(f"rank{rank}") as private:
            return _train(regions, out, private / "chips", options, settings, layout)


def _train(
    regions: list[Region],
    out: Path,
    chips_root: Path,
    options: TrainOptions,
    settings: Settings,
    layout: DeviceLayout,
) -> ModelCard:
    """:func:`train_model` after its checks; ``chips_root``: where regions are chipped."""
    first = _card_region(regions)
    base = _load_base(settings, options.encoder, first)
    if base.card is not None and base.card.task != first.task:
        raise BaseModelError(
            f"base {base.entry.id} is a {base.card.task} model, the region's task is "
            f"{first.task}: use a {first.task} model as base, or a pretrained backbone "
            "(e.g. pkg:efficientnet-lite0)",
            first.path,
        )
    if base.card is not None and base.card.network.arch == "pixel":
        raise BaseModelError(
            f"base {base.entry.id} is a per-pixel model (training kept it over its network on "
            "validation): it has no encoder to reuse; train the source with --no-pixel-model, "
            "or use a pretrained backbone (pkg:efficientnet-lite0) or none",
            first.path,
        )
    task = make_task(first.task, list(first.classes), settings.loss)
    task.threshold_set = first.predict.threshold_set
    chips_dirs = [
        resolve_chips_dir(
            r,
            options.chips[i] if options.chips else None,
            chips_root if len(regions) == 1 else chips_root / r.name,
            options.overwrite,
        )
        for i, r in enumerate(regions)
    ]
    band_order = list(first.imagery.bands)
    _warn_mixed_resolution(regions, chips_dirs)
    sets = load_training_sets(regions, chips_dirs, band_order, settings.max_labels, settings.seed)
    # the val chips' class balance, read before prepare_chips packs more into the masks
    target = None if sets.val is sets.train else class_shares(sets.val, task.num_classes)
    shares = class_shares(sets.train, task.num_classes)
    used = sum(r.labels_used for r in sets.records)
    available = sum(r.labels_available for r in sets.records)
    _say_missing_classes(first, shares, target, (used, available) if used < available else None)
    prior = _class_prior(task, shares, target, settings)
    prepared: set[int] = set()  # without val chips, sets.val is sets.train
    for datasets in (sets.train, sets.val):
        for r, cdir, data in zip(regions, chips_dirs, datasets, strict=True):
            if id(data) not in prepared:
                task.prepare_chips(r, cdir, data)
                prepared.add(id(data))
    norm = _normalisation(regions, sets.train, base, band_order)

    schedule = resolve_schedule(settings, sum(len(d) for d in sets.train), first)
    chip_px = min(int(d.images.shape[-1]) for d in sets.train if len(d))
    window_px = _window_px(settings, chip_px, first)
    seen_px = window_px if task.random_windows else chip_px  # what one training sample is
    log.info(
        "%d steps of %d %s of %d px (validation every %d, at least %d)",
        schedule.steps,
        settings.batch_size,
        "windows" if task.random_windows else "whole chips",
        seen_px,
        schedule.val_every,
        schedule.min_steps,
    )

    augment = Augment(chip_px, window_px, settings.scale_jitter)

    def new_module(schedule: Schedule) -> tuple[TrainModule, NetworkSpec, BandPlan | None]:
        """A freshly initialised network (the same seed every time) in a training module."""
        pl.seed_everything(settings.seed, workers=True, verbose=False)
        network, spec, plan = _build_network(
            task, base, band_order, settings, options.encoder, first
        )
        frozen = (
            task.freeze(network, settings.freeze, keep_first_conv=bool(plan and plan.new))
            if base.entry.id != "none"
            else []
        )
        module = TrainModule(
            task, network, norm, augment, schedule, settings.lr, settings.encoder_lr, frozen
        )
        return module, spec, plan

    module, spec, plan = new_module(schedule)
    # a model: base of this task with the same classes is already a model of the region's
    # objects: if training only makes it worse on validation, keep it as it is (SJER at 10
    # labels: one seed fell from the source's 0.27 test IoU to 0.09)
    baseline = base.card is not None and list(base.card.classes) == list(first.classes)
    best, seconds, writes = _fit(
        module, sets.train, sets.val, schedule, settings, options, layout, baseline=baseline
    )
    best.settle()
    network = module.network
    if best.state is not None:
        network.load_state_dict(best.state)
    pixel = _pixel_candidate(task, sets, norm, settings, best)
    # the kept model's validation score and threshold record (best: the network's)
    score, record, kept_pixel = best.score, best.threshold, False
    if pixel is not None and pixel.val_iou > best.score + PIXEL_MARGIN:
        kept_pixel = True
        log.info(
            "kept the per-pixel model: val IoU %.4f, the network's %.4f",
            pixel.val_iou,
            best.score,
        )
        network, spec = pixel.network, pixel.spec
        score, record = pixel.val_iou, pixel.threshold
    # every rank reaches the same verdicts: only the one that writes says them (a warning
    # of --devices 2 came twice)
    warn = log.warning if writes else log.debug
    threshold = _choose_threshold(task, record, score, first, warn=warn)
    # the validated weights (a refit's are not): val scores the seed thresholds on them
    kept_network = network
    records = sets.records
    refit: dict[str, Any] | None = None
    if settings.refit and (sets.val is sets.train or best.state is None):
        warn("refit = true, but without val chips there is nothing to add: skipped")
    elif settings.refit and best.kept_base:
        warn("refit = true, but the base's own weights were kept: skipped")
    elif settings.refit and kept_pixel:
        warn("refit = true, but the per-pixel model was kept: skipped")
    elif settings.refit:
        refit_module = new_module(schedule)[0]
        records, refit, writes = _refit(
            refit_module,
            regions,
            chips_dirs,
            band_order,
            best.step,
            settings,
            options,
            layout,
            target,
        )
        network = refit_module.network
        seconds += refit["train_seconds"]
    network.eval()

    metrics: dict[str, Any] = {
        "val_iou": score,
        "best_step": best.step,
        "steps_run": int(module.global_step),
        "steps": schedule.steps,
        # ended by early stopping (patience), not by the schedule's last step
        "stopped_early": int(module.global_step) < schedule.steps,
        "validations": len(module.history),
        "window_px": seen_px,
        "train_seconds": round(seconds, 2),
        "history": module.history,
        "throughput": {  # all processes together (each trains an equal share)
            "windows_per_s": round(
                module.train_windows * layout.world_size / module.train_seconds, 3
            )
            if module.train_seconds > 0
            else None,
        },
    }
    if sets.val is sets.train:
        # no val chips: val_iou, the step and the threshold were scored on training chips
        metrics["validated_on"] = "train"
    if threshold is not None:
        metrics["threshold"] = threshold
    if prior is not None:
        metrics["class_prior"] = prior
    if best.baseline is not None:  # the base's own weights, scored before the first step
        metrics["base_val_iou"] = round(best.baseline[0], 4)
        metrics["kept_base"] = best.kept_base
    if refit is not None:
        metrics["refit"] = refit
    if pixel is not None:
        metrics["pixel_model"] = pixel.record(kept_pixel, best.score)
    if plan is not None:
        metrics["bands"] = {
            "matched": list(plan.matched),
            "new": list(plan.new),
            "dropped": list(plan.dropped),
        }
    trained_on = DeviceRecord(
        accelerator=options.device,
        devices=layout.devices,
        num_nodes=layout.num_nodes,
        strategy=layout.strategy if layout.world_size > 1 else "single",
        batch_per_device=settings.batch_size // layout.world_size,
    )
    card = _model_card(
        regions, task, chips_dirs, band_order, norm, spec, base, settings, records, metrics
    ).model_copy(update={"trained_on": trained_on})
    if not writes:
        return card  # not global rank 0: rank 0 writes the one artefact
    with_val = (
        [] if sets.val is sets.train else list(zip(regions, chips_dirs, sets.val, strict=True))
    )
    card = _record_seed_threshold(
        card, kept_network, [(r, c) for r, c, v in with_val if len(v)], _card_region(regions)
    )
    out.mkdir(parents=True, exist_ok=True)
    card = write_artefact(out, network, card)
    log.info(
        "trained: %s %s %.4f, best step %d, %.1fs",  # the folder may be a temporary one
        "train-chip (no val chips)" if sets.val is sets.train else "val",
        task.score_name,
        score,
        best.step,
        seconds,
    )
    return card


def _fit(
    module: TrainModule,
    train: list[ChipData],
    val: list[ChipData] | None,
    schedule: Schedule,
    settings: Settings,
    options: TrainOptions,
    layout: DeviceLayout,
    stop_at: int | None = None,
    baseline: bool = False,
) -> tuple[KeepBest, float, bool]:
    """Run the Lightning trainer on ``layout``'s processes (``val=None``: no validation).

    ``stop_at``: end after that many of the schedule's steps (the learning rate still
    follows the whole schedule). ``baseline``: validate the starting weights first, so
    that :meth:`KeepBest.settle` can keep them.

    Returns:
        The best weights' keeper, the seconds taken, and whether this process is global
        rank 0 (the one that writes the artefact).
    """
    best = KeepBest(schedule.min_steps, module.task.score_name)
    max_steps = stop_at or schedule.steps
    bar = progress_bar(
        total=max_steps, desc="train", unit="step", enabled=launched_rank(layout) == 0
    )
    cuda = options.device == "cuda"
    if not cuda:
        set_threads_per_process(layout)
    trainer = pl.Trainer(
        max_steps=max_steps,
        max_epochs=1,  # one pass of the sampler is all the steps
        # min_steps alone makes Lightning require one whole epoch, which is the whole run
        # here: early stopping would never stop it
        min_epochs=0,
        min_steps=min(schedule.min_steps, max_steps),
        val_check_interval=schedule.val_every,
        check_val_every_n_epoch=None,
        accelerator="gpu" if cuda else "cpu",
        devices=layout.devices,
        num_nodes=layout.num_nodes,
        strategy=layout.lightning_strategy,
        use_distributed_sampler=False,  # make_loader shards the draw itself (BatchShare)
        precision=_precision(cuda),
        deterministic=not cuda,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=None if val is not None else 0,
        callbacks=[StepProgress(bar)]
        + ([best, EarlyStopAfter(best.min_step, settings.patience)] if val is not None else []),
    )
    train_loader = make_loader(
        train,
        settings.batch_size,
        settings.seed,
        options.num_workers,
        cuda,
        max_steps,
        rank=trainer.global_rank,
        world_size=trainer.world_size,
    )
    val_loader = (
        make_loader(val, settings.batch_size, settings.seed, options.num_workers, cuda)
        if val is not None
        else None
    )
    t0 = time.perf_counter()
    with (
        bar,
        warnings.catch_warnings(),
        _ctrl_c_stays_ctrl_c(trainer),
        process_lost_is_one_line(layout),
    ):
        # a run without validation (the refit) is meant: Lightning's warning says nothing
        warnings.filterwarnings("ignore", message=r".*no `val_dataloader`.*")
        if baseline and val_loader is not None:
            trainer.validate(module, val_loader, verbose=False)
        trainer.fit(module, train_loader, val_loader)
    return best, time.perf_counter() - t0, trainer.is_global_zero


@contextlib.contextmanager
def _ctrl_c_stays_ctrl_c(trainer: pl.Trainer) -> Iterator[None]:
    """Lightning turns Ctrl+C into ``sys.exit(1)`` and ignores SIGINT from then on.

    Give both back: the command then says it was interrupted (exit 130; SIGTERM's 143), as
    every other command does, and a second Ctrl+C works again.
    """
    handler = signal.getsignal(signal.SIGINT)
    try:
        yield
    except SystemExit as exc:
        if not trainer.interrupted:
            raise
        signal.signal(signal.SIGINT, handler)
        caught = exc.__context__  # what Lightning caught (a SIGTERM is geotl's Terminated)
        raise (caught if isinstance(caught, KeyboardInterrupt) else KeyboardInterrupt()) from None


def _refit(
    module: TrainModule,
    regions: list[Region],
    chips_dirs: list[Path],
    band_order: list[str],
    step: int,
    settings: Settings,
    options: TrainOptions,
    layout: DeviceLayout,
    target: np.ndarray | None,
) -> tuple[list[RegionRecord], dict[str, Any], bool]:
    """Train a fresh ``module`` on the train + val chips up to the ``step`` validation chose.

    The refit follows the run's learning-rate schedule and stops at ``step``: a shorter
    schedule of its own decays too early (SJER: 40 steps, test IoU 0.17 against 0.36).
    Its class prior is corrected towards the same ``target``, the val chips' balance.

    Returns:
        What the final weights learned from, the card's record of the refit, and whether
        this process writes the artefact.
    """
    sets = load_refit_sets(regions, chips_dirs, band_order, settings.max_labels, settings.seed)
    prior = _class_prior(
        module.task, class_shares(sets.train, module.task.num_classes), target, settings
    )
    for r, cdir, data in zip(regions, chips_dirs, sets.train, strict=True):
        module.task.prepare_chips(r, cdir, data)
    steps = max(1, step)
    log.info("refit on train + val chips: %d of %d steps", steps, module.schedule.steps)
    _, seconds, writes = _fit(
        module, sets.train, None, module.schedule, settings, options, layout, steps
    )
    record: dict[str, Any] = {
        "steps": steps,
        "chips": sum(len(d) for d in sets.train),
        "labels_used": sum(r.labels_used for r in sets.records),
        "train_seconds": round(seconds, 2),
    }
    if prior is not None:
        record["class_prior"] = prior
    return sets.records, record, writes


def _normalisation(
    regions: list[Region], train: list[ChipData], base: LoadedBase, band_order: list[str]
) -> Normalisation:
    """The input normalisation: the train chips', or a ``model:`` base's own.

    A ``model:`` base keeps its normalisation for every band it knows (the region's own
    statistics for bands new to it), so the reused network sees inputs as it was trained
    on, unless the region's imagery is in other units (8- vs 16-bit, say): then the
    region's own statistics put it on the scale the network knows.

    Regions trained together whose imagery looks to be in other units are said, not
    refused: a snow-covered region beside a dark forest can differ 10x in visible bands.
    """
    sums = [(r, band_sums(d)) for r, d in zip(regions, train, strict=True) if len(d)]
    for r, own in sums[1:]:
        first, reference = sums[0]
        if said := other_units(own.mean, reference.mean):
            log.warning(
                "%s: the chips' %s (region %s's): other units? One normalisation serves "
                "both, so rescale one to the other's (e.g. gdal_translate -scale) or "
                "train them apart",
                r.path,
                said,
                first.name,
            )
        elif said := decibel_units(
            own.normalisation(), reference.normalisation(), f"region {first.name}'s"
        ):
            # radar in linear power beside dB: other_units judges positive means only
            log.warning(
                "%s: the chips' %s; one normalisation serves both: convert one region's "
                "scenes or train them apart",
                r.path,
                said,
            )
    pooled = pooled_normalisation([s for _, s in sums])
    if base.card is None:
        return pooled
    # a geotl model as the base: its encoder learnt its bands under its own normalisation,
    # kept for every band it knows (the region's own for bands new to it)
    base_bands = [canonical_band(b) for b in base.card.bands]
    order = [canonical_band(b) for b in band_order]
    shared = [i for i, b in enumerate(order) if b in base_bands]
    if not shared:
        return pooled
    own = base.card.normalisation
    at = [base_bands.index(order[i]) for i in shared]
    region_units = Normalisation(
        mean=[pooled.mean[i] for i in shared], std=[pooled.std[i] for i in shared]
    )
    base_units = Normalisation(mean=[own.mean[j] for j in at], std=[own.std[j] for j in at])
    if said := other_units(region_units.mean, base_units.mean) or decibel_units(
        region_units, base_units, "the base model's"
    ):
        log.warning(
            "the base model's normalisation does not fit the train chips (other units, so the "
            "region's own normalisation is used instead of the base's): %s",
            said,
        )
        return pooled
    mean, std = list(pooled.mean), list(pooled.std)
    for i, j in zip(shared, at, strict=True):
        mean[i], std[i] = own.mean[j], own.std[j]
    if len(shared) < len(order):
        log.info(
            "normalisation: the base model's for %s, the region's own for %s (new to the base)",
            [band_order[i] for i in shared],
            [b for i, b in enumerate(band_order) if i not in shared],
        )
    return Normalisation(mean=mean, std=std)


def _say_missing_classes(
    region: Region,
    train: np.ndarray | None,
    val: np.ndarray | None,
    budget: tuple[int, int] | None = None,
) -> list[str]:
    """Warn of classes without a labelled pixel in the train or val chips; their names.

    ``train`` / ``val``: each class's share of the labelled pixels (background first),
    after the label budget. A class the train chips lack cannot be learnt; one the val
    chips lack is not scored, so the kept weights and threshold ignore it. ``budget``:
    the train objects used and available when the label budget left some out (the
    budget draws objects whatever their class, so it may leave out every one of a class).
    """
    said = []
    for i, name in enumerate(region.classes, start=1):
        where = [
            split
            for split, shares in (("train", train), ("val", val))
            if shares is not None and shares[i] == 0
        ]
        if not where:
            continue
        said.append(name)
        what = (
            "the model cannot learn it"
            if "train" in where
            else "validation cannot score it (the kept weights and threshold ignore it)"
        )
        raise_budget = (
            ", or raise the label budget (--max-labels, [model] max_labels: "
            f"{budget[0]} of {budget[1]} train objects used)"
            if budget is not None and "train" in where
            else ""
        )
        log.warning(
            "%s: class %r has no labelled pixel in the %s chips: %s; label more %r objects "
            "in more places, or move the split ([split] seed, block_size_m)%s",
            region.path.name,
            name,
            " or ".join(where),
            what,
            name,
            raise_budget,
        )
    return said


def _class_prior(
    task: Task, source: np.ndarray | None, target: np.ndarray | None, settings: Settings
) -> dict[str, list[float]] | None:
    """Set the task's class-prior correction from ``source`` towards ``target``; the record.

    ``source`` / ``target``: the train / val chips' class shares (:func:`class_shares`).
    ``[model] class_prior = "validation"`` calibrates the model to the val chips' class
    balance (``target``), which the label budget leaves whole
    (:func:`~geotl.train.data.prior_offsets`). Nothing to correct without val chips of
    their own (``target`` None), or with ``"train"``. Call it before
    :meth:`Task.prepare_chips`, which may pack more than classes into the masks.
    """
    task.set_class_prior(None)
    if settings.class_prior != "validation" or target is None or source is None:
        return None
    offsets = prior_offsets(source, target)
    task.set_class_prior(torch.tensor(offsets, dtype=torch.float32))
    if task.logit_offsets is None:  # a task without class logits
        return None
    log.info(
        "class balance: train %s, val %s (logit offsets %s)",
        np.round(source, 3).tolist(),
        np.round(target, 3).tolist(),
        np.round(offsets, 2).tolist(),
    )
    return {
        "train": np.round(source, 4).tolist(),
        "target": np.round(target, 4).tolist(),
        "offsets": np.round(offsets, 4).tolist(),
    }


def _pixel_candidate(
    task: Task, sets: TrainingSets, norm: Normalisation, settings: Settings, best: KeepBest
) -> PixelCandidate | None:
    """The per-pixel model fitted beside the network, when the run can compare the two.

    It needs a task whose outputs are class logits alone, val chips of their own and a
    validated network (:mod:`geotl.train.pixel`); ``[model] pixel_model = false`` skips it.
    """
    if not (
        settings.pixel_model
        and task.pixel_candidate
        and sets.val is not sets.train
        and best.state is not None
    ):
        return None
    return fit_pixel_candidate(
        sets.train, sets.val, norm, task.num_classes, task.threshold_set, settings.seed
    )


def _choose_threshold(
    task: Task,
    record: dict[str, float] | None,
    score: float,
    first: Region,
    *,
    warn: Callable[..., None] = log.warning,
) -> dict[str, float] | None:
    """Take the foreground threshold that scored best on the kept model's validation.

    ``record`` is that pass's :meth:`ConfusionIoU.threshold_record` (``None`` for a task
    without thresholds), ``score`` the model's validation score.

    Where few labels leave a network unsure of the objects, argmax (0.5 for one class)
    undercounts them; the threshold is chosen on the val chips, never the test chips. The
    region's ``[predict] threshold``, when set, wins (:meth:`Task.card_fields`). ``warn``
    says what is wrong (``log.debug`` on the ranks that do not report).
    """
    if record is None:  # a task scored without thresholds (detection: AP50)
        if score <= 0:
            warn(
                "the model found none of the val objects (val %s %.4f): label more objects, "
                "train longer ([model] steps), or adapt a pretrained base",
                task.score_name,
                score,
            )
        return None
    chosen = dict(record)
    task.best_threshold = chosen["value"]
    floor = chosen.get("floor_iou")
    # within 2 % of it is no better: HARV at 20 steps scored 0.1056 against 0.105 at a
    # threshold of 0.10, one polygon over the whole scene, and nothing was said
    if floor is not None and score <= floor * FLOOR_MARGIN:
        warn(
            "the model does not beat a map of nothing but %s on validation (IoU %.4f, that map "
            "%.4f): label more objects, train longer ([model] steps) (with base none: adapt a "
            "pretrained base instead)",
            " / ".join(first.classes),
            score,
            floor,
        )
    if first.predict.threshold_set is not None:
        return chosen | {"used": first.predict.threshold_set}
    log.info(
        "foreground threshold %.2f: val IoU %.4f (argmax %.4f)",
        chosen["value"],
        chosen["val_iou"],
        chosen["val_iou_argmax"],
    )
    return chosen


#: a validation score below this multiple of the constant map's is no better than it
FLOOR_MARGIN = 1.02

#: the watershed seed thresholds an instance model's val chips are scored at
SEED_THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)


def best_seed_threshold(grid: list[float], f1: list[float], default: float) -> int:
    """Index of the best F1 in ``grid``; among equals the default's, else the nearest to it.

    A tie means validation cannot tell the thresholds apart (a model whose seeds split
    nothing scores alike at all of them): then nothing changes from the default.

    >>> best_seed_threshold([0.3, 0.4, 0.5, 0.6, 0.7], [0.2, 0.5, 0.5, 0.4, 0.5], 0.6)
    2
    >>> best_seed_threshold([0.3, 0.6, 0.8], [0.0, 0.0, 0.0], 0.6)
    1
    """
    return max(range(len(grid)), key=lambda i: (f1[i], -round(abs(grid[i] - default), 6)))


def _record_seed_threshold(
    card: ModelCard, network: torch.nn.Module, val: list[tuple[Region, Path]], first: Region
) -> ModelCard:
    """An instance model's card with its seed threshold, and val's object F1 at each of a grid.

    ``val``: the regions with val chips, and their chips folders; ``first``: the region
    whose ``[predict]`` the card takes (:func:`_card_region`).

    How strong the network's border and contact maps come out differs from region to region:
    too low a threshold merges touching objects, too high splits them. The kept weights'
    objects on the val chips (of every region; never the test chips) are scored as
    ``geotl evaluate`` scores them, object F1 over all classes, at each of
    :data:`SEED_THRESHOLDS`, logged and kept in ``metrics.seed_threshold``. The card keeps
    the default (:data:`~geotl.models.artefact.SEED_THRESHOLD`) unless the region's
    ``[predict] seed_threshold`` sets one: taking val's best was measured on two regions
    and three seeds each, and it did no better on the test chips (once 0.06 F1 worse;
    BENCHMARKS.md, "The seed threshold chosen on the val chips"). A few dozen val objects
    cannot rank the grid; the record says where to look when objects merge or split.
    """
    if card.task != "instances":
        return card
    from geotl.evaluate.segmentation import object_counts_by_seed_threshold
    from geotl.metrics import precision_recall_f1
    from geotl.models.artefact import SEED_THRESHOLD, Artefact

    given = first.predict.given("seed_threshold")
    if not val:
        log.info("no val chips: the seed threshold stays %.2f", given or SEED_THRESHOLD)
        return card if given is None else card.model_copy(update={"seed_threshold": given})
    network.eval()
    artefact = Artefact(card, network, Path("."), next(network.parameters()).device)
    grid = list(SEED_THRESHOLDS)
    counts = sum(object_counts_by_seed_threshold(artefact, r, cdir, "val", grid) for r, cdir in val)
    tp, fp, fn = np.asarray(counts).sum(axis=-1).T  # over classes: (thresholds,) each
    f1 = np.nan_to_num(precision_recall_f1(tp, fp, fn)[2], nan=0.0)
    best = best_seed_threshold(grid, f1.tolist(), SEED_THRESHOLD)
    value = SEED_THRESHOLD if given is None else given
    record: dict[str, Any] = {
        "value": value,
        "best_on_val": grid[best],
        "val_f1_best": round(float(f1[best]), 4),
        "val_f1_default": round(float(f1[grid.index(SEED_THRESHOLD)]), 4),
        "val_objects": int(tp[0] + fn[0]),
        "grid": {f"{t:g}": round(float(v), 4) for t, v in zip(grid, f1, strict=True)},
    }
    log.info(
        "seed threshold %.2f%s; val object F1 by threshold: %s (%d val objects)",
        value,
        " ([predict] seed_threshold)" if given is not None else "",
        ", ".join(f"{t} {v:.3f}" for t, v in record["grid"].items()),
        record["val_objects"],
    )
    return card.model_copy(
        update={"seed_threshold": value, "metrics": card.metrics | {"seed_threshold": record}}
    )


def _window_px(settings: Settings, chip_px: int, first: Region) -> int:
    """The training window: ``[model] window_px`` (or the default), within the chips."""
    if settings.window_px is None:
        return default_window_px(chip_px)
    if settings.window_px > chip_px:
        raise GeotlInputError(
            f"[model] window_px = {settings.window_px} is larger than the chips ({chip_px} px): "
            f"set window_px = {default_window_px(chip_px)} or chip with [chips] size_px >= "
            f"{settings.window_px}",
            first.path,
        )
    return settings.window_px


def _warn_mixed_resolution(regions: list[Region], chips_dirs: list[Path]) -> None:
    """Say so when regions differ in ground resolution or pixel shape: the card records the first's.

    The shape counts apart from the mean: a UTM region (10 x 10 m) and a degree-grid one at
    51 N (7.7 x 12.3 m) have the same mean resolution, yet the card records one shape and
    predict refuses (or resamples) imagery of the other, as it would the other region's.
    """
    from geotl.predict.scene import model_pixel_size_m, other_pixel_size, pixel_sides

    indexes = [read_chip_index(cdir) for cdir in chips_dirs]
    sides = [index.pixel_size_m() for index in indexes]
    known = [(r, xy) for r, xy in zip(regions, sides, strict=True) if xy is not None]
    if len(known) < 2:
        return
    res = [(x + y) / 2 for _, (x, y) in known]
    first_r, first_xy = known[0]
    other_scale = max(res) / min(res) > 1.25
    # another shape at the first's mean resolution: what predict would refuse of it
    other_shape = any(
        other_pixel_size(first_xy, model_pixel_size_m(res[0], x / y)) for _, (x, y) in known
    )
    if not (other_scale or other_shape):
        return
    # the UTM zone of each region whose pixels are not square (a degree grid)
    zones = " / ".join(
        dict.fromkeys(
            f"EPSG:{z}"
            for index, xy in zip(indexes, sides, strict=True)
            if xy is not None and other_pixel_size(xy, (xy[1], xy[1])) is not None
            if (z := index.utm_epsg()) is not None
        )
    )
    log.warning(
        "regions differ in ground %s (%s): the model card records %s (%s's), and predict "
        "refuses (or with --resample, resamples) imagery of another; %s",
        "pixel size and shape"
        if other_scale and other_shape
        else ("resolution" if other_scale else "pixel shape"),
        ", ".join(f"{r.name} {pixel_sides(xy)}" for r, xy in known),
        pixel_sides(first_xy),
        first_r.name,
        "warp the scenes to their UTM zone at one resolution (gdalwarp -t_srs "
        f"{zones or '<its UTM zone>'} -tr RES RES) to train on one pixel shape"
        if other_shape
        else "resample the scenes to one resolution (gdalwarp -tr) to train at one scale",
    )


def _check_inputs(regions: list[Region], options: TrainOptions) -> None:
    """Regions that can train together, and options that fit them and the machine."""
    if not regions:
        raise GeotlInputError("give at least one region file")
    first = regions[0]
    seen: dict[str, Region] = {}
    for r in regions:
        if r.name in seen:
            same = r.path.resolve() == seen[r.name].path.resolve()
            raise GeotlInputError(
                "is given twice: give each region once"
                if same
                else f"has the name '{r.name}' of {seen[r.name].path.name}: each region needs a "
                "name of its own (its chips, its record in the model card)",
                r.path,
            )
        seen[r.name] = r
    for r in regions[1:]:
        if r.task != first.task:
            raise GeotlInputError(
                f"task '{r.task}' differs from {first.name}'s '{first.task}': one model has one "
                "task; set the same task in every region file, or train them apart",
                r.path,
            )
        if r.chips.size_px != first.chips.size_px:
            raise GeotlInputError(
                f"[chips] size_px = {r.chips.size_px} differs from {first.name}'s "
                f"{first.chips.size_px}: set the same size_px in every region file",
                r.path,
            )
        if r.classes != first.classes:
            raise GeotlInputError(
                f"classes {r.classes} differ from {first.name}'s {first.classes}: train regions with the same classes",
                r.path,
            )
        if sorted(canonical_band(b) for b in r.imagery.bands) != sorted(
            canonical_band(b) for b in first.imagery.bands
        ):
            raise BandMismatchError(
                f"bands {r.imagery.bands} differ from {first.name}'s {first.imagery.bands}: one "
                "model takes one set of bands; give both regions the same (gdal_translate -b to "
                "drop, gdalbuildvrt -separate to stack), or train one and adapt it to the other "
                "with --base model:MODEL_DIR",
                r.path,
            )
    if options.chips and len(options.chips) != len(regions):
        raise GeotlInputError(
            f"{len(options.chips)} --chips folder(s) for {len(regions)} region(s): give one per region, in order"
        )
    _card_region(regions)  # one threshold, seed threshold and NMS IoU for all
    if options.device not in ("cpu", "cuda"):
        raise GeotlInputError(f"--device {options.device!r}: use cpu or cuda")
    require_device(options.device)


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


def chips_pixel_aspect(index: ChipIndex) -> float:
    """East-west / north-south ground size of the chips' pixels, the median over the chips.

    The card records it, and predict resamples scenes of another shape to it
    (:meth:`~geotl.chips.ChipIndex.pixel_aspects`: cos(latitude) on a square-degree grid).
    """
    return index.pixel_aspect()


def chips_lossy(index: ChipIndex) -> list[str] | None:
    """The lossy codecs the chips' scenes went through (sorted; ``[]`` none), for the card.

    The chipset's record of its scenes gives them where it holds them (``lossy``); else each
    scene is opened where the chips were cut from it. None when a scene cannot be opened
    (chips moved to another machine): not known, so predict warns of every lossy scene as
    it does for cards written before this was recorded.
    """
    recorded = {str(s["path"]): s.get("lossy") for s in index.meta.get("scenes", [])}
    found: set[str] = set()
    for scene in dict.fromkeys(index.frame["scene"].astype(str).tolist()):
        codecs = recorded.get(scene)
        if codecs is None:
            try:
                with open_raster(scene) as ds:
                    codecs = lossy_codecs(ds)
            except RasterError as exc:
                log.info("%s: its compression is not recorded in the model card (%s)", scene, exc)
                return None
        found.update(codecs)
    return sorted(found)


def _model_card(
    regions: list[Region],
    task: Task,
    chips_dirs: list[Path],
    band_order: list[str],
    norm: Normalisation,
    spec: NetworkSpec,
    base: LoadedBase,
    settings: Settings,
    records: list[RegionRecord],
    metrics: dict[str, Any],
) -> ModelCard:
    first = _card_region(regions)
    index = read_chip_index(chips_dirs[0])
    res = float(np.median(index.frame["resolution_m"])) if len(index.frame) else 0.0
    pixel_aspect = chips_pixel_aspect(index)
    entry = base.entry
    return ModelCard(
        name="-".join(r.name for r in regions)[:80],
        classes=list(first.classes),
        bands=band_order,
        normalisation=norm,
        chip_size_px=int(index.meta.get("size_px", first.chips.size_px)),
        resolution_m=res,
        pixel_aspect=pixel_aspect,
        lossy=chips_lossy(index),
        network=spec,
        base=BaseModelRef(
            id=entry.id,
            architecture=entry.architecture,
            licence=entry.licence,
            commercial_use=entry.commercial_use,
            sha256=entry.sha256,
            pretraining=entry.pretraining,
        ),
        freeze=settings.freeze if entry.id != "none" else "none",  # random weights: all train
        label_budget=settings.max_labels,
        regions=records,
        seed=settings.seed,
        epochs=settings.epochs,  # None: the run was set in steps
        steps=int(metrics["steps_run"]),
        metrics=metrics,
        **task.card_fields(_with_min_area(first, regions, chips_dirs)),
    )


#: ``[predict]`` keys one model card holds a single value of, and that training itself uses
_ONE_VALUE = ("threshold", "nms_iou", "seed_threshold")


def _card_region(regions: list[Region]) -> Region:
    """The first region, with the ``[predict]`` values another region trained with it sets.

    The model card holds one threshold and one NMS IoU (validation scores with the
    threshold, too): regions that set different ones are refused; one set by any region
    holds for all (it was silently the first region's or nothing).

    Raises:
        GeotlInputError: two regions set different values of one of those keys.
    """
    first = regions[0]
    given: dict[str, tuple[Any, Region]] = {}
    for r in regions:
        for key in _ONE_VALUE:
            value = r.predict.given(key)
            if value is None:
                continue
            if key in given and given[key][0] != value:
                raise GeotlInputError(
                    f"[predict] {key} = {value} differs from {given[key][1].name}'s "
                    f"{given[key][0]}: one model card holds one {key}; set the same in every "
                    "region file (or leave it out of all but one)",
                    r.path,
                )
            given.setdefault(key, (value, r))
    update = {k: v for k, (v, r) in given.items() if r is not first}
    if not update:
        return first
    return first.model_copy(update={"predict": first.predict.model_copy(update=update)})


def _with_min_area(first: Region, regions: list[Region], chips_dirs: list[Path]) -> Region:
    """``first`` with the smallest minimum object area of all the regions trained together.

    The card's ``min_area_m2`` is what predict uses without a region file; each region's
    own (``[predict] min_area_m2``, else derived from its labels over its chips: the
    objects the model learns from, read without the rest of a national layer) still holds
    where its region file is given. The smallest drops no region's objects (the first
    region's alone dropped the small buildings of a second region with smaller ones).
    """
    from geotl.train.tasks.base import default_min_area_m2

    own = {}
    for r, cdir in zip(regions, chips_dirs, strict=True):
        given = r.predict.given("min_area_m2")
        own[r.name] = (
            given if given is not None else default_min_area_m2(r, read_chip_index(cdir).frame)
        )
    smallest = min(own.values())
    if len(set(own.values())) > 1:
        log.info(
            "regions' smallest objects differ (%s): the model card keeps %g m2; each region "
            "file keeps its own at predict and monitor time",
            ", ".join(f"{name} {v:g} m2" for name, v in own.items()),
            smallest,
        )
    update = {"min_area_m2": smallest, "simplify_px": min(r.predict.simplify_px for r in regions)}
    return first.model_copy(update={"predict": first.predict.model_copy(update=update)})


def _precision(cuda: bool) -> Any:
    """bf16 mixed precision where the GPU has it (no loss scaler, so no sync per step)."""
    if not cuda:
        return "32-true"
    return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
