"""``file:<path>``: your own state dict (safetensors, or a ``.pth`` read with ``weights_only``)."""

from __future__ import annotations

from pathlib import Path

import torch

from geotl.errors import BaseModelError
from geotl.models.bases.kind import (
    BaseKind,
    BaseModelEntry,
    LoadedBase,
    cached_sha,
    encoder_part,
    load_failure,
    unwrap_state,
)

__all__ = ["DEFAULT_ENCODER", "FileBase"]

#: smp encoder a ``file:`` base is put into unless the region names one.
DEFAULT_ENCODER = "tu-tf_efficientnet_lite0"


class FileBase(BaseKind):
    """A weights file: an encoder's state, or a whole network's (its ``encoder.*`` part is used)."""

    prefix = "file:"
    pattern = "file:<path>"

    def describe(self, entry_id: str) -> BaseModelEntry:
        """What is known without reading the file: its path, size and sha256."""
        path = Path(entry_id.removeprefix(self.prefix)).expanduser()
        exists = path.is_file()
        return BaseModelEntry(
            id=entry_id,
            architecture="as given by the file (smp encoder keys)",
            encoder=None,
            bands=[],
            band_ids=[],
            normalisation="unknown",
            pretraining="unknown",
            licence="unknown (your file)",
            commercial_use=False,
            sha256=cached_sha(path.resolve()) if exists else None,
            size_bytes=path.stat().st_size if exists else None,
            available_offline=exists,
            source=str(path),
        )

    def load(self, entry: BaseModelEntry, encoder: str | None) -> LoadedBase:
        """The file's tensors for the smp ``encoder`` (default :data:`DEFAULT_ENCODER`).

        Raises:
            BaseModelError: the file is missing or holds no plain state dict.
        """
        encoder = encoder or DEFAULT_ENCODER
        path = Path(entry.source)
        if path.is_dir():
            raise BaseModelError(
                "is a folder, not a weights file: name the .safetensors or .pth file after "
                "'file:' (a geotl model folder is 'model:<MODEL_DIR>')",
                path,
            )
        if not path.is_file():
            raise BaseModelError("weights file not found: check the path after 'file:'", path)
        try:
            if path.suffix == ".safetensors":
                from safetensors.torch import load_file

                state: dict[str, torch.Tensor] = load_file(str(path))
            else:
                state = unwrap_state(torch.load(path, map_location="cpu", weights_only=True))
        except BaseModelError:
            raise
        except Exception as exc:
            raise BaseModelError(
                f"cannot read weights ({load_failure(exc)}); give a safetensors or plain "
                "state-dict .pth",
                path,
            ) from exc
        if any(k.startswith("encoder.") for k in state):
            state = encoder_part(state)
        entry = entry.model_copy(update={"encoder": encoder, "architecture": encoder})
        return LoadedBase(entry=entry, encoder_state=state)
