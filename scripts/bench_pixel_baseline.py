"""A per-pixel logistic regression on the same chips and label budget as ``geotl train``.

Issue 8 asks that ``none`` (a U-Net from random weights) never fall below the all-foreground
floor. This script measures what a model with no spatial capacity to overfit gets from the
same labels: each pixel's bands plus their mean and standard deviation over 3x3 and 7x7
neighbourhoods, a class-balanced logistic regression (L-BFGS, torch), the threshold chosen
on the val chips as ``geotl train`` does, and pixel IoU on the test chips. The objects
sampled under ``--budget`` are geotl's own (:func:`geotl.train.data.select_objects`, same
seed), so a row here sits beside ``bench_recipe.py``'s rows for the same seed.

    PYTHONPATH=. .venv/bin/python scripts/bench_pixel_baseline.py \\
        --region /tmp/s30/s2/regions/s2-fields.toml --chips /tmp/s30/s2/chips/s2-fields-df79d41b6d \\
        --budget 10 --seeds 0,1,2

Binary regions only (one class besides background).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from geotl.chips import read_chip_index  # noqa: E402
from geotl.chips.labels import IGNORE  # noqa: E402
from geotl.config import load_region  # noqa: E402
from geotl.train.data import ChipData, load_region_chips, select_objects  # noqa: E402
from geotl.train.metrics import THRESHOLDS  # noqa: E402


def features(img: np.ndarray) -> np.ndarray:
    """``(F, H, W)``: the bands, then each band's mean and std over 3x3 and 7x7 pixels."""
    img = img.astype(np.float32)
    out = [img]
    for size in (3, 7):
        mean = ndimage.uniform_filter(img, size=(1, size, size))
        sq = ndimage.uniform_filter(img * img, size=(1, size, size))
        out += [mean, np.sqrt(np.maximum(sq - mean * mean, 0))]
    return np.concatenate(out, 0)


def pixels(data: ChipData) -> tuple[np.ndarray, np.ndarray]:
    """Features ``(N, F)`` and labels ``(N,)`` of every pixel of the chips."""
    xs, ys = [], []
    for img, mask in zip(data.images, data.masks, strict=True):
        f = features(img)
        xs.append(f.reshape(len(f), -1).T)
        ys.append(mask.ravel())
    return np.concatenate(xs), np.concatenate(ys)


def fit(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, torch.nn.Linear]:
    """Class-balanced logistic regression on standardised features; returns the scaler too."""
    mean, std = x.mean(0), np.maximum(x.std(0), 1e-6)
    xt = torch.from_numpy((x - mean) / std).float()
    yt = torch.from_numpy(y.astype(np.float32))
    pos = float(yt.mean())
    weight = torch.where(yt > 0, 0.5 / pos, 0.5 / (1 - pos))
    torch.manual_seed(0)
    model = torch.nn.Linear(x.shape[1], 1)
    opt = torch.optim.LBFGS(model.parameters(), max_iter=500, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        logits = model(xt)[:, 0]
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, yt, weight)
        loss = loss + 1e-4 * model.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return mean, std, model


def probability(
    x: np.ndarray, scaler: tuple[np.ndarray, np.ndarray], model: torch.nn.Linear
) -> np.ndarray:
    """The model's foreground probability of each pixel."""
    with torch.no_grad():
        xt = torch.from_numpy((x - scaler[0]) / scaler[1]).float()
        return torch.sigmoid(model(xt)[:, 0]).numpy()


def iou(pred: np.ndarray, y: np.ndarray) -> float:
    ok = y != IGNORE
    p, t = pred[ok], y[ok] == 1
    union = (p | t).sum()
    return float((p & t).sum() / union) if union else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--region", type=Path, required=True)
    ap.add_argument("--chips", type=Path, required=True, help="the region's chips folder")
    ap.add_argument("--budget", type=int, default=None, help="labelled objects (default: all)")
    ap.add_argument("--seeds", default="0,1,2")
    args = ap.parse_args()
    region = load_region(args.region)
    if len(region.classes) != 1:
        raise SystemExit("binary regions only: one class besides background")
    bands = list(region.imagery.bands)
    x_val, y_val = pixels(load_region_chips(region, args.chips, "val", bands))
    x_test, y_test = pixels(load_region_chips(region, args.chips, "test", bands))
    floor = iou(np.ones_like(y_test, bool), y_test)
    train_frame = read_chip_index(args.chips).split("train")
    for seed in (int(s) for s in args.seeds.split(",")):
        sampled = select_objects([list(v) for v in train_frame["object_ids"]], args.budget, seed)
        train = load_region_chips(region, args.chips, "train", bands, sampled, seed)
        x, y = pixels(train)
        keep = y != IGNORE
        mean, std, model = fit(x[keep], y[keep])
        p_val = probability(x_val, (mean, std), model)
        p_test = probability(x_test, (mean, std), model)
        val = [iou(p_val >= t, y_val) for t in THRESHOLDS]
        best = int(np.argmax(val))
        row = {
            "region": region.name,
            "budget": args.budget,
            "seed": seed,
            "train_px": int(keep.sum()),
            "train_foreground_share": round(float((y[keep] == 1).mean()), 4),
            "threshold": THRESHOLDS[best],
            "val_iou": round(val[best], 4),
            "pixel_iou": round(iou(p_test >= THRESHOLDS[best], y_test), 4),
            "pixel_iou_t05": round(iou(p_test >= 0.5, y_test), 4),
            "floor": round(floor, 4),
        }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
