"""``geotl suggest REGION.toml --model MODEL_DIR -n N -o AREAS.gpkg``."""

from __future__ import annotations

from pathlib import Path

import click

from geotl.cli.options import (
    chips_dir_option,
    device_option,
    model_dir_option,
    overwrite_option,
    resample_option,
    say,
)
from geotl.config import load_region
from geotl.io.atomic import check_output_file, check_writable


@click.command("suggest")
@click.argument("region_file", metavar="REGION.toml", type=click.Path(path_type=Path))
@model_dir_option("Model folder (geotl train) for the region's classes and bands.", required=True)
@click.option("-n", "n", required=True, type=int, help="How many areas to suggest.")
@click.option(
    "-o",
    "--out",
    "out",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="GeoPackage of the areas (scene CRS); AREAS.qml and AREAS.png are written beside it.",
)
@click.option(
    "--size-m",
    type=click.FloatRange(min=0, min_open=True),
    help="Side of the squares in metres (default: two chip widths).",
)
@click.option(
    "--append-to",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Also append the areas to this complete_within file (created when missing).",
)
@chips_dir_option(
    "The region's chips, for its test split (default: MODEL_DIR/chips, else chip it)."
)
@device_option()
@resample_option()
@overwrite_option("Replace existing output files.")
def command(
    region_file: Path,
    model_dir: Path,
    n: int,
    out: Path,
    size_m: float | None,
    append_to: Path | None,
    chips_dir: Path | None,
    device: str,
    resample: bool,
    overwrite: bool,
) -> None:
    """Suggest N squares to label next where the model is least sure.

    Squares lie outside complete and test areas. Prints the files written on stdout.
    """
    # before importing the suggester (seconds): a mistyped -o folder is said at once
    check_output_file(out, overwrite)
    check_writable([out])
    region = load_region(region_file)
    from geotl.suggest import SuggestOptions, suggest_areas

    options = SuggestOptions(
        n=n,
        size_m=size_m,
        chips_dir=chips_dir,
        append_to=append_to,
        overwrite=overwrite,
        device=device,
        resample=resample,
    )
    summary = suggest_areas(region, model_dir, out, options)
    for path in (summary.gpkg, summary.qml, summary.contact_sheet, summary.appended_to):
        if path is not None:
            click.echo(str(path))
    say(
        f"geotl suggest: {len(summary.areas)} of {summary.n_candidates} candidate areas",
    )
