"""Model cards of another geotl: a newer one's card is refused as newer, not as invalid.

A team that goes back to an earlier geotl (or copies a model to a machine that runs one)
was told its model card was invalid and to retrain, although the model was fine and only
that geotl was older.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from geotl.errors import ModelArtefactError
from geotl.models.artefact import (
    BaseModelRef,
    ModelCard,
    Normalisation,
    load_artefact,
    read_card,
    write_artefact,
)
from geotl.models.network import NetworkSpec, build_network


def _model(folder: Path) -> Path:
    card = ModelCard(
        name="r",
        classes=["tree"],
        bands=["red", "green", "blue"],
        normalisation=Normalisation(mean=[1.0, 2.0, 3.0], std=[2.0, 2.0, 2.0]),
        chip_size_px=64,
        resolution_m=0.5,
        network=NetworkSpec(arch="pixel", encoder="local-stats", in_channels=3, num_classes=2),
        base=BaseModelRef(id="none", architecture="a", licence="MIT", commercial_use=True),
        freeze="none",
    )
    torch.manual_seed(0)
    write_artefact(folder, build_network(card.network), card)
    return folder


def _edit(model: Path, **entries: object) -> Path:
    card = model / "model.json"
    raw = json.loads(card.read_text())
    raw.update(entries)
    card.write_text(json.dumps(raw))
    return card


def test_a_card_with_entries_this_geotl_does_not_know_is_from_a_newer_geotl(
    tmp_path: Path,
) -> None:
    card = _edit(_model(tmp_path / "m"), band_offsets=[0, 0, 0], scale="dB")
    with pytest.raises(ModelArtefactError) as err:
        load_artefact(tmp_path / "m")
    assert str(err.value) == (
        f"{card}: model card has entries this geotl does not know (band_offsets, scale), "
        "written by a newer geotl: use the geotl that wrote it (or a later one), or retrain "
        "with this one"
    )


def test_a_card_of_a_later_format_is_from_a_newer_geotl(tmp_path: Path) -> None:
    card = _edit(_model(tmp_path / "m"), card_format=2)
    with pytest.raises(ModelArtefactError, match=r"format 2 is newer than this geotl reads"):
        read_card(tmp_path / "m")
    _edit(tmp_path / "m", card_format=0)
    with pytest.raises(ModelArtefactError, match=r"format 0 .*is not supported.*retrain") as err:
        read_card(tmp_path / "m")
    assert err.value.path == card


def test_an_invalid_value_still_says_retrain(tmp_path: Path) -> None:
    _edit(_model(tmp_path / "m"), chip_size_px="big")
    with pytest.raises(
        ModelArtefactError, match=r"invalid model card at 'chip_size_px'.*retrain with this geotl$"
    ):
        read_card(tmp_path / "m")


def test_an_exports_card_says_export_again_not_retrain(tmp_path: Path) -> None:
    # the card an .onnx file embeds: its fix is another export from the model folder
    from geotl.models.artefact import parse_card

    raw = json.loads((_model(tmp_path / "m") / "model.json").read_text())
    onnx = tmp_path / "m.onnx"
    with pytest.raises(ModelArtefactError) as err:
        parse_card({**raw, "card_format": 0}, onnx)
    assert str(err.value).endswith(
        "export it again from its model folder with this geotl (geotl export), or retrain"
    )
    assert err.value.path == onnx
    with pytest.raises(ModelArtefactError, match=r"chip_size_px.*; export it again from its"):
        parse_card({**raw, "chip_size_px": "big"}, onnx)
    with pytest.raises(ModelArtefactError, match=r"newer geotl: use the geotl that exported it"):
        parse_card({**raw, "scale": "dB"}, onnx)
    with pytest.raises(ModelArtefactError, match=r"format 9 is newer.*export its model folder"):
        parse_card({**raw, "card_format": 9}, onnx)
