"""Simulated labelling loop: ``geotl suggest`` vs random areas of the same size and count.

On a region whose labels are complete (NEON SJER: 35 plots, 0.1 m RGB, every crown boxed),
all labels are hidden except a random seed set of squares; then, for a few rounds:
train -> pick k more squares -> reveal their labels (add them to ``complete_within``) ->
retrain. "suggest" picks with ``geotl suggest`` (uncertainty + diversity), "random" picks
uniformly from the same candidates (same squares, same exclusions). A fixed set of plots
is the test split (``test_within``) in every run; it is never suggested nor revealed.

``--site spacenet`` runs the same loop on SpaceNet 4 Atlanta (one 0.5 m pan tile, every
building outlined; the tile's right third is the test area). ``--steps N`` trains every round
for the same number of steps (with ``--epochs``, more labels also mean more steps, so a
round's score moves with the schedule as well as with the labels); ``--square-px`` sets the
squares' side apart from the chips'.

Each (seed, strategy) run writes one JSON file; ``--report`` gathers them into a table
(mean and 95 % t-interval over seeds, per round), the all-foreground floor, the goal checks
paired by seed (squares needed to reach random's final IoU, IoU at equal labelled objects,
mean difference over the rounds) and a plot.

    # one seed per process (each a few minutes on 2 busy cores), then the report
    for s in 0 1 2; do nice -n 10 python scripts/bench_suggest.py --seed $s --out bench-suggest; done
    python scripts/bench_suggest.py --report --out bench-suggest --plot docs/bench_suggest.png
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio
import shapely
from shapely.geometry import box

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "neon-trees" / "SJER"
SPACENET = ROOT.parent / "shared" / "data" / "spacenet-atlanta"


@dataclass(frozen=True)
class _Site:
    """What differs between the regions the loop runs on."""

    name: str
    files: list[Path]
    footprints: list[Any]  # one per file
    crs: Any
    labels: Path
    classes: str  # the region's classes / [labels] / [imagery] bands TOML lines
    label_keys: str
    bands: str
    resolution_m: float
    min_area_m2: float


def _neon_site(data: Path, n: int | None) -> _Site:
    files, footprints, crs = _plots(data, n)
    return _Site(
        data.name,
        files,
        footprints,
        crs,
        data / f"{data.name}_tree_crowns.gpkg",
        '["tree"]',
        'class_field = "label"\nclass_map = { Tree = "tree" }\nunmapped = "skip"',
        '["red", "green", "blue"]',
        0.1,
        1.0,
    )


def _spacenet_site(data: Path) -> _Site:
    """SpaceNet 4 Atlanta: one 900 px pan tile (0.5 m), every building outlined."""
    tif = data / "sample_geotiff.tif"
    with rasterio.open(tif) as ds:
        crs, bounds = ds.crs, ds.bounds
    return _Site(
        "SpaceNet Atlanta",
        [tif],
        [box(*bounds)],
        crs,
        data / "geotiff_labels.geojson",
        '["building"]',
        "",
        '["pan"]',
        0.5,
        4.0,
    )


def _write_region(work: Path, site: _Site, complete: list[Any], args: argparse.Namespace) -> Path:
    gpd.GeoDataFrame(geometry=complete, crs=site.crs).to_file(work / "complete.gpkg")
    if args.steps:  # a fixed number of steps: a round changes only the labels
        schedule = f"steps = {args.steps}\nval_every = {max(1, args.steps // 4)}\npatience = 100"
    else:  # passes over the labelled chips: more labels, more steps
        schedule = f"epochs = {args.epochs}\npatience = {args.epochs}"
    text = f"""name = "bench-suggest"
task = "{args.task}"
classes = {site.classes}

[imagery]
paths = {json.dumps([str(p) for p in site.files])}
bands = {site.bands}

[labels]
path = "{site.labels}"
{site.label_keys}
complete_within = "complete.gpkg"

[chips]
size_px = {args.chip_px}
stride_px = {args.chip_px}

[split]
block_size_m = 40.0
val_fraction = 0.0
test_fraction = 0.0
test_within = "test.gpkg"

[model]
base = "pkg:efficientnet-lite0"
freeze = "partial"
{schedule}
batch_size = 8

