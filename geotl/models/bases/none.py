"""``none``: random initialisation, the baseline every transfer is compared with."""

from __future__ import annotations

from geotl.models.bases.kind import BaseKind, BaseModelEntry, LoadedBase

__all__ = ["NONE_ENTRY", "NoBase"]

NONE_ENTRY = BaseModelEntry(
    id="none",
    architecture="any (random initialisation)",
    encoder="tu-tf_efficientnet_lite0",
    bands=[],
    band_ids=[],
    normalisation="training-chip statistics",
    pretraining="none",
    licence="n/a",
    commercial_use=True,
    sha256=None,
    size_bytes=None,
    available_offline=True,
    source="",
)


class NoBase(BaseKind):
    """No pretrained weights."""

    prefix = "none"
    pattern = "none"

    def matches(self, entry_id: str) -> bool:
        """Only the id ``none`` itself."""
        return entry_id == self.prefix

    def listed(self) -> list[BaseModelEntry]:
        """The one ``none`` entry."""
        return [NONE_ENTRY]

    def describe(self, entry_id: str) -> BaseModelEntry:
        """The ``none`` entry."""
        return NONE_ENTRY

    def load(self, entry: BaseModelEntry, encoder: str | None) -> LoadedBase:
        """No weights: the network keeps its random initialisation."""
        return LoadedBase(entry=entry)
