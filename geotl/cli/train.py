"""``geotl train REGION.toml [REGION.toml ...] --out DIR``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import click

from geotl.cli.options import device_option, out_dir_option, overwrite_option, say, seed_option
from geotl.config import load_region
from geotl.train import TrainOptions, train_model
from geotl.train.devices import STRATEGIES, DeviceLayout, launched_rank, said_once

if TYPE_CHECKING:
    from geotl.models.artefact import ModelCard


#: shared with ``geotl evaluate --curve``, whose rows train models the same way
pixel_model_option = click.option(
    "--pixel-model/--no-pixel-model",
    default=None,
    help="Fit a per-pixel model beside a segmentation network and keep it when it scores "
    "better on validation (default: [model] pixel_model).",
)


@click.command("train")
@click.argument(
    "region_files",
    metavar="REGION.toml...",
    nargs=-1,
    required=True,
    type=click.Path(path_type=Path),
)
@out_dir_option("Model folder to write.", file_okay=False)
@click.option(
    "--chips",
    "chips",
    multiple=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="Chips folder (one per region, in order); default: chip into DIR/chips.",
)
@click.option(
    "--base",
    default=None,
    help="Base model id (see 'geotl models list'); default: the region's [model] base.",
)
@click.option(
    "--max-labels",
    type=click.IntRange(min=1),
    default=None,
    help="Label budget: labelled objects training may use.",
)
@click.option(
    "--steps",
    type=click.IntRange(min=1),
    default=None,
    help="Optimizer steps (early stopping on val IoU); default: the region's [model] steps.",
)
@click.option(
    "--val-every",
    type=click.IntRange(min=1),
    default=None,
    help="Validate every N steps (default: [model] val_every).",
)
@click.option(
    "--epochs",
    type=click.IntRange(min=1),
    default=None,
    help="Epochs instead of --steps: passes over the train chips, at least "
    "[model] samples_per_epoch windows each (validation after each, unless --val-every is "
    "given).",
)
@click.option(
    "--freeze",
    type=click.Choice(["none", "backbone", "partial"]),
    default=None,
    help="What of the encoder stays frozen.",
)
@click.option(
    "--refit/--no-refit",
    default=None,
    help="After validation chose the step, train again on the train + val chips for that "
    "many steps and keep those weights (default: [model] refit).",
)
@pixel_model_option
@seed_option("Seed for sampling, init and augmentation.")
@device_option("cuda adds mixed precision.")
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=None,
    help="Chips per batch (default: region's [model]).",
)
@click.option(
    "--encoder", default=None, help="Architecture for --base none or file: (smp encoder name)."
)
@click.option(
    "--devices",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Devices per node (GPUs with --device cuda, else CPU processes); "
    "--batch-size is split between them.",
)
@click.option(
    "--num-nodes",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Machines (start geotl on each: srun or torchrun, see README).",
)
@click.option(
    "--strategy",
    type=click.Choice(STRATEGIES),
    default="ddp",
    show_default=True,
    help="How several processes train together (Lightning strategy).",
)
@overwrite_option("Replace an existing model (and its chips) in DIR.")
def command(
    region_files: tuple[Path, ...],
    out_dir: Path,
    chips: tuple[Path, ...],
    base: str | None,
    max_labels: int | None,
    steps: int | None,
    val_every: int | None,
    epochs: int | None,
    freeze: str | None,
    refit: bool | None,
    pixel_model: bool | None,
    seed: int,
    device: str,
    batch_size: int | None,
    encoder: str | None,
    devices: int,
    num_nodes: int,
    strategy: str,
    overwrite: bool,
) -> None:
    """Adapt a pretrained base model to one or more regions and train a U-Net.

    Prints the model folder on stdout; progress (every validation) goes to stderr. With
    several devices, only the first process reports (and writes the model folder).
    """
    rank = launched_rank(DeviceLayout(devices, num_nodes, strategy))
    if rank:
        logging.getLogger("geotl").setLevel(logging.WARNING)
    with said_once():  # torchrun's processes all read the same bad region file
        regions = [load_region(p) for p in region_files]
    options = TrainOptions(
        chips=tuple(chips),
        base=base,
        max_labels=max_labels,
        steps=steps,
        val_every=val_every,
        epochs=epochs,
        freeze=freeze,
        refit=refit,
        pixel_model=pixel_model,
        seed=seed,
        device=device,
        batch_size=batch_size,
        encoder=encoder,
        overwrite=overwrite,
        devices=devices,
        num_nodes=num_nodes,
        strategy=strategy,
    )
    card = train_model(regions, out_dir, options)
    if rank:
        return
    say(summary(card))
    click.echo(str(out_dir))


def summary(card: ModelCard) -> str:
    """The person's line: the model id, its validation score and which weights were kept.

    A per-pixel model or the base's own weights kept in place of the trained network is
    said here too (it was only in the log, hidden by ``-q``).
    """
    from geotl.train.tasks import TASKS

    val = card.metrics.get("val_iou")  # the task's validation score (a detector's AP50)
    name = TASKS[card.task].score_name
    line = f"geotl train: {card.model_id}"
    if isinstance(val, float):
        # without val chips the loop scored the training chips: not a held-out score
        on = "train-chip" if card.metrics.get("validated_on") == "train" else "val"
        line += f", {on} {name} {val:.4f}"
        if on == "train-chip":
            line += " (no val chips: [split] gave none)"
    if card.kept == "pixel model":
        network = card.metrics["pixel_model"]["network_val_iou"]
        line += f" (the per-pixel model; the network's val {name} {network:.4f})"
    elif card.kept == "base weights":
        line += " (the base model's own weights: no trained step beat them on validation)"
    return line
