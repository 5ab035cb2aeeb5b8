"""Benchmark ``geotl chip``: throughput against a plain windowed read, and peak memory.

1. Throughput, on two scenes (3-band uint8, 0.1 m, tiled 512 + deflate, 256 px chips):
   - ``noise``: 4096 x 4096 px of random noise with 2000 label boxes (the worst case for
     any compression of the written chips);
   - ``neon``: a 4000 x 4000 px mosaic of the real labelled NEON RGB plots in
     ``../shared/data/neon-trees`` (HARV, OSBS, SJER; 400 x 400 px each) with their tree
     crowns (about 1,200 boxes), i.e. real image statistics and real label density.
   Baseline: a plain rasterio loop reading the same windows from the same file, in the same
   process. Both are timed alternately ``--repeat`` times after one warm-up of each; every
   chip run writes a new folder (``--chips-dir``, default ``--work``; all removed at the
   end); the best of each counts. Ratio = read time / ``chip_region`` time (goal >= 0.7),
   also given in CPU time (``cpu_ratio``: this process + the chipping worker processes).
   ``--workers 1`` times the serial path (``chip_region(workers=1)``).
2. Memory: peak RSS of chip_region in a fresh process on a large generated scene
   (default 20,000 x 20,000 px, tiled + deflate so it stays small on disk) vs. a small one.

Usage: .venv/bin/python scripts/bench_chip.py [--work DIR] [--chips-dir DIR] [--repeat 5]
       [--large-px 20000] [--no-memory] [--workers N]
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import shutil
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


NEON_SETS = ("HARV", "OSBS", "SJER")


def write_neon_mosaic(scene: Path, labels: Path, neon: Path, tiles: int = 10) -> None:
    """A tiles x tiles mosaic of the labelled 400 x 400 px NEON plots, with their crowns."""
    plots: list[tuple[Path, gpd.GeoDataFrame]] = []
    for name in NEON_SETS:
        crowns = gpd.read_file(neon / name / f"{name}_tree_crowns.gpkg")
        for image in sorted((neon / name / "images").glob("*.tif")):
            with rasterio.open(image) as ds:
                if (ds.width, ds.height, ds.count) != (400, 400, 3):
                    continue
            plots.append((image, crowns[crowns["image"] == image.name]))
    size_px, res_m = 400 * tiles, 0.1
    profile = {
        "driver": "GTiff", "width": size_px, "height": size_px, "count": 3, "dtype": "uint8",
        "crs": "EPSG:32618", "transform": Affine(res_m, 0, X0, 0, -res_m, Y0), "nodata": 255,
        "tiled": True, "blockxsize": 512, "blockysize": 512, "compress": "deflate",
    }  # fmt: skip
    boxes = []
    with rasterio.open(scene, "w", **profile) as dst:
        for k in range(tiles * tiles):
            image, crowns = plots[k % len(plots)]
            row, col = divmod(k, tiles)
            with rasterio.open(image) as src:
                dst.write(src.read(), window=Window(col * 400, row * 400, 400, 400))
            for r in crowns.itertuples():
                x0, y0 = X0 + (col * 400 + r.xmin_px) * res_m, Y0 - (row * 400 + r.ymin_px) * res_m
                x1, y1 = X0 + (col * 400 + r.xmax_px) * res_m, Y0 - (row * 400 + r.ymax_px) * res_m
                boxes.append(box(x0, y1, x1, y0))
    gpd.GeoDataFrame({"label": ["Tree"] * len(boxes)}, geometry=boxes, crs="EPSG:32618").to_file(
        labels
    )


def plain_read(scene: Path, size_px: int) -> tuple[float, float]:
    """(wall, CPU) seconds to read every chip window of ``scene`` with a plain rasterio loop."""
    from geotl.chips.windows import chip_windows

    t0, c0 = time.perf_counter(), time.process_time()
    with rasterio.open(scene) as ds:
        for w in chip_windows(ds.width, ds.height, size_px, size_px):
            ds.read(window=Window(w.col_off, w.row_off, w.width, w.height))
    return time.perf_counter() - t0, time.process_time() - c0


WORKERS: int | None = None  # chip_region(workers=...): None = automatic, 1 = serial


def chip_in_process(region_path: Path, out: Path) -> tuple[float, float, int]:
    """(wall, CPU) seconds for chip_region into a new folder ``out``, and chips cut.

    CPU time counts this process and its finished children (the chipping workers).
    """
    from geotl.chips import chip_region
    from geotl.config import load_region

    region = load_region(region_path)
    t0, c0 = time.perf_counter(), _cpu_s()
    summary = chip_region(region, out, workers=WORKERS)
    wall, cpu = time.perf_counter() - t0, _cpu_s() - c0
    return wall, cpu, summary.n_chips


def _cpu_s() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def throughput(
    scene: Path, region: Path, out: Path, chip_px: int, repeat: int
) -> dict[str, object]:
    """Plain windowed read vs chip_region, alternately; every chip run writes a new folder.

    Deleting the previous run's chips right before the next one would slow down its file
    creation (ext4 skips recently freed inodes), which a user chipping once never pays.
    """
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    plain_read(scene, chip_px)  # warm-up: page cache, GDAL drivers, imports
    chip_in_process(region, out / "warm-up")
    read_s, chip_s, read_cpu, chip_cpu = [], [], [], []
    n_chips = 0
    for i in range(repeat):
        wall, cpu = plain_read(scene, chip_px)
        read_s.append(wall)
        read_cpu.append(cpu)
        wall, cpu, n_chips = chip_in_process(region, out / str(i))
        chip_s.append(wall)
        chip_cpu.append(cpu)
    best_read, best_chip = min(read_s), min(chip_s)
    ratios = sorted(r / c for r, c in zip(read_s, chip_s, strict=True))
    image_mib = sum(f.stat().st_size for f in (out / "0" / "images").iterdir()) / 2**20
    mask_mib = sum(f.stat().st_size for f in (out / "0" / "masks").iterdir()) / 2**20
    shutil.rmtree(out, ignore_errors=True)
    return {
        "chips": n_chips, "plain_read_s": round(best_read, 3), "chip_region_s": round(best_chip, 3),
        "plain_read_chips_per_s": round(n_chips / best_read, 1),
        "chip_chips_per_s": round(n_chips / best_chip, 1),
        "ratio_best": round(best_read / best_chip, 3),
        "ratio_median_pair": round(ratios[len(ratios) // 2], 3),
        "ratio_pairs": [round(r, 3) for r in ratios],
        "cpu_ratio": round(min(read_cpu) / min(chip_cpu), 3),
        "images_mib": round(image_mib, 1), "masks_mib": round(mask_mib, 2),
    }  # fmt: skip


CHILD = """
import resource, sys, time, logging
from geotl.config import load_region
from geotl.chips import chip_region
t0 = time.perf_counter()
workers = None if sys.argv[3] == "None" else int(sys.argv[3])
s = chip_region(load_region(sys.argv[1]), sys.argv[2], overwrite=True, workers=workers)
print(time.perf_counter() - t0, s.n_chips,
      resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
      resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def run_chip(region: Path, out: Path) -> tuple[float, int, float, float]:
    """chip_region in a fresh process: (seconds, chips, peak RSS MiB, largest worker's MiB).

    Forked workers share the parent's pages until written, so their RSS overstates what
    they add; the worker figure is 0 when the job ran serially.
    """
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(region), str(out), str(WORKERS)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    seconds, chips, rss_kib, worker_kib = proc.stdout.split()
    return float(seconds), int(chips), int(rss_kib) / 1024, int(worker_kib) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--throughput-px", type=int, default=4096)
    parser.add_argument("--chip-px", type=int, default=256)
    parser.add_argument("--large-px", type=int, default=20_000)
    parser.add_argument("--small-px", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--neon",
        type=Path,
        default=Path(__file__).resolve().parents[1] / "../shared/data/neon-trees",
    )
    parser.add_argument("--no-memory", action="store_true", help="throughput only")
    parser.add_argument(
        "--workers", type=int, default=None,
        help="chip_region(workers=N) for every run (default: automatic; 1: serial)",
    )  # fmt: skip
    parser.add_argument(
        "--chips-dir", type=Path, default=None,
        help="where the throughput runs write their chips (default: --work); e.g. a tmpfs "
        "such as /dev/shm to take the disk's file-creation cost out",
    )  # fmt: skip
    args = parser.parse_args()
    global WORKERS
    WORKERS = args.workers
    work = args.work or Path(tempfile.mkdtemp(prefix="geotl-bench-chip-"))
    work.mkdir(parents=True, exist_ok=True)
    results: dict[str, object] = {}

    # 1. throughput
    logging.disable(logging.WARNING)
    scene = work / "noise.tif"
    write_scene(scene, args.throughput_px, 3, 0.1)
    write_labels(work / "noise.gpkg", args.throughput_px, 0.1, 2000)
    write_region(work / "noise.toml", scene, work / "noise.gpkg", args.chip_px)
    chips_dir = args.chips_dir or work
    tp = {
        "noise": throughput(
            scene, work / "noise.toml", chips_dir / "noise-chips", args.chip_px, args.repeat
        )
    }
    if (args.neon / "OSBS").is_dir():
        scene = work / "neon.tif"
        write_neon_mosaic(scene, work / "neon.gpkg", args.neon)
        write_region(work / "neon.toml", scene, work / "neon.gpkg", args.chip_px)
        tp["neon"] = throughput(
            scene, work / "neon.toml", chips_dir / "neon-chips", args.chip_px, args.repeat
        )
    results["throughput"] = tp

    # 2. memory: large vs small scene, same chip size
    mem: dict[str, object] = {}
    sizes = () if args.no_memory else (("small", args.small_px), ("large", args.large_px))
    for name, size in sizes:
        s = work / f"{name}.tif"
        write_scene(s, size, 3, 0.1, noise=False)
        write_labels(work / f"{name}.gpkg", size, 0.1, max(50, size // 10))
        write_region(work / f"{name}.toml", s, work / f"{name}.gpkg", 512)
        seconds, n_chips, rss, worker_rss = run_chip(work / f"{name}.toml", work / f"{name}-chips")
        mem[name] = {
            "scene_px": size, "file_mib": round(s.stat().st_size / 2**20, 1), "chips": n_chips,
            "seconds": round(seconds, 1), "peak_rss_mib": round(rss, 1),
            "worker_peak_rss_mib": round(worker_rss, 1),
            "scene_in_memory_mib": round(size * size * 3 / 2**20, 1),
        }  # fmt: skip
        shutil.rmtree(work / f"{name}-chips", ignore_errors=True)
    results["memory"] = mem
    results["python_peak_rss_mib_parent"] = round(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
    )
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
