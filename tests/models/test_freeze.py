"""Freezing a pretrained encoder: what stays trainable, and what the log says."""

from __future__ import annotations

import logging

import pytest
import torch

from geotl.models.network import NetworkSpec, build_network
from geotl.train.freeze import freeze_encoder


def _net() -> torch.nn.Module:
    return build_network(
        NetworkSpec(encoder="tu-mobilenetv3_small_050", in_channels=2, num_classes=2)
    )


@pytest.mark.parametrize("keep_first_conv", [False, True])
def test_backbone_freezes_the_encoder_but_a_first_conv_with_new_bands(
    keep_first_conv: bool, caplog: pytest.LogCaptureFixture
) -> None:
    net = _net()
    with caplog.at_level(logging.INFO, logger="geotl.train.freeze"):
        freeze_encoder(net, "backbone", keep_first_conv)
    enc = list(net.encoder.named_parameters())  # type: ignore[union-attr]
    trainable = [n for n, p in enc if p.requires_grad]
    assert trainable == ([enc[0][0]] if keep_first_conv else [])
    assert enc[0][1].ndim == 4  # the first tensor is the first convolution's weight
    assert all(p.requires_grad for p in net.decoder.parameters())  # type: ignore[union-attr]
    frozen = len(enc) - len(trainable)
    assert f"{frozen} of {len(enc)} encoder tensors frozen" in caplog.text
    assert ("first convolution trains" in caplog.text) == keep_first_conv


def test_partial_leaves_the_late_stages_trainable() -> None:
    net = _net()
    freeze_encoder(net, "partial", keep_first_conv=False)
    flags = [p.requires_grad for p in net.encoder.parameters()]  # type: ignore[union-attr]
    assert not flags[0] and flags[-1]
    assert flags == sorted(flags)  # a frozen prefix, then trainable
