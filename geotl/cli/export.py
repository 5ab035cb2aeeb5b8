"""``geotl export MODEL_DIR --onnx OUT.onnx [--int8]``."""

from __future__ import annotations

from pathlib import Path

import click

from geotl.cli.options import chips_dir_option, overwrite_option, say
from geotl.export import export_onnx


@click.command("export")
@click.argument("model_dir", type=click.Path(path_type=Path))
@click.option(
    "--onnx",
    "out",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="The ONNX file to write (a STAC item OUT.stac.json is written beside it).",
)
@click.option(
    "--int8",
    is_flag=True,
    help="Quantise to int8 (static, calibrated on the training region's chips).",
)
@click.option(
    "--tile-px",
    type=click.IntRange(min=16),
    help="Fixed tile size of the graph (default: predict's window, max(256, chip size)).",
)
@click.option(
    "--calibrate",
    "region_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Region file whose training chips calibrate --int8 (default: the card's region).",
)
@chips_dir_option("That region's chips folder (default: beside the model, else chipped afresh).")
@overwrite_option("Replace existing output files.")
def command(
    model_dir: Path,
    out: Path,
    int8: bool,
    tile_px: int | None,
    region_path: Path | None,
    chips_dir: Path | None,
    overwrite: bool,
) -> None:
    """Export the model in MODEL_DIR to ONNX, with Deepness metadata and a STAC MLM item.

    Prints the files written on stdout, one per line.
    """
    result = export_onnx(
        model_dir,
        out,
        int8=int8,
        tile_px=tile_px,
        region_path=region_path,
        chips_dir=chips_dir,
        overwrite=overwrite,
    )
    click.echo(str(result.path))
    click.echo(str(result.stac))
    say(
        f"geotl export: {result.card.model_id}, {result.tile_px} px tiles, "
        f"{result.size_bytes / 1e6:.1f} MB, {result.export_s:.1f} s",
    )
