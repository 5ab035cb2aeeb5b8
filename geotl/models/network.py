"""Segmentation networks: a U-Net decoder on a pretrained encoder, built from a spec.

A ``pixel`` spec builds :class:`~geotl.models.pixel.PixelNetwork` instead: a linear model
of each pixel's bands and their local statistics, which training keeps when it beats the
U-Net on validation (few labels of spectrally distinct classes).

The spec is plain JSON (stored in the model card), so an artefact can rebuild the exact
network without pickles: ``build_network(spec)`` then load the safetensors state dict.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:  # building a network imports torch; reading a card's spec does not
    import torch

__all__ = ["NetworkSpec", "build_network"]


class NetworkSpec(BaseModel):
    """What is needed to rebuild a network: architecture, encoder, channels, classes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    arch: Literal["unet", "retinanet", "pixel"] = "unet"
    encoder: str = Field(
        description="smp encoder name, e.g. 'tu-tf_efficientnet_lite0' ('local-stats' for pixel)"
    )
    in_channels: int = Field(gt=0)
    num_classes: int = Field(gt=1, description="output channels, background included")
    encoder_depth: int = Field(default=5, ge=3, le=5)
    decoder_channels: tuple[int, ...] = (256, 128, 64, 32, 16)
    # retinanet (geotl.models.detector): pyramid width and anchor base sizes of P3..P7
    fpn_channels: int = Field(default=64, gt=0)
    anchor_sizes: tuple[int, ...] = (16, 32, 64, 128, 256)

    @property
    def stride_px(self) -> int:
        """The network's output stride: window sides must be multiples of it."""
        return 1 if self.arch == "pixel" else int(2**self.encoder_depth)

    @property
    def description(self) -> str:
        """The architecture in words, as a model's STAC item names it.

        >>> NetworkSpec(encoder="resnet18", in_channels=3, num_classes=2).description
        'unet (resnet18 encoder)'
        """
        if self.arch == "pixel":
            from geotl.models.pixel import WINDOWS

            sizes = " and ".join(f"{k}x{k}" for k in WINDOWS)
            return f"per-pixel linear model (bands and their {sizes} mean and std)"
        return f"{self.arch} ({self.encoder} encoder)"

    def round_up_px(self, px: int) -> int:
        """``px`` rounded up to a multiple of :attr:`stride_px` (at least one stride).

        >>> NetworkSpec(encoder="resnet18", in_channels=3, num_classes=2).round_up_px(100)
        128
        """
        return max(self.stride_px, -(-px // self.stride_px) * self.stride_px)


def build_network(spec: NetworkSpec) -> torch.nn.Module:
    """Build an untrained network from ``spec`` (weights are loaded by the caller).

    The network maps a normalised float tensor ``(B, in_channels, H, W)`` to logits
    ``(B, num_classes, H, W)``; H and W must be multiples of ``2 ** encoder_depth``.
    A ``retinanet`` spec builds the detector of :mod:`geotl.models.detector` instead, a
    ``pixel`` spec the per-pixel model of :mod:`geotl.models.pixel` (any H and W).
    """
    if spec.arch == "retinanet":
        from geotl.models.detector import build_detector

        return build_detector(spec)
    if spec.arch == "pixel":
        from geotl.models.pixel import PixelNetwork

        return PixelNetwork(spec.in_channels, spec.num_classes)
    import segmentation_models_pytorch as smp  # 1.7 s with timm: only when a U-Net is built

    decoder_channels = spec.decoder_channels[: spec.encoder_depth]
    net: torch.nn.Module = smp.Unet(
        encoder_name=spec.encoder,
        encoder_weights=None,
        encoder_depth=spec.encoder_depth,
        decoder_channels=decoder_channels,
        in_channels=spec.in_channels,
        classes=spec.num_classes,
    )
    return net
