"""Benchmark object extraction alone: the planes of a real prediction, window by window.

``predict_scene`` runs once with a trained model (``--model``) on a scene of real NEON
texture (``bench_predict.make_scene``) and its planes (class map, score, and for an
``instances`` model the seed score) are kept as they reach the vectoriser. Then, in a fresh
process per geotl tree (this checkout, and ``--before`` to compare with in the same run),
the task's extractor turns the same planes into objects: once for the whole scene at once,
and window by window with the halo loop at several core window sizes (one thread, CPU
seconds, best of ``--repeats``). Window by window must give the objects of the whole scene;
the ratio to the whole scene is what the halo loop costs.

    PYTHONPATH=. .venv/bin/python scripts/bench_extract.py --model demo-out/model \\
        --size 2048 --windows 256 512 1024 --before /tmp/geotl-before
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

# Runs in a fresh process with one geotl tree on its path: extraction from saved planes.
_CHILD = r"""
import inspect, json, sys, time
import numpy as np, rasterio
a = json.loads(sys.argv[1])
from geotl.predict.objects import extractor_for
planes = np.load(a["planes"])
ex = extractor_for(a["task"], a["classes"])
with rasterio.open(a["scene"]) as ds:
    transform = ds.transform
kw = {"simplify_px": a["simplify_px"], "min_pixels": a["min_pixels"]}

def key(o):
    return (o.first_px, o.class_index, o.geometry.wkb)

def timed(fn):
    best, out = float("inf"), None
    for _ in range(a["repeats"]):
        t0 = time.process_time()
        out = fn()
        best = min(best, time.process_time() - t0)
    return best, out

whole_s, whole = timed(lambda: ex.extract(planes, transform, **kw))
want = sorted(key(o) for o in whole)
row = {"objects": len(whole), "whole_s": round(whole_s, 3), "windows": {}}
for w in a["windows"]:
    reads = []
    def read(r, c, h, wd):
        reads.append(h * wd)
        return planes[:, r : r + h, c : c + wd]
    s, objs = timed(lambda: list(ex.extract_by_windows(
        read, planes.shape[1:], transform, window_px=w, halo_px=64, **kw)))
    row["windows"][w] = {
        "cpu_s": round(s, 3),
        "over_whole": round(s / whole_s, 2),
        "mpx_read": round(sum(reads) / a["repeats"] / 1e6, 1),
        "same_objects": sorted(key(o) for o in objs) == want,
    }
print(json.dumps(row))
"""


def capture_planes(model: Path, scene: Path, out: Path) -> tuple[str, int, float, int]:
    """Predict once and save the planes the vectoriser reads: (task, classes, simplify, min px)."""
    import rasterio
    import torch

    from geotl.io.rasters import ground_resolution_m
    from geotl.models.artefact import load_artefact
    from geotl.predict import PredictOptions, predict_scene
    from geotl.predict.objects import extractor_for
    from geotl.predict.vectorise import min_pixels_for

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    art = load_artefact(model)
    task = extractor_for(art.card.task, len(art.card.classes))
    cls = type(task)
    real = cls.window_extractor
    with rasterio.open(scene) as ds:
        shape = (ds.height, ds.width)
        res = ground_resolution_m(ds.crs, ds.transform, ds.width, ds.height)
    planes = np.zeros((task.planes, *shape), np.float32)

    def spy(self, scene_shape, transform, **kw):  # type: ignore[no-untyped-def]
        inner = real(self, scene_shape, transform, **kw)

        def extract(data, read_window, core_window, done):  # type: ignore[no-untyped-def]
            rows, cols = read_window.toslices()
            planes[:, rows, cols] = data
            return inner(data, read_window, core_window, done)

        return extract

    cls.window_extractor = spy  # type: ignore[method-assign]
    try:
        predict_scene(art, scene, PredictOptions(progress=False, workers=1))
    finally:
        cls.window_extractor = real  # type: ignore[method-assign]
    np.save(out, planes)
    min_px = min_pixels_for(art.card.min_area_m2, res * res)
    return art.card.task, len(art.card.classes), art.card.simplify_px, min_px


def main() -> None:
    from bench_predict import make_scene

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, required=True, help="a trained geotl model folder")
    ap.add_argument("--size", type=int, default=2048, help="scene side (px)")
    ap.add_argument("--windows", type=int, nargs="+", default=[256, 512, 1024])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--before", type=Path, help="another geotl tree, timed on the same planes")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="geotl-extract-") as tmpname:
        tmp = Path(tmpname)
        scene, planes = tmp / "scene.tif", tmp / "planes.npy"
        make_scene(scene, args.size)
        task, classes, simplify_px, min_px = capture_planes(args.model.resolve(), scene, planes)
        child = {
            "planes": str(planes),
            "scene": str(scene),
            "task": task,
            "classes": classes,
            "simplify_px": simplify_px,
            "min_pixels": min_px,
            "windows": args.windows,
            "repeats": args.repeats,
        }
        results: dict[str, object] = {"task": task, "scene_px": args.size, "load": os.getloadavg()}
        trees = {"after": REPO} | ({"before": args.before} if args.before else {})
        for name, tree in trees.items():
            res = subprocess.run(
                [sys.executable, "-c", _CHILD, json.dumps(child)],
                capture_output=True,
                text=True,
                env={**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"},
                cwd="/",
                check=True,
            )
            results[name] = json.loads(res.stdout.strip().splitlines()[-1])
            print(json.dumps({name: results[name]}), file=sys.stderr)
        results["load_end"] = os.getloadavg()
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
