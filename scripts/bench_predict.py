"""Benchmark ``geotl predict``: overhead over the bare model, torchgeo peer baseline, memory.

Measured in one run, on this machine:

1. end-to-end ``geotl predict`` (CLI subprocess, and the library call in-process) wall time
   as a ratio to the bare network's forward passes over the same windows and batches;
2. the same scene through a plain torchgeo pipeline (RasterDataset + GridGeoSampler +
   DataLoader + the same network, stitched by averaging, vectorised whole-scene):
   speed ratio and polygon agreement (one-to-one matches at IoU >= 0.5);
3. peak resident memory of ``geotl predict`` on a small and a 16x larger scene;
4. throughput in km2 per minute at the model's resolution.

Scenes are real NEON RGB plots (../shared/data/neon-trees) tiled to the wanted size;
the model is a randomly initialised U-Net (speed does not depend on the weights).

    .venv/bin/python scripts/bench_predict.py --size 3072 --mem-sizes 1250 5000

With ``--issue10`` it gives every CPU figure of issue 10 in one run (about 4 minutes on an
idle 2-core machine): the non-model pipeline (``--pipeline``), then the ratio to the bare
forward passes and the torchgeo pipeline with ``--model``; wall and CPU time (every thread,
and the vectorising pool's processes), with the load average beside each run:

    mkdir -p /tmp/geotl-before10 && git archive 58ce7e1 geotl | tar -x -C /tmp/geotl-before10
    PYTHONPATH=. .venv/bin/python scripts/bench_predict.py --issue10 --model demo-out/model \
        --size 2048 --repeats 3 --before /tmp/geotl-before10 --json issue10.json

With ``--ort-ratio`` it times geotl's default CPU engine (ONNX Runtime) against its own bare
forward passes over the same windows and batches, in a child process per tree (this one and
``--before``), the trees taking turns for ``--rounds`` rounds:

    PYTHONPATH=. .venv/bin/python scripts/bench_predict.py --ort-ratio --model demo-out/model \
        --size 2048 --repeats 2 --rounds 3 --before /tmp/geotl-before --json ratio.json

With ``--cli-trees`` it times the whole ``geotl predict`` command with its defaults, as a
user runs it (start-up, model loading, the pool's start and the outputs included), for
this tree and ``--before``, taking turns:

    PYTHONPATH=. .venv/bin/python scripts/bench_predict.py --cli-trees --model demo-out/model \
        --size 2048 --rounds 3 --before /tmp/geotl-before --json cli.json

(``--scene regions/demo-osbs/imagery/OSBS_029.tif`` for the demo's own scene.) Each run's
peak memory (the child's maximum resident set) is recorded beside its time.

With ``--timeline`` it shows where the time of one scene goes on 2 cores with the zero-cost
model: when the stream's last row was final, and when each strip task ran and its CPU time
(the serial tail after the stream):

    PYTHONPATH=. .venv/bin/python scripts/bench_predict.py --timeline --model demo-out/model \
        --size 2048 --repeats 3 --json timeline.json

With ``--engines`` it compares the forward-pass engines instead (issue 11), in one run on
the same scene and windows: PyTorch eager vs ONNX Runtime fp32 vs ONNX Runtime int8 (ms
per window, whole-scene ``predict_scene`` time, Mpx/s), export time and file sizes,
polygon agreement with the torch engine, test-split pixel IoU (fp32 vs int8) and the plain
torchgeo pipeline as the peer, for a trained model (``--model``, e.g. the demo's) and a
ResNet-18 U-Net (random init: speed does not depend on the weights):

    .venv/bin/python scripts/bench_predict.py --engines --model demo-out/model --size 1024
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
import torch
from affine import Affine
from rasterio.crs import CRS

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from geotl.models.artefact import BaseModelRef, ModelCard, Normalisation, write_artefact  # noqa: E402
from geotl.models.network import NetworkSpec, build_network  # noqa: E402

NEON = REPO.parent / "shared" / "data" / "neon-trees" / "OSBS" / "images"
RES_M = 0.1
# torchgeo 0.10 returns sample bounds as a float32 tensor: keep coordinates small so that
# float32 still resolves a pixel when stitching the baseline.
ORIGIN = Affine(RES_M, 0, 1000.0, 0, -RES_M, 8000.0)


def make_model(model_dir: Path, encoder: str, depth: int, task: str = "segmentation") -> None:
    dec = (64, 32, 16, 16, 8)[:depth] if depth == 5 else (32, 16, 8)[:depth]
    spec = NetworkSpec(
        encoder=encoder,
        in_channels=3,
        # instances: background + tree, then border and contact (geotl.predict.objects)
        num_classes=4 if task == "instances" else 2,
        encoder_depth=depth,
        decoder_channels=dec,
    )
    torch.manual_seed(0)
    net = build_network(spec)
    card = ModelCard(
        name="bench",
        task=task,
        classes=["tree"],
        bands=["red", "green", "blue"],
        normalisation=Normalisation(mean=[110.0, 110.0, 90.0], std=[45.0, 45.0, 40.0]),
        chip_size_px=256,
        resolution_m=RES_M,
        network=spec,
        base=BaseModelRef(
            id="none", architecture="unet", licence="Apache-2.0", commercial_use=True
        ),
        freeze="none",
    )
    write_artefact(model_dir, net, card)


def make_scene(path: Path, size: int) -> None:
    plots = [rasterio.open(p).read() for p in sorted(NEON.glob("*.tif"))]
    tile = np.concatenate(plots, axis=2) if plots else np.zeros((3, 400, 400), np.uint8)
    tile = np.where(tile == 255, 254, tile)  # 255 is nodata in the source plots
    profile = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "count": 3,
        "dtype": "uint8",
        "crs": CRS.from_epsg(32617),
        "transform": ORIGIN,
        "nodata": 255,
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
        "BIGTIFF": "IF_SAFER",
    }
    th, tw = tile.shape[1:]
    with rasterio.open(path, "w", **profile) as ds:
        for r in range(0, size, 512):
            h = min(512, size - r)
            rows = np.take(tile, np.arange(r, r + h) % th, axis=1)
            band = np.take(rows, np.arange(size) % tw, axis=2)
            ds.write(band, window=rasterio.windows.Window(0, r, size, h))


def _model_and_scene(args: argparse.Namespace, tmp: Path) -> tuple[Path, Path]:
    """``--model`` (else a random one made in ``tmp``) and ``--scene`` (else a ``--size`` one)."""
    model = args.model or tmp / "model"
    if args.model is None:
        make_model(model, args.encoder, args.depth, args.task)
    if args.scene is not None:
        with rasterio.open(args.scene) as ds:
            if ds.height != ds.width:
                raise SystemExit(f"--scene {args.scene}: a square scene, please")
            args.size = ds.height  # the figures per Mpx and scene_px are the scene's
        return model, args.scene.resolve()
    scene = tmp / "scene.tif"
    make_scene(scene, args.size)
    return model, scene


def read_windows(model_dir: Path, scene: Path, window_px: int) -> torch.Tensor:
    """The plan's windows, read and normalised in memory beforehand (not timed).

    The plan ``predict_scene`` makes (windows on the ground grid, padded where they pass
    the scene's edge), so that the bare passes run the same windows as predict.
    """
    from geotl.models.artefact import load_artefact
    from geotl.predict.windows import clip_window, ground_anchor, plan_windows

    art = load_artefact(model_dir)
    arrs = []
    with rasterio.open(scene) as ds:
        plan = plan_windows(
            (ds.height, ds.width), window_px, window_px // 4, anchor=ground_anchor(ds.transform)
        )
        for w in plan.windows:
            win = clip_window(w, plan.scene_shape)
            raw = ds.read(
                window=rasterio.windows.Window(win.col_off, win.row_off, win.width, win.height)
            )
            top, left = win.row_off - w.row_off, win.col_off - w.col_off
            pad = (
                (0, 0),
                (top, window_px - top - win.height),
                (left, window_px - left - win.width),
            )
            arrs.append(np.pad(art.normalise(raw), pad, mode="symmetric"))
    return torch.from_numpy(np.stack(arrs))


def bare_forward(
    model_dir: Path, windows: torch.Tensor, batch_size: int, device: str
) -> tuple[float, float]:
    """The network alone over the same windows and batches, as predict runs it.

    Through predict's own engine (:class:`geotl.predict.engine.TorchEngine`: the same
    precision, memory order and softmax), from windows already read and normalised in
    memory, the probabilities copied back to the CPU; nothing else. Returns the wall and
    the CPU time (every thread of this process).
    """
    from geotl.models.artefact import load_artefact
    from geotl.predict.engine import TorchEngine

    art = load_artefact(model_dir, device)
    engine = TorchEngine(art.network, art.device)
    arr = windows.numpy()
    engine.tensor_probabilities(arr[:1])  # warm-up
    if device == "cuda":  # cuDNN picks kernels per batch shape: one untimed pass (predict's too)
        _forward_all(engine, arr, batch_size)
        torch.cuda.synchronize()
    t0, c0 = time.perf_counter(), time.process_time()
    _forward_all(engine, arr, batch_size)
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0, time.process_time() - c0


def _forward_all(engine: object, windows: np.ndarray, batch_size: int) -> None:
    for i in range(0, len(windows), batch_size):
        engine.tensor_probabilities(windows[i : i + batch_size]).cpu()  # type: ignore[attr-defined]


def geotl_cli(model_dir: Path, scene: Path, out: Path, batch_size: int, device: str) -> float:
    t0 = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "geotl",
            "-q",
            "predict",
            str(model_dir),
            str(scene),
            "-o",
            str(out),
            "--batch-size",
            str(batch_size),
            "--no-progress",
            "--overwrite",
            "--device",
            device,
        ],
        check=True,
    )
    return time.perf_counter() - t0


# runs a command; its largest process's peak resident memory (KB) as stderr's last line
_PEAK_RSS = (
    "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
    "sys.exit(r.returncode)"
)


def cli_trees(args: argparse.Namespace, tmp: Path) -> dict[str, object]:
    """The whole ``geotl predict`` command as a user runs it, per tree, the trees taking turns.

    Defaults for everything (engine, workers, batch): start-up, model loading, the pool's
    start and the outputs included, which the other modes leave out (they warm the model
    and the pool first). Each run is a fresh process started outside the repository, so
    that ``PYTHONPATH`` alone chooses the tree; the outputs must be byte-identical.
    """
    model, scene = _model_and_scene(args, tmp)
    trees = {"after": REPO}
    if args.before is not None:
        trees["before"] = args.before.resolve()
    runs: dict[str, list[dict[str, float]]] = {k: [] for k in trees}
    outputs: dict[str, bytes] = {}
    for _ in range(args.rounds):
        for name, tree in trees.items():
            out = tmp / f"{name}.geojson"
            cmd = [sys.executable, "-m", "geotl", "predict", str(model), str(scene), "--out"]
            cmd += [str(out), "--overwrite", "--no-progress"]
            err_path = tmp / f"{name}.stderr"
            t0 = time.perf_counter()
            with open(err_path, "w") as err:
                # through a small launcher: a child forked from this process (torch loaded)
                # would report this process's memory as its own peak
                done = subprocess.run(
                    [sys.executable, "-c", _PEAK_RSS, *cmd],
                    cwd=tmp,
                    env={**os.environ, "PYTHONPATH": str(tree)},
                    stdout=subprocess.DEVNULL,
                    stderr=err,
                )
            wall = time.perf_counter() - t0
            stderr = err_path.read_text()
            if done.returncode != 0:
                raise SystemExit(f"{name}: geotl predict failed:\n{stderr[-3000:]}")
            peak_kb = int(stderr.strip().splitlines()[-1])
            # geotl.predict.core's log line: "...: N polygon(s) from W window(s) in S s (model M s)"
            scene_s, model_s = (
                float(x) for x in re.findall(r"in ([0-9.]+) s \(model ([0-9.]+) s\)", stderr)[-1]
            )
            runs[name].append(
                {
                    "command_s": round(wall, 2),
                    "predict_scene_s": scene_s,
                    "model_s": model_s,
                    "peak_rss_mb": round(peak_kb / 1024, 1),
                    "load_avg": round(os.getloadavg()[0], 2),
                }
            )
            outputs.setdefault(name, out.read_bytes())
            print(json.dumps({name: runs[name][-1]}), file=sys.stderr)
    result: dict[str, object] = {"scene": scene.name, "scene_px": args.size, "runs": runs}
    for name, rs in runs.items():
        result[f"{name}_command_s_median"] = float(np.median([r["command_s"] for r in rs]))
        result[f"{name}_peak_rss_mb_median"] = float(np.median([r["peak_rss_mb"] for r in rs]))
    if "before" in runs:
        result["same_output"] = outputs["before"] == outputs["after"]
        result["speed_up"] = round(
            result["before_command_s_median"] / result["after_command_s_median"],
            2,  # type: ignore[operator]
        )
    return result


def geotl_library(
    model_dir: Path, scene: Path, batch_size: int, device: str
) -> tuple[float, object]:
    from geotl.models.artefact import load_artefact
    from geotl.predict import PredictOptions, predict_scene

    art = load_artefact(model_dir, device)
    with torch.inference_mode():
        art.network(torch.zeros(1, 3, 256, 256, device=device))  # same warm-up as the bare run
    t0 = time.perf_counter()
    det = predict_scene(art, scene, PredictOptions(batch_size=batch_size, progress=False))
    return time.perf_counter() - t0, det


def torchgeo_baseline(
    model_dir: Path, scene: Path, window_px: int, batch_size: int
) -> tuple[float, list, float]:
    """The plain torchgeo pipeline: wall time, objects, CPU time (every thread).

    torchgeo reads and samples the windows; their probabilities (every channel of the
    card's task: an ``instances`` model's border and contact too) are averaged over the
    whole scene in memory, then the task's objects are extracted from the whole scene at
    once (for ``instances``: the same seeded watershed), so both sides do the same job.
    """
    from torch.utils.data import DataLoader
    from torchgeo.datasets import RasterDataset, stack_samples
    from torchgeo.samplers import GridGeoSampler

    from geotl.models.artefact import load_artefact
    from geotl.predict.objects import extractor_for
    from geotl.predict.vectorise import min_pixels_for

    art = load_artefact(model_dir)
    task = extractor_for(art.card.task, len(art.card.classes))
    t0, cpu0 = time.perf_counter(), time.process_time()

    class Scene(RasterDataset):  # type: ignore[misc]
        filename_glob = scene.name
        is_image = True

    ds = Scene(paths=str(scene.parent))
    sampler = GridGeoSampler(ds, size=window_px, stride=window_px - window_px // 4)
    loader = DataLoader(ds, sampler=sampler, batch_size=batch_size, collate_fn=stack_samples)
    with rasterio.open(scene) as src:
        height, width, transform = src.height, src.width, src.transform
    prob_sum = np.zeros((task.channels, height, width), np.float32)
    count = np.zeros((height, width), np.float32)
    mean = torch.tensor(art.card.normalisation.mean)[None, :, None, None]
    std = torch.tensor(art.card.normalisation.std)[None, :, None, None]
    with torch.inference_mode():
        for batch in loader:
            x = (batch["image"].float() - mean) / std
            p = task.probabilities(art.network(x)).numpy()
            for k, b in enumerate(batch["bounds"].tolist()):
                col = round((b[0] - transform.c) / RES_M)
                row = round((transform.f - b[4]) / RES_M)
                # torchgeo's grid starts at the bottom-left and pads past the scene edges
                h, w = p.shape[2:]
                r0, c0 = max(row, 0), max(col, 0)
                r1, c1 = min(row + h, height), min(col + w, width)
                prob_sum[:, r0:r1, c0:c1] += p[k, :, r0 - row : r1 - row, c0 - col : c1 - col]
                count[r0:r1, c0:c1] += 1
    planes = task.finalise(prob_sum / np.maximum(count, 1), count > 0, art.card.threshold)
    # the card's smallest object, as geotl's predict drops them (else every speck counts)
    min_area = art.card.min_area_m2
    objects = [
        o
        for o in task.extract(
            planes,
            transform,
            simplify_px=art.card.simplify_px,
            min_pixels=min_pixels_for(min_area, RES_M**2),
        )
        if o.geometry.area >= min_area
    ]
    return time.perf_counter() - t0, objects, time.process_time() - cpu0


def agreement(ours: list, theirs: list) -> dict[str, float]:
    from geotl.evaluate import match_objects

    tp, fp, fn = match_objects(ours, theirs)
    f1 = 2 * tp / max(2 * tp + fp + fn, 1)
    return {"ours": len(ours), "torchgeo": len(theirs), "matched": tp, "f1": round(f1, 4)}


def peak_memory(model_dir: Path, scene: Path, batch_size: int, device: str) -> tuple[float, float]:
    code = (
        "import resource, sys, time\n"
        "from pathlib import Path\n"
        "from geotl.models.artefact import load_artefact\n"
        "from geotl.predict import PredictOptions, predict_scene\n"
        f"art = load_artefact(Path({str(model_dir)!r}), {device!r})\n"
        "t = time.perf_counter()\n"
        f"predict_scene(art, Path({str(scene)!r}), PredictOptions(batch_size={batch_size}, progress=False))\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, time.perf_counter() - t)\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=REPO
    )
    rss, wall = res.stdout.split()[-2:]
    return float(rss), float(wall)


# A child process times ``predict_scene`` with the geotl tree on its PYTHONPATH (this
# checkout, or an older one to compare with: ``--before``), pinned to ``cores`` CPUs.
# ``noop``: the card's model with a network whose forward costs nothing (an 8 px box mean
# of band 1, thresholded by the softmax: smooth blobs), so the time is the pipeline's.
_CHILD = r"""
import dataclasses, json, os, sys, time
from pathlib import Path
a = json.loads(sys.argv[1])
if a.get("cpu") is not None:  # one given CPU (the machine-ceiling pairs)
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[a["cpu"]]})
elif a["cores"]:
    os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[: a["cores"]]))
