"""Instance models' seed threshold: scored on val chips, carried by the card, used by predict.

One small instance model of the demo chips (trained once for the module) and the real demo
scene: cards that differ only in ``seed_threshold`` are written beside its weights.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import torch

from geotl.config import load_region
from geotl.errors import ConfigError
from geotl.evaluate import evaluate_model, segmentation
from geotl.models.artefact import SEED_THRESHOLD, load_artefact, read_card
from geotl.predict import PredictOptions, predict_scene
from geotl.predict.objects.instances import InstanceExtractor, split_instances
from geotl.predict.vectorise import min_pixels_for
from geotl.train import TrainOptions, train_model
from geotl.train.loop import SEED_THRESHOLDS, _record_seed_threshold

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "regions" / "demo-osbs.toml"
SCENE = REPO / "regions" / "demo-osbs" / "imagery" / "OSBS_029.tif"


def _region(folder: Path, predict: str = "") -> Path:
    """The demo region as ``task = "instances"`` (its chips: ``demo_chips``), + ``[predict]``."""
    text = (
        DEMO.read_text()
        .replace('task = "segmentation"', 'task = "instances"')
        .replace('"demo-osbs/', f'"{DEMO.parent}/demo-osbs/')
        .replace("[predict]\n", f"[predict]\n{predict}\n")
    )
    path = folder / "demo-instances.toml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def instance_model(demo_chips: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An instance model of the demo chips, 6 steps: its seed scores spread over (0, 1)."""
    torch.set_num_threads(2)
    out = tmp_path_factory.mktemp("instances") / "m"
    region = load_region(_region(out.parent))
    opts = TrainOptions(chips=(demo_chips,), steps=6, val_every=3, seed=0, batch_size=8)
    train_model([region], out, opts)
    return out


def _with_card(model: Path, folder: Path, seed_threshold: float | None) -> Path:
    """A copy of ``model`` whose card says ``seed_threshold`` (None: an old card, without it)."""
    shutil.copytree(model, folder)
    meta = json.loads((folder / "model.json").read_text())
    meta.pop("seed_threshold")
    if seed_threshold is not None:
        meta["seed_threshold"] = seed_threshold
    (folder / "model.json").write_text(json.dumps(meta))
    return folder


def test_the_seed_threshold_is_scored_on_val_and_carded(
    instance_model: Path, demo_chips: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    card = read_card(instance_model)
    record = card.metrics["seed_threshold"]
    # the card keeps the default (val's best did no better on test: BENCHMARKS.md)
    assert card.seed_threshold == record["value"] == SEED_THRESHOLD
    assert list(record["grid"]) == [f"{t:g}" for t in SEED_THRESHOLDS]
    assert record["val_f1_best"] == max(record["grid"].values()) and record["val_objects"] > 0
    assert record["grid"][f"{record['best_on_val']:g}"] == record["val_f1_best"]
    assert record["grid"][f"{SEED_THRESHOLD:g}"] == record["val_f1_default"]
    # the same weights on the same val chips score the same again; evaluate scores with it
    region = load_region(_region(tmp_path))
    art = load_artefact(instance_model)
    blank = card.model_copy(update={"seed_threshold": SEED_THRESHOLD, "metrics": {}})
    splits: list[str] = []
    real = segmentation.object_counts_by_seed_threshold

    def spy(*args: Any) -> Any:
        splits.append(args[3])
        return real(*args)

    monkeypatch.setattr(segmentation, "object_counts_by_seed_threshold", spy)
    again = _record_seed_threshold(blank, art.network, [(region, demo_chips)], region)
    assert splits == ["val"]  # never the test chips
    assert again.seed_threshold == card.seed_threshold
    assert again.metrics["seed_threshold"] == record
    metrics = evaluate_model(instance_model, region, chips_dir=demo_chips, n_boot=10)
    assert metrics["seed_threshold"] == card.seed_threshold


def test_the_regions_seed_threshold_wins(
    instance_model: Path, demo_chips: Path, tmp_path: Path
) -> None:
    region = load_region(_region(tmp_path, "seed_threshold = 0.45"))
    art = load_artefact(instance_model)
    card = _record_seed_threshold(art.card, art.network, [(region, demo_chips)], region)
    assert card.seed_threshold == 0.45
    assert card.metrics["seed_threshold"]["value"] == 0.45  # with val's grid on record
    options = PredictOptions.from_region(region)
    assert options.seed_threshold_for(art.card) == 0.45
    # a region that does not set it keeps the card's
    plain = PredictOptions.from_region(load_region(_region(tmp_path)))
    assert plain.seed_threshold_for(art.card) == art.card.seed_threshold


@pytest.mark.parametrize(
    ("value", "said"),
    [("1.5", "less than 1"), ("0", "greater than 0"), ("'high'", "valid number")],
)
def test_a_bad_seed_threshold_is_refused(value: str, said: str, tmp_path: Path) -> None:
    path = _region(tmp_path, f"seed_threshold = {value}")
    with pytest.raises(ConfigError, match=f"seed_threshold.*{said}") as err:
        load_region(path)
    assert err.value.path == path


def test_predict_uses_the_cards_seed_threshold(instance_model: Path, tmp_path: Path) -> None:
    old = _with_card(instance_model, tmp_path / "old", None)
    assert read_card(old).seed_threshold == SEED_THRESHOLD
    # the scene's seed scores, to find a threshold that splits its crowns otherwise than 0.6
    probs = tmp_path / "p.tif"
    art = load_artefact(old)
    opts = PredictOptions(progress=False)
    before = predict_scene(art, SCENE, PredictOptions(progress=False, probabilities_path=probs))
    with rasterio.open(probs) as src:
        blended = src.read()
    ex = InstanceExtractor(1)
    planes = ex.finalise(blended, blended[0] >= 0, art.card.threshold)
    cm = planes[0].astype(np.uint8)

    min_px = min_pixels_for(art.card.min_area_m2, 0.1 * 0.1)  # the scene's 0.1 m pixels

    def count(t: float) -> int:
        labels = split_instances(cm, planes[2], max(4, min_px), min_px, seed_threshold=t)[0]
        return int(labels.max())

    other = max(np.arange(0.05, 1.0, 0.05), key=lambda t: abs(count(t) - count(SEED_THRESHOLD)))
    assert count(other) != count(SEED_THRESHOLD)
    # an old card predicts as the default did; a card with another threshold predicts otherwise
    at_default = predict_scene(
        load_artefact(_with_card(instance_model, tmp_path / "d", SEED_THRESHOLD)), SCENE, opts
    )
    moved = predict_scene(
        load_artefact(_with_card(instance_model, tmp_path / "o", float(other))), SCENE, opts
    )
    assert before.features["geometry"].to_wkt().tolist() == (
        at_default.features["geometry"].to_wkt().tolist()
    )
    assert len(moved.features) != len(before.features)
