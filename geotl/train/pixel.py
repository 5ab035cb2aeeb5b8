"""The per-pixel model fitted beside the trained network, kept when validation prefers it.

After the network has trained, :func:`fit_pixel_candidate` fits a
:class:`~geotl.models.pixel.PixelNetwork` to the same labelled train pixels (the label
budget holds: unsampled objects stay ignore) and scores it on the val chips exactly as
the network was scored, threshold chosen there too. Training keeps it only when it beats
the network on validation by :data:`MARGIN`: the network, which sees shape, is the model
a region should have, and the per-pixel one is its floor where a few labels leave the
network guessing.

The fit is a class-balanced multinomial logistic regression (L-BFGS, from zero weights,
so the same labels give the same model) on at most :data:`MAX_PIXELS` labelled pixels,
drawn with the run's seed when there are more.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from geotl.chips.labels import IGNORE
from geotl.models.artefact import Normalisation
from geotl.models.network import NetworkSpec
from geotl.models.pixel import PixelNetwork
from geotl.train.data import ChipData, normalise
from geotl.train.metrics import ConfusionIoU

__all__ = ["MARGIN", "MAX_PIXELS", "PixelCandidate", "fit_pixel_candidate"]

log = logging.getLogger(__name__)

#: labelled pixels the fit sees at most (a random share of them beyond)
MAX_PIXELS = 500_000
#: validation IoU by which the per-pixel model must beat the network to be kept
MARGIN = 0.01
#: pixels per batch of chips while computing features (bounds the memory)
_BATCH_PX = 2**20


@dataclass
class PixelCandidate:
    """A fitted per-pixel model and how it scored on the val chips."""

    network: PixelNetwork
    spec: NetworkSpec
    val_iou: float
    threshold: dict[str, float]  # as ConfusionIoU.threshold_record
    pixels: int  # labelled train pixels it was fitted on
    seconds: float

    def record(self, kept: bool, network_val_iou: float) -> dict[str, object]:
        """The card's entry: the two validation scores and which model was kept."""
        return {
            "val_iou": round(self.val_iou, 4),
            "threshold": self.threshold["value"],
            "network_val_iou": round(network_val_iou, 4),
            "kept": kept,
            "pixels": self.pixels,
            "fit_seconds": round(self.seconds, 2),
        }


def fit_pixel_candidate(
    train: list[ChipData],
    val: list[ChipData],
    norm: Normalisation,
    num_classes: int,
    threshold_set: float | None,
    seed: int,
) -> PixelCandidate | None:
    """Fit the per-pixel model on ``train`` and score it on ``val``.

    Returns ``None`` when the train pixels hold fewer than two classes (nothing to fit).
    """
    t0 = time.perf_counter()
    in_channels = len(norm.mean)
    mean = torch.tensor(norm.mean, dtype=torch.float32)[None, :, None, None]
    std = torch.tensor(norm.std, dtype=torch.float32)[None, :, None, None]
    labelled = sum(int((d.masks != IGNORE).sum()) for d in train)
    share = min(1.0, MAX_PIXELS / max(labelled, 1))
    gen = torch.Generator().manual_seed(seed)
    xs, ys = [], []
    for x, y in _batches(train, mean, std):
        keep = y != IGNORE
        if share < 1.0:
            keep &= torch.rand(y.shape, generator=gen) < share
        xs.append(PixelNetwork.features(x).permute(0, 2, 3, 1)[keep])
        ys.append(y[keep])
    features, labels = torch.cat(xs), torch.cat(ys).long()
    if len(torch.unique(labels)) < 2:
        return None
    network = PixelNetwork(in_channels, num_classes)
    _fit(network, features, labels, num_classes)
    metric = ConfusionIoU(num_classes, "cpu", threshold_set)
    network.eval()
    with torch.no_grad():
        for x, y in _batches(val, mean, std):
            metric.update(network(x), y)
    spec = NetworkSpec(
        arch="pixel",
        encoder="local-stats",
        in_channels=in_channels,
        num_classes=num_classes,
    )
    return PixelCandidate(
        network,
        spec,
        metric.compute(),
        metric.threshold_record(),
        len(labels),
        time.perf_counter() - t0,
    )


def _batches(
    data: list[ChipData], mean: torch.Tensor, std: torch.Tensor
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Normalised images and masks of the chips, a bounded number of pixels at a time."""
    for d in data:
        if not len(d):
            continue
        step = max(1, _BATCH_PX // (d.images.shape[-2] * d.images.shape[-1]))
        for i in range(0, len(d), step):
            x = torch.from_numpy(d.images[i : i + step])
            valid = torch.from_numpy(d.valid[i : i + step])
            yield normalise(x, valid, mean, std), torch.from_numpy(d.masks[i : i + step])


def _fit(network: PixelNetwork, features: torch.Tensor, labels: torch.Tensor, k: int) -> None:
    """Class-balanced logistic regression of ``labels`` on standardised ``features``."""
    mean = features.mean(0)
    std = features.std(0).clamp_min(1e-6)
    z = (features - mean) / std
    counts = torch.bincount(labels, minlength=k).double()
    present = int((counts > 0).sum())
    weight = torch.where(counts > 0, counts.sum() / (present * counts.clamp_min(1)), 0.0)
    linear = torch.nn.Linear(z.shape[1], k)
    torch.nn.init.zeros_(linear.weight)
    torch.nn.init.zeros_(linear.bias)
    opt = torch.optim.LBFGS(
        linear.parameters(), max_iter=200, history_size=20, line_search_fn="strong_wolfe"
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(linear(z), labels, weight=weight.float())
        loss = loss + 1e-4 * linear.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)  # type: ignore[no-untyped-call]
    with torch.no_grad():
        network.feature_mean.copy_(mean)  # type: ignore[operator]
        network.feature_std.copy_(std)  # type: ignore[operator]
        network.head.weight.copy_(linear.weight[:, :, None, None])
        network.head.bias.copy_(linear.bias)  # type: ignore[union-attr]
    log.info("per-pixel model: %d labelled pixels, %d features", len(labels), z.shape[1])
