"""Model ids: one per artefact a user deploys (weights and the card that says how to use them)."""

from pathlib import Path

import torch

from geotl.models.artefact import BaseModelRef, ModelCard, Normalisation, write_artefact
from geotl.models.network import NetworkSpec


def _card(base: str = "none", threshold: float = 0.5) -> ModelCard:
    return ModelCard(
        name="r",
        classes=["tree"],
        bands=["red"],
        normalisation=Normalisation(mean=[1.0], std=[2.0]),
        chip_size_px=64,
        resolution_m=0.5,
        network=NetworkSpec(arch="pixel", encoder="local-stats", in_channels=1, num_classes=2),
        base=BaseModelRef(id=base, architecture="a", licence="MIT", commercial_use=True),
        freeze="none",
        threshold=threshold,
    )


def test_same_weights_under_other_cards_get_other_ids(tmp_path: Path) -> None:
    """A per-pixel model fitted alike beside two bases shared one id (the weights' hash)."""
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2)
    a = write_artefact(tmp_path / "a", net, _card("none"))
    b = write_artefact(tmp_path / "b", net, _card("pkg:efficientnet-lite0"))
    c = write_artefact(tmp_path / "c", net, _card("none", threshold=0.8))
    assert a.weights_sha256 == b.weights_sha256 == c.weights_sha256
    assert len({a.model_id, b.model_id, c.model_id}) == 3
    # each id still ends with its weights' hash, and the same artefact again has the same id
    assert all(x.model_id.endswith(a.weights_sha256[:12]) for x in (a, b, c))
    again = write_artefact(
        tmp_path / "d", net, _card("none").model_copy(update={"metrics": {"s": 1}})
    )
    assert again.model_id == a.model_id
