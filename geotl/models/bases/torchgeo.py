"""``torchgeo:<WeightsEnum>.<NAME>``: every weight torchgeo publishes.

Loaded through torchgeo's own API (``weights.get_state_dict``), which downloads into
``$TORCH_HOME/hub/checkpoints`` when online. Offline, ``geotl models import FILE --as ID``
verifies a copy against the sha256 prefix in torchgeo's file name and puts it there.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import pickle
import re
import shutil
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlparse

import torch

from geotl.errors import BaseModelError, error_text
from geotl.io.atomic import atomic_path
from geotl.models.bases.kind import (
    BaseKind,
    BaseModelEntry,
    LoadedBase,
    cached_sha,
    canonical_or_raw,
    encoder_part,
    load_failure,
    offline,
    require_supported,
    sha256_file,
    unwrap_state,
)

__all__ = ["TorchgeoBase", "checkpoint_name", "import_weights", "torch_hub_checkpoints"]

log = logging.getLogger(__name__)

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
_HASH_RE = re.compile(r"-([a-f0-9]{8,})\.")


def torch_hub_checkpoints() -> Path:
    """Where torch.hub (and so torchgeo) looks for downloaded weights."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def checkpoint_name(weights: Any) -> str:
    """The file name torch.hub stores ``weights`` under (the URL path's last part).

    >>> class W:
    ...     url = "https://hf.co/t/resolve/main/resnet18_moco-e3a335e3.pth?download=true"
    >>> checkpoint_name(W())
    'resnet18_moco-e3a335e3.pth'
    """
    return os.path.basename(urlparse(str(weights.url)).path)


def _hash_prefix(filename: str) -> str | None:
    match = _HASH_RE.search(filename)
    return match.group(1) if match else None


@lru_cache(maxsize=1)
def torchgeo_weights() -> dict[str, Any]:
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


def _entry(entry_id: str, weights: Any) -> BaseModelEntry:
    meta: dict[str, Any] = dict(weights.meta)
    filename = checkpoint_name(weights)
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
        bands=canonical_or_raw(band_ids),
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


class TorchgeoBase(BaseKind):
    """Weights published by torchgeo (ResNets and U-Nets are supported)."""

    prefix = "torchgeo:"
    pattern = "torchgeo:<WeightsEnum>.<NAME>"

    def listed(self) -> list[BaseModelEntry]:
        """Every torchgeo weight, supported or not.

        Weights torchgeo publishes without a hash show the sha256 of the file imported for
        them (``geotl models import``), when there is one.
        """
        entries = []
        for entry_id, weights in torchgeo_weights().items():
            entry = _entry(entry_id, weights)
            if entry.sha256 is None and entry.available_offline:
                local = torch_hub_checkpoints() / checkpoint_name(weights)
                entry = entry.model_copy(update={"sha256": cached_sha(local)})
            entries.append(entry)
        return entries

    def describe(self, entry_id: str) -> BaseModelEntry:
        """The weights' architecture, bands, licence and hash prefix from torchgeo's meta."""
        weights = torchgeo_weights().get(entry_id)
        if weights is None:
            close = [
                k for k in torchgeo_weights() if k.lower().endswith(entry_id.split(".")[-1].lower())
            ]
            hint = f"did you mean {close[0]}? " if close else ""
            raise BaseModelError(
                f"unknown torchgeo weights '{entry_id}': {hint}see 'geotl models list'"
            )
        return _entry(entry_id, weights)

    def load(self, entry: BaseModelEntry, encoder: str | None) -> LoadedBase:
        """The encoder's tensors: a U-Net's ``encoder.*``, a ResNet without its ``fc``."""
        del encoder
        require_supported(entry)
        state = _state(entry)
        local = torch_hub_checkpoints() / checkpoint_name(torchgeo_weights()[entry.id])
        if local.is_file():  # the card records the very file's hash, not the published prefix
            entry = entry.model_copy(
                update={
                    "sha256": cached_sha(local),
                    "size_bytes": local.stat().st_size,
                    "available_offline": True,
                }
            )
        return LoadedBase(entry=entry, encoder_state=_encoder_state(entry, state))


