"""Model ids: one per artefact a user deploys (weights and the card that says how to use them)."""

from pathlib import Path

import pytest
import torch

from geotl.errors import ModelArtefactError
from geotl.models.artefact import BaseModelRef, ModelCard, Normalisation, read_card, write_artefact
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


def test_a_run_folder_given_as_the_model_names_its_model_folder(tmp_path: Path) -> None:
    """`geotl run` writes DIR/model: DIR itself is not a model, and the error says where."""
    write_artefact(tmp_path / "run" / "model", torch.nn.Linear(3, 2), _card())
    with pytest.raises(ModelArtefactError) as err:
        read_card(tmp_path / "run")
    assert str(err.value) == (
        f"{tmp_path / 'run'}: missing model.json: this is not a geotl model folder: "
        f"pass {tmp_path / 'run' / 'model'} (geotl run keeps its model there)"
    )
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelArtefactError, match=r"not a geotl model folder$"):
        read_card(tmp_path / "empty")  # no model inside: no hint
