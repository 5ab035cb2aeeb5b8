"""``geotl chip REGION.toml --out DIR [--overwrite]``."""

from __future__ import annotations

from pathlib import Path

import click

from geotl.chips import chip_region
from geotl.cli.options import out_dir_option, overwrite_option, say
from geotl.config import load_region


@click.command("chip")
@click.argument("region_file", metavar="REGION.toml", type=click.Path(path_type=Path))
@out_dir_option(
    "Chips folder to write (chips.parquet, chipset.json, images/, masks/).", file_okay=False
)
@overwrite_option("Replace DIR if it exists and is not empty.")
def command(region_file: Path, out_dir: Path, overwrite: bool) -> None:
    """Cut a region's scenes and labels into chip/mask GeoTIFFs with a spatial split.

    Prints the chips folder on stdout; progress and the summary go to stderr.
    """
    region = load_region(region_file)
    summary = chip_region(region, out_dir, overwrite=overwrite)
    say(f"geotl chip: {summary.line()}")
    click.echo(str(summary.out_dir))
