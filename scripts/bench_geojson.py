"""Benchmark the GeoJSON writer (``geotl.io.geojson.write_geojson``) against another tree's.

A frame of real predicted polygons (any GeoJSON ``geotl predict`` wrote, e.g. the demo's
``demo-out/detections.geojson`` or a bigger scene's) is written as it is and repeated
``--copies`` times side by side, by this tree's writer and by ``--before``'s, the two
taking turns; best of ``--repeats``. The files must be byte-identical.

    mkdir -p /tmp/geotl-before && git archive COMMIT geotl | tar -x -C /tmp/geotl-before
    PYTHONPATH=. .venv/bin/python scripts/bench_geojson.py demo-out/detections.geojson \\
        --copies 63 --before /tmp/geotl-before
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

import geopandas as gpd
import pandas as pd
import shapely

REPO = Path(__file__).resolve().parents[1]


def writer(tree: Path) -> ModuleType:
    """``geotl/io/geojson.py`` of ``tree``, loaded on its own (its imports from this tree)."""
    spec = importlib.util.spec_from_file_location(
        f"geojson_{abs(hash(tree))}", tree / "geotl/io/geojson.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("geojson", type=Path, help="polygons geotl predict wrote")
    ap.add_argument("--copies", type=int, default=63, help="the frame repeated, shifted")
    ap.add_argument("--before", type=Path, required=True, help="a geotl tree to compare with")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    small = gpd.read_file(args.geojson)
    shifted = [
        small.assign(
            geometry=shapely.transform(small.geometry.to_numpy(), lambda xy, k=k: xy + 1e-3 * k)
        )
        for k in range(args.copies)
    ]
    big = gpd.GeoDataFrame(pd.concat(shifted, ignore_index=True), crs=small.crs)
    trees = {"after": writer(REPO), "before": writer(args.before)}
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, frame in (("as written", small), (f"x{args.copies}", big)):
            best = {name: float("inf") for name in trees}
            for _ in range(args.repeats):
                for name, module in trees.items():
                    t0 = time.perf_counter()
                    module.write_geojson(Path(tmp) / f"{name}.geojson", frame)
                    best[name] = min(best[name], time.perf_counter() - t0)
            same = (Path(tmp) / "after.geojson").read_bytes() == (
                Path(tmp) / "before.geojson"
            ).read_bytes()
            results[label] = {
                "features": len(frame),
                "before_s": round(best["before"], 3),
                "after_s": round(best["after"], 3),
                "speed_up": round(best["before"] / best["after"], 2),
                "same_bytes": same,
            }
            print(json.dumps({label: results[label]}), file=sys.stderr)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
