"""Benchmark int8 schemes: test quality against fp32 and forward speed against PyTorch eager.

For one trained segmentation model and its region, in one run:

1. test-split quality (tree pixel IoU and object P/R/F1 with 95 % bootstrap intervals,
   ``geotl evaluate``'s code) of the PyTorch model, the fp32 graph and one int8 graph per
   scheme, every graph exported at the chip size and calibrated on the same training chips;
2. forward speed on 256 px windows (the predict window) mosaicked from the test chips:
   PyTorch eager, ORT fp32 and every int8 graph timed back to back in each repeat (the order
   rotating), ratios to PyTorch as the median of the per-repeat ratios, times the best repeat;
3. the load average (``uptime``) at the start, between the parts and at the end.

``--debug SCHEME`` instead runs ONNX Runtime's quantisation debugger
(``onnxruntime.quantization.qdq_loss_debug``) on a few calibration tiles: every tensor of
the int8 graph against the fp32 one (SQNR in dB, along the graph), the tensors whose shape
differs between the two (moved padding), and where the error first becomes large.

Schemes (:class:`geotl.export.quantise.Int8Scheme`): ``default`` (what ``geotl export
--int8`` does), ``before`` (the earlier export: shape arithmetic quantised), ``per-tensor``,
``reduce-range``, ``symmetric-acts``, ``moving-average``, ``entropy``, ``percentile``,
``float-depthwise``, ``float-stem-head``, ``calib-all`` (the default on every training chip
and its horizontal flip instead of 16 tiles).

    nice -n 10 .venv/bin/python scripts/bench_int8.py --model MODEL_DIR \\
        --region REGION.toml --chips CHIPS_DIR --threads 1 --repeats 3 --json out.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from geotl.export.quantise import Calibration, Int8Scheme  # noqa: E402

SCHEMES: dict[str, Int8Scheme] = {
    "default": Int8Scheme(),
    "before": Int8Scheme(float_shape_arithmetic=False),
    "per-tensor": Int8Scheme(per_channel=False),
    "reduce-range": Int8Scheme(reduce_range=True),
    "symmetric-acts": Int8Scheme(activation_symmetric=True),
    "moving-average": Int8Scheme(moving_average=True),
    "entropy": Int8Scheme(calibration="entropy"),
    "percentile": Int8Scheme(calibration="percentile"),
    "float-depthwise": Int8Scheme(float_depthwise=True),
    "float-stem-head": Int8Scheme(float_stem_head=True),
    "calib-all": Int8Scheme(),
}


def uptime() -> str:
    """The load averages, as ``uptime`` prints them."""
    out = subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout
    return out.strip().split("load average:")[-1].strip()


def calibrations(
    model_dir: Path, region: Path, chips: Path, tile_px: int
) -> tuple[Calibration, Calibration]:
    """The default calibration (16 tiles) and every training chip plus its flip."""
    from geotl.export.quantise import calibration_from_chips, region_calibration

    default = region_calibration(model_dir, tile_px, region, chips)
    everything = region_calibration(model_dir, tile_px, region, chips, max_tiles=10**6)
    # calibration_from_chips mosaics chips: the flip of every tile doubles the set
    tiles = np.concatenate([everything.tiles, everything.tiles[..., ::-1]])
    flipped = calibration_from_chips(
        tiles * 255.0,
        np.ones((len(tiles), *tiles.shape[2:]), bool),
        [0.0] * tiles.shape[1],
        tile_px,
        "",
        max_tiles=len(tiles),
    )
    return default, Calibration(tiles=flipped.tiles, source=f"{everything.source} and their flips")


def export(
    model_dir: Path, out: Path, tile_px: int, scheme: str | None, calib: dict[str, Calibration]
) -> tuple[Path, dict[str, object]]:
    """``geotl export`` (fp32 when ``scheme`` is None) at ``tile_px``; path and facts."""
    from geotl.export import export_onnx

    if scheme is None:
        res = export_onnx(model_dir, out, tile_px=tile_px, overwrite=True)
    else:
        res = export_onnx(
            model_dir,
            out,
            int8=True,
            tile_px=tile_px,
            calibration=calib["all" if scheme == "calib-all" else "default"],
            scheme=SCHEMES[scheme],
            overwrite=True,
        )
    return out, {
        "export_s": round(res.export_s, 1),
        "size_mb": round(res.size_bytes / 1e6, 2),
        "quantisation": res.card.quantisation,
    }


def quality(engine: object, region_path: Path, chips: Path, cls: str) -> dict[str, object]:
    """Test-split tree IoU and object P/R/F1 (with intervals), as ``geotl evaluate``."""
    from geotl.config import load_region
    from geotl.evaluate.segmentation import evaluate_chips

    m = evaluate_chips(engine, load_region(region_path), chips, "test", 16, 200, 0)
    pixel, objects = m["pixel"]["per_class"][cls], m["objects"][cls]
    return {
        "iou": pixel["iou"],
        "iou_ci95": pixel["iou_ci95"],
        "object_precision": objects["precision"],
        "object_recall": objects["recall"],
        "object_f1": objects["f1"],
        "object_f1_ci95": objects["f1_ci95"],
        "test_chips": m["chips"],
    }


def forward_ms(engine: object, windows: np.ndarray, batch_size: int) -> float:
    """Milliseconds per window of ``engine.probabilities`` over ``windows``."""
    t0 = time.perf_counter()
    for i in range(0, len(windows), batch_size):
        engine.probabilities(windows[i : i + batch_size])  # type: ignore[attr-defined]
    return (time.perf_counter() - t0) / len(windows) * 1000


def layer_errors(
    model_dir: Path, calib: Calibration, scheme: str, tiles: int = 4
) -> dict[str, object]:
    """Per-tensor SQNR of the ``scheme`` int8 graph against fp32 (qdq_loss_debug)."""
    import onnx
    from onnxruntime.quantization.qdq_loss_debug import (
        collect_activations,
        create_activation_matching,
        modify_model_output_intermediate_tensors,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from geotl.export.onnx import INPUT_NAME
    from geotl.export.quantise import quantise_int8
    from geotl.export.trace import torch_to_onnx
    from geotl.models.artefact import load_artefact

    art = load_artefact(model_dir)
    tmp = Path(tempfile.mkdtemp(prefix="int8-debug-"))
    fp32, int8 = tmp / "fp32.onnx", tmp / "int8.onnx"
    model = torch_to_onnx(art, calib.tiles.shape[-1])
    onnx.save(
        quantise_int8(
            onnx.ModelProto.FromString(model.SerializeToString()), calib, scheme=SCHEMES[scheme]
        ).model,
        str(int8),
    )
    quant_pre_process(model, fp32, skip_symbolic_shape=True)  # as quantise_int8 does
    inputs = [{INPUT_NAME: calib.tiles[i : i + 1]} for i in range(min(tiles, len(calib.tiles)))]
    acts = {}
    for key, path in (("fp32", fp32), ("int8", int8)):
        aug = tmp / f"{key}.aug.onnx"
        modify_model_output_intermediate_tensors(str(path), str(aug))
        acts[key] = collect_activations(str(aug), inputs)
    match = create_activation_matching(acts["int8"], acts["fp32"])
    graph = onnx.load(str(fp32)).graph
    producer = {o: n for n in graph.node for o in n.output}
    rows = []
    for node in graph.node:  # graph order
        for name in node.output:
            m = match.get(name, {})
            if "float" not in m or "post_qdq" not in m:
                continue
            ref, got = m["float"], m["post_qdq"]
            if not np.issubdtype(np.asarray(ref[0]).dtype, np.floating) or ref[0].size < 256:
                continue  # pixel tensors only (the debugger returns them flattened)
            same = all(a.shape == b.shape for a, b in zip(ref, got, strict=True))
            sqnr = None
            if same:
                x = np.concatenate([a.ravel() for a in ref])
                e = x - np.concatenate([b.ravel() for b in got])
                sqnr = round(
                    float(20 * np.log10(np.linalg.norm(x) / max(np.linalg.norm(e), 1e-12))), 1
                )
            rows.append({"tensor": name, "op": producer[name].op_type, "sqnr_db": sqnr})
    moved = [r["tensor"] for r in rows if r["sqnr_db"] is None]
    first_low = next((r for r in rows if r["sqnr_db"] is None or r["sqnr_db"] < 10), None)
    return {
        "scheme": scheme,
        "tiles": len(inputs),
        "shape_differs": moved,
        "first_below_10db": first_low,
        "output_sqnr_db": rows[-1]["sqnr_db"] if rows else None,
        "tensors": rows,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--region", type=Path, required=True)
    ap.add_argument("--chips", type=Path, required=True)
    ap.add_argument("--schemes", nargs="+", default=list(SCHEMES), choices=list(SCHEMES))
    ap.add_argument("--window", type=int, default=256, help="timing window (px)")
    ap.add_argument("--windows", type=int, default=8, help="timing windows")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1, help="threads for every engine")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--debug", choices=list(SCHEMES), help="per-layer error of one scheme")
    args = ap.parse_args()

    import torch

    from geotl.config import load_region
    from geotl.export import read_onnx
    from geotl.export.quantise import calibration_from_chips
    from geotl.models.artefact import load_artefact
    from geotl.predict.engine import OrtEngine, TorchEngine, load_model
    from geotl.train import load_region_chips

    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="bench-int8-"))
    art = load_artefact(args.model)
    card = art.card
    cls = card.classes[0]
    out: dict[str, object] = {"model": str(args.model), "load_start": uptime(), "schemes": {}}
    print(f"start, load {out['load_start']}", file=sys.stderr)

    # 1. quality at the chip size
    chip = card.chip_size_px
    default, everything = calibrations(args.model, args.region, args.chips, chip)
    if args.debug:
        report = layer_errors(args.model, default, args.debug)
        for r in report["tensors"]:  # type: ignore[attr-defined]
            print(f"{r['sqnr_db']!s:>6} dB  {r['op']:10s} {r['tensor']}", file=sys.stderr)
        if args.json:
            args.json.write_text(json.dumps(report, indent=2))
        print(json.dumps({k: v for k, v in report.items() if k != "tensors"}, indent=2))
        return
    calib = {"default": default, "all": everything}
    out["calibration"] = {"default": default.source, "calib-all": everything.source}
    rows: dict[str, dict[str, object]] = {}
    rows["torch"] = quality(art, args.region, args.chips, cls)
    fp32, facts = export(args.model, tmp / "fp32.onnx", chip, None, calib)
    rows["fp32"] = (
        quality(load_model(fp32, "onnxruntime", threads=args.threads), args.region, args.chips, cls)
        | facts
    )
    for name in args.schemes:
        path, facts = export(args.model, tmp / f"{name}.onnx", chip, name, calib)
        rows[name] = (
            quality(
                load_model(path, "onnxruntime", threads=args.threads), args.region, args.chips, cls
            )
            | facts
        )
        for key, metric in (("iou_minus_fp32", "iou"), ("f1_minus_fp32", "object_f1")):
            diff = float(rows[name][metric]) - float(rows["fp32"][metric])  # type: ignore[arg-type]
            rows[name][key] = round(diff, 4)
        print(name, json.dumps(rows[name]), file=sys.stderr)
    out["load_after_quality"] = uptime()

    # 2. forward speed on predict-size windows mosaicked from the test chips
    test = load_region_chips(load_region(args.region), args.chips, "test", list(card.bands))
    per_window = max(1, (args.window // chip) ** 2)  # chips mosaicked into one window
    reps = -(-args.windows * per_window // len(test))  # reuse chips where there are few
    wins = calibration_from_chips(
        np.concatenate([test.images] * reps),
        np.concatenate([test.valid] * reps),
        card.normalisation.mean,
        args.window,
        "test",
        max_tiles=args.windows,
    ).tiles
    windows = art.normalise(wins * 255.0).astype(np.float32)
    cal_w = calibrations(args.model, args.region, args.chips, args.window)
    calib_w = {"default": cal_w[0], "all": cal_w[1]}
    engines: dict[str, object] = {"torch": TorchEngine(art.network, art.device)}
    path, _ = export(args.model, tmp / "fp32-w.onnx", args.window, None, calib_w)
    engines["fp32"] = OrtEngine(read_onnx(path), args.threads)
    for name in args.schemes:
        if name == "calib-all":  # the same graph as default, other ranges: same speed
            continue
        path, facts = export(args.model, tmp / f"{name}-w.onnx", args.window, name, calib_w)
        engines[name] = OrtEngine(read_onnx(path), args.threads)
        rows[name]["window_size_mb"] = facts["size_mb"]
    for e in engines.values():  # warm-up
        e.probabilities(windows[: args.batch_size])  # type: ignore[attr-defined]
    ms: dict[str, list[float]] = {k: [] for k in engines}
    keys = list(engines)
    for rep in range(args.repeats):
        shift = rep % len(keys)
        for k in keys[shift:] + keys[:shift]:
            ms[k].append(forward_ms(engines[k], windows, args.batch_size))
    for k, v in ms.items():
        rows.setdefault(k, {})
        rows[k]["forward_ms_per_window"] = round(min(v), 1)
        rows[k]["forward_speedup_vs_torch"] = round(
            float(np.median([t / o for t, o in zip(ms["torch"], v, strict=True)])), 2
        )
    out["schemes"] = rows
    out["load_end"] = uptime()
    out["timing"] = {
        "windows": len(windows),
        "window_px": args.window,
        "threads": args.threads,
        "repeats": args.repeats,
    }
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text)
    print(f"end, load {out['load_end']}", file=sys.stderr)


if __name__ == "__main__":
    main()
