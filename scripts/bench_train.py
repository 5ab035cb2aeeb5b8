"""Benchmark: throughput of geotl's training loop against the bare model's forward+backward.

Both are measured in the same process, on the same device, with the same network, batch
size, loss (cross-entropy + dice) and optimiser (AdamW):

- **bare**: forward + backward + optimiser step on one batch of random tensors already in
  memory (on the device), repeated; no data loading, no augmentation, no Lightning.
- **geotl**: :func:`geotl.train.train_model` on a real chips folder, windows as large as
  the chips (so the same pixels per sample); the windows/s of the training phases
  (validation excluded, first step included), as recorded in the model card
  (``metrics.throughput``); augmentation (kornia) included.

ratio = geotl chips/s / bare chips/s; the goal is >= 0.85 (data loading, augmentation and
the training loop's bookkeeping must not be the bottleneck). The bare loop runs before
and after the geotl run; the faster of the two is the baseline (conservative on a noisy
shared machine).

Usage::

    .venv/bin/python scripts/bench_train.py --work /tmp/bench-train            # demo region, CPU
    .venv/bin/python scripts/bench_train.py --region R.toml --device cuda --epochs 6 \\
        --batch-size 32 --json /tmp/bench-train.json

Needs only geotl and its dependencies; the default region is the bundled demo region.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "regions" / "demo-osbs.toml"

log = logging.getLogger("bench_train")


def synthetic_region(work: Path, size_px: int, chip_px: int, seed: int = 0) -> Path:
    """A generated region: one smooth 3-band uint8 scene (0.5 m, UTM) with random boxes.

    Only the chip count and shape matter for throughput; this scales to any size without
    the shared data (the GeoJSON is written with ``json``, the scene with rasterio).
    """
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin

    rng = np.random.default_rng(seed)
    work.mkdir(parents=True, exist_ok=True)
    x0, y0, res = 500000.0, 4000000.0, 0.5
    coarse = rng.integers(0, 256, (3, size_px // 32 + 1, size_px // 32 + 1), dtype=np.uint8)
    img = np.repeat(np.repeat(coarse, 32, axis=1), 32, axis=2)[:, :size_px, :size_px]
    scene = work / "synthetic.tif"
    with rasterio.open(
        scene, "w", driver="GTiff", width=size_px, height=size_px, count=3, dtype="uint8",
        crs="EPSG:32617", transform=from_origin(x0, y0, res, res), tiled=True,
    ) as dst:  # fmt: skip
        dst.write(img)
    features = []
    for i in range(max(10, (size_px // chip_px) ** 2)):
        cx, cy = rng.uniform(0, size_px * res, 2)
        w, h = rng.uniform(2, 10, 2)
        x, y = x0 + cx, y0 - cy
        ring = [[x, y], [x + w, y], [x + w, y - h], [x, y - h], [x, y]]
        features.append(
            {
                "type": "Feature",
                "properties": {"id": i, "label": "thing"},
                "geometry": {"type": "Polygon", "coordinates": [ring]},
            }
        )
    labels = work / "synthetic.geojson"
    crs = {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32617"}}
    labels.write_text(json.dumps({"type": "FeatureCollection", "crs": crs, "features": features}))
    region = work / "synthetic.toml"
    region.write_text(
        'name = "synthetic"\nclasses = ["thing"]\n\n[imagery]\n'
        f'paths = ["{scene}"]\nbands = ["red", "green", "blue"]\n\n[labels]\n'
        f'path = "{labels}"\nclass_field = "label"\n\n[chips]\n'
        f"size_px = {chip_px}\nstride_px = {chip_px}\n\n[split]\n"
        f"block_size_m = {chip_px * res * 4}\nval_fraction = 0.1\ntest_fraction = 0.1\n"
    )
    return region


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare_loop(
    region: Any,
    base_id: str,
    freeze: str,
    shape: tuple[int, int, int],
    batch_size: int,
    steps: int,
    device_name: str,
    warmup: int = 3,
    lr: float = 1e-3,
) -> dict[str, Any]:
    """Chips/s of forward+backward+step on in-memory random tensors of ``shape``."""
    import segmentation_models_pytorch as smp

    from geotl.models.adapt import build_adapted_network
    from geotl.models.catalogue import load_base
    from geotl.train.freeze import freeze_encoder

    device = torch.device(device_name)
    base = load_base(base_id)
    network, spec, plan = build_adapted_network(base, list(region.imagery.bands), region.classes)
    if base.entry.id != "none":
        freeze_encoder(network, freeze, keep_first_conv=bool(plan and plan.new))
    network.to(device).train()
    params = [p for p in network.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    ce = torch.nn.CrossEntropyLoss(ignore_index=255)
    dice = smp.losses.DiceLoss("multiclass", ignore_index=255)
    gen = torch.Generator().manual_seed(0)
    c, h, w = shape
    x = torch.randn(batch_size, c, h, w, generator=gen).to(device)
    y = torch.randint(0, spec.num_classes, (batch_size, h, w), generator=gen).to(device)
    cuda = device.type == "cuda"
    # the precision geotl trains with: bf16 autocast where supported, else fp16 + scaler
    bf16 = cuda and torch.cuda.is_bf16_supported()
    scaler = torch.amp.GradScaler("cuda", enabled=cuda and not bf16)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        dtype = torch.bfloat16 if bf16 else torch.float16
        with torch.autocast(device.type, dtype=dtype, enabled=cuda):
            logits = network(x)
            loss = ce(logits, y) + dice(logits, y)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    for _ in range(warmup):
        step()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    seconds = time.perf_counter() - t0
    return {
        "steps": steps,
        "chips": steps * batch_size,
        "seconds": round(seconds, 4),
        "chips_per_s": round(steps * batch_size / seconds, 3),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
    }


def geotl_loop(
    region: Any,
    chips_dir: Path,
    out: Path,
    base_id: str,
    freeze: str,
    epochs: int,
    batch_size: int,
    device: str,
    window_px: int,
) -> dict[str, Any]:
    """Train with geotl (no early stop) and return the card's throughput record."""
    from geotl.train import TrainOptions, train_model

    card = train_model(
        [region],
        out,
        TrainOptions(
            chips=(chips_dir,),
            base=base_id,
            epochs=epochs,
            freeze=freeze,
            batch_size=batch_size,
            device=device,
            patience=epochs + 1,
            window_px=window_px,  # whole chips: the same pixels per sample as the bare loop
            overwrite=True,
        ),
    )
    tp = dict(card.metrics["throughput"])
    tp["chips_per_s"] = tp.pop("windows_per_s")
    tp["train_seconds_total"] = card.metrics["train_seconds"]
    tp["train_chips_in_memory"] = card.regions[0].chips_train
    tp["shape"] = [len(card.bands), card.chip_size_px, card.chip_size_px]
    return tp


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the JSON record on stdout."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--region", type=Path, default=DEMO, help="region TOML (default: demo)")
    ap.add_argument(
        "--synthetic",
        type=int,
        default=None,
        metavar="SIZE_PX",
        help="generate a SIZE_PX x SIZE_PX scene with boxes instead of --region",
    )
    ap.add_argument("--chip-px", type=int, default=64, help="chip size for --synthetic")
    ap.add_argument("--chips", type=Path, default=None, help="its chips folder (else chipped)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/geotl-bench-train"))
    ap.add_argument("--base", default="pkg:efficientnet-lite0")
    ap.add_argument("--freeze", default="none", choices=["none", "backbone", "partial"])
    ap.add_argument("--epochs", type=int, default=4, help="geotl epochs (first is warm-up)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--json", type=Path, default=None, help="also write the record here")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)

    from geotl.chips import chip_region, read_chip_index
    from geotl.config import load_region

    args.work.mkdir(parents=True, exist_ok=True)
    if args.synthetic:
        args.region = synthetic_region(args.work / "synthetic", args.synthetic, args.chip_px)
    region = load_region(args.region)
    chips_dir = args.chips
    if chips_dir is None:
        chips_dir = args.work / f"chips-{region.name}"
        if not (chips_dir / "chipset.json").is_file():
            chip_region(region, chips_dir, overwrite=True)
    meta = read_chip_index(chips_dir).meta
    size = int(meta.get("size_px", region.chips.size_px))
    shape = (len(region.imagery.bands), size, size)

    bare_args = (region, args.base, args.freeze, shape, args.batch_size)
    # as many bare steps as the geotl run's steady epochs hold, at least 10
    n_train = len(read_chip_index(chips_dir).split("train"))
    per_epoch = max(n_train, args.batch_size)
    steps = max(10, (per_epoch * max(args.epochs - 1, 1)) // args.batch_size)
    log.info("bare loop 1: %d steps of %d x %s", steps, args.batch_size, shape)
    bare1 = bare_loop(*bare_args, steps, args.device)
    log.info("bare loop 1: %.2f chips/s", bare1["chips_per_s"])
    log.info("geotl loop: %d epochs", args.epochs)
    geo = geotl_loop(
        region,
        chips_dir,
        args.work / "model",
        args.base,
        args.freeze,
        args.epochs,
        args.batch_size,
        args.device,
        size,
    )
    log.info("geotl loop: %.2f chips/s", geo["chips_per_s"])
    torch.use_deterministic_algorithms(False)
    bare2 = bare_loop(*bare_args, steps, args.device)
    log.info("bare loop 2: %.2f chips/s", bare2["chips_per_s"])
    baseline = max(bare1["chips_per_s"], bare2["chips_per_s"])
    ratio = geo["chips_per_s"] / baseline if geo["chips_per_s"] else None
    record = {
        "command": " ".join(["scripts/bench_train.py", *(argv or sys.argv[1:])]),
        "device": args.device,
        "device_name": torch.cuda.get_device_name()
        if args.device == "cuda"
        else platform.processor(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "region": region.name,
        "base": args.base,
        "freeze": args.freeze,
        "batch_size": args.batch_size,
        "shape": list(shape),
        "bare": [bare1, bare2],
        "geotl": geo,
        "baseline_chips_per_s": baseline,
        "ratio": round(ratio, 3) if ratio is not None else None,
        "goal": 0.85,
    }
    text = json.dumps(record, indent=2)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
