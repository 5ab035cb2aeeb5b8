"""``geotl evaluate`` on chips at another ground resolution than the model's says so.

Found driving geotl on regions it had not seen: a model trained on Sentinel-2 fields
reprojected to EPSG:4326 (12 m) was evaluated on the same fields in UTM (10 m) without a
word, while ``geotl predict`` refuses those scenes without ``--resample``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import rasterio
from affine import Affine

from geotl.config import load_region
from geotl.evaluate import evaluate_model

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "regions" / "demo-osbs.toml"


def _region_at(tmp_path: Path, scale: float) -> Path:
    """The demo region, its plot's pixels stretched to ``scale`` x 0.1 m from the same corner."""
    src_path = DEMO.parent / "demo-osbs" / "imagery" / "OSBS_029.tif"
    (tmp_path / "imagery").mkdir()
    with rasterio.open(src_path) as src:
        profile = {**src.profile}
        t = src.transform
        profile["transform"] = Affine(t.a * scale, t.b, t.c, t.d, t.e * scale, t.f)
        with rasterio.open(tmp_path / "imagery" / "OSBS_029.tif", "w", **profile) as dst:
            dst.write(src.read())
    labels = DEMO.parent / "demo-osbs" / "labels" / "OSBS_029_crowns.geojson"
    text = DEMO.read_text().replace('"demo-osbs/imagery/*.tif"', '"imagery/*.tif"')
    text = text.replace('"demo-osbs/labels/', f'"{labels.parent}/').replace(
        'name = "demo-osbs"', 'name = "demo-osbs-coarse"'
    )
    text = text.replace("block_size_m = 24.0", f"block_size_m = {24.0 * scale}")
    region = tmp_path / "coarse.toml"
    region.write_text(text)
    return region


def test_chips_at_another_resolution_are_scored_with_a_warning(
    demo_model: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    region = load_region(_region_at(tmp_path, 2.0))
    with caplog.at_level(logging.WARNING, logger="geotl.evaluate.chips"):
        metrics = evaluate_model(demo_model, region, n_boot=10)
    assert metrics["chips"] > 0
    said = [r.getMessage() for r in caplog.records if "did not learn" in r.getMessage()]
    assert len(said) == 1 and "at 0.2 m, the model at 0.1 m" in said[0], caplog.text
    assert "coarse.toml" in said[0] and "--resample" in said[0]


def test_chips_at_the_model_resolution_say_nothing(
    demo_model: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    region = load_region(_region_at(tmp_path, 1.05))  # within predict's 10 % tolerance
    with caplog.at_level(logging.WARNING, logger="geotl.evaluate.chips"):
        evaluate_model(demo_model, region, n_boot=10)
    assert "did not learn" not in caplog.text
