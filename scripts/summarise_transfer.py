"""Summarise ``bench_transfer.py`` runs over seeds: geotl's recipe against the plain script.

Reads every ``result.json`` under the given work folders (one per run, as
``runs/<region>/<recipe>/<base>/<budget>-s<seed>/``) and prints one markdown row per region,
base and budget: the mean over seeds of pixel IoU and object F1 for each recipe, and the
paired difference new - plain with a 95 % t interval over seeds (same seed, same chips).

    .venv/bin/python scripts/summarise_transfer.py /tmp/grid8/spacenet /tmp/grid8/s2
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from collections import defaultdict
from pathlib import Path

from scipy import stats

RUN = re.compile(
    r"runs/(?P<region>[^/]+)/(?P<recipe>[^/]+)/(?P<base>[^/]+)/(?P<budget>\d+)-s(?P<seed>\d+)/result\.json$"
)


def _mean_ci(values: list[float]) -> str:
    m = statistics.fmean(values)
    if len(values) < 2:
        return f"{m:+.3f}"
    half = stats.t.ppf(0.975, len(values) - 1) * statistics.stdev(values) / len(values) ** 0.5
    return f"{m:+.3f} [{m - half:+.3f}, {m + half:+.3f}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("work", nargs="+", type=Path)
    args = ap.parse_args()
    runs: dict[tuple[str, str, int], dict[str, dict[int, dict]]] = defaultdict(
        lambda: defaultdict(dict)
    )
    for work in args.work:
        for path in sorted(work.rglob("result.json")):
            m = RUN.search(path.as_posix())
            if m is None:
                continue
            key = (m["region"], m["base"], int(m["budget"]))
            runs[key][m["recipe"]][int(m["seed"])] = json.loads(path.read_text())
    print(
        "| region | base | budget (labels used) | seeds | pixel IoU new / plain | Δ IoU new - plain [95 % CI] "
        "| object F1 new / plain | Δ object F1 [95 % CI] | train s new / plain |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for (region, base, budget), by_recipe in sorted(runs.items()):
        new, plain = by_recipe.get("new", {}), by_recipe.get("plain", {})
        seeds = sorted(set(new) & set(plain))
        if not seeds:
            continue
        iou_n = [new[s]["pixel_iou"] for s in seeds]
        iou_p = [plain[s]["pixel_iou"] for s in seeds]
        f1_n = [new[s]["object_f1"] for s in seeds]
        f1_p = [plain[s]["object_f1"] for s in seeds]
        t_n = statistics.fmean(new[s]["train_seconds"] for s in seeds)
        t_p = statistics.fmean(plain[s]["train_seconds"] for s in seeds)
        used = new[seeds[0]]["labels_used"]
        print(
            f"| {region} | {base} | {budget} ({used}) | {len(seeds)} "
            f"| {statistics.fmean(iou_n):.3f} / {statistics.fmean(iou_p):.3f} "
            f"| {_mean_ci([a - b for a, b in zip(iou_n, iou_p, strict=True)])} "
            f"| {statistics.fmean(f1_n):.3f} / {statistics.fmean(f1_p):.3f} "
            f"| {_mean_ci([a - b for a, b in zip(f1_n, f1_p, strict=True)])} "
            f"| {t_n:.0f} / {t_p:.0f} |"
        )


if __name__ == "__main__":
    main()