def _encoder_state(
    entry: BaseModelEntry, state: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """The encoder's tensors: a U-Net's ``encoder.*``, a ResNet without its ``fc``."""
    if entry.architecture.startswith("unet-"):
        enc = encoder_part(state)
        if not enc:
            raise BaseModelError(f"weights of {entry.id} hold no 'encoder.*' tensors")
        return enc
    # timm / torchvision ResNets share key names with smp's ResNet encoders; fc is unused.
    return {k: v for k, v in state.items() if not k.startswith("fc.")}


#: the input layer's weight in the encoders geotl builds (ResNet; smp's and timm's EfficientNet)
_FIRST_LAYERS = ("conv1.weight", "_conv_stem.weight", "conv_stem.weight")

#: what loading a weights file that is not one raises (torch.load, torch.hub)
_LOAD_ERRORS = (OSError, RuntimeError, ValueError, KeyError, EOFError, pickle.UnpicklingError)


def _check_fits(file: Path, entry: BaseModelEntry) -> None:
    """A file imported as ``entry`` must build its network: a state dict of its shapes.

    Raises:
        BaseModelError: not a PyTorch state dict, or one of another architecture.
    """
    from geotl.models.adapt import build_adapted_network

    if entry.encoder is None:
        return  # geotl cannot build it: the hash is all there is to check
    fix = f"download the file again from {torchgeo_weights()[entry.id].url}"
    try:
        raw = torch.load(file, map_location="cpu", weights_only=True)
    except _LOAD_ERRORS as exc:
        raise BaseModelError(
            f"is not a PyTorch weights file ({load_failure(exc)}): {fix}", file
        ) from exc
    try:
        state = unwrap_state(raw)
        encoder_state = _encoder_state(entry, state)
        first = next((encoder_state[k] for k in _FIRST_LAYERS if k in encoder_state), None)
        if first is not None and first.ndim == 4 and first.shape[1] != len(entry.bands):
            raise BaseModelError(
                f"is not {entry.id}'s weights: its first layer takes {first.shape[1]} bands, "
                f"{entry.id} takes {len(entry.bands)} ({', '.join(entry.bands)}): {fix}",
                file,
            )
        base = LoadedBase(entry=entry, encoder_state=encoder_state)
        build_adapted_network(base, list(entry.bands), ["object"])
    except BaseModelError as exc:
        if exc.path == file:  # already says what is wrong with the file
            raise
        raise BaseModelError(
            f"is not {entry.id}'s weights ({error_text(exc)}): {fix}", file
        ) from exc
    except _LOAD_ERRORS as exc:
        raise BaseModelError(
            f"is not {entry.id}'s weights ({error_text(exc)}): {fix}", file
        ) from exc


def _state(entry: BaseModelEntry) -> dict[str, torch.Tensor]:
    weights = torchgeo_weights()[entry.id]
    filename = checkpoint_name(weights)
    local = torch_hub_checkpoints() / filename
    if not local.is_file() and offline():
        raise BaseModelError(
            f"base model {entry.id} is not available offline: download {weights.url} on a "
            f"connected machine, then run 'geotl models import {filename} --as {entry.id}'"
        )
    try:
        # torch.hub announces downloads on stdout; stdout carries only data in geotl.
        with contextlib.redirect_stdout(sys.stderr):
            state = weights.get_state_dict(progress=False, weights_only=True, check_hash=True)
    except _LOAD_ERRORS as exc:
        raise BaseModelError(
            f"cannot load base model {entry.id} ({error_text(exc)}): "
            f"download {weights.url} and run 'geotl models import {filename} --as {entry.id}'"
        ) from exc
    return unwrap_state(state)


def import_weights(file: str | Path, entry_id: str, *, overwrite: bool = False) -> Path:
    """Verify a downloaded torchgeo weights file and place it where torch.hub looks.

    The file's sha256 must start with the hash prefix in torchgeo's file name (files
    torchgeo publishes without one are accepted and their full sha256 logged). Importing
    the same file again does nothing; another file for weights already there (possible
    only where torchgeo publishes no hash) needs ``overwrite``.

    Returns:
        Where the file now lies (``$TORCH_HOME/hub/checkpoints/<torchgeo file name>``).

    Raises:
        BaseModelError: unknown id, missing file, a sha256 mismatch (both hashes named),
            a file that does not build the network the id names (:func:`_check_fits`),
            weights with no published hash whose network geotl cannot build (nothing
            could verify them), or other weights already imported for the id without
            ``overwrite``.
    """
    file = Path(file)
    if not entry_id.startswith(TorchgeoBase.prefix):
        raise BaseModelError(
            f"'{entry_id}': only torchgeo:<WeightsEnum>.<NAME> weights are imported; "
            "use --base file:<path> for your own weights"
        )
    entry = TorchgeoBase().describe(entry_id)
    weights = torchgeo_weights()[entry.id]
    filename = checkpoint_name(weights)
    if not file.is_file():
        raise BaseModelError(
            f"weights file not found: check the path, or download {filename} from "
            f"{weights.url} on a machine that can",
            file,
        )
    prefix = _hash_prefix(filename)
    if prefix is None and entry.encoder is None:
        # no hash to compare and no network to build: nothing could tell junk from weights
        raise BaseModelError(
            f"cannot verify this file as {entry.id}: torchgeo publishes no hash for it and "
            f"geotl cannot build its network ({entry.unsupported_reason}), so it cannot be "
            "used as a base either: choose a supported base ('geotl models list --supported')",
            file,
        )
    digest = sha256_file(file)
    if prefix is not None and not digest.startswith(prefix):
        raise BaseModelError(
            f"sha256 {digest} does not match {entry.id} (torchgeo's file {filename} has sha256 prefix {prefix}): "
            "download the file again from " + weights.url,
            file,
        )
    _check_fits(file, entry)
    target_dir = torch_hub_checkpoints()
    target: Path = target_dir / filename
    if target.is_file() and not overwrite and (before := sha256_file(target)) != digest:
        raise BaseModelError(
            f"{entry.id} is already imported with sha256 {before[:12]}..., this file has "
            f"{digest[:12]}...: pass --overwrite to replace it",
            target,
        )
    if prefix is None:
        log.warning("torchgeo publishes no hash for %s; imported with sha256 %s", filename, digest)
    if entry.encoder is None:
        log.warning("%s cannot be a base for geotl train: %s", entry.id, entry.unsupported_reason)
    target_dir.mkdir(parents=True, exist_ok=True)
    if target.resolve() != file.resolve():
        with atomic_path(target) as tmp:
            shutil.copyfile(file, tmp)
    log.info("imported %s as %s -> %s", file, entry.id, target)
    return target
