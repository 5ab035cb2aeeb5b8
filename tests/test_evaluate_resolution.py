"""``geotl evaluate`` on chips at another ground resolution than the model's says so.

Found driving geotl on regions it had not seen: a model trained on Sentinel-2 fields
reprojected to EPSG:4326 (12 m) was evaluated on the same fields in UTM (10 m) without a
word, while ``geotl predict`` refuses those scenes without ``--resample``.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pytest
import rasterio
from affine import Affine
from predict import data

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
    assert len(said) == 1 and "pixels are 0.2 m on the ground, the model's 0.1 m" in said[0], (
        caplog.text
    )
    assert "coarse.toml" in said[0] and "--resample" in said[0]


def test_chips_at_the_model_resolution_say_nothing(
    demo_model: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    region = load_region(_region_at(tmp_path, 1.05))  # within predict's 10 % tolerance
    with caplog.at_level(logging.WARNING, logger="geotl.evaluate.chips"):
        evaluate_model(demo_model, region, n_boot=10)
    assert "did not learn" not in caplog.text


def _warp_to_degrees(src_path: Path, dst_path: Path) -> None:
    """``gdalwarp -t_srs EPSG:4326`` with square-degree pixels whose mean side is 0.1 m.

    At the plot's 29.7 N a degree of longitude is cos(29.7 N) = 0.87 of a degree of
    latitude on the ground: 0.093 x 0.107 m pixels, a mean of the model's 0.1 m.
    """
    lat = 29.69
    deg = 0.1 / (111_320 * (1 + math.cos(math.radians(lat))) / 2)
    with rasterio.open(src_path) as src:
        nodata = src.nodata
    data.warp(src_path, dst_path, "EPSG:4326", (deg, deg), nodata=nodata)


def test_degree_grid_at_30_n_is_within_tolerance_as_predict_says(
    demo_model: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The plot warped to EPSG:4326: 0.093 x 0.107 m pixels, each side within 10 % of 0.1 m.

    Predict accepts such a scene as it is (each side within its tolerance), so evaluate
    scores it without a word; the chips still record the shape.
    """
    from geotl.chips import chip_region, read_chip_index

    region_path = _region_at(tmp_path, 1.0)
    scene = tmp_path / "imagery" / "OSBS_029.tif"
    _warp_to_degrees(DEMO.parent / "demo-osbs" / "imagery" / "OSBS_029.tif", scene)
    region = load_region(region_path)
    chip_region(region, tmp_path / "chips")
    index = read_chip_index(tmp_path / "chips")
    x, y = index.pixel_size_m() or (0.0, 0.0)
    assert (x + y) / 2 == pytest.approx(0.1, rel=0.02)
    assert x / y == pytest.approx(0.87, abs=0.01)
    with caplog.at_level(logging.WARNING, logger="geotl.evaluate.chips"):
        metrics = evaluate_model(demo_model, region, n_boot=10, chips_dir=tmp_path / "chips")
    assert metrics["chips"] > 0
    assert "on the ground" not in caplog.text


def test_model_of_a_degree_grid_at_60_n_is_said_on_square_chips(
    demo_model: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The mean matches (0.1 m) but the model learnt pixels twice as tall as wide.

    The card is the demo model's with the shape of chips cut on a square-degree grid at
    60 N (cos 60 N = 0.5): scored on the demo plot's square UTM pixels (as another region,
    not one it was trained on), it sees the ground
    stretched, which predict refuses without --resample. Mean-only, nothing was said.
    """
    from geotl.models.artefact import load_artefact, write_artefact

    model = tmp_path / "m60"
    art = load_artefact(demo_model)
    assert art.card.pixel_aspect == 1.0  # trained on the demo's UTM chips
    write_artefact(model, art.network, art.card.model_copy(update={"pixel_aspect": 0.5}))
    with caplog.at_level(logging.WARNING, logger="geotl.evaluate.chips"):
        metrics = evaluate_model(model, load_region(_region_at(tmp_path, 1.0)), n_boot=10)
    assert metrics["chips"] > 0
    said = [r.getMessage() for r in caplog.records if "on the ground" in r.getMessage()]
    assert len(said) == 1, caplog.text
    assert "test chips' pixels are 0.1 m on the ground, the model's 0.06667 x 0.1333 m" in said[0]
    assert "coarse.toml" in said[0] and "--resample" in said[0]
    assert "a model trained on pixels of this shape" in said[0]
