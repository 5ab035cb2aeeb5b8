"""Benchmark ``geotl chip``: throughput against a plain windowed read, and peak memory.

1. Throughput: chip_region on a generated 3-band scene vs. a plain rasterio loop reading the
   same windows from the same file, in the same run (ratio = read time / chip time; goal >= 0.7).
2. Memory: peak RSS of chip_region in a fresh process on a large generated scene
   (default 20,000 x 20,000 px, tiled + deflate so it stays small on disk) vs. a small one.

Usage: .venv/bin/python scripts/bench_chip.py [--work DIR] [--large-px 20000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
from affine import Affine
from rasterio.windows import Window
from shapely.geometry import box

X0, Y0 = 500_000.0, 4_000_000.0


def write_scene(path: Path, size_px: int, count: int, res_m: float, noise: bool = True) -> None:
    profile = {
        "driver": "GTiff", "width": size_px, "height": size_px, "count": count, "dtype": "uint8",
        "crs": "EPSG:32618", "transform": Affine(res_m, 0, X0, 0, -res_m, Y0), "nodata": 0,
        "tiled": True, "blockxsize": 512, "blockysize": 512, "compress": "deflate", "BIGTIFF": "IF_SAFER",
    }  # fmt: skip
    rng = np.random.default_rng(0)
    if noise:  # incompressible: the hardest case for the writes
        block = rng.integers(1, 255, size=(count, 512, size_px), dtype=np.uint8)
    else:  # smooth bands: stays small on disk even at 20,000 x 20,000 px
        ramp = (np.arange(size_px) // 64 % 200 + 1).astype(np.uint8)
        block = np.broadcast_to(ramp, (count, 512, size_px)).copy()
    with rasterio.open(path, "w", **profile) as dst:
        for row in range(0, size_px, 512):
            h = min(512, size_px - row)
            dst.write(block[:, :h], window=Window(0, row, size_px, h))


def write_labels(path: Path, size_px: int, res_m: float, n: int) -> None:
    rng = np.random.default_rng(1)
    extent = size_px * res_m
    xy = rng.uniform(0, extent - 20 * res_m, size=(n, 2))
    boxes = [box(X0 + x, Y0 - y - 15 * res_m, X0 + x + 15 * res_m, Y0 - y) for x, y in xy]
    gpd.GeoDataFrame({"label": ["Tree"] * n}, geometry=boxes, crs="EPSG:32618").to_file(path)


def write_region(path: Path, scene: Path, labels: Path, size_px: int) -> None:
    path.write_text(
        f'name = "bench"\nclasses = ["tree"]\n[imagery]\npaths = ["{scene}"]\n'
        f'bands = ["red", "green", "blue"]\n[labels]\npath = "{labels}"\nclass_field = "label"\n'
        f'class_map = {{ Tree = "tree" }}\n[chips]\nsize_px = {size_px}\nstride_px = {size_px}\n'
        "[split]\nblock_size_m = 200\nval_fraction = 0.15\ntest_fraction = 0.15\n"
    )


def plain_read(scene: Path, size_px: int) -> float:
    from geotl.chips.windows import chip_windows

    t0 = time.perf_counter()
    with rasterio.open(scene) as ds:
        for w in chip_windows(ds.width, ds.height, size_px, size_px):
            ds.read(window=Window(w.col_off, w.row_off, w.width, w.height))
    return time.perf_counter() - t0


CHILD = """
import resource, sys, time, logging
from geotl.config import load_region
from geotl.chips import chip_region
t0 = time.perf_counter()
s = chip_region(load_region(sys.argv[1]), sys.argv[2], overwrite=True)
print(time.perf_counter() - t0, s.n_chips + s.n_guard, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def run_chip(region: Path, out: Path) -> tuple[float, int, float]:
    """chip_region in a fresh process: (seconds, chips written, peak RSS MiB)."""
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(region), str(out)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    seconds, chips, rss_kib = proc.stdout.split()
    return float(seconds), int(chips), int(rss_kib) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--throughput-px", type=int, default=4096)
    parser.add_argument("--chip-px", type=int, default=256)
    parser.add_argument("--large-px", type=int, default=20_000)
    parser.add_argument("--small-px", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="geotl-bench-chip-"))
    work.mkdir(parents=True, exist_ok=True)
    results: dict[str, object] = {}

    # 1. throughput (both measured in fresh processes' terms: the plain read here, warm cache)
    scene = work / "tp.tif"
    write_scene(scene, args.throughput_px, 3, 0.1)
    write_labels(work / "tp.gpkg", args.throughput_px, 0.1, 2000)
    write_region(work / "tp.toml", scene, work / "tp.gpkg", args.chip_px)
    plain_read(scene, args.chip_px)  # warm the page cache
    read_s, chip_s = [], []
    for _ in range(args.repeat):
        read_s.append(plain_read(scene, args.chip_px))
        seconds, n_chips, _ = run_chip(work / "tp.toml", work / "tp-chips")
        chip_s.append(seconds)
    best_read, best_chip = min(read_s), min(chip_s)
    results["throughput"] = {
        "scene_px": args.throughput_px, "chip_px": args.chip_px, "chips": n_chips,
        "plain_read_s": round(best_read, 3), "chip_region_s": round(best_chip, 3),
        "plain_read_chips_per_s": round(n_chips / best_read, 1),
        "chip_chips_per_s": round(n_chips / best_chip, 1),
        "ratio": round(best_read / best_chip, 3),
    }  # fmt: skip

    # 2. memory: large vs small scene, same chip size
    mem: dict[str, object] = {}
    for name, size in (("small", args.small_px), ("large", args.large_px)):
        s = work / f"{name}.tif"
        write_scene(s, size, 3, 0.1, noise=False)
        write_labels(work / f"{name}.gpkg", size, 0.1, max(50, size // 10))
        write_region(work / f"{name}.toml", s, work / f"{name}.gpkg", 512)
        seconds, n_chips, rss = run_chip(work / f"{name}.toml", work / f"{name}-chips")
        mem[name] = {
            "scene_px": size, "file_mib": round(s.stat().st_size / 2**20, 1), "chips": n_chips,
            "seconds": round(seconds, 1), "peak_rss_mib": round(rss, 1),
            "scene_in_memory_mib": round(size * size * 3 / 2**20, 1),
        }  # fmt: skip
        import shutil

        shutil.rmtree(work / f"{name}-chips", ignore_errors=True)
    results["memory"] = mem
    results["python_peak_rss_mib_parent"] = round(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
    )
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
