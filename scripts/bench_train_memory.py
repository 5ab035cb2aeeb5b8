"""Memory and time of what training does with the chips before its first step.

Two stages run over every train chip held in memory: the normalisation (per-band mean/std
of the valid pixels, ``compute_normalisation``) and the training tensors
(``ChipDataset``: the chips joined in their smallest exact dtype; of two regions, and of
one region of 8-bit chips). This measures each one's peak memory above the chips
themselves (tracemalloc, which sees numpy's buffers), and its time, on an in-memory set of
real-texture chips (the demo plot's pixels tiled, 4 bands, a nodata border), in a fresh
process per tree and stage so that the peaks do not mix::

    .venv/bin/python scripts/bench_train_memory.py --chips 2000 --px 128 --before /tmp/before

``--before DIR``: a tree holding an older ``geotl/`` (``git archive REV geotl | tar -x -C
DIR``), measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys, time, tracemalloc
import numpy as np
import rasterio
from geotl.train.data import ChipData, ChipDataset, compute_normalisation
import geotl
n, px, tif, stage = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
with rasterio.open(tif) as src:
    plot = src.read().astype(np.float32)
bands = np.concatenate([plot, plot[:1]], 0)[:, :px, :px]  # 4 bands of real texture
images = np.empty((n, 4, px, px), np.float32)
for i in range(n):
    images[i] = np.roll(bands, i * 7, axis=2)
valid = np.ones((n, px, px), bool)
valid[:, :, : px // 8] = False  # a nodata border
data = ChipData("r", images, np.zeros((n, px, px), np.uint8), valid)
if stage == "tensors_one_region":
    eight = ChipData("a", images.astype(np.uint8), data.masks, valid)
    del images, data
tracemalloc.start()  # numpy reports its buffers to tracemalloc: the stage's own peak
before = tracemalloc.get_traced_memory()[0]
t0 = time.perf_counter()
if stage == "normalisation":
    norm = compute_normalisation([data])
    check = norm.mean[0]
elif stage == "tensors_one_region":  # 8-bit chips as the files hold them
    x = ChipDataset([eight]).x
    check = str(x.dtype)
else:
    half = n // 2  # two regions, as a multi-region run joins them
    x = ChipDataset([ChipData("a", images[:half], data.masks[:half], valid[:half]),
                     ChipData("b", images[half:], data.masks[half:], valid[half:])]).x
    check = str(x.dtype)
seconds = time.perf_counter() - t0
peak = tracemalloc.get_traced_memory()[1]
print(json.dumps({"geotl": geotl.__file__, "seconds": round(seconds, 3),
                  "extra_peak_mb": round((peak - before) / 2**20, 1),
                  "chips_mb": round(n * 4 * px * px * 4 / 2**20, 1), "check": check}))
"""


def run(tree: Path, n: int, px: int, tif: Path, stage: str) -> dict[str, object]:
    env = os.environ | {"PYTHONPATH": str(tree)}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(n), str(px), str(tif), stage],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=tree,
    )
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    assert str(result["geotl"]).startswith(str(tree)), result["geotl"]
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--chips", type=int, default=2000)
    ap.add_argument("--px", type=int, default=128)
    ap.add_argument("--before", type=Path, help="a tree with an older geotl/")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    tif = REPO / "regions" / "demo-osbs" / "imagery" / "OSBS_029.tif"
    trees = {"now": REPO} | ({"before": args.before.resolve()} if args.before else {})
    for _ in range(args.repeats):
        for stage, name in (
            (s, t) for s in ("normalisation", "tensors", "tensors_one_region") for t in trees
        ):
            r = run(trees[name], args.chips, args.px, tif, stage)
            print(
                json.dumps(
                    {"stage": stage, "tree": name, "chips": args.chips, "px": args.px}
                    | {k: r[k] for k in ("seconds", "extra_peak_mb", "chips_mb", "check")}
                )
            )


if __name__ == "__main__":
    main()
