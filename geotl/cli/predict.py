"""``geotl predict MODEL_DIR|MODEL.onnx SCENE.tif [SCENE.tif ...] -o OUT.geojson``."""

from __future__ import annotations

from pathlib import Path

import click

from geotl.cli.options import cluster_option, device_option, overwrite_option, resample_option, say
from geotl.errors import SceneError
from geotl.io.rasters import scene_path
from geotl.predict import PredictOptions, predict_scenes
from geotl.predict.engine import ENGINES


@click.command("predict")
@click.argument("model_dir", type=click.Path(path_type=Path))
@click.argument("scenes", nargs=-1, required=True)
@click.option(
    "-o",
    "--out",
    "geojson",
    required=True,
    type=click.Path(path_type=Path),
    help="Output GeoJSON (RFC 7946, EPSG:4326); a QGIS style OUT.qml is written beside it.",
)
@click.option(
    "--gpkg",
    type=click.Path(path_type=Path),
    help="Also write a GeoPackage in the scene's CRS (styled for QGIS).",
)
@click.option(
    "--quicklook",
    type=click.Path(path_type=Path),
    help="PNG of the scene with the polygons (one per scene: NAME_<scene>.png).",
)
@click.option(
    "--probabilities",
    type=click.Path(path_type=Path),
    help="Cloud-Optimised GeoTIFF of the blended class probabilities (one per scene: "
    "NAME_<scene>.tif), with a QGIS style NAME.qml beside it.",
)
@device_option(here=False)  # with --cluster, the workers' device: checked where it loads
@click.option(
    "--engine",
    type=click.Choice(list(ENGINES)),
    default="auto",
    show_default=True,
    help="Forward passes in PyTorch or ONNX Runtime (CPU; a model folder is exported once "
    "and cached). auto: ONNX Runtime on CPU and for .onnx files, else PyTorch.",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    help="ONNX Runtime threads (default: every core).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    help="Processes that vectorise row strips of a scene side by side (default: every usable "
    "core for scenes of 4 Mpx or more, else 1). The polygons are the same for any number.",
)
@click.option(
    "--read-threads",
    type=click.IntRange(min=1),
    help="Threads reading windows ahead (default: 16 for /vsicurl/ and other remote "
    "files, else a quarter of the cores, 1 to 4).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    help="Windows per forward pass (default: 8; PyTorch on the CPU: 4 of 256 px, as many "
    "as make 262,144 px).",
)
@click.option(
    "--window",
    "window_px",
    type=click.IntRange(min=16),
    help="Inference window in pixels (default: max(256, chip size)).",
)
@click.option(
    "--overlap",
    "overlap_px",
    type=click.IntRange(min=0),
    help="Window overlap in pixels (default: a quarter window).",
)
@click.option(
    "--threshold",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    help="Minimum class probability (default: the model card's).",
)
@click.option(
    "--min-area",
    "min_area_m2",
    type=click.FloatRange(min=0),
    help="Drop polygons smaller than this and fill holes under half of it "
    "(m2; default: the model card's).",
)
@click.option(
    "--simplify",
    "simplify_px",
    type=click.FloatRange(min=0),
    help="Simplification tolerance in pixels, topology kept (default: the model card's).",
)
@resample_option()
@click.option(
    "--bands",
    help="The scenes' bands in file order, comma separated (e.g. red,green,blue,nir); an "
    "alpha band is the mask, not listed.",
)
@click.option(
    "--nodata",
    type=float,
    help="The scenes' nodata value, over the files' own (a region's [imagery] nodata): "
    "pixels where every band holds it get no objects.",
)
@cluster_option(
    "Predict on Dask workers: local:N starts N worker processes here, tcp://HOST:PORT joins "
    "a running scheduler. Large scenes are split into blocks; the outputs equal one process's."
)
@overwrite_option("Replace existing output files.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def command(
    model_dir: Path,
    scenes: tuple[str, ...],
    geojson: Path,
    gpkg: Path | None,
    quicklook: Path | None,
    probabilities: Path | None,
    device: str,
    engine: str,
    threads: int | None,
    workers: int | None,
    read_threads: int | None,
    batch_size: int | None,
    window_px: int | None,
    overlap_px: int | None,
    threshold: float | None,
    min_area_m2: float | None,
    simplify_px: float | None,
    resample: bool,
    bands: str | None,
    nodata: float | None,
    cluster: str | None,
    overwrite: bool,
    no_progress: bool,
) -> None:
    """Predict SCENES with the model in MODEL_DIR (or an exported .onnx) into polygons.

    Prints the files written (one per line) on stdout. A scene that fails is skipped and
    reported; the others are still written, and the exit code is 1.
    """
    options = PredictOptions(
        batch_size=batch_size,
        window_px=window_px,
        overlap_px=overlap_px,
        threshold=threshold,
        min_area_m2=min_area_m2,
        simplify_px=simplify_px,
        resample=resample,
        bands=tuple(b.strip() for b in bands.split(",") if b.strip()) if bands else None,
        nodata=nodata,
        progress=not no_progress,
        workers=workers,
        read_threads=read_threads,
    )
    summary = predict_scenes(
        model_dir,
        [scene_path(s) for s in scenes],  # GDAL's /vsicurl/https://... verbatim
        geojson,
        gpkg=gpkg,
        quicklook=quicklook,
        probabilities=probabilities,
        options=options,
        device=device,
        overwrite=overwrite,
        engine=engine,
        threads=threads,
        cluster=cluster,
    )
    written = [summary.geojson, *summary.qml]
    if summary.gpkg is not None:
        written.append(summary.gpkg)
    written += summary.quicklooks + summary.probabilities
    for path in written:
        click.echo(str(path))
    say(
        f"{summary.features} polygon(s) from {len(summary.scenes)} scene(s)"
        + (f"; {len(summary.failed)} failed" if summary.failed else ""),
        warn=bool(summary.failed),
    )
    if summary.failed:
        detail = "; ".join(f"{p}: {reason}" for p, reason in summary.failed)
        raise SceneError(f"{len(summary.failed)} of {len(scenes)} scene(s) skipped ({detail})")
