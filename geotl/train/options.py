"""``geotl train``'s options and the settings they resolve to (options over ``[model]``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from geotl.config import Region

__all__ = ["Settings", "TrainOptions", "resolve_settings"]


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


@dataclass(frozen=True)
class Settings:
    """The training settings in force: each option, else the first region's ``[model]``."""

    base: str
    epochs: int
    freeze: str
    batch_size: int
    lr: float
    encoder_lr: float
    loss: str
    patience: int
    max_labels: int | None
    require_commercial: bool
    seed: int


def resolve_settings(regions: list[Region], options: TrainOptions) -> Settings:
    """Options over the first region's ``[model]``; any region may demand a commercial licence."""
    cfg = regions[0].model
    lr = options.lr or cfg.lr
    return Settings(
        base=options.base or cfg.base,
        epochs=options.epochs or cfg.epochs,
        freeze=options.freeze or cfg.freeze,
        batch_size=options.batch_size or cfg.batch_size,
        lr=lr,
        encoder_lr=options.encoder_lr or cfg.encoder_lr or lr * 0.1,
        loss=options.loss or cfg.loss,
        patience=options.patience or cfg.patience,
        max_labels=options.max_labels if options.max_labels is not None else cfg.max_labels,
        require_commercial=any(r.model.require_commercial_licence for r in regions),
        seed=options.seed,
    )
