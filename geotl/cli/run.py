"""``geotl run REGION.toml --out DIR``."""

from __future__ import annotations

from pathlib import Path

import click

from geotl.errors import SceneError
from geotl.workflow import run_region


@click.command("run")
@click.argument("region", type=click.Path(path_type=Path))
@click.option(
    "--out", "out_dir", required=True, type=click.Path(path_type=Path), help="Output folder."
)
@click.option("--overwrite", is_flag=True, help="Replace an existing output folder.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
def command(region: Path, out_dir: Path, overwrite: bool, device: str) -> None:
    """Chip, train, evaluate and predict REGION in one go.

    Ends by printing the GeoJSON and quicklook paths on stdout.
    """
    summary = run_region(region, out_dir, overwrite=overwrite, device=device)
    metrics = summary.metrics
    f1 = metrics.get("object", {}).get("f1") if isinstance(metrics.get("object"), dict) else None
    click.echo(
        f"model {summary.model_dir}; metrics {summary.metrics_path}"
        + (f" (object F1 {f1:.2f})" if isinstance(f1, float) else "")
        + f"; {summary.features} polygon(s); open {summary.geojson} in QGIS",
        err=True,
    )
    click.echo(str(summary.geojson))
    for q in summary.quicklooks:
        click.echo(str(q))
    if summary.failed:
        detail = "; ".join(f"{p}: {r}" for p, r in summary.failed)
        raise SceneError(f"{len(summary.failed)} scene(s) skipped ({detail})")