[predict]
min_area_m2 = {site.min_area_m2}
"""
    path = work / "region.toml"
    path.write_text(text)
    return path


def _plots(data: Path, n: int | None) -> tuple[list[Path], list[Any], Any]:
    """A fixed subset of ``n`` plots (all when None): files, footprints, CRS."""
    files = sorted((data / "images").glob("*.tif"))
    if n is not None and n < len(files):
        files = [files[i] for i in sorted(np.random.default_rng(54321).permutation(len(files))[:n])]
    footprints, crs = [], None
    for p in files:
        with rasterio.open(p) as ds:
            footprints.append(box(*ds.bounds))
            crs = ds.crs
    return files, footprints, crs


def _site_and_test(args: argparse.Namespace) -> tuple[_Site, list[Any]]:
    """The site and its test areas (the same in every run: the split never moves)."""
    if args.site == "spacenet":
        site = _spacenet_site(Path(args.data or SPACENET))
        # the tile's right third (11 of 43 buildings)
        x0, y0, x1, y1 = site.footprints[0].bounds
        return site, [box(x1 - (x1 - x0) / 3, y0, x1, y1)]
    site = _neon_site(Path(args.data or DATA), args.plots)
    order = np.random.default_rng(12345).permutation(len(site.footprints))
    return site, [site.footprints[i] for i in sorted(order[: args.test_plots])]


def _floor(args: dict[str, str]) -> float:
    """Test IoU of a model that calls every pixel foreground: label area / test area."""
    ns = argparse.Namespace(
        site=args.get("site", "neon"),
        data=None if args.get("data") in (None, "None") else args["data"],
        plots=None if args.get("plots") in (None, "None") else int(args["plots"]),
        test_plots=int(args.get("test_plots", 8)),
    )
    site, test = _site_and_test(ns)
    area = shapely.union_all(test)
    labels = gpd.read_file(site.labels).to_crs(site.crs).union_all()
    return float(area.intersection(labels).area / area.area)


class _Loop:
    """The state of one seed's simulation: data, test plots, work folder."""

    def __init__(self, seed: int, args: argparse.Namespace) -> None:
        self.seed, self.args = seed, args
        self.site, self.test = _site_and_test(args)
        self.crs = self.site.crs
        self.cls = json.loads(self.site.classes)[0]
        self.square_px = args.square_px or args.chip_px
        self.size_m = self.square_px * self.site.resolution_m
        self.labels = gpd.read_file(self.site.labels).to_crs(self.crs)
        self.work = Path(args.out) / f"work-{seed}"
        shutil.rmtree(self.work, ignore_errors=True)
        self.work.mkdir(parents=True)
        gpd.GeoDataFrame(geometry=self.test, crs=self.crs).to_file(self.work / "test.gpkg")

    def region(self, revealed: list[Any], tag: str) -> Any:
        from geotl.config import load_region

        folder = self.work / tag
        folder.mkdir(exist_ok=True)
        shutil.copy(self.work / "test.gpkg", folder / "test.gpkg")
        return load_region(_write_region(folder, self.site, self.test + revealed, self.args))

    def candidates(self, region: Any, chips: Path) -> list[Any]:
        from geotl.io.rasters import read_scene_info
        from geotl.suggest.candidates import read_taken_areas, scene_candidates

        scenes = [read_scene_info(p) for p in region.scene_paths()]
        taken = read_taken_areas(region, scenes, chips, chips)
        return [
            c.geometry
            for s in scenes
            for c in scene_candidates(
                s, self.square_px, taken.test[s.path], taken.complete[s.path]
            )[0]
        ]

    def train_eval(self, revealed: list[Any], tag: str) -> tuple[dict[str, Any], Any, Path, Path]:
        from geotl.chips import chip_region
        from geotl.evaluate import evaluate_model
        from geotl.train import TrainOptions, train_model

        region = self.region(revealed, tag)
        cdir = self.work / tag / "chips"
        chip_region(region, cdir, overwrite=True)
        model = self.work / tag / "model"
        train_model(
            [region],
            model,
            TrainOptions(
                chips=(cdir,),
                seed=self.seed,
                overwrite=True,
                steps=self.args.steps,
                epochs=None if self.args.steps else self.args.epochs,
            ),
        )
        metrics = evaluate_model(model, region, chips_dir=cdir, n_boot=500)
        union = gpd.GeoSeries(revealed, crs=self.crs).union_all()
        if self.args.task == "detection":  # the score is AP50; F1 at IoU 0.5
            boxes = metrics["detection"]
            score, score_ci, objects = boxes["ap50"], boxes["ap50_ci95"], boxes["iou_0.5"]
        else:  # the score is the class's pixel IoU
            tree = metrics["pixel"]["per_class"][self.cls]
            score, score_ci, objects = tree["iou"], tree["iou_ci95"], metrics["objects"][self.cls]
        row = {
            "areas": len(revealed),
            "labelled_m2": round(len(revealed) * self.size_m**2, 1),
            "objects": int(self.labels.geometry.intersects(union).sum()),
            "score": score,
            "score_ci95": score_ci,
            "f1": objects["f1"],
            "f1_ci95": objects["f1_ci95"],
            "test_chips": metrics["chips"],
        }
        return row, region, cdir, model

    def pick(
        self, strategy: str, region: Any, cdir: Path, model: Path, r: int
    ) -> tuple[list[Any], dict[str, Any]]:
        from geotl.suggest import SuggestOptions, suggest_areas

        k = self.args.k
        if strategy == "suggest":
            summary = suggest_areas(
                region,
                model,
                self.work / f"suggest-{r}.gpkg",
                SuggestOptions(
                    n=k, size_m=self.size_m, chips_dir=cdir, overwrite=True, progress=False
                ),
            )
            extra = {"picked_expected_objects": int(summary.areas["expected_objects"].sum())}
            return list(summary.areas.to_crs(self.crs).geometry), extra
        cands = self.candidates(region, cdir)
        pick = np.random.default_rng(self.seed * 1000 + r).permutation(len(cands))[:k]
        return [cands[i] for i in sorted(pick)], {}


