"""Which encoder parameters stay frozen while adapting a pretrained base."""

from __future__ import annotations

import logging
from typing import cast

import torch

__all__ = ["freeze_encoder", "freeze_leading"]

log = logging.getLogger(__name__)


def freeze_encoder(network: torch.nn.Module, mode: str, keep_first_conv: bool) -> list[str]:
    """Freeze encoder parameters; returns the module-name prefixes that are frozen.

    Args:
        network: a network with an ``encoder`` submodule (smp models).
        mode: ``"none"``, ``"backbone"`` (the whole encoder) or ``"partial"`` (stem and
            early stages: everything before the stride-16 stage).
        keep_first_conv: leave the first convolution trainable (band-adapted weights).
    """
    if mode == "none":
        return []
    encoder = cast(torch.nn.Module, network.encoder)
    names = [n for n, _ in encoder.named_parameters()]
    if mode == "backbone":
        cut = len(names)
    else:  # partial: stem and early stages (everything before the stride-16 stage)
        late: set[int] = set()
        stages = getattr(encoder, "get_stages", None)
        if callable(stages):
            try:
                for mods in stages().values():
                    for m in mods:
                        late.update(id(p) for p in m.parameters())
            except Exception:
                late = set()
        params = dict(encoder.named_parameters())
        if late:
            cut = next((i for i, n in enumerate(names) if id(params[n]) in late), len(names))
        else:
            info = getattr(getattr(encoder, "model", None), "feature_info", None)
            cut = len(names) // 3
            if info is not None:
                early = [
                    m for m, r in zip(info.module_name(), info.reduction(), strict=False) if r <= 8
                ]
                if early:
                    last = "model." + early[-1]
                    idx = [i for i, n in enumerate(names) if n.startswith(last + ".")]
                    if idx:
                        cut = idx[-1] + 1
    frozen = freeze_leading(encoder, cut, keep_first_conv, mode, "encoder")
    return sorted({"encoder." + n.rsplit(".", 1)[0] for n in frozen})


def freeze_leading(
    module: torch.nn.Module, cut: int, keep_first_conv: bool, mode: str, what: str
) -> list[str]:
    """Freeze ``module``'s first ``cut`` parameter tensors; returns their names.

    With ``keep_first_conv`` the first tensor (the band-adapted first convolution) stays
    trainable. Logs what ``mode`` froze of the ``what`` (encoder, backbone).
    """
    params = dict(module.named_parameters())
    frozen = list(params)[:cut]
    kept = keep_first_conv and bool(frozen)
    for n in frozen[1:] if kept else frozen:
        params[n].requires_grad_(False)
    log.info(
        "freeze=%s: %d of %d %s tensors frozen%s",
        mode,
        len(frozen) - kept,
        len(params),
        what,
        " (the first convolution trains: it has new bands)" if kept else "",
    )
    return frozen
