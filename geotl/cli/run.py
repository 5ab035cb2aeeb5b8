"""``geotl run REGION.toml --out DIR``."""

from __future__ import annotations

from pathlib import Path

import click

from geotl.cli.options import device_option, out_dir_option, overwrite_option, say
from geotl.errors import SceneError
from geotl.workflow import run_region


@click.command("run")
@click.argument("region", metavar="REGION.toml", type=click.Path(path_type=Path))
@out_dir_option()
@overwrite_option("Replace an existing output folder.")
@device_option()
def command(region: Path, out_dir: Path, overwrite: bool, device: str) -> None:
    """Chip, train, evaluate and predict REGION in one go.

    Ends by printing the GeoJSON and quicklook paths on stdout.
    """
    from geotl.evaluate import headline

    summary = run_region(region, out_dir, overwrite=overwrite, device=device)
    shown = f" ({headline(summary.metrics)})" if summary.metrics else ""
    say(
        f"model {summary.model_dir}; metrics {summary.metrics_path}{shown}; "
        f"{summary.features} polygon(s); open {summary.geojson} in QGIS",
    )
    click.echo(str(summary.geojson))
    for q in summary.quicklooks:
        click.echo(str(q))
    if summary.failed:
        detail = "; ".join(f"{p}: {r}" for p, r in summary.failed)
        raise SceneError(f"{len(summary.failed)} scene(s) skipped ({detail})")