import torch
torch.set_num_threads(a["threads"])
from geotl.models.artefact import load_artefact
from geotl.predict import PredictOptions, predict_scene

NOOP_CPU = [0.0]  # the zero-cost forward's own CPU time (one torch thread: its caller's)

class Noop(torch.nn.Module):
    # an instance card's extra outputs (border, contact): constant logits of -4, so seeds
    # are where the blobs are confident and the watershed splits blobs with several.
    # "replay": the outputs are computed once, in an untimed scene, and served in the
    # plan's order afterwards (the forward then costs nothing, as the goal asks);
    # "compute": computed on every call (about 7 ms a batch of 8 windows of 256 px here);
    # "model": the trained network's own outputs, recorded in the untimed scene and replayed
    # (the real model's maps, crowns and all, at no cost)
    def __init__(self, extra, replay, real=None):
        super().__init__()
        self.extra, self.replay, self.real = extra, replay, real
        self.outputs, self.served, self.missed = [], 0, 0

    def compute(self, x):
        if self.real is not None:
            return self.real(x)
        m = torch.nn.functional.avg_pool2d(x[:, :1], 8)
        m = torch.nn.functional.interpolate(m, scale_factor=8.0, mode="nearest")
        return torch.cat([torch.zeros_like(m), 4.0 * m] + [torch.full_like(m, -4.0)] * self.extra, 1)

    def forward(self, x):
        c0 = time.thread_time()
        if not self.replay:
            out = self.compute(x)
        elif self.served < len(self.outputs):  # replaying
            out = self.outputs[self.served]
            self.served += 1
            if out.shape[0] != x.shape[0] or out.shape[2:] != x.shape[2:]:
                self.missed += 1  # another plan than the recorded one: compute
                out = self.compute(x)
        else:  # recording (the untimed scene)
            out = self.compute(x)
            self.outputs.append(out)
            self.served += 1
        NOOP_CPU[0] += time.thread_time() - c0
        return out

