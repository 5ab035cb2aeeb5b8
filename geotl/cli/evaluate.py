"""``geotl evaluate MODEL_DIR REGION.toml [--out metrics.json] [--curve ... --bases ...]``.

MODEL_DIR may be an ``.onnx`` file ``geotl export`` wrote (fp32 or int8), scored the same
way in ONNX Runtime.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from geotl.cli.options import (
    chips_dir_option,
    device_option,
    overwrite_option,
    say,
    seed_option,
)
from geotl.cli.train import pixel_model_option
from geotl.config import load_region
from geotl.errors import GeotlInputError


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise GeotlInputError(
            f"--curve {text!r}: give label budgets as integers, e.g. 100,300,1000"
        ) from None
    if not values or min(values) < 1:
        raise GeotlInputError(f"--curve {text!r}: give positive label budgets, e.g. 100,300,1000")
    return list(dict.fromkeys(values))  # a budget given twice is one point


@click.command("evaluate")
@click.argument("model_dir", metavar="MODEL_DIR", type=click.Path(path_type=Path))
@click.argument("region_file", metavar="REGION.toml", type=click.Path(path_type=Path))
@click.option(
    "--out",
    "out_file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Write the metrics (or curve table) JSON here.",
)
@chips_dir_option("The region's chips folder.")
@click.option(
    "--curve",
    default=None,
    help="Label budgets, e.g. 100,300,1000,3000: train+evaluate per budget and base; MODEL_DIR receives the models.",
)
@click.option(
    "--bases",
    default="pkg:efficientnet-lite0,none",
    show_default=True,
    help="Base ids for --curve, comma-separated.",
)
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Epochs per curve run.")
@click.option(
    "--steps",
    type=click.IntRange(min=1),
    default=None,
    help="Optimizer steps per curve run (wins over --epochs; default: [model]).",
)
@pixel_model_option
@overwrite_option(
    "Replace an existing --out file (--curve resumes its own table of the region without it)."
)
@seed_option()
@device_option()
def command(
    model_dir: Path,
    region_file: Path,
    out_file: Path | None,
    chips_dir: Path | None,
    curve: str | None,
    bases: str,
    epochs: int | None,
    steps: int | None,
    pixel_model: bool | None,
    seed: int,
    device: str,
    overwrite: bool,
) -> None:
    """Pixel IoU/F1 and object P/R/F1 on the region's test split (JSON on stdout).

    MODEL_DIR: a model folder, or an .onnx file from geotl export (fp32 or int8, run in
    ONNX Runtime; its tile size must be the chips'). With --curve: label-efficiency curves
    (JSON table + PNG plot beside it).
    """
    from geotl.evaluate import evaluate_model, headline, label_curve
    from geotl.train import TrainOptions

    region = load_region(region_file)
    curve_only = {"--epochs": epochs, "--steps": steps, "--pixel-model": pixel_model}
    given = [name for name, value in curve_only.items() if value is not None]
    if curve is None and given:
        # they shape the models a curve trains; a plain evaluate trains nothing
        raise GeotlInputError(
            f"{', '.join(given)} only appl{'y' if len(given) > 1 else 'ies'} with --curve (the "
            f"models it trains): drop {'them' if len(given) > 1 else 'it'}, or add --curve BUDGETS"
        )
    if curve is not None:
        if model_dir.is_file():  # an .onnx export: scored without --curve
            raise GeotlInputError(
                "is a file: --curve trains its models into MODEL_DIR, a folder; pass a folder, "
                "or drop --curve to score an .onnx file",
                model_dir,
            )
        budgets = _int_list(curve)
        base_ids = list(dict.fromkeys(b.strip() for b in bases.split(",") if b.strip()))
        if not base_ids:
            raise GeotlInputError(
                f"--bases {bases!r}: give base ids, e.g. pkg:efficientnet-lite0,none"
            )
        options = TrainOptions(
            chips=(chips_dir,) if chips_dir else (),
            epochs=epochs,
            steps=steps,
            val_every=(
                min(steps, region.model.val_every)
                if steps is not None and region.model.val_every is not None
                else None
            ),
            seed=seed,
            device=device,
            pixel_model=pixel_model,
        )
        table = label_curve(
            region, model_dir, budgets, base_ids, options, out_json=out_file, overwrite=overwrite
        )
        click.echo(json.dumps(table, indent=2))
        return
    metrics = evaluate_model(
        model_dir,
        region,
        chips_dir=chips_dir,
        out=out_file,
        device=device,
        seed=seed,
        overwrite=overwrite,
    )
    click.echo(json.dumps(metrics, indent=2))
    say(f"geotl evaluate: {headline(metrics)} ({metrics.get('chips')} test chips)")
