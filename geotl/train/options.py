"""``geotl train``'s options and the settings they resolve to (options over ``[model]``)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from geotl.config import Region
from geotl.errors import GeotlInputError

__all__ = [
    "Schedule",
    "Settings",
    "TrainOptions",
    "default_val_every",
    "resolve_schedule",
    "resolve_settings",
]

#: validation interval when nothing sets one (a run of fewer steps validates 5 times)
VAL_EVERY = 50


def default_val_every(steps: int | None) -> int:
    """Steps between validations when neither ``--val-every`` nor ``[model]`` sets them.

    >>> default_val_every(500), default_val_every(40), default_val_every(3), default_val_every(None)
    (50, 8, 1, 50)
    """
    if steps is None:
        return VAL_EVERY
    return min(VAL_EVERY, max(1, steps // 5))


@dataclass(frozen=True)
class TrainOptions:
    """Options of ``geotl train``; ``None`` falls back to the region's ``[model]`` table."""

    chips: tuple[Path, ...] = ()
    base: str | None = None
    max_labels: int | None = None
    steps: int | None = None
    epochs: int | None = None  # epochs of at least samples_per_epoch windows instead of steps
    samples_per_epoch: int | None = None
    val_every: int | None = None
    min_steps: int | None = None
    freeze: str | None = None
    seed: int = 0
    device: str = "cpu"
    batch_size: int | None = None
    lr: float | None = None
    encoder_lr: float | None = None
    loss: str | None = None
    patience: int | None = None
    refit: bool | None = None  # train again on train + val for the chosen steps
    pixel_model: bool | None = None  # None: [model] pixel_model
    window_px: int | None = None
    encoder: str | None = None  # architecture for --base none / file:
    overwrite: bool = False
    num_workers: int = 0
    devices: int = 1  # devices (or CPU processes) per node
    num_nodes: int = 1
    strategy: str = "ddp"  # how several processes train together (geotl.train.devices)


@dataclass(frozen=True)
class Settings:
    """The training settings in force: each option, else the first region's ``[model]``."""

    base: str
    steps: int | None  # None: epochs
    epochs: int | None
    samples_per_epoch: int
    val_every: int
    min_steps: int | None
    warmup_fraction: float
    window_px: int | None
    scale_jitter: float
    freeze: str
    batch_size: int
    lr: float
    encoder_lr: float
    loss: str
    patience: int
    refit: bool
    class_prior: str
    pixel_model: bool
    max_labels: int | None
    require_commercial: bool
    seed: int
    val_every_set: bool = False  # --val-every (or val_every beside [model] epochs): kept


@dataclass(frozen=True)
class Schedule:
    """How long training runs, in optimizer steps."""

    steps: int
    val_every: int
    min_steps: int
    warmup_steps: int


def resolve_settings(regions: list[Region], options: TrainOptions) -> Settings:
    """Options over the first region's ``[model]``; any region may demand a commercial licence.

    ``--steps`` wins over ``--epochs``, which wins over the region's ``epochs`` and ``steps``.
    """
    cfg = regions[0].model
    lr = options.lr or cfg.lr
    if options.steps is not None:
        steps, epochs = options.steps, None
    elif options.epochs is not None or cfg.epochs is not None:
        steps, epochs = None, options.epochs or cfg.epochs
    else:
        steps, epochs = cfg.steps, None
    return Settings(
        base=options.base or regions[0].base_model(),
        steps=steps,
        epochs=epochs,
        samples_per_epoch=options.samples_per_epoch or cfg.samples_per_epoch,
        val_every=options.val_every or cfg.val_every or default_val_every(steps),
        # the region's val_every goes with the region's own schedule (its steps, or epochs)
        val_every_set=options.val_every is not None
        or ({"val_every", "epochs"} <= cfg.model_fields_set and options.epochs is None),
        min_steps=options.min_steps if options.min_steps is not None else cfg.min_steps,
        warmup_fraction=cfg.warmup_fraction,
        window_px=options.window_px or cfg.window_px,
        scale_jitter=cfg.scale_jitter,
        freeze=options.freeze or cfg.freeze,
        batch_size=options.batch_size or cfg.batch_size,
        lr=lr,
        encoder_lr=options.encoder_lr or cfg.encoder_lr or lr,
        loss=options.loss or cfg.loss,
        patience=options.patience or cfg.patience,
        refit=options.refit if options.refit is not None else cfg.refit,
        class_prior=cfg.class_prior,
        pixel_model=options.pixel_model if options.pixel_model is not None else cfg.pixel_model,
        max_labels=options.max_labels if options.max_labels is not None else cfg.max_labels,
        require_commercial=any(r.model.require_commercial_licence for r in regions),
        seed=options.seed,
    )


def resolve_schedule(settings: Settings, n_train_chips: int, region: Region) -> Schedule:
    """Steps, validation interval, minimum and warm-up for this run.

    With ``epochs``, an epoch is ``ceil(max(chips, samples_per_epoch) / batch_size)`` steps
    (random windows, so a region of 16 chips still gets a useful number of updates) and
    validation follows every epoch (unless ``val_every`` is given). Either way early stopping never ends a run, nor does
    selection keep weights, before ``min_steps`` (default: a third of the steps).

    Raises:
        GeotlInputError: so few steps that no validation would run.

    >>> from types import SimpleNamespace as NS
    >>> s = NS(steps=None, epochs=20, samples_per_epoch=400, batch_size=16, val_every=50,
    ...        min_steps=None, warmup_fraction=0.1)
    >>> resolve_schedule(s, 16, NS(path="r.toml"))      # 16 chips: 25 steps per epoch
    Schedule(steps=500, val_every=25, min_steps=166, warmup_steps=50)
    >>> resolve_schedule(s, 3200, NS(path="r.toml"))    # 3200 chips: one pass, 200 steps
    Schedule(steps=4000, val_every=200, min_steps=1333, warmup_steps=400)
    >>> resolve_schedule(NS(**{**vars(s), "val_every_set": True}), 16, NS(path="r.toml"))
    Schedule(steps=500, val_every=50, min_steps=166, warmup_steps=50)
    """
    if settings.steps is None:
        assert settings.epochs is not None
        windows = max(n_train_chips, settings.samples_per_epoch, settings.batch_size)
        per_epoch = max(1, math.ceil(windows / settings.batch_size))
        steps = settings.epochs * per_epoch
        val_every = settings.val_every if getattr(settings, "val_every_set", False) else per_epoch
    else:
        steps, val_every = settings.steps, settings.val_every
        if steps < val_every:
            raise GeotlInputError(
                f"steps = {steps} is below val_every = {val_every}: no validation would run; "
                f"raise --steps, or pass --val-every {max(1, steps // 5)} (or set [model] "
                f"val_every = {max(1, steps // 5)})",
                region.path,
            )
    min_steps = min(steps, settings.min_steps if settings.min_steps is not None else steps // 3)
    return Schedule(
        steps=steps,
        val_every=val_every,
        min_steps=min_steps,
        warmup_steps=round(settings.warmup_fraction * steps),
    )