def descendants_cpu():
    # CPU time (s) of this process's descendants (the pool's workers are the forkserver's
    # children): from /proc, whatever the geotl version under test
    tick, children, cpu = os.sysconf("SC_CLK_TCK"), {}, {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(pid))
        cpu[int(pid)] = (int(fields[11]) + int(fields[12])) / tick
    total, todo = 0.0, list(children.get(os.getpid(), []))
    while todo:
        pid = todo.pop()
        total += cpu.get(pid, 0.0)
        todo += children.get(pid, [])
    return total

art = load_artefact(Path(a["model"]), a["device"])
if a["noop"]:
    art.network = Noop(
        2 if getattr(art.card, "task", "") == "instances" else 0,
        a["noop"] in ("replay", "model"),
        art.network if a["noop"] == "model" else None,
    ).to(a["device"])
with torch.inference_mode():
    art.network(torch.zeros(1, 3, 256, 256, device=a["device"]))
names = {f.name for f in dataclasses.fields(PredictOptions)}
opts = {"progress": False}
if a["batch_size"] is not None:  # else the tree's own default
    opts["batch_size"] = a["batch_size"]
if "workers" in names:
    opts["workers"] = a["workers"]
if a.get("vector_window_px"):
    opts["vector_window_px"] = a["vector_window_px"]
if a.get("read_threads") and "read_threads" in names:
    opts["read_threads"] = a["read_threads"]
try:
    from geotl.predict.strips import warm_pool
    warm_pool(a["workers"] or len(os.sched_getaffinity(0)))  # like the model's warm-up
except ImportError:
    pass
if a["device"] == "cuda" or a["noop"] in ("replay", "model"):
    # cuDNN picks kernels per batch shape: one untimed pass, as the bare run; the zero-cost
    # forward records the outputs it serves afterwards (not the warm-up's)
    if a["noop"]:
        art.network.outputs.clear()
        art.network.served = 0
    predict_scene(art, Path(a["scene"]), PredictOptions(**opts))
