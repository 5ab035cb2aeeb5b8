"""``model:<MODEL_DIR>``: a geotl model artefact, its encoder and decoder reused."""

from __future__ import annotations

from pathlib import Path

from geotl.models.artefact import WEIGHTS_FILE, read_card, verify_weights
from geotl.models.bases.kind import (
    BaseKind,
    BaseModelEntry,
    LoadedBase,
    cached_sha,
    canonical_or_raw,
    encoder_part,
)

__all__ = ["ModelBase"]


class ModelBase(BaseKind):
    """A model geotl trained: fine-tuned further, or trained for new classes on its encoder."""

    prefix = "model:"
    pattern = "model:<MODEL_DIR>"

    def describe(self, entry_id: str) -> BaseModelEntry:
        """Architecture, bands and licence from the model card.

        Raises:
            ModelArtefactError: the folder holds no readable model card.
        """
        model_dir = Path(entry_id.removeprefix(self.prefix)).expanduser().absolute()
        card = read_card(model_dir)
        weights = model_dir / WEIGHTS_FILE
        base = card.base
        return BaseModelEntry(
            # absolute: the card that records it can be followed from any folder
            id=f"{self.prefix}{model_dir}",
            architecture=f"{card.network.description}, geotl model {card.model_id}",
            encoder=card.network.encoder,
            bands=canonical_or_raw(card.bands),
            band_ids=list(card.bands),
            normalisation="the model card's per-band mean/std",
            pretraining=f"geotl model of {', '.join(r.name for r in card.regions) or card.name}, from {base.id}",
            licence=base.licence,
            commercial_use=base.commercial_use,
            sha256=cached_sha(weights.resolve()) if weights.is_file() else None,
            size_bytes=weights.stat().st_size if weights.is_file() else None,
            available_offline=weights.is_file(),
            source=str(model_dir),
        )

    def load(self, entry: BaseModelEntry, encoder: str | None) -> LoadedBase:
        """The whole network's state, its encoder part, classes and card.

        Raises:
            ModelArtefactError: the weights file is missing or differs from the card's sha256.
        """
        from safetensors.torch import load_file

        del encoder
        model_dir = Path(entry.source)
        card = read_card(model_dir)
        weights = verify_weights(model_dir, card)  # a damaged base is refused, not trained on
        state = load_file(str(weights))
        return LoadedBase(
            entry=entry,
            encoder_state=encoder_part(state),
            full_state=state,
            classes=list(card.classes),
            card=card,
        )
