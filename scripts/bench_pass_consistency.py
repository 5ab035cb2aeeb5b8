"""False changes from pass to pass: the same ground predicted from two differently cropped scenes.

A new pass of the same ground rarely has the same extent, so the window grid falls
elsewhere. For each scene this script cuts a second "pass" that starts ``--shift`` rows
and columns later (the same pixels, another origin), predicts both, and compares them with
the monitor's own change detection (:func:`geotl.monitor.changes.detect_changes`) inside
the ground both cover. Nothing changed on the ground, so every "new" or "gone" object is
false. Reported per configuration:

* ``false_change_share``: (new + gone) / (objects of both passes taking part), every
  object at least half inside the common ground taking part (no edge margin, no minimum
  area), with a 95 % bootstrap interval over plots (``_ci95``);
* ``one_to_one_share``: objects matched one to one at IoU >= 0.5, as a share of the
  objects of both passes;
* ``monitor:false_change_share``: the same with the monitor's default criteria
  (:meth:`geotl.monitor.changes.ChangeCriteria.for_model`: the band of half the window
  overlap along each pass's edge left out, objects under twice predict's minimum area
  taking no part);
* ``m<m>x_a<a>x:false_change_share``: for each ``--margins`` m and ``--min-areas`` a, the
  band of ``m`` times the default margin left out and objects under ``a`` times predict's
  minimum area taking no part (``--margins 0 0.5 1 2 --min-areas 0 2`` compares them on
  the same predictions).

Configurations: ``scene-grid`` (windows start at the scene corner: geotl before issue 9),
``ground-grid`` (windows anchored to the CRS grid, the default now) and
``ground-grid+tta`` (plus flip test-time averaging).

    .venv/bin/python scripts/bench_pass_consistency.py --model demo-out/model \\
        --scenes '../shared/data/neon-trees/OSBS/images/*.tif' --shift 37 53 --out pass.json

Before the fix of the comparison rule (an object is new or gone only when it matches no
object of the other pass, whether that one takes part or not) the script also cut the
features to the common ground before comparing; it now hands the monitor's comparison the
passes whole, as the monitor does.
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
from geotl.monitor.changes import ChangeCriteria, detect_changes, share_inside  # noqa: E402
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


def compare(a: Any, b: Any, criteria: dict[str, ChangeCriteria]) -> dict[str, int]:
    """Monitor changes and one-to-one matches between two predictions of the same ground.

    For each entry of ``criteria`` (a label -> how the monitor compares), ``<label>:new``,
    ``<label>:gone`` and ``<label>:compared`` (objects of both passes taking part); the
    label ``""`` gives the plain ``new``, ``gone`` and ``compared``.
    """
    row: dict[str, int] = {}
    for label, rule in criteria.items():
        changes = detect_changes(
            b.features,
            a.features,
            b.footprint,
            a.footprint,
            current_scene="b",
            previous_scene="a",
            criteria=rule,
        )
        key = f"{label}:" if label else ""
        row |= {
            f"{key}compared": changes.compared,
            f"{key}new": changes.new,
            f"{key}gone": changes.gone,
        }
    common = shapely.intersection(a.footprint, b.footprint)
    fa, fb = _half_inside(a.features, common), _half_inside(b.features, common)
    ga = list(fa.to_crs(a.native.crs).geometry) if len(fa) else []
    gb = list(fb.to_crs(a.native.crs).geometry) if len(fb) else []
    tp, _, _ = match_objects(gb, ga)
    return row | {"objects_a": len(fa), "objects_b": len(fb), "one_to_one": tp}


def _half_inside(frame: gpd.GeoDataFrame, area: Any) -> gpd.GeoDataFrame:
    return frame[share_inside(frame, area) >= 0.5] if len(frame) else frame


def share_ci95(per_plot: list[dict[str, int]], key: str, resamples: int = 1000) -> list[float]:
    """95 % bootstrap interval of sum(new + gone) / sum(compared) over plots (seed 0)."""
    changed = np.array([p[f"{key}new"] + p[f"{key}gone"] for p in per_plot], dtype=float)
    compared = np.array([p[f"{key}compared"] for p in per_plot], dtype=float)
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(per_plot), size=(resamples, len(per_plot)))
    num, den = changed[idx].sum(axis=1), compared[idx].sum(axis=1)
    shares = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
    return [round(float(q), 4) for q in np.percentile(shares, [2.5, 97.5])]


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
        default=[],
        help="edge margins as multiples of the monitor's default (half the window overlap)",
    )
    ap.add_argument(
        "--min-areas",
        nargs="+",
        type=float,
        default=[2.0],
        help="with --margins: minimum object areas as multiples of predict's minimum area",
    )
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    artefact = load_artefact(args.model)
    scenes = sorted(Path(p) for p in glob.glob(args.scenes))
    if not scenes:
        sys.exit(f"no scene matches {args.scenes}")
    per_plot: dict[str, list[dict[str, int]]] = {c: [] for c in args.configs}
    seconds = dict.fromkeys(args.configs, 0.0)
    labels: dict[str, ChangeCriteria] = {}
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
                monitor = ChangeCriteria.for_model(opts, artefact.card)
                floor = monitor.min_area_m2 / 2  # predict's minimum area
                labels = {"": ChangeCriteria(), "monitor": monitor}
                for m in args.margins:
                    for k in args.min_areas:
                        labels[f"m{m:g}x_a{k:g}x"] = ChangeCriteria(
                            edge_margin_m=m * monitor.edge_margin_m, min_area_m2=k * floor
                        )
                per_plot[name].append(compare(a, b, labels))
    rows: dict[str, dict[str, Any]] = {}
    for name, plots in per_plot.items():
        t = {k: sum(p[k] for p in plots) for k in plots[0]}
        both = t["objects_a"] + t["objects_b"]
        rows[name] = {**t, "predict_seconds": round(seconds[name], 1)}
        rows[name]["one_to_one_share"] = round(2 * t["one_to_one"] / both, 4) if both else None
        for label, rule in labels.items():
            key = f"{label}:" if label else ""
            n = t[f"{key}compared"]
            if label:
                rows[name][f"{key}edge_margin_m"] = round(rule.edge_margin_m, 3)
                rows[name][f"{key}min_area_m2"] = round(rule.min_area_m2, 3)
            rows[name][f"{key}false_change_share"] = (
                round((t[f"{key}new"] + t[f"{key}gone"]) / n, 4) if n else None
            )
            rows[name][f"{key}false_change_share_ci95"] = share_ci95(plots, key) if n else None
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