EVENTS, T0 = [], [0.0]  # --timeline: the strips' tasks and the finished rows, per scene
if a.get("timeline"):
    import geotl.predict.stream as stream_mod

    submit = stream_mod.submit_strip

    def traced_submit(pool, task):
        start, fut = time.perf_counter() - T0[0], submit(pool, task)

        def done(f, start=start, core=task.cores[0]):
            res = f.result()
            EVENTS.append({"task": [core.row_off, core.col_off], "start_s": round(start, 3),
                           "end_s": round(time.perf_counter() - T0[0], 3),
                           "cpu_s": round(res.cpu_s, 3), "cores_done": res.cores_done})

        fut.add_done_callback(done)
        return fut

    stream_mod.submit_strip = traced_submit
    rows_done = stream_mod._Pipeline.rows_done

    def traced_rows(self, rows):
        EVENTS.append({"rows_final": rows, "at_s": round(time.perf_counter() - T0[0], 3)})
        rows_done(self, rows)

    stream_mod._Pipeline.rows_done = traced_rows
timelines = []
times, cpus = [], []
for _ in range(a["repeats"]):
    NOOP_CPU[0] = 0.0
    EVENTS.clear()
    T0[0] = time.perf_counter()
    if a["noop"]:
        art.network.served = 0
    t0, c0, d0 = time.perf_counter(), time.process_time(), descendants_cpu()
    det = predict_scene(art, Path(a["scene"]), PredictOptions(**opts))
    times.append(time.perf_counter() - t0)
    # CPU: every thread of this process, and the pool's processes
    cpu, pool = time.process_time() - c0, descendants_cpu() - d0
    stage_cpu = getattr(det.stats, "cpu_s", {})
    cpus.append({"total": cpu + pool, "pool": pool, "model": NOOP_CPU[0],
                 "stages": {k: round(v, 3) for k, v in stage_cpu.items()}})
    if a.get("timeline"):
        timelines.append({"total_s": round(times[-1], 3), "events": list(EVENTS)})
st = {k: round(v, 2) for k, v in vars(det.stats).items() if isinstance(v, float)}
print(json.dumps({"times": times, "cpu": cpus, "objects": len(det.features), "stages_s": st,
                  "windows": det.stats.windows, "load_avg": os.getloadavg(),
                  "noop_missed": art.network.missed if a["noop"] else 0,
                  "timelines": timelines, "geotl": sys.modules["geotl"].__file__}))
"""


VECTOR_WINDOW_PX = [0]  # --vector-window: the vectoriser's core window (0: the default)
READ_THREADS = [0]  # --read-threads: threads reading windows ahead (0: the default)
NOOP_FORWARD = ["replay"]  # --noop-forward: how the zero-cost model gives its outputs


def child_predict(
    tree: Path,
    model: Path,
    scene: Path,
    *,
    noop: bool,
    cores: int | None,
    threads: int,
    workers: int | None,
    batch_size: int | None,
    device: str,
    repeats: int = 1,
    cpu: int | None = None,
    timeline: bool = False,
) -> dict:
    """``predict_scene`` timed in a fresh process running the geotl in ``tree``.

    ``cpu``: pin the process to that one CPU (the index among the usable ones) instead.
    ``timeline``: also record when each strip task ran and when rows became final.
    """
    args = {
        "model": str(model),
        "scene": str(scene),
        "noop": NOOP_FORWARD[0] if noop else None,
        "cores": cores,
        "threads": threads,
        "workers": workers,
        "batch_size": batch_size,
        "device": device,
        "repeats": repeats,
        "vector_window_px": VECTOR_WINDOW_PX[0],
        "read_threads": READ_THREADS[0],
        "cpu": cpu,
        "timeline": timeline,
    }
    # the tree first, then whatever the caller's PYTHONPATH holds (packages installed beside)
    path = os.pathsep.join(p for p in (str(tree), os.environ.get("PYTHONPATH", "")) if p)
    res = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(args)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": path},
        cwd="/",
    )
    if res.returncode != 0:
        sys.stderr.write(res.stderr[-4000:])
        res.check_returncode()
    row = json.loads(res.stdout.strip().splitlines()[-1])
    assert row["geotl"].startswith(str(tree.resolve())), row["geotl"]  # the tree's own geotl
    return row


_ORT_CHILD = r"""
import json, os, sys, time
from pathlib import Path
a = json.loads(sys.argv[1])
# geotl from the tree on PYTHONPATH, imported before this script's module (which puts the
# checkout on sys.path: its imports then find the tree's geotl already loaded)
import geotl
from geotl.predict import PredictOptions, predict_scene
from geotl.predict.engine import load_model
from geotl.predict.strips import warm_pool
sys.path.insert(0, a["scripts"])
from bench_predict import read_windows
model, scene = Path(a["model"]), Path(a["scene"])
windows = read_windows(model, scene, a["window"]).numpy()  # read and normalised beforehand
art = load_model(model, "onnxruntime", threads=a["threads"])
opts = PredictOptions(progress=False)
batch = opts.batch_for(a["window"], art)
warm_pool(len(os.sched_getaffinity(0)))
predict_scene(art, scene, opts)  # warm-up: the export cache, the pool, the session
runs = []
for _ in range(a["repeats"]):
    t0 = time.perf_counter()
    for i in range(0, len(windows), batch):
        art.engine.probabilities(windows[i : i + batch])
    bare = time.perf_counter() - t0
    t0 = time.perf_counter()
    det = predict_scene(art, scene, opts)
    whole = time.perf_counter() - t0
    runs.append({"bare_s": round(bare, 3), "scene_s": round(whole, 3),
                 "ratio": round(whole / bare, 3),
                 "pool_cpu_s": round(det.stats.extra.get("pool_cpu_s", 0.0), 3),
                 "model_s": round(det.stats.model_s, 3)})
print(json.dumps({"geotl": geotl.__file__, "runs": runs, "objects": len(det.features),
                  "holes": int(sum(len(g.interiors) for g in det.native.geometry)),
                  "load_avg": os.getloadavg()[0]}))
