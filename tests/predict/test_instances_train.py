"""task = "instances" end to end on the demo chips: train, evaluate, predict, bad bases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from geotl.config import load_region
from geotl.errors import BaseModelError
from geotl.evaluate import evaluate_model
from geotl.models.artefact import load_artefact
from geotl.predict import PredictOptions, predict_scene
from geotl.train import TrainOptions, make_task, train_model
from geotl.train.tasks.instances import pack_masks

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "regions" / "demo-osbs.toml"
SCENE = REPO / "regions" / "demo-osbs" / "imagery" / "OSBS_029.tif"


def _instances_region(tmp_path: Path) -> Path:
    text = (
        DEMO.read_text()
        .replace('task = "segmentation"', 'task = "instances"')
        .replace('"demo-osbs/', f'"{DEMO.parent}/demo-osbs/')
    )
    assert 'task = "instances"' in text
    path = tmp_path / "demo-instances.toml"
    path.write_text(text)
    return path


def test_targets_unpack_what_was_packed() -> None:
    masks = np.array([[[0, 1, 1, 255]]], dtype=np.uint8)
    extra = np.array([[[[0, 1, 0, 255]], [[1, 0, 1, 255]]]], dtype=np.uint8)
    task = make_task("instances", ["tree"])
    classes, targets, valid = task.targets(torch.from_numpy(pack_masks(masks, extra)))
    assert classes.tolist() == [[[0, 1, 1, 255]]]
    assert targets[0, :, 0, :3].tolist() == [[0, 1, 0], [1, 0, 1]]
    assert valid.tolist() == [[[True, True, True, False]]]
    logits = torch.zeros(1, 4, 1, 4, requires_grad=True)
    loss = task.loss(logits, (classes, targets, valid))
    loss.backward()
    assert loss.item() > 0 and logits.grad is not None


def test_train_evaluate_predict(demo_chips: Path, tmp_path: Path) -> None:
    torch.set_num_threads(2)
    region = load_region(_instances_region(tmp_path))
    out = tmp_path / "m"
    card = train_model(
        [region],
        out,
        TrainOptions(chips=(demo_chips,), epochs=1, samples_per_epoch=1, seed=0, batch_size=8),
    )
    assert card.task == "instances" and card.classes == ["tree"]
    art = load_artefact(out)
    assert art.network(torch.zeros(1, 3, 64, 64)).shape == (1, 4, 64, 64)
    metrics = evaluate_model(out, region, chips_dir=demo_chips, n_boot=20)
    tree = metrics["objects"]["tree"]
    assert {"count_ratio", "count_ratio_ci95", "count_per_chip"} <= set(tree)
    assert len(tree["count_per_chip"]) == metrics["chips"]
    assert sum(c["labelled"] for c in tree["count_per_chip"]) == tree["tp"] + tree["fn"]
    # as a model: base of another instance region, its border and contact channels are kept
    from geotl.models.catalogue import load_base

    base = load_base(f"model:{out}")
    net, _, _ = make_task("instances", ["tree"]).build_network(
        base, ["red", "green", "blue"], seed=1, encoder=None
    )
    head = [k for k in base.full_state or {} if k.startswith("segmentation_head.")]
    assert head and all(torch.equal(net.state_dict()[k], (base.full_state or {})[k]) for k in head)
    det = predict_scene(art, SCENE, PredictOptions(progress=False))
    assert list(det.features.columns)[:7] == [
        "id",
        "class",
        "score",
        "area_m2",
        "scene",
        "acquired",
        "model",
    ]


def test_model_base_of_another_task_is_refused(demo_model: Path, tmp_path: Path) -> None:
    region = load_region(_instances_region(tmp_path))
    with pytest.raises(
        BaseModelError, match="is a segmentation model, the region's task is instances"
    ) as err:
        train_model(
            [region],
            tmp_path / "x",
            TrainOptions(base=f"model:{demo_model}", epochs=1, samples_per_epoch=1),
        )
    assert err.value.path == region.path
