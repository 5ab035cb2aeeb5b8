"""A tiny, quickly trained model for monitor tests: a U-Net taught a spectral rule.

The network learns one class from a pixel rule (water = dark near-infrared for NAIP,
cleared forest = low NIR for the Peru Landsat series) on a few crops, so detections follow
the real imagery and change meaningfully from pass to pass. Seeded, so runs are repeatable.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import rasterio
import torch

from geotl.models.artefact import BaseModelRef, ModelCard, Normalisation, write_artefact
from geotl.models.network import NetworkSpec, build_network

Rule = Callable[[np.ndarray], np.ndarray]


def water_rule(raw: np.ndarray) -> np.ndarray:
    """NAIP (red, green, blue, nir): open water is dark in the near infrared."""
    return (raw[3] < 60) & (raw[3] > 0)


def clearing_rule(raw: np.ndarray) -> np.ndarray:
    """Peru Landsat (swir16, nir, red, green): cleared land has a low NIR."""
    return (raw[1] < 150) & (raw[1] > 0)


def build_tiny_model(
    out_dir: Path,
    scenes: list[Path],
    bands: list[str],
    resolution_m: float,
    class_name: str,
    rule: Rule,
    *,
    steps: int = 60,
    crop_px: int = 96,
    seed: int = 0,
    name: str = "tiny",
) -> ModelCard:
    """Train the tiny network on ``rule`` over crops of ``scenes`` and write the artefact."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    arrays = []
    for path in scenes:
        with rasterio.open(path) as ds:
            arrays.append(ds.read().astype(np.float32))
    stacked = np.concatenate([a.reshape(a.shape[0], -1) for a in arrays], axis=1)
    mean = stacked.mean(axis=1)
    std = stacked.std(axis=1) + 1e-6
    spec = NetworkSpec(
        encoder="tu-mobilenetv3_small_050",
        in_channels=len(bands),
        num_classes=2,
        encoder_depth=3,
        decoder_channels=(32, 16, 8),
    )
    net = build_network(spec)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    loss_fn = torch.nn.CrossEntropyLoss()
    net.train()
    with torch.inference_mode(False):
        for _ in range(steps):
            xs, ys = [], []
            for _ in range(4):
                raw = arrays[int(rng.integers(len(arrays)))]
                r = int(rng.integers(0, raw.shape[1] - crop_px))
                c = int(rng.integers(0, raw.shape[2] - crop_px))
                crop = raw[:, r : r + crop_px, c : c + crop_px]
                xs.append((crop - mean[:, None, None]) / std[:, None, None])
                ys.append(rule(crop).astype(np.int64))
            x = torch.from_numpy(np.stack(xs))
            y = torch.from_numpy(np.stack(ys))
            opt.zero_grad()
            loss = loss_fn(net(x), y)
            loss.backward()
            opt.step()
    net.eval()
    card = ModelCard(
        name=name,
        classes=[class_name],
        bands=bands,
        normalisation=Normalisation(mean=[float(m) for m in mean], std=[float(s) for s in std]),
        chip_size_px=crop_px,
        resolution_m=resolution_m,
        network=spec,
        base=BaseModelRef(id="none", architecture="unet", licence="MIT", commercial_use=True),
        freeze="none",
        seed=seed,
        epochs=1,
    )
    return write_artefact(out_dir, net, card)
