"""False changes from pass to pass: the same ground predicted from two differently cropped scenes.

A new pass of the same ground rarely has the same extent, so the window grid falls
elsewhere. For each scene this script cuts a second "pass" that starts ``--shift`` rows
and columns later (the same pixels, another origin), predicts both, and compares them with
the monitor's own change detection (:func:`geotl.monitor.changes.detect_changes`) inside
the ground both cover. Nothing changed on the ground, so every "new" or "gone" object is
false. Reported per configuration:

* ``false_change_share``: (new + gone) / (objects of both passes taking part), the
  monitor's view (goal: under 5 %);
* ``one_to_one_share``: objects matched one to one at IoU >= 0.5, as a share of the
  objects of both passes;
* ``margin_<m>x:false_change_share``: the same share with the band of ``m`` times the
  monitor's edge margin (half the window overlap) along each pass's edge left out, as
  the monitor does (``m = 1``); ``--margins 0.5 1 2`` compares widths on the same
  predictions.

Configurations: ``scene-grid`` (windows start at the scene corner: geotl before issue 9),
``ground-grid`` (windows anchored to the CRS grid, the default now) and
``ground-grid+tta`` (plus flip test-time averaging).

    .venv/bin/python scripts/bench_pass_consistency.py --model demo-out/model \\
        --scenes '../shared/data/neon-trees/OSBS/images/*.tif' --shift 37 53 --out pass.json
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import rasterio
import shapely
from rasterio.windows import Window

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from geotl.evaluate import match_objects  # noqa: E402
from geotl.models.artefact import load_artefact  # noqa: E402
from geotl.monitor.changes import detect_changes  # noqa: E402
from geotl.predict import PredictOptions, predict_scene  # noqa: E402

CONFIGS = {
    "scene-grid": {"ground_grid": False, "flip_tta": False},
    "ground-grid": {"ground_grid": True, "flip_tta": False},
    "ground-grid+tta": {"ground_grid": True, "flip_tta": True},
}


def crop(src_path: Path, dst_path: Path, rows: int, cols: int) -> None:
    """The same pixels from (rows, cols) on, georeferenced where they are."""
    with rasterio.open(src_path) as src:
        win = Window(cols, rows, src.width - cols, src.height - rows)
        profile = src.profile | {
            "width": int(win.width),
            "height": int(win.height),
            "transform": src.window_transform(win),
        }
        data = src.read(window=win)
    with rasterio.open(dst_path, "w", **profile) as dst:
        dst.write(data)


def _inside(frame: gpd.GeoDataFrame, area: Any) -> gpd.GeoDataFrame:
    if frame.empty:
        return frame
    share = shapely.area(shapely.intersection(frame.geometry.values, area)) / np.maximum(
        shapely.area(frame.geometry.values), 1e-30
    )
    return frame[share >= 0.5]


def compare(a: Any, b: Any, margins_m: dict[str, float]) -> dict[str, int]:
    """Monitor changes and one-to-one matches between two predictions of the same ground.

    ``new``/``gone`` compare every object inside the common ground (``edge_margin_m = 0``);
    for each entry of ``margins_m`` (a label -> a margin in metres), ``<label>:new``,
    ``<label>:gone`` and ``<label>:compared`` leave out the band of that width along each
    pass's edge, as the monitor does with its default margin (half the window overlap).
    """
    common = shapely.intersection(a.footprint, b.footprint)
    fa, fb = _inside(a.features, common), _inside(b.features, common)
    changes = detect_changes(
        fb, fa, b.footprint, a.footprint, current_scene="b", previous_scene="a"
    )
    ga = list(fa.to_crs(a.native.crs).geometry) if len(fa) else []
    gb = list(fb.to_crs(a.native.crs).geometry) if len(fb) else []
    tp, _, _ = match_objects(gb, ga)
    row = {
        "objects_a": len(fa),
        "objects_b": len(fb),
        "new": changes.new,
        "gone": changes.gone,
        "one_to_one": tp,
    }
    for label, margin in margins_m.items():
        inner = detect_changes(
            fb,
            fa,
            b.footprint,
            a.footprint,
            current_scene="b",
            previous_scene="a",
            edge_margin_m=margin,
        )
        row |= {
            f"{label}:compared": inner.compared,
            f"{label}:new": inner.new,
            f"{label}:gone": inner.gone,
        }
    return row


def main() -> None:
    """Run the comparison and print (and write) the JSON summary."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--scenes", required=True, help="glob of GeoTIFFs")
    ap.add_argument("--shift", type=int, nargs=2, default=(37, 53), metavar=("ROWS", "COLS"))
    ap.add_argument("--window", type=int, default=None, help="window px (default: predict's)")
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument(
        "--margins",
        nargs="+",
        type=float,
        default=[1.0],
        help="edge margins as multiples of the monitor's default (half the window overlap)",
    )
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    artefact = load_artefact(args.model)
    scenes = sorted(Path(p) for p in glob.glob(args.scenes))
    if not scenes:
        sys.exit(f"no scene matches {args.scenes}")
    totals: dict[str, dict[str, int]] = {c: {} for c in args.configs}
    seconds = dict.fromkeys(args.configs, 0.0)
    margins: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="geotl-pass-") as tmp:
        for scene in scenes:
            shifted = Path(tmp) / f"{scene.stem}_shifted.tif"
            crop(scene, shifted, *args.shift)
            for name in args.configs:
                opts = PredictOptions(progress=False, window_px=args.window, **CONFIGS[name])
                t0 = time.perf_counter()
                a = predict_scene(artefact, scene, opts)
                b = predict_scene(artefact, shifted, opts)
                seconds[name] += time.perf_counter() - t0
                default_m = opts.edge_margin_m(artefact.card)
                margins = {f"margin_{m:g}x": m * default_m for m in args.margins}
                for k, v in compare(a, b, margins).items():
                    totals[name][k] = totals[name].get(k, 0) + v
    rows: dict[str, dict[str, Any]] = {}
    for name, t in totals.items():
        both = t["objects_a"] + t["objects_b"]
        rows[name] = {
            **t,
            "false_change_share": round((t["new"] + t["gone"]) / both, 4) if both else None,
            "one_to_one_share": round(2 * t["one_to_one"] / both, 4) if both else None,
            "predict_seconds": round(seconds[name], 1),
        }
        for label, metres in margins.items():
            n = t[f"{label}:compared"]
            rows[name][f"{label}:metres"] = round(metres, 3)
            rows[name][f"{label}:false_change_share"] = (
                round((t[f"{label}:new"] + t[f"{label}:gone"]) / n, 4) if n else None
            )
    summary = {
        "model": artefact.card.model_id,
        "task": artefact.card.task,
        "scenes": [s.name for s in scenes],
        "shift_px": list(args.shift),
        "window_px": args.window,
        "configs": rows,
    }
    text = json.dumps(summary, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
