"""``geotl run``: chip, train, evaluate and predict a region in one go."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geotl.config import load_region
from geotl.errors import ConfigError
from geotl.io.atomic import atomic_dir, atomic_write_text

__all__ = ["RunSummary", "run_region"]

log = logging.getLogger(__name__)


@dataclass
class RunSummary:
    """Where ``run_region`` put everything."""

    out_dir: Path
    chips_dir: Path
    model_dir: Path
    metrics_path: Path
    geojson: Path
    gpkg: Path
    quicklooks: list[Path] = field(default_factory=list)
    features: int = 0
    metrics: dict[str, Any] = field(default_factory=dict)
    failed: list[tuple[Path, str]] = field(default_factory=list)


def run_region(
    region_path: str | Path, out_dir: str | Path, *, overwrite: bool = False, device: str = "cpu"
) -> RunSummary:
    """Chip the region, train from its base model, evaluate on its test split, predict its scenes.

    The output folder is built under a temporary name and swapped into place at the end, so
    an interrupted run leaves the previous output intact. Layout: ``chips/``, ``model/``,
    ``metrics.json``, ``detections.geojson`` (+ ``.qml``), ``detections.gpkg``,
    ``quicklook.png`` (``quicklook_<scene>.png`` with several scenes).

    Raises:
        GeotlInputError: bad region, labels, base model, or an existing output without
            ``overwrite``.
    """
    from geotl.chips import chip_region
    from geotl.evaluate import evaluate_model
    from geotl.predict import PredictOptions, predict_scenes
    from geotl.train import TrainOptions, train_model

    region = load_region(region_path)
    out = Path(out_dir).expanduser()
    if not out.name or ".." in out.parts:  # `--out .` / `..`: a name to swap the folder in by
        out = Path(os.path.abspath(out))
    region.check_output_dir(out)
    scenes = region.scene_paths()
    with atomic_dir(out, overwrite) as tmp:
        log.info("1/4 chip %s", region.name)
        chipped = chip_region(region, tmp / "chips")
        log.info("%s", chipped.line())
        if not chipped.counts.get("test", 0):
            # found now, not after training: evaluate would refuse an empty test split
            raise ConfigError(
                "the split gives no test chips, and geotl run evaluates on them: set [split] "
                "test_fraction above 0 (or test_within), or lower block_size_m; for a region "
                "without a test split, run geotl train, then geotl predict",
                region.path,
            )
        log.info("2/4 train")
        train_model([region], tmp / "model", TrainOptions(chips=(tmp / "chips",), device=device))
        log.info("3/4 evaluate")
        metrics = evaluate_model(tmp / "model", region, chips_dir=tmp / "chips", device=device)
        metrics["model_dir"] = str(out / "model")
        atomic_write_text(tmp / "metrics.json", json.dumps(metrics, indent=2) + "\n")
        log.info("4/4 predict %d scene(s)", len(scenes))
        summary = predict_scenes(
            tmp / "model",
            scenes,
            tmp / "detections.geojson",
            gpkg=tmp / "detections.gpkg",
            quicklook=tmp / "quicklook.png",
            # the region's own scenes: those at another ground resolution than the model's
            # (a mixed region's chips give it their median) are read at the model's
            options=PredictOptions.from_region(region, resample=True),
            device=device,
        )
    return RunSummary(
        out_dir=out,
        chips_dir=out / "chips",
        model_dir=out / "model",
        metrics_path=out / "metrics.json",
        geojson=out / "detections.geojson",
        gpkg=out / "detections.gpkg",
        quicklooks=[out / q.name for q in summary.quicklooks],
        features=summary.features,
        metrics=metrics,
        failed=[(p, r) for p, r in summary.failed],
    )