"""


def ort_ratio(args: argparse.Namespace, tmp: Path) -> dict[str, object]:
    """geotl's default CPU engine (ONNX Runtime) against its own bare forward passes.

    Each child process, running the geotl of one tree, times ONNX Runtime alone over the
    plan's windows (read and normalised beforehand, predict's batch) and then
    ``predict_scene`` with its defaults, ``--repeats`` times; the trees take turns for
    ``--rounds`` rounds, so that both see the machine's drift alike.
    """
    if args.model is None:
        raise SystemExit("--ort-ratio needs --model (a trained artefact)")
    _, scene = _model_and_scene(args, tmp)
    trees = {"after": REPO}
    if args.before is not None:
        trees["before"] = args.before.resolve()
    child = {
        "model": str(args.model),
        "scene": str(scene),
        "window": args.window,
        "threads": args.threads or len(os.sched_getaffinity(0)),
        "repeats": args.repeats,
        "scripts": str(Path(__file__).resolve().parent),
    }
    runs: dict[str, list[dict]] = {k: [] for k in trees}
    rows: dict[str, list[dict]] = {k: [] for k in trees}
    for _ in range(args.rounds):
        for name, tree in trees.items():
            res = subprocess.run(
                [sys.executable, "-c", _ORT_CHILD, json.dumps(child)],
                capture_output=True,
                text=True,
                env={**os.environ, "PYTHONPATH": str(tree)},
                cwd="/",
            )
            if res.returncode != 0:
                sys.stderr.write(res.stderr[-4000:])
                res.check_returncode()
            row = json.loads(res.stdout.strip().splitlines()[-1])
            assert row["geotl"].startswith(str(tree)), row["geotl"]  # the tree's own geotl
            rows[name].append(row)
            runs[name].extend(row["runs"])
            print(json.dumps({name: row}), file=sys.stderr)
    out: dict[str, object] = {"scene_px": args.size, "load_avg_end": os.getloadavg()}
    for name, rs in runs.items():
        out[name] = {
            "ratio_median": round(float(np.median([r["ratio"] for r in rs])), 3),
            "ratio_best_over_best": round(
                min(r["scene_s"] for r in rs) / min(r["bare_s"] for r in rs), 3
            ),
            "ratios": [r["ratio"] for r in rs],
            "pool_cpu_s_median": round(float(np.median([r["pool_cpu_s"] for r in rs])), 3),
            "objects": rows[name][-1]["objects"],
            "holes": rows[name][-1]["holes"],
            "load_avg_at_rounds": [r["load_avg"] for r in rows[name]],
        }
    return out


def _tree_batch(args: argparse.Namespace, tree: Path) -> int | None:
    """The batch a tree predicts with: ``--batch-size``, else its own default (None)."""
    return args.batch_size if args.batch_given or tree == REPO else None


def pipeline_throughput(args: argparse.Namespace, tmp: Path) -> dict[str, object]:
    """Non-model pipeline: Mpx/s per core with a zero-cost model, 1 and 2 cores.

    Each run is a fresh process pinned to the first ``cores`` CPUs, with ``--workers`` set
    to that number (2: the strip pool), best of 2 scenes per process and of ``--repeats``
    processes, interleaved with the ``--before`` tree's runs. Then the machine's own
    ceiling for the same job (:func:`machine_ceiling`).
    """
    model, scene = _model_and_scene(args, tmp)
    mpx = args.size**2 / 1e6
    trees = {"after": REPO}
    if args.before is not None:
        trees["before"] = args.before
    runs: dict[str, dict[int, list[dict]]] = {k: {1: [], 2: []} for k in trees}
    for _ in range(args.repeats):  # interleaved: each repeat shares the machine's load
        for cores in (1, 2):
            for name, tree in trees.items():
                runs[name][cores].append(
                    child_predict(
                        tree,
                        model,
                        scene,
                        noop=True,
                        cores=cores,
                        # the zero-cost model needs no threads; torch's spin-waiting pool
                        # would only measure how loaded the machine is
                        threads=1,
                        workers=cores,
                        batch_size=_tree_batch(args, tree),
                        device=args.device,
                        repeats=2,
                    )
                )
    out: dict[str, object] = {
        "scene_px": args.size,
        "noop_forward": NOOP_FORWARD[0],
        "load_avg_end": os.getloadavg(),
    }
    for name, by_cores in runs.items():
        row: dict[str, object] = {}
        for cores, rs in by_cores.items():
            best = min(rs, key=lambda r: min(r["times"]))
            wall = min(best["times"])
            # CPU time of the stages other than the model: the process's threads and the
            # pool's processes, less the (zero-cost) forward passes' own thread
            pipe_cpu = [c["total"] - c["model"] for r in rs for c in r["cpu"]]
            row[f"{cores}_core"] = {
                "wall_s": round(wall, 3),
                "mpx_per_s_per_core": round(mpx / wall / cores, 2),
                # batches whose shape was not the recorded one (computed instead): 0
                "noop_missed": sum(r.get("noop_missed", 0) for r in rs),
                "pipeline_cpu_s": round(min(pipe_cpu), 3),
                "pipeline_cpu_s_median": round(float(np.median(pipe_cpu)), 3),
                "mpx_per_cpu_s": round(mpx / min(pipe_cpu), 2),
                "stage_cpu_s": min((c for r in rs for c in r["cpu"]), key=lambda c: c["total"])[
                    "stages"
                ],
                "polygons": best["objects"],
                "stages_s": best["stages_s"],
                "load_avg_at_runs": [r["load_avg"][0] for r in rs],
            }
        one, two = row["1_core"], row["2_core"]
        row["scaling_1_to_2"] = round(one["wall_s"] / two["wall_s"] / 2, 3)  # type: ignore[index]
        # the pool's extra work (strip tasks, halos, pickling): 1.0 = none
        row["cpu_efficiency_1_to_2"] = round(
            one["pipeline_cpu_s"] / two["pipeline_cpu_s"],  # type: ignore[index]
            3,
        )
        out[name] = row
        print(json.dumps({name: row}), file=sys.stderr)
    out["machine_ceiling"] = machine_ceiling(model, scene, args)
    return out


def machine_ceiling(model: Path, scene: Path, args: argparse.Namespace) -> dict[str, object]:
    """How far this machine lets 2 cores scale: the 1-core pipeline alone, then twice at once.

    Two independent processes, each pinned to its own CPU, run the same 1-core job; the
    ratio of one alone to the slower of the pair is the scaling the machine itself gives
    (1.0: the cores do not slow each other; shared caches, memory bandwidth or vCPUs on one
    physical core make it less). Best of 2 scenes per process, ``--repeats`` pairs.
    """
    import threading

    def one(cpu: int, into: dict[int, float]) -> None:
        res = child_predict(
            REPO,
            model,
            scene,
            noop=True,
            cores=1,
            threads=1,
            workers=1,
            batch_size=_tree_batch(args, REPO),
            device=args.device,
            repeats=2,
            cpu=cpu,
        )
        into[cpu] = min(res["times"])

    pairs = []
    for _ in range(args.repeats):
        alone: dict[int, float] = {}
        one(0, alone)
        both: dict[int, float] = {}
        threads = [threading.Thread(target=one, args=(c, both)) for c in (0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        pairs.append(
            {
                "alone_s": round(alone[0], 3),
                "pair_s": [round(both[0], 3), round(both[1], 3)],
                "scaling": round(alone[0] / max(both.values()), 3),
                "load_avg": os.getloadavg()[0],
            }
        )
        print(json.dumps({"machine_ceiling": pairs[-1]}), file=sys.stderr)
    return {"pairs": pairs, "scaling_median": float(np.median([p["scaling"] for p in pairs]))}


def timeline(args: argparse.Namespace, tmp: Path) -> dict[str, object]:
    """Where a scene's time goes on 2 cores: each strip task's start, end and CPU time.

    The zero-cost model (``--noop-forward``) on ``--size``, in a fresh process pinned to
    the first 2 CPUs with a pool of 2, ``--repeats`` scenes after the untimed one; per
    scene, when the stream's last row was final and what ran after it (the serial tail).
    """
    model, scene = _model_and_scene(args, tmp)
    res = child_predict(
        REPO,
        model,
        scene,
        noop=True,
        cores=2,
        threads=1,
        workers=2,
        batch_size=_tree_batch(args, REPO),
        device=args.device,
        repeats=args.repeats,
        timeline=True,
    )
    scenes = []
    for t in res["timelines"]:
        last = max(e["at_s"] for e in t["events"] if "rows_final" in e)
        tasks = [e for e in t["events"] if "task" in e]
        after = [e for e in tasks if e["end_s"] > last]
        scenes.append(
            {
                "total_s": t["total_s"],
                "last_row_final_s": last,
                "tail_s": round(t["total_s"] - last, 3),
                "tasks": sorted(tasks, key=lambda e: e["start_s"]),
                # CPU of the tasks still running when the last row was final (their whole run)
                "tasks_after_last_row_cpu_s": round(sum(e["cpu_s"] for e in after), 3),
            }
        )
        print(json.dumps(scenes[-1]), file=sys.stderr)
    return {"scene_px": args.size, "noop_forward": NOOP_FORWARD[0], "scenes": scenes}


def forward_grid(args: argparse.Namespace, tmp: Path) -> dict[str, object]:
    """CPU seconds per Mpx of the forward pass by window, batch and memory order.

    One torch thread (CPU time is then the forward's own, not the spinning of a thread
    pool), best of 3, about 1 Mpx per measurement; "nchw": the network as loaded (what the
    plain torchgeo pipeline runs), "engine": predict's engine (channels-last on the CPU).
    """
    from geotl.models.artefact import load_artefact
    from geotl.predict.engine import TorchEngine

    model = args.model or tmp / "model"
    if args.model is None:
        make_model(model, args.encoder, args.depth, args.task)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    plain = load_artefact(model).network
    engine = TorchEngine(load_artefact(model).network, torch.device("cpu"))

    def nchw(x: np.ndarray) -> None:
        with torch.inference_mode():
            torch.softmax(plain(torch.from_numpy(x)), dim=1)[:, 1:].contiguous()

    rows = []
    for px, batch in ((256, 8), (256, 4), (256, 2), (512, 2), (512, 1)):
        x = np.random.default_rng(0).normal(size=(batch, 3, px, px)).astype(np.float32)
        n = max(1, 2**20 // (batch * px * px))
        row: dict[str, object] = {"window_px": px, "batch": batch}
        for name, run in (("nchw", nchw), ("engine", engine.tensor_probabilities)):
            run(x)  # warm-up
            best = float("inf")
            for _ in range(3):
                c0 = time.process_time()
                for _ in range(n):
                    run(x)
                best = min(best, (time.process_time() - c0) / (n * batch * px * px / 1e6))
            row[f"{name}_cpu_s_per_mpx"] = round(best, 3)
        row["load_avg"] = os.getloadavg()[0]
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)
    torch.set_num_threads(threads)
    return {"threads": 1, "rows": rows}


def _resnet18_model(model_dir: Path) -> None:
    spec = NetworkSpec(encoder="resnet18", in_channels=3, num_classes=2)
    torch.manual_seed(0)
    card = ModelCard(
        name="resnet18-unet",
        classes=["tree"],
        bands=["red", "green", "blue"],
        normalisation=Normalisation(mean=[110.0, 110.0, 90.0], std=[45.0, 45.0, 40.0]),
        chip_size_px=256,
        resolution_m=RES_M,
        network=spec,
        base=BaseModelRef(id="none", architecture="unet", licence="MIT", commercial_use=True),
        freeze="none",
    )
    write_artefact(model_dir, build_network(spec), card)


def _forward_ms(engine: object, windows: np.ndarray, batch_size: int) -> float:
    t0 = time.perf_counter()
    for i in range(0, len(windows), batch_size):
        engine.probabilities(windows[i : i + batch_size])  # type: ignore[attr-defined]
    return (time.perf_counter() - t0) / len(windows) * 1000


def _polygon_agreement(ours: list, ref: list) -> dict[str, float]:
    same = sum(1 for a, b in zip(ours, ref, strict=False) if a.symmetric_difference(b).area < 1e-6)
    out = agreement(ours, ref)
    out["identical"] = same if len(ours) == len(ref) else -1
    return out


def compare_engines(args: argparse.Namespace, tmp: Path) -> dict[str, object]:
    """Torch eager vs ONNX Runtime fp32 vs int8 on the same scene and windows."""
    from geotl.export import export_onnx, read_onnx
    from geotl.export.quantise import Calibration
    from geotl.models.artefact import load_artefact
    from geotl.predict import PredictOptions, predict_scene
    from geotl.predict.engine import OrtEngine, TorchEngine, load_model
    from geotl.predict.objects import extractor_for

    scene = tmp / "scene.tif"
    make_scene(scene, args.size)
    mpx = args.size**2 / 1e6
    models: list[tuple[str, Path]] = []
    if args.model is not None:
        models.append((f"{args.model} (trained)", args.model))
    if not args.skip_resnet:
        _resnet18_model(tmp / "resnet18")
        models.append(("ResNet-18 U-Net (random init)", tmp / "resnet18"))
    out: dict[str, object] = {}
    for label, model_dir in models:
        card = load_artefact(model_dir).card
        key = card.name
        windows = read_windows(model_dir, scene, args.window).numpy()
        row: dict[str, object] = {"model": label, "windows": len(windows)}
        fp32, int8 = tmp / f"{key}.onnx", tmp / f"{key}.int8.onnx"
        res = export_onnx(model_dir, fp32, tile_px=args.window, overwrite=True)
        row["export_fp32_s"], row["size_fp32_mb"] = round(res.export_s, 1), res.size_bytes / 1e6
        calib = None
        if not card.regions:  # no training region: calibrate on the scene's own windows
            mean = np.asarray(card.normalisation.mean, np.float32)[:, None, None]
            std = np.asarray(card.normalisation.std, np.float32)[:, None, None]
            raw = windows[:16] * std + mean
            calib = Calibration(tiles=(raw / 255.0).astype(np.float32), source="16 scene windows")
        res8 = export_onnx(
            model_dir,
            int8,
            int8=True,
            tile_px=args.window,
            calibration=calib,
            region_path=args.region,
            chips_dir=args.chips,
            overwrite=True,
        )
        row["export_int8_s"], row["size_int8_mb"] = round(res8.export_s, 1), res8.size_bytes / 1e6
        row["quantisation"] = res8.card.quantisation
        art = load_artefact(model_dir)
        head = extractor_for(card.task, len(card.classes)).probabilities
        engines = {
            "torch": TorchEngine(art.network, art.device, head),
            "ort_fp32": OrtEngine(read_onnx(fp32), args.threads),
            "ort_int8": OrtEngine(read_onnx(int8), args.threads),
        }
        for e in engines.values():  # warm-up
            e.probabilities(windows[: args.batch_size])
        # interleaved repeats: each repeat times every engine back to back, so the ratios
        # of one repeat share the machine's load; report the median ratio and best times
        ms: dict[str, list[float]] = {k: [] for k in engines}
        for rep in range(args.repeats):
            order = list(engines)[rep % 3 :] + list(engines)[: rep % 3]
            for k in order:
                ms[k].append(_forward_ms(engines[k], windows, args.batch_size))
        row["forward_ms_per_window"] = {k: round(min(v), 1) for k, v in ms.items()}
        row["forward_speedup_vs_torch"] = {
            k: round(float(np.median([t / o for t, o in zip(ms["torch"], v, strict=True)])), 2)
            for k, v in ms.items()
        }
        opts = PredictOptions(batch_size=args.batch_size, window_px=args.window, progress=False)
        arts = {
            "torch": art,
            "ort_fp32": load_model(fp32, "onnxruntime", threads=args.threads),
            "ort_int8": load_model(int8, "onnxruntime", threads=args.threads),
        }
        scene_s: dict[str, list[float]] = {k: [] for k in arts}
        dets: dict[str, object] = {}
        for rep in range(args.repeats):
            order = list(arts)[rep % 3 :] + list(arts)[: rep % 3]
            for k in order:
                t0 = time.perf_counter()
                dets[k] = predict_scene(arts[k], scene, opts)
                scene_s[k].append(time.perf_counter() - t0)
        row["scene_s"] = {k: round(min(v), 2) for k, v in scene_s.items()}
        row["scene_mpx_per_s"] = {k: round(mpx / min(v), 3) for k, v in scene_s.items()}
        row["scene_speedup_vs_torch"] = {
            k: round(float(np.median([t / o for t, o in zip(scene_s["torch"], v, strict=True)])), 2)
            for k, v in scene_s.items()
        }
        ref = list(dets["torch"].native.geometry)  # type: ignore[attr-defined]
        row["polygons_vs_torch"] = {
            k: _polygon_agreement(list(dets[k].native.geometry), ref)  # type: ignore[attr-defined]
            for k in ("ort_fp32", "ort_int8")
        }
        if card.regions and not args.skip_torchgeo:
            tg_s, _, _ = torchgeo_baseline(model_dir, scene, args.window, args.batch_size)
            row["torchgeo_s"] = round(tg_s, 2)
            row["torchgeo_over"] = {k: round(tg_s / min(v), 2) for k, v in scene_s.items()}
        region_path = args.region or (Path(card.regions[0].path) if card.regions else None)
        if region_path is not None and region_path.is_file():
            row["test_iou"] = _test_iou(model_dir, card, tmp, args, region_path)
        print(json.dumps(row), file=sys.stderr)
        out[key] = row
    return out


def _test_iou(
    model_dir: Path, card: object, tmp: Path, args: argparse.Namespace, region_path: Path
) -> dict:
    """Tree IoU on the region's test chips: torch vs fp32 vs int8 graphs at the chip size."""
    from geotl.config import load_region
    from geotl.evaluate import _evaluate_chips
    from geotl.export import export_onnx
    from geotl.models.artefact import load_artefact
    from geotl.predict.engine import load_model

    region = load_region(region_path)
    chips = args.chips or model_dir.parent / "chips"
    tile = card.chip_size_px  # type: ignore[attr-defined]
    export_onnx(model_dir, tmp / "eval.onnx", tile_px=tile, overwrite=True)
    export_onnx(
        model_dir,
        tmp / "eval8.onnx",
        int8=True,
        tile_px=tile,
        region_path=region_path,
        chips_dir=chips,
        overwrite=True,
    )
    res = {}
    for k, art in (
        ("torch", load_artefact(model_dir)),
        ("ort_fp32", load_model(tmp / "eval.onnx", "onnxruntime")),
        ("ort_int8", load_model(tmp / "eval8.onnx", "onnxruntime")),
    ):
        m = _evaluate_chips(art, region, chips, "test", 16, 200, 0)
        cls = card.classes[0]  # type: ignore[attr-defined]
        pixel, objects = m["pixel"]["per_class"][cls], m["objects"][cls]
        res[k] = pixel["iou"]
        res[f"{k}_detail"] = {
            "iou_ci95": pixel["iou_ci95"],
            "object_precision": objects["precision"],
            "object_recall": objects["recall"],
            "object_f1": objects["f1"],
            "object_f1_ci95": objects["f1_ci95"],
        }
    res["test_chips"] = m["chips"]
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--size", type=int, default=3072, help="scene side (px) for the speed comparison"
    )
    ap.add_argument(
        "--scene",
        type=Path,
        help="--cli-trees, --pipeline, --timeline, --ort-ratio: this scene instead of a --size "
        "one made of the NEON plots (e.g. regions/demo-osbs/imagery/OSBS_029.tif)",
    )
    ap.add_argument(
        "--mem-sizes", type=int, nargs="*", default=[1250, 5000], help="scene sides for peak memory"
    )
    ap.add_argument("--encoder", default="tu-mobilenetv3_small_050")
    ap.add_argument("--depth", type=int, default=5)
    ap.add_argument("--window", type=int, default=256)
    ap.add_argument(
        "--batch-size",
        type=int,
        help="windows per forward pass, for every side (default: predict's for the device; "
        "a --before tree then predicts with its own default)",
    )
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument(
        "--model",
        type=Path,
        help="use this artefact (e.g. demo-out/model) instead of a random U-Net",
    )
    ap.add_argument("--skip-torchgeo", action="store_true")
    ap.add_argument(
        "--task",
        default="segmentation",
        choices=["segmentation", "instances"],
        help="random model's task",
    )
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--engines", action="store_true", help="compare torch / ORT fp32 / ORT int8")
    ap.add_argument("--chips", type=Path, help="--engines: the trained model's chips folder")
    ap.add_argument(
        "--region",
        type=Path,
        help="--engines: the trained model's region file (default: the path in its card)",
    )
    ap.add_argument("--threads", type=int, help="torch and ONNX Runtime threads (default: all)")
    ap.add_argument("--skip-resnet", action="store_true", help="--engines: trained model only")
    ap.add_argument(
        "--vector-window", type=int, default=0, help="the vectoriser's core window (px)"
    )
    ap.add_argument(
        "--read-threads",
        type=int,
        default=0,
        help="threads reading windows ahead in the child processes (0: predict's default)",
    )
    ap.add_argument(
        "--timeline",
        action="store_true",
        help="2 cores, zero-cost model: when each strip task ran, and the tail after the "
        "stream's last row",
    )
    ap.add_argument(
        "--noop-forward",
        choices=["replay", "compute", "model"],
        default="replay",
        help="--pipeline: the zero-cost model's outputs served from an untimed first scene "
        "(replay: an 8 px box mean of band 1, whose canopy spans the scene), computed on every "
        "call (compute: the same box mean, as before stop 34), or the trained model's own "
        "outputs recorded in the untimed scene and replayed (model: its real maps)",
    )
    ap.add_argument(
        "--pipeline",
        action="store_true",
        help="non-model pipeline throughput (zero-cost model) at 1 and 2 cores",
    )
    ap.add_argument(
        "--before",
        type=Path,
        help="a geotl tree to compare with in the same run (e.g. main at the start: "
        "mkdir B && git archive COMMIT geotl | tar -x -C B)",
    )
    ap.add_argument("--skip-cli", action="store_true", help="no CLI process timing")
    ap.add_argument(
        "--ort-ratio",
        action="store_true",
        help="--model on ONNX Runtime: predict_scene against the bare forward passes, per tree",
    )
    ap.add_argument(
        "--cli-trees",
        action="store_true",
        help="the whole geotl predict command with its defaults, per tree (this and --before)",
    )
    ap.add_argument(
        "--rounds", type=int, default=3, help="--ort-ratio, --cli-trees: rounds of the trees"
    )
    ap.add_argument(
        "--forward-grid",
        action="store_true",
        help="CPU s per Mpx of the forward pass by window, batch and memory order (1 thread)",
    )
    ap.add_argument(
        "--issue10",
        action="store_true",
        help="issue 10's CPU figures in one run: --forward-grid, --pipeline, then the ratio to "
        "the bare "
        "forward passes and the torchgeo pipeline with --model (no CLI, no memory runs)",
    )
    args = ap.parse_args()
    VECTOR_WINDOW_PX[0] = args.vector_window
    READ_THREADS[0] = args.read_threads
    NOOP_FORWARD[0] = args.noop_forward
    if args.model is not None:
        args.model = args.model.resolve()  # the timing children run elsewhere
    if args.before is not None:
        args.before = args.before.resolve()
        if not (args.before / "geotl" / "__init__.py").is_file():
            # a child would import the installed geotl instead: "before" = "after", silently
            raise SystemExit(
                f"--before {args.before}: no geotl/__init__.py in it; pass the folder that "
                "holds the geotl package (mkdir B && git archive COMMIT geotl | tar -x -C B)"
            )
    args.batch_given = args.batch_size is not None
    if args.batch_size is None:  # predict's default for a PyTorch network on the device
        from types import SimpleNamespace

        from geotl.predict import PredictOptions

        torch_model = SimpleNamespace(engine=None, device=torch.device(args.device))
        args.batch_size = PredictOptions().batch_for(args.window, torch_model)  # type: ignore[arg-type]
    torch.set_num_threads(args.threads or max(1, os.cpu_count() or 1))
    results: dict[str, object] = {
        "machine": f"{os.cpu_count()} CPU(s), torch {torch.__version__}, threads {torch.get_num_threads()}"
        + (f", {torch.cuda.get_device_name()}" if args.device == "cuda" else ""),
        "encoder": args.encoder,
        "depth": args.depth,
        "window_px": args.window,
        "batch_size": args.batch_size,
        "task": args.task,
    }
    if args.issue10:  # every CPU figure of issue 10 in one run
        args.skip_cli, args.mem_sizes = True, []
        with tempfile.TemporaryDirectory(prefix="geotl-bench-") as tmpname:
            results["forward_grid"] = forward_grid(args, Path(tmpname))
            results["pipeline"] = pipeline_throughput(args, Path(tmpname))
    modes = {
        "cli_trees": cli_trees,
        "ort_ratio": ort_ratio,
        "pipeline": pipeline_throughput,
        "timeline": timeline,
        "engines": compare_engines,
        "forward_grid": forward_grid,
    }
    for key, run in modes.items():
        if getattr(args, key) and not args.issue10:
            with tempfile.TemporaryDirectory(prefix="geotl-bench-") as tmpname:
                results[key] = run(args, Path(tmpname))
            text = json.dumps(results, indent=2)
            print(text)
            if args.json:
                args.json.write_text(text + "\n")
            return
    with tempfile.TemporaryDirectory(prefix="geotl-bench-") as tmpname:
        tmp = Path(tmpname)
        model = args.model or tmp / "model"
        if args.model is None:
            make_model(model, args.encoder, args.depth, args.task)
        else:
            results["encoder"] = f"{args.model} (trained artefact)"
        scene = tmp / "scene.tif"
        make_scene(scene, args.size)
        windows = read_windows(model, scene, args.window)
        n = len(windows)
        # interleaved repeats, best of each: the machine is shared, timings are noisy
        bare_runs, lib_runs, before_runs = [], [], []
        tg_runs: list[tuple[float, list, float]] = []
        bare_cpu, lib_cpu, loads = [], [], []
        before_stages: dict = {}
        after_stages: dict = {}

        def library(tree: Path) -> dict:
            return child_predict(
                tree,
                model,
                scene,
                noop=False,
                cores=None,
                threads=torch.get_num_threads(),
                workers=None,
                batch_size=_tree_batch(args, tree),
                device=args.device,
            )

        for _ in range(args.repeats):
            loads.append(os.getloadavg()[0])
            wall, cpu = bare_forward(model, windows, args.batch_size, args.device)
            bare_runs.append(wall)
            bare_cpu.append(cpu)
            new = library(REPO)
            lib_runs.append(new["times"][0])
            lib_cpu.append(new["cpu"][0]["total"])
            predict_windows = new["windows"]
            # wall seconds per stage (summed over threads and processes), and CPU seconds
            after_stages = {**new["stages_s"], "cpu": new["cpu"][0]["stages"]}
            if args.before is not None:
                old = library(args.before)
                before_runs.append(old["times"][0])
                before_stages = {**old["stages_s"], "cpu": old["cpu"][0]["stages"]}
            if not args.skip_torchgeo:  # in the same round: the pairs share the machine's state
                tg_runs.append(torchgeo_baseline(model, scene, args.window, args.batch_size))
        del windows
        _, det = geotl_library(model, scene, args.batch_size, args.device)  # the polygons
        bare_s, lib_s = min(bare_runs), min(lib_runs)
        km2 = (args.size * RES_M) ** 2 / 1e6
        results["speed"] = {
            "scene_px": args.size,
            "windows": n,
            "load_avg": os.getloadavg(),
            "bare_forward_s": round(bare_s, 2),
            "geotl_library_s": round(lib_s, 2),
            "ratio_library": round(lib_s / bare_s, 3),
            "ratio_library_median": round(
                float(np.median([g / b for g, b in zip(lib_runs, bare_runs, strict=True)])), 3
            ),
            "runs_s": {"bare": bare_runs, "library": lib_runs},
            # CPU time (all threads, and the vectorising pool's processes): what the load
            # changes least; on an idle machine both sides keep every core busy
            "cpu_s": {"bare": bare_cpu, "library": lib_cpu},
            "ratio_cpu_median": round(
                float(np.median([g / b for g, b in zip(lib_cpu, bare_cpu, strict=True)])), 3
            ),
            "windows_bare": n,
            "windows_predict": predict_windows,
            "load_avg_at_repeats": loads,
            "stages_s": after_stages,
        }
        if before_runs:
            before_s = min(before_runs)
            results["speed"]["before_library_s"] = round(before_s, 2)  # type: ignore[index]
            results["speed"]["ratio_before"] = round(before_s / bare_s, 3)  # type: ignore[index]
            results["speed"]["runs_s"]["before"] = before_runs  # type: ignore[index]
            results["speed"]["before_stages_s"] = before_stages  # type: ignore[index]
        if not args.skip_cli:
            cli_s = geotl_cli(model, scene, tmp / "out.geojson", args.batch_size, args.device)
            results["speed"]["geotl_cli_s"] = round(cli_s, 2)  # type: ignore[index]
            results["speed"]["ratio_cli"] = round(cli_s / bare_s, 3)  # type: ignore[index]
            results["speed"]["km2_per_min_cli"] = round(km2 / (cli_s / 60), 4)  # type: ignore[index]
        print(json.dumps(results["speed"]), file=sys.stderr)
        if not args.skip_torchgeo:
            load = os.getloadavg()[0]
            # best of --repeats, as geotl's side, and the ratio of each round's pair
            tg_s, tg_objects, tg_cpu = min(tg_runs, key=lambda r: r[0])
            ours = list(det.native.geometry)  # type: ignore[attr-defined]
            results["torchgeo"] = {
                "torchgeo_s": round(tg_s, 2),
                "torchgeo_runs_s": [round(r[0], 2) for r in tg_runs],
                "speed_ratio_paired_median": round(
                    float(np.median([t[0] / g for t, g in zip(tg_runs, lib_runs, strict=True)])),
                    3,
                ),
                "geotl_library_s": round(lib_s, 2),
                "speed_ratio_torchgeo_over_geotl": round(tg_s / lib_s, 3),
                "torchgeo_cpu_s": round(tg_cpu, 2),
                "cpu_ratio_torchgeo_over_geotl": round(tg_cpu / min(lib_cpu), 3),
                "load_avg_at_start": load,
                "speed_ratio_torchgeo_over_before": round(tg_s / min(before_runs), 3)
                if before_runs
                else None,
                "agreement": agreement(ours, [o.geometry for o in tg_objects]),
            }
            print(json.dumps(results["torchgeo"]), file=sys.stderr)
        mem = []
        for size in args.mem_sizes:
            mscene = tmp / f"mem_{size}.tif"
            make_scene(mscene, size)
            rss, wall = peak_memory(model, mscene, args.batch_size, args.device)
            mem.append(
                {
                    "scene_px": size,
                    "peak_rss_mib": round(rss, 1),
                    "wall_s": round(wall, 1),
                    "km2_per_min": round((size * RES_M) ** 2 / 1e6 / (wall / 60), 4),
                }
            )
            mscene.unlink()
            print(json.dumps(mem[-1]), file=sys.stderr)
        if len(mem) >= 2:
            results["memory_ratio_largest_over_smallest"] = round(
                mem[-1]["peak_rss_mib"] / mem[0]["peak_rss_mib"], 3
            )
        results["memory"] = mem
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
