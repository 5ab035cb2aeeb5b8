"""Where a GPU predict_scene spends its main thread (issue 10): cProfile of one warm run.

Usage (on the lent GPU, after ``scripts/device/issue10.sh a``):
    python3 scripts/device/profile_predict.py MODEL_DIR OUT_DIR [SIZE]
Writes OUT_DIR/scene.tif (bench_predict's real-texture scene) and prints the 30 functions
with the most own time in the thread that calls predict_scene (the reading threads and the
vectorising processes are not in it: their time shows as waits here).
"""

import cProfile
import os
import pstats
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_predict import make_scene

from geotl.models.artefact import load_artefact
from geotl.predict.core import PredictOptions, predict_scene


def main() -> None:
    model, out = Path(sys.argv[1]), Path(sys.argv[2])
    size = int(sys.argv[3]) if len(sys.argv) > 3 else 4096
    out.mkdir(parents=True, exist_ok=True)
    scene = out / "scene.tif"
    make_scene(scene, size)
    device = os.environ.get("DEVICE", "cuda")  # DEVICE=cpu to try it anywhere
    art = load_artefact(model, device)
    opts = PredictOptions(progress=False, batch_size=32)
    predict_scene(art, scene, opts)  # warm-up: cuDNN kernels, the pool
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    det = predict_scene(art, scene, opts)
    print(f"unprofiled: {time.perf_counter() - t0:.3f} s, {len(det.features)} objects, {det.stats}")
    prof = cProfile.Profile()
    prof.enable()
    predict_scene(art, scene, opts)
    prof.disable()
    pstats.Stats(prof).sort_stats("tottime").print_stats(30)


if __name__ == "__main__":  # the vectorising pool's processes import this file
    main()
