"""Augmentation for overhead imagery: random windows, dihedral turns, per-band photometry.

Built from kornia's augmentations (a torchgeo dependency), applied to whole batches on the
training device:

- **Random windows with scale jitter**: every step draws a fresh ``window_px`` window
  from anywhere inside each chip (``RandomCrop``), or with ``scale_jitter`` > 0 a square
  of ``window_px x s`` pixels (``s`` in ``[1/(1+j), 1+j]``, capped by the chip) resized to
  ``window_px`` (``RandomResizedCrop``): regions differ in ground resolution. Masks follow
  with nearest-neighbour sampling, so class values, ignore (255) and the label budget
  survive unchanged.
- **Flips and 90-degree rotations**: overhead imagery has no "up".
- **Per-band brightness, contrast and gamma**: each band of each sample is rescaled to
  [0, 1] by its own valid minimum and maximum, jittered, and scaled back, so the jitter is
  relative to the band's range whatever its units (uint8, reflectance x 10000, ...).

kornia draws its parameters from torch's global generator, which the trainer seeds: the
same seed gives the same augmentations on CPU.
"""

from __future__ import annotations

from typing import cast

import kornia.augmentation as K
import torch

from geotl.chips.labels import IGNORE

__all__ = ["Augment", "default_window_px"]


def default_window_px(chip_px: int) -> int:
    """Training windows: half a chip, at least 64 px and at most 128 px (nor the chip).

    >>> [default_window_px(s) for s in (32, 64, 128, 256, 512)]
    [32, 64, 64, 128, 128]
    """
    return min(chip_px, max(64, min(128, chip_px // 2 // 32 * 32)))


class Augment(torch.nn.Module):
    """Window, turn and jitter a raw batch of chips (images, masks and valid pixels together).

    Args:
        chip_px: the chips' size.
        window_px: the training window (a multiple of 32, at most ``chip_px``).
        scale_jitter: ``j`` of the scale range ``[1/(1+j), 1+j]``; 0: plain crops.
        photometric: per-band brightness/contrast/gamma jitter.
    """

    def __init__(
        self, chip_px: int, window_px: int, scale_jitter: float, photometric: bool = True
    ) -> None:
        super().__init__()
        size = (window_px, window_px)
        crop: K.AugmentationBase2D
        if scale_jitter > 0:
            lo = (window_px / (1 + scale_jitter) / chip_px) ** 2
            hi = min(1.0, (window_px * (1 + scale_jitter) / chip_px) ** 2)
            crop = K.RandomResizedCrop(size, scale=(min(lo, hi), hi), ratio=(1.0, 1.0))
        else:
            crop = K.RandomCrop(size)
        self.geometric = K.AugmentationSequential(
            crop,
            K.RandomHorizontalFlip(),
            K.RandomRotation90(times=(0, 3), p=1.0),
            data_keys=["input", "mask"],
        )
        self.photometric = (
            K.AugmentationSequential(
                K.RandomGamma(gamma=(0.8, 1.25), p=0.5),
                K.RandomContrast(contrast=(0.8, 1.2), clip_output=False, p=0.5),
                K.RandomBrightness(brightness=(0.9, 1.1), clip_output=False, p=0.5),
            )
            if photometric
            else None
        )

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor, valid: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``x`` (B, C, H, W) float raw units; ``mask`` (B, H, W); ``valid`` (B, H, W) bool.

        Nodata pixels come out as their chip's band mean (any NaN gone), still not valid.
        """
        labels = torch.stack([mask.float(), valid.float()], dim=1)
        x, labels = self.geometric(_fill_nodata(x, valid), labels)
        mask = labels[:, 0].round().clamp(0, IGNORE).to(torch.uint8)
        valid = labels[:, 1] > 0.5
        if self.photometric is not None:
            x = self._jitter_bands(x, valid)
        return x, mask, valid

    def _jitter_bands(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        assert self.photometric is not None
        b, c, h, w = x.shape
        v = valid[:, None].expand(b, c, h, w)
        inf = torch.tensor(float("inf"), dtype=x.dtype, device=x.device)
        lo = torch.where(v, x, inf).amin(dim=(2, 3), keepdim=True)
        hi = torch.where(v, x, -inf).amax(dim=(2, 3), keepdim=True)
        lo = torch.where(torch.isfinite(lo), lo, torch.zeros_like(lo))
        span = torch.where(torch.isfinite(hi), hi, lo + 1) - lo
        span = torch.where(span > 0, span, torch.ones_like(span))
        unit = ((x - lo) / span).clamp(0, 1).reshape(b * c, 1, h, w)
        out = cast(torch.Tensor, self.photometric(unit)).reshape(b, c, h, w)
        return torch.where(v, out * span + lo, x)


def _fill_nodata(x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``x`` with each chip's nodata pixels set to the mean of its band's valid pixels.

    Rotations and resized windows interpolate: a NaN nodata (float SAR or reflectance) made
    its valid neighbours NaN and the loss NaN, and a -9999 bled into them. The chip's band
    mean normalises to about 0, the value nodata pixels get after normalisation anyway.

    >>> x = torch.tensor([[[[1.0, float("nan")], [3.0, 5.0]]]])
    >>> _fill_nodata(x, ~x[:, 0].isnan()).flatten().tolist()
    [1.0, 3.0, 3.0, 5.0]
    """
    v = valid[:, None].expand_as(x)
    count = v.sum(dim=(2, 3), keepdim=True).clamp_min(1)
    mean = torch.where(v, x, torch.zeros_like(x)).sum(dim=(2, 3), keepdim=True) / count
    return torch.where(v, x, mean)