def run_seed(seed: int, args: argparse.Namespace) -> list[dict[str, Any]]:
    """One seed: the shared seed round, then each strategy's rounds."""
    import torch

    torch.set_num_threads(args.threads)
    log = logging.getLogger("bench")
    loop = _Loop(seed, args)
    t0 = time.perf_counter()
    region = loop.region([], "empty")
    cdir = loop.work / "empty" / "chips"
    from geotl.chips import chip_region

    chip_region(region, cdir, overwrite=True)
    cands = loop.candidates(region, cdir)
    seed_set = [
        cands[i]
        for i in sorted(np.random.default_rng(seed).permutation(len(cands))[: args.seed_areas])
    ]
    row0, region0, cdir0, model0 = loop.train_eval(seed_set, "r0")
    row0.update(round=0, seconds=round(time.perf_counter() - t0, 1), candidates=len(cands))
    log.info("seed %d round 0: %s", seed, row0)
    results = []
    for strategy in args.strategies:
        rounds = [dict(row0)]
        revealed, region, cdir, model = seed_set, region0, cdir0, model0
        for r in range(1, args.rounds + 1):
            t0 = time.perf_counter()
            new, extra = loop.pick(strategy, region, cdir, model, r - 1)
            rounds[-1].update(extra)
            revealed = revealed + new
            row, region, cdir, model = loop.train_eval(revealed, f"{strategy}-r{r}")
            row.update(round=r, seconds=round(time.perf_counter() - t0, 1))
            rounds.append(row)
            log.info("seed %d %s round %d: %s", seed, strategy, r, row)
        results.append(
            {
                "seed": seed,
                "strategy": strategy,
                "rounds": rounds,
                "site": loop.site.name,
                "args": {k: str(v) for k, v in vars(args).items()},
            }
        )
    shutil.rmtree(loop.work, ignore_errors=True)
    return results


def _tci(values: np.ndarray) -> tuple[float, float, float]:
    """Mean and 95 % t-interval over seeds."""
    from scipy import stats

    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) < 2:
        m = float(v.mean()) if len(v) else math.nan
        return m, math.nan, math.nan
    half = stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v))
    return float(v.mean()), float(v.mean() - half), float(v.mean() + half)


