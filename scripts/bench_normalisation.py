"""Memory and time of the training normalisation (per-band mean/std of the train chips).

``compute_normalisation`` runs over every valid pixel of the train chips before training.
This measures its peak memory above the chips themselves, and its time, on an in-memory
set of real-texture chips (the demo plot's pixels tiled, 4 bands, a nodata border), in a
fresh process per tree so that the peaks do not mix::

    .venv/bin/python scripts/bench_normalisation.py --chips 2000 --px 128 --before /tmp/before

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
import json, resource, sys, time
import numpy as np
import rasterio
from geotl.train.data import ChipData, compute_normalisation
import geotl
n, px, tif = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
with rasterio.open(tif) as src:
    plot = src.read().astype(np.float32)
bands = np.concatenate([plot, plot[:1]], 0)[:, :px, :px]  # 4 bands of real texture
images = np.empty((n, 4, px, px), np.float32)
for i in range(n):
    images[i] = np.roll(bands, i * 7, axis=2)
valid = np.ones((n, px, px), bool)
valid[:, :, : px // 8] = False  # a nodata border
data = ChipData("r", images, np.zeros((n, px, px), np.uint8), valid)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
norm = compute_normalisation([data])
seconds = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"geotl": geotl.__file__, "seconds": round(seconds, 3),
                  "extra_peak_mb": round((peak - before) / 1024, 1),
                  "chips_mb": round(images.nbytes / 2**20, 1), "mean": norm.mean, "std": norm.std}))
"""


def run(tree: Path, n: int, px: int, tif: Path) -> dict[str, object]:
    env = os.environ | {"PYTHONPATH": str(tree)}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(n), str(px), str(tif)],
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
        for name, tree in trees.items():
            r = run(tree, args.chips, args.px, tif)
            print(
                json.dumps(
                    {"tree": name, "chips": args.chips, "px": args.px}
                    | {k: r[k] for k in ("seconds", "extra_peak_mb", "chips_mb")}
                    | {"mean0": round(float(r["mean"][0]), 6), "std0": round(float(r["std"][0]), 6)}
                )
            )


if __name__ == "__main__":
    main()
