"""A per-pixel linear model: each pixel's bands and their local statistics, one 1x1 layer.

With a handful of labelled objects a U-Net from random weights fits the objects it has
seen and is unsure of every other (Sentinel-2 fields at 10 labels: test IoU 0.48 against
0.61 for a map of nothing but fields); a linear model of the spectra, which cannot learn
shape and so cannot overfit it, reached 0.67 (BENCHMARKS, issue 8). Training fits this
model beside the network and keeps whichever scores better on validation
(:mod:`geotl.train.pixel`), so it is a network like any other to predict and export: the
same normalised input, logits of the same classes, any window size, plain ONNX operators.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["WINDOWS", "PixelNetwork", "feature_count"]

#: neighbourhoods (px) whose per-band mean and standard deviation join the bands
WINDOWS = (3, 7)


def feature_count(in_channels: int) -> int:
    """Features per pixel: the bands, then each band's mean and std per window.

    >>> feature_count(4)
    20
    """
    return in_channels * (1 + 2 * len(WINDOWS))


class PixelNetwork(torch.nn.Module):
    """Logits ``(B, num_classes, H, W)`` of a normalised ``(B, in_channels, H, W)`` batch.

    The features (:meth:`features`) are standardised by the buffers ``feature_mean`` and
    ``feature_std`` (set by the fit, saved with the weights), then ``head`` (a 1x1
    convolution) scores each class.
    """

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        n = feature_count(in_channels)
        self.register_buffer("feature_mean", torch.zeros(n))
        self.register_buffer("feature_std", torch.ones(n))
        self.head = torch.nn.Conv2d(n, num_classes, kernel_size=1)

    @staticmethod
    def features(x: torch.Tensor) -> torch.Tensor:
        """``(B, F, H, W)``: the bands, each band's mean and std over every window.

        Edges repeat the outermost pixels, so a pixel's features do not depend on where the
        window around it was cut beyond half the largest neighbourhood.
        """
        out = [x]
        for k in WINDOWS:
            padded = F.pad(x, (k // 2,) * 4, mode="replicate")
            mean = F.avg_pool2d(padded, k, stride=1)
            square = F.avg_pool2d(padded * padded, k, stride=1)
            out += [mean, (square - mean * mean).clamp_min(0.0).sqrt()]
        return torch.cat(out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits of each pixel."""
        mean = self.feature_mean[None, :, None, None]  # type: ignore[index]
        std = self.feature_std[None, :, None, None]  # type: ignore[index]
        return self.head((self.features(x) - mean) / std)  # type: ignore[no-any-return]