def report(out: Path, plot: Path | None) -> str:
    """Markdown table (per round and strategy) + paired differences; optional plot."""
    rows = []
    for f in sorted(out.glob("result-*.json")):
        res = json.loads(f.read_text())
        for r in res["rounds"]:
            rows.append(
                {
                    "seed": res["seed"],
                    "strategy": res["strategy"],
                    "site": res.get("site", "NEON SJER"),
                    **r,
                }
            )
    frame = pd.DataFrame(rows)
    if "score" not in frame:  # results written before --task: the score was the pixel IoU
        frame["score"] = frame["iou"]
    first = json.loads(next(iter(sorted(out.glob("result-*.json")))).read_text())
    frame.attrs["task"] = first["args"].get("task", "segmentation")
    detection = frame.attrs["task"] == "detection"
    frame.attrs["score_name"] = name = "AP50" if detection else "IoU"
    lines = [
        f"| round | areas | strategy | seeds | labelled objects | test {name} (95 % CI over seeds) "
        "| object F1 (95 % CI) |",
        "|---|---|---|---|---|---|---|",
    ]
    summary: dict[tuple[str, int], dict[str, float]] = {}
    for (r, strat), g in frame.groupby(["round", "strategy"]):
        iou = _tci(g["score"].to_numpy())
        f1 = _tci(g["f1"].astype(float).to_numpy())
        obj = g["objects"].mean()
        summary[(str(strat), int(r))] = {"score": iou[0], "f1": f1[0], "objects": obj}
        lines.append(
            f"| {r} | {int(g['areas'].iloc[0])} | {strat} | {len(g)} | {obj:.1f} "
            f"| {iou[0]:.3f} [{iou[1]:.3f}, {iou[2]:.3f}] | {f1[0]:.3f} [{f1[1]:.3f}, {f1[2]:.3f}] |"
        )
    lines += [
        "",
        f"| round | {name} suggest - random (95 % CI, paired by seed) | F1 suggest - random |",
        "|---|---|---|",
    ]
    for r, g in frame.groupby("round"):
        piv = g.pivot(index="seed", columns="strategy", values=["score", "f1"]).dropna()
        if "suggest" not in piv["score"] or "random" not in piv["score"]:
            continue
        d_iou = _tci((piv["score"]["suggest"] - piv["score"]["random"]).to_numpy())
        d_f1 = _tci((piv["f1"]["suggest"] - piv["f1"]["random"]).astype(float).to_numpy())
        lines.append(
            f"| {r} | {d_iou[0]:+.3f} [{d_iou[1]:+.3f}, {d_iou[2]:+.3f}] "
            f"| {d_f1[0]:+.3f} [{d_f1[1]:+.3f}, {d_f1[2]:+.3f}] |"
        )
    floor = math.nan if detection else _floor(first["args"])
    steps = frame.sort_values("round").groupby(["seed", "strategy"])["score"].diff().abs().dropna()
    lines += [
        "",
        f"Round-to-round noise: median |{name} change| between consecutive rounds of one seed and "
        f"strategy {steps.median():.3f} (max {steps.max():.3f}).",
        "",
        f"All-foreground floor (a model that calls every test pixel foreground): {name} {floor:.3f}."
        if not detection
        else "(No all-foreground floor for boxes.)",
        "",
        _goal(summary, frame),
        "",
        *_per_seed(frame),
    ]
    if plot is not None:
        _plot(frame, plot, floor)
    return "\n".join(lines)


def _interp_reach(xs: np.ndarray, ys: np.ndarray, target: float) -> float:
    """First x (linear between rounds) where ``ys`` reaches ``target``; nan if never."""
    for i in range(len(xs)):
        if ys[i] >= target:
            if i == 0:
                return float(xs[0])
            return float(
                xs[i - 1] + (target - ys[i - 1]) / (ys[i] - ys[i - 1]) * (xs[i] - xs[i - 1])
            )
    return math.nan


def _pct(share: float) -> str:
    return f"{share:.0%}" if np.isfinite(share) else "never"


