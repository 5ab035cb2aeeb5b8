"""Augmentation of training batches (image and mask together)."""

from __future__ import annotations

import torch

__all__ = ["flip_rotate"]


def flip_rotate(
    x: torch.Tensor, y: torch.Tensor, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random flips and 90-degree rotations, per sample (square chips).

    Code ``c`` in 0..7 per sample: flip left-right if ``c & 4``, then rotate ``c & 3``
    quarter turns. Whole-batch ``torch.where`` selections: no host round trip, so a GPU
    never waits on the CPU here (``gen`` lives on the data's device).
    """
    n = x.shape[0]
    codes = torch.randint(0, 8, (n,), generator=gen, device=gen.device).to(x.device)
    flip = (codes & 4) != 0
    turns = codes & 3
    xo = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
    yo = torch.where(flip.view(-1, 1, 1), y.flip(-1), y)
    xr, yr = xo, yo
    for k in (1, 2, 3):
        sel = turns == k
        xr = torch.where(sel.view(-1, 1, 1, 1), torch.rot90(xo, k, (-2, -1)), xr)
        yr = torch.where(sel.view(-1, 1, 1), torch.rot90(yo, k, (-2, -1)), yr)
    return xr, yr
