"""The detector: built without any hub, band-adapted, ignore boxes, model: bases."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from geotl.errors import BaseModelError
from geotl.models.artefact import (
    BaseModelRef,
    ModelCard,
    Normalisation,
    load_artefact,
    write_artefact,
)
from geotl.models.catalogue import load_base
from geotl.models.detector import build_adapted_detector


def test_lite0_backbone_gets_pretrained_weights_and_new_band() -> None:
    base = load_base("pkg:efficientnet-lite0")
    net, spec, plan = build_adapted_detector(base, ["red", "green", "blue", "nir"], ["tree"])
    assert spec.arch == "retinanet" and spec.in_channels == 4 and spec.num_classes == 2
    assert plan is not None and plan.new == ("nir",)
    conv = net.backbone.body.conv_stem.weight  # type: ignore[union-attr]
    src = base.encoder_state["model.conv_stem.weight"]
    assert torch.equal(conv[:, :3], src)


def _targets(ignore: bool) -> list[dict[str, torch.Tensor]]:
    t = {"boxes": torch.tensor([[8.0, 8, 40, 40]]), "labels": torch.tensor([1])}
    if ignore:
        t["ignore"] = torch.tensor([[0.0, 0, 64, 64]])
    return [t]


def test_ignore_boxes_remove_background_loss() -> None:
    net, _, _ = build_adapted_detector(load_base("none"), ["red", "green", "blue"], ["tree"])
    net.train()
    x = torch.randn(1, 3, 64, 64)
    with_ignore = net(x, _targets(True))["classification"]
    without = net(x, _targets(False))["classification"]
    assert with_ignore < without  # the background anchors inside the ignore box carry no loss


def test_model_base_maps_classes_and_refuses_other_tasks(tmp_path: Path) -> None:
    net, spec, _ = build_adapted_detector(
        load_base("none"), ["red", "green", "blue"], ["car", "tree"]
    )
    card = ModelCard(
        name="src", task="detection", classes=["car", "tree"], bands=["red", "green", "blue"],
        normalisation=Normalisation(mean=[0, 0, 0], std=[1, 1, 1]), chip_size_px=64,
        resolution_m=0.5, network=spec,
        base=BaseModelRef(id="none", architecture="x", licence="n/a", commercial_use=True),
        freeze="none",
    )  # fmt: skip
    write_artefact(tmp_path / "det", net, card)
    assert load_artefact(tmp_path / "det").card.task == "detection"
    base = load_base(f"model:{tmp_path / 'det'}")
    new, _, _ = build_adapted_detector(base, ["red", "green", "blue"], ["tree"])
    key = "head.classification_head.cls_logits.weight"
    old_w, new_w = net.state_dict()[key], new.state_dict()[key]
    n_anchors = new_w.shape[0] // 2
    assert torch.equal(new_w.view(n_anchors, 2, -1)[:, 1], old_w.view(n_anchors, 3, -1)[:, 2])

    seg = card.model_copy(update={"task": "segmentation"})
    (tmp_path / "seg").mkdir()
    write_artefact(tmp_path / "seg", net, seg)
    with pytest.raises(
        BaseModelError, match="is a segmentation model, the region's task is detection"
    ):
        build_adapted_detector(
            load_base(f"model:{tmp_path / 'seg'}"), ["red", "green", "blue"], ["tree"]
        )