def _per_seed(frame: pd.DataFrame) -> list[str]:
    """The goal per seed, paired: labels needed, and IoU at equal labelled objects.

    - share: the squares suggest needs to reach random's final IoU of the same seed, over
      the final squares (linear between rounds; > 100 % when it never does);
    - equal objects: suggest's IoU interpolated at random's final object count (when that
      count lies within suggest's rounds) minus random's final IoU;
    - mean over rounds 1..R of suggest - random (the area between the learning curves).
    """
    name = str(frame.attrs.get("score_name", "IoU"))
    rows: list[dict[str, Any]] = []
    for seed, g in frame.groupby("seed"):
        by = {k: v.sort_values("round") for k, v in g.groupby("strategy")}
        if set(by) != {"suggest", "random"} or len(by["suggest"]) != len(by["random"]):
            continue
        sug, ran = by["suggest"], by["random"]
        target = float(ran["score"].iloc[-1])
        reach = _interp_reach(sug["areas"].to_numpy(float), sug["score"].to_numpy(float), target)
        if target <= float(sug["score"].iloc[0]):  # random ends below the shared start: no test
            reach = -math.inf
        o_r = float(ran["objects"].iloc[-1])
        xo = sug["objects"].to_numpy(float)
        if xo.min() <= o_r <= xo.max() and np.all(np.diff(xo) > 0):
            at_obj = float(np.interp(o_r, xo, sug["score"].to_numpy(float))) - target
        else:
            at_obj = math.nan
        later = sug["round"] > 0
        rows.append(
            {
                "seed": seed,
                "share": reach / float(sug["areas"].iloc[-1]),
                "final": float(sug["score"].iloc[-1]) - target,
                "final_f1": float(sug["f1"].iloc[-1]) - float(ran["f1"].iloc[-1]),
                "equal_objects": at_obj,
                "alc": float(
                    (sug["score"].to_numpy()[later] - ran["score"].to_numpy()[later]).mean()
                ),
                "objects": f"{int(sug['objects'].iloc[-1])} / {int(o_r)}",
            }
        )
    if not rows:
        return []
    t = pd.DataFrame(rows)
    lines = [
        f"| seed | squares to reach random's final {name} | final {name} s - r | final F1 s - r "
        f"| {name} s - r at random's final objects | mean {name} s - r, rounds 1.. | final objects s / r |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        share = (
            f"{r['share']:.0%}"
            if np.isfinite(r["share"])
            else ("n/a (random ends below round 0)" if np.isneginf(r["share"]) else "never")
        )
        eq = f"{r['equal_objects']:+.3f}" if np.isfinite(r["equal_objects"]) else "n/a"
        lines.append(
            f"| {r['seed']} | {share} | {r['final']:+.3f} | {r['final_f1']:+.3f} | {eq} "
            f"| {r['alc']:+.3f} | {r['objects']} |"
        )
    below = int(np.isneginf(t["share"]).sum())
    reached = t["share"][~np.isneginf(t["share"])].fillna(np.inf)
    summary = []
    for key, label in (
        ("final", f"final {name} suggest - random"),
        ("final_f1", "final object F1 suggest - random"),
        ("equal_objects", f"{name} suggest - random at equal labelled objects"),
        ("alc", f"mean {name} suggest - random over rounds 1..R"),
    ):
        m, lo, hi = _tci(t[key].to_numpy(float))
        n = int(np.isfinite(t[key].to_numpy(float)).sum())
        summary.append(f"- {label}: {m:+.3f} [{lo:+.3f}, {hi:+.3f}] ({n} seeds)")
    summary.append(
        f"- suggest reaches random's final {name} with <= 60 % of the squares in "
        f"{int((reached <= 0.6).sum())} of {len(reached)} seeds (median share "
        f"{_pct(float(np.median(reached))) if len(reached) else 'n/a'}; never within the "
        f"rounds: {int(np.isinf(reached).sum())}); not testable in {below} seed(s) where "
        f"random's final {name} is below the shared round 0"
    )
    return [*lines, "", "Paired by seed (mean, 95 % t-interval over seeds):", "", *summary]


def _goal(summary: dict[tuple[str, int], dict[str, float]], frame: pd.DataFrame) -> str:
    """The issue's goal: random's final IoU with <= 60 % of the squares, or +0.05 IoU."""
    name = str(frame.attrs.get("score_name", "IoU"))
    both = frame.groupby("round")["strategy"].nunique()
    last = int(both[both == 2].index.max())  # the last round both strategies finished
    areas = frame.groupby("round")["areas"].first()
    target = summary[("random", last)]["score"]
    xs = [float(areas[r]) for r in range(last + 1)]
    ys = [summary[("suggest", r)]["score"] for r in range(last + 1)]
    reach = None
    for i in range(len(xs)):
        if ys[i] >= target:
            if i == 0:
                reach = xs[0]
            else:  # linear interpolation between rounds
                reach = xs[i - 1] + (target - ys[i - 1]) / (ys[i] - ys[i - 1]) * (xs[i] - xs[i - 1])
            break
    gain = summary[("suggest", last)]["score"] - target
    share = (
        f"at {reach / xs[-1]:.0%} of the squares"
        if reach is not None
        else "not within the rounds run"
    )
    if target <= ys[0]:  # reached "at the start": the shared seed round is already above it
        share = f"no test (random ends at or below the shared round 0, {ys[0]:.3f})"
    return (
        f"Goal check (mean over seeds): suggest reaches random's final {name} ({target:.3f}): "
        f"{share}; at the final equal budget suggest - random = {gain:+.3f} {name}. "
        f"Goal: <= 60 % of the squares, or >= +0.05 {name}."
    )


