"""Base-model catalogue: which pretrained weights geotl can adapt, and how to load them.

An id names a backbone and its weights; its kind is found by prefix in :data:`KINDS`, one
module of :mod:`geotl.models.bases` each:

- ``torchgeo:<WeightsEnum>.<NAME>``: every weight torchgeo publishes
  (:mod:`~geotl.models.bases.torchgeo`; offline through ``geotl models import``);
- ``pkg:efficientnet-lite0``, ``pkg:ukis-csmask-6b`` / ``-4b``: weights shipped by packages
  (:mod:`~geotl.models.bases.packaged`);
- ``model:<MODEL_DIR>``: a geotl artefact, encoder and decoder reused
  (:mod:`~geotl.models.bases.model`);
- ``file:<path>``: a state dict, safetensors or a ``.pth`` read with ``weights_only``
  (:mod:`~geotl.models.bases.file`);
- ``none``: random initialisation, the baseline (:mod:`~geotl.models.bases.none`).

Every entry records architecture, bands and the base's own normalisation recipe,
pretraining data, licence and whether it allows commercial use, the weights' sha256 and
size, and whether it is available offline now.
"""

from __future__ import annotations

from geotl.errors import BaseModelError
from geotl.models.bases.file import FileBase
from geotl.models.bases.kind import (
    BaseKind,
    BaseModelEntry,
    LoadedBase,
    cache_dir,
    sha256_file,
)
from geotl.models.bases.model import ModelBase
from geotl.models.bases.none import NoBase
from geotl.models.bases.packaged import PKG_IDS, PackagedBase
from geotl.models.bases.torchgeo import TorchgeoBase, import_weights, torch_hub_checkpoints

__all__ = [
    "KINDS",
    "PKG_IDS",
    "BaseModelEntry",
    "LoadedBase",
    "cache_dir",
    "check_licence",
    "commercial_alternative",
    "get_entry",
    "import_weights",
    "list_entries",
    "load_base",
    "sha256_file",
    "torch_hub_checkpoints",
]

#: Id prefix -> the kind that describes and loads such ids, in ``geotl models list`` order.
KINDS: dict[str, BaseKind] = {
    PackagedBase.prefix: PackagedBase(),
    NoBase.prefix: NoBase(),
    ModelBase.prefix: ModelBase(),
    FileBase.prefix: FileBase(),
    TorchgeoBase.prefix: TorchgeoBase(),
}


def list_entries() -> list[BaseModelEntry]:
    """Every catalogue entry: packaged weights, ``none``, then all torchgeo weights."""
    return [entry for kind in KINDS.values() for entry in kind.listed()]


def _kind_of(entry_id: str) -> BaseKind:
    for kind in KINDS.values():
        if kind.matches(entry_id):
            return kind
    known = ", ".join(kind.pattern for kind in KINDS.values())
    raise BaseModelError(
        f"unknown base model '{entry_id}'; known: {known} (see 'geotl models list')"
    )


def get_entry(entry_id: str) -> BaseModelEntry:
    """Look an id up in the catalogue.

    Raises:
        BaseModelError: the id is unknown (the message lists the known ones).
    """
    return _kind_of(entry_id).describe(entry_id)


def load_base(
    entry_id: str,
    *,
    require_commercial: bool = False,
    encoder: str | None = None,
) -> LoadedBase:
    """Resolve an id and load its weights (never pickles: ``weights_only=True``).

    Args:
        entry_id: a catalogue id.
        require_commercial: refuse weights whose licence does not allow commercial use.
        encoder: smp encoder name for ``file:`` bases (default: ``tu-tf_efficientnet_lite0``).

    Raises:
        BaseModelError: unknown id, unsupported architecture, licence refused, weights
            unavailable offline or failing verification.
    """
    kind = _kind_of(entry_id)
    entry = kind.describe(entry_id)
    check_licence(entry, require_commercial)
    return kind.load(entry, encoder)


def check_licence(entry: BaseModelEntry, require_commercial: bool) -> None:
    """Refuse weights whose licence does not permit commercial use, when that is required.

    The message names an allowed alternative (:func:`commercial_alternative`).

    Raises:
        BaseModelError: the licence does not permit commercial use.
    """
    if require_commercial and not entry.commercial_use:
        raise BaseModelError(
            f"base model {entry.id} is licensed '{entry.licence}', which does not permit commercial use, "
            "and the region sets require_commercial_licence = true: choose another --base "
            f"(e.g. {commercial_alternative(entry)}) or drop the requirement"
        )


def commercial_alternative(entry: BaseModelEntry) -> str:
    """The id of a usable, commercially licensed base closest to ``entry``, in words.

    Non-commercial weights often have a twin under a permissive licence (torchgeo's FTW
    U-Nets: ``..._NC_FTW`` beside ``..._FTW``): the same bands and architecture keep what
    the user chose the base for. Among the bases with the same bands, the same architecture
    comes first, then one available offline, then the same encoder; without any, ``pkg:efficientnet-lite0`` (RGB,
    Apache-2.0, offline).
    """
    fallback = f"{PKG_IDS[0]} (RGB, Apache-2.0, offline)"
    if not entry.bands:
        return fallback
    same_bands = [
        e
        for e in list_entries()
        if e.supported and e.commercial_use and e.id != entry.id and e.bands == entry.bands
    ]
    if not same_bands:
        return fallback
    best = min(
        same_bands,
        key=lambda e: (
            e.architecture != entry.architecture,
            not e.available_offline,
            e.encoder != entry.encoder,
            e.id,
        ),
    )
    offline = "offline" if best.available_offline else "not downloaded yet"
    return f"{best.id}: the same bands, {best.architecture}, {best.licence}, {offline}"
