"""``geotl suggest`` refuses scenes of another pixel size or shape before any chipping.

The region is chipped (when no chips are at hand) and every scene predicted before the
candidate squares are scored; a scene predict refuses without ``--resample`` (the demo
plot at 0.2 m, or warped to EPSG:4326) was said only after the chipping (seconds to
minutes on a real region). The check is predict's own
(:func:`geotl.predict.scene.check_scene_pixels`), run on every scene first.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from predict import data
from test_suggest import SCENE, _region, _suggest


@pytest.fixture(scope="module")
def square_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny untrained network whose card records square 0.1 m pixels (the demo's)."""
    import torch

    from geotl.models.artefact import write_artefact
    from geotl.models.network import build_network

    card = data.card().model_copy(update={"pixel_aspect": 1.0})
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("model")
    write_artefact(out, build_network(card.network), card)
    return out


def _coarser(out: Path) -> Path:
    """The demo plot at 0.2 m: the model's pixel shape, twice its size."""
    return data.warp(SCENE, out, "EPSG:32617", (0.2, 0.2), nodata=255)


def _in_degrees(out: Path) -> Path:
    """The demo plot warped to EPSG:4326 in square degrees: 8.5 x 9.8 cm pixels at 30 N."""
    return data.warp(SCENE, out, "EPSG:4326", (8.8e-7, 8.8e-7), nodata=255)


@pytest.mark.parametrize(
    ("make", "said"),
    [
        (_coarser, "ground resolution 0.2 m differs from the model's 0.1 m"),
        (_in_degrees, "(a degree grid at 30 N), the model's 0.1 m: it would see the ground"),
    ],
)
def test_a_scene_predict_refuses_is_refused_before_chipping(
    tmp_path: Path,
    square_model: Path,
    monkeypatch: pytest.MonkeyPatch,
    make: Callable[[Path], Path],
    said: str,
) -> None:
    import geotl.evaluate

    def no_chips(*args: object, **kwargs: object) -> None:
        raise AssertionError("chipped the region before refusing the scene")

    monkeypatch.setattr(geotl.evaluate, "find_chips", no_chips)
    (tmp_path / "imagery").mkdir()
    scene = make(tmp_path / "imagery" / "plot.tif")
    region = _region(tmp_path)
    text = region.read_text()
    imagery = f'paths = ["{SCENE.parent}/*.tif"]'
    assert imagery in text
    region.write_text(text.replace(imagery, f'paths = ["{scene}"]', 1))
    out = tmp_path / "areas.gpkg"
    code, _, stderr = _suggest(region, square_model, out, "-n", "2")
    assert code == 2, stderr
    assert said in stderr and str(scene) in stderr, stderr
    assert "pass --resample" in stderr
    assert not out.exists()