def _plot(frame: pd.DataFrame, path: Path, floor: float) -> None:
    name = str(frame.attrs.get("score_name", "IoU"))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    for strat, colour in (("suggest", "tab:red"), ("random", "tab:blue")):
        sub = frame[frame["strategy"] == strat]
        if not len(sub):
            continue
        for ax, metric, x in (
            (axes[0], "score", "areas"),
            (axes[1], "f1", "areas"),
            (axes[2], "score", "objects"),
        ):
            for _, one in sub.groupby("seed"):  # each seed, thin: the noise to see
                one = one.sort_values("round")
                ax.plot(one[x], one[metric].astype(float), "-", color=colour, lw=0.6, alpha=0.3)
            g = sub.groupby("round")
            xs = g[x].mean().to_numpy()
            stats = np.array([_tci(v[metric].astype(float).to_numpy()) for _, v in g])
            ax.plot(xs, stats[:, 0], "o-", color=colour, label=strat)
            ax.fill_between(
                xs, np.clip(stats[:, 1], 0, 1), np.clip(stats[:, 2], 0, 1), color=colour, alpha=0.15
            )
            if metric == "score" and strat == "random" and np.isfinite(floor):
                ax.axhline(floor, color="grey", ls="--", lw=0.8, label="all-foreground floor")
            ax.set_ylim(0, 1)
            ax.set_xlabel("labelled squares" if x == "areas" else "labelled objects")
            ax.set_ylabel(f"test {name} (the class)" if metric == "score" else "test object F1")
    axes[0].legend()
    site = frame["site"].iloc[0] if "site" in frame else "NEON SJER"
    fig.suptitle(
        f"geotl suggest vs random areas ({site}, task {frame.attrs.get('task', 'segmentation')}; "
        f"{frame['seed'].nunique()} seeds, "
        "mean, 95 % CI over seeds, thin: each seed)",
        fontsize=9,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--site", choices=["neon", "spacenet"], default="neon")
    parser.add_argument("--data", help="the site's folder (default: SJER, or SpaceNet Atlanta)")
    parser.add_argument("--out", default="bench-suggest")
    parser.add_argument("--seed", type=int, nargs="*", default=[0])
    parser.add_argument("--strategies", nargs="*", default=["suggest", "random"])
    parser.add_argument("--rounds", type=int, default=3, help="rounds after the seed set")
    parser.add_argument("--k", type=int, default=5, help="areas added per round")
    parser.add_argument("--seed-areas", type=int, default=5)
    parser.add_argument("--plots", type=int, help="a fixed subset of the plots (default: all)")
    parser.add_argument("--test-plots", type=int, default=8)
    parser.add_argument("--chip-px", type=int, default=128)
    parser.add_argument(
        "--square-px", type=int, help="side of the candidate squares (default: --chip-px)"
    )
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument(
        "--steps", type=int, help="train each round for this many steps (instead of --epochs)"
    )
    parser.add_argument(
        "--task",
        choices=["segmentation", "instances", "detection"],
        default="segmentation",
        help="the region's task (score: pixel IoU; detection: AP50)",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--report", action="store_true")
    parser.add_argument("--plot", type=Path)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for noisy in (
        "geotl",
        "lightning.pytorch.utilities.rank_zero",
        "lightning.fabric.utilities.rank_zero",
        "lightning.pytorch.accelerators.cuda",
    ):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.report:
        print(report(out, args.plot))
        return
    for seed in args.seed:
        for res in run_seed(seed, args):
            name = f"result-{res['strategy']}-{seed}.json"
            (out / name).write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
