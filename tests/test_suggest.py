"""``geotl suggest``: candidates, ranking, outputs and bad input, on the demo plot."""

from __future__ import annotations

import sys
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from click.testing import CliRunner
from rasterio.windows import Window
from shapely.geometry import box

from geotl.chips import read_chip_index
from geotl.cli.main import cli
from geotl.io.rasters import window_bounds
from geotl.suggest.ranking import box_uncertainty, entropy, pick_diverse, standardise

sys.path.insert(0, str(Path(__file__).resolve().parent))
from predict import data

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "regions" / "demo-osbs"
SCENE = DEMO / "imagery" / "OSBS_029.tif"


@pytest.fixture(scope="module")
def demo_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny untrained network for the demo plot's classes and bands (no training: fast).

    Its head weights are random, so its probabilities (and uncertainty) vary with the pixels.
    """
    import torch

    from geotl.models.artefact import write_artefact
    from geotl.models.network import build_network

    card = data.card()
    torch.manual_seed(0)
    net = build_network(card.network)
    with torch.no_grad():
        net.segmentation_head[0].bias.copy_(torch.tensor([0.0, -0.5]))  # type: ignore[index]
    out = tmp_path_factory.mktemp("model")
    write_artefact(out, net, card)
    return out


def _region(
    tmp: Path, complete: str | None = "left", classes: str = '["tree"]', bands: str | None = None
) -> Path:
    """A copy of the demo region file in ``tmp`` with labels complete in the left half."""
    text = (REPO / "regions" / "demo-osbs.toml").read_text()
    text = text.replace('"demo-osbs/', f'"{DEMO}/').replace(
        'classes = ["tree"]', f"classes = {classes}"
    )
    if bands is not None:
        text = text.replace('bands = ["red", "green", "blue"]', f"bands = {bands}")
    if complete is not None:
        with rasterio.open(SCENE) as ds:
            b, crs = ds.bounds, ds.crs
        area = box(b.left, b.bottom, (b.left + b.right) / 2, b.top)
        gpd.GeoDataFrame(geometry=[area], crs=crs).to_file(tmp / "done.gpkg")
        text = text.replace(
            'class_map = { Tree = "tree" }',
            'class_map = { Tree = "tree" }\ncomplete_within = "done.gpkg"',
        )
    path = tmp / "region.toml"
    path.write_text(text)
    return path


def _run(*args: str) -> tuple[int, str, str]:
    res = CliRunner().invoke(cli, ["-q", *args])
    return res.exit_code, res.stdout, res.stderr


def _suggest(region: Path, model: Path, out: Path, *extra: str) -> tuple[int, str, str]:
    return _run("suggest", str(region), "--model", str(model), "-o", str(out), *extra)


def _test_chips(chips: Path) -> list[shapely.Geometry]:
    frame = read_chip_index(chips).split("test")
    with rasterio.open(SCENE) as ds:
        t = ds.transform
    return [
        box(*window_bounds(t, Window(int(r.col_off), int(r.row_off), int(r.width), int(r.height))))
        for r in frame.itertuples()
    ]


# ------------------------------------------------------------------------------ ranking


def test_entropy_is_normalised_per_pixel() -> None:
    p = np.array([[[1.0, 0.5]], [[0.0, 0.5]]])  # (classes, 1, 2)
    assert entropy(p) == pytest.approx(np.array([[0.0, 1.0]]), abs=1e-6)
    three = np.full((3, 1, 1), 1 / 3)
    assert entropy(three)[0, 0] == pytest.approx(1.0)


def test_pick_spreads_over_clusters_unlike_pure_uncertainty() -> None:
    # cluster A (5 candidates) is a bit more uncertain than cluster B (5 candidates)
    rng = np.random.default_rng(0)
    feats = np.concatenate([rng.normal(0, 0.05, (5, 2)), rng.normal(5, 0.05, (5, 2))])
    scores = np.array([0.9, 0.89, 0.88, 0.87, 0.86, 0.8, 0.79, 0.78, 0.77, 0.76])
    picked = pick_diverse(scores, standardise(feats), 4)
    assert picked[0] == 0  # the most uncertain first
    assert {i >= 5 for i in picked} == {True, False}  # both clusters
    assert len(set(picked)) == 4
    assert sorted(np.argsort(-scores)[:4]) == [0, 1, 2, 3]  # uncertainty alone: one cluster


def test_pick_never_returns_more_than_candidates() -> None:
    assert pick_diverse([0.3, 0.2], [[0.0], [1.0]], 5) == [0, 1]
    assert pick_diverse([], np.zeros((0, 2)), 3) == []


def test_box_uncertainty_is_centred_on_the_threshold() -> None:
    for t in (0.05, 0.3, 0.7):
        u = box_uncertainty([t, t / 2, (1 + t) / 2, 0.999], t)
        assert u[0] == pytest.approx(1.0)  # a box scored at the threshold: a coin toss
        assert 0 < u[3] < u[2] < 1 and 0 < u[1] < 1  # further from t: surer
    # the same log-odds step either side of the threshold: the same uncertainty
    t, step = 0.3, 1.5
    lo, hi = (1 / (1 + np.exp(-(np.log(t / (1 - t)) + d))) for d in (-step, step))
    assert box_uncertainty([lo], t)[0] == pytest.approx(box_uncertainty([hi], t)[0])


def test_the_best_box_over_a_pixel_decides_its_uncertainty() -> None:
    """Clutter under a confident box adds nothing; an unsure box counts by its area."""
    from geotl.io.rasters import read_scene_info
    from geotl.suggest.candidates import Candidate
    from geotl.suggest.core import _box_uncertainty

    info = read_scene_info(SCENE)
    win = Window(0, 0, 40, 40)
    x0, y0, x1, y1 = window_bounds(info.transform, win)  # 4 m x 4 m
    xm = (x0 + x1) / 2
    cand = Candidate(info, win, box(x0, y0, x1, y1))
    t = 0.4
    left = box(x0, y0, xm, y1)  # unsure: scored at the threshold
    right = box(xm, y0, x1, y1)  # sure, with 30 low-score boxes under it
    rng = np.random.default_rng(0)
    clutter = [
        box(x, y, x + 0.5, y + 0.5)
        for x, y in zip(rng.uniform(xm, x1 - 0.5, 30), rng.uniform(y0, y1 - 0.5, 30), strict=True)
    ]
    boxes = gpd.GeoDataFrame(
        {"score": [t, 0.99] + [0.06] * 30, "class": ["tree"] * 32},
        geometry=[left, right, *clutter],
        crs=info.crs,
    )
    valid = np.ones((40, 40), bool)
    u, fractions, why = _box_uncertainty(cand, valid, boxes, t, ["tree"])
    assert why == "tree or not?"
    expect = (1.0 + box_uncertainty([0.99], t)[0]) / 2
    assert u.mean() == pytest.approx(expect, abs=1e-3)
    assert fractions.mean() == pytest.approx(1.0)  # every pixel under a kept box
    # only the clutter: it counts by the area it covers, far below one unsure box's half
    u2, f2, _ = _box_uncertainty(cand, valid, boxes.iloc[2:], t, ["tree"])
    assert 0 < u2.mean() < 0.5 * box_uncertainty([0.06], t)[0] and f2.sum() == 0
    # nodata pixels are left out
    valid[:, 20:] = False
    u3, _, _ = _box_uncertainty(cand, valid, boxes, t, ["tree"])
    assert u3.size == 800 and u3.mean() == pytest.approx(1.0, abs=1e-3)


# ----------------------------------------------------------------------------- command


def test_suggest_writes_areas_outside_complete_and_test(
    tmp_path: Path, demo_model: Path, demo_chips: Path
) -> None:
    region = _region(tmp_path)
    out = tmp_path / "next.gpkg"
    append = tmp_path / "done.gpkg"  # the region's own complete_within file
    done = gpd.read_file(append).union_all()
    code, stdout, stderr = _suggest(
        region, demo_model, out, "-n", "4", "--size-m", "6.4", "--chips", str(demo_chips),
        "--append-to", str(append),
    )  # fmt: skip
    assert code == 0, stderr
    assert stdout.split() == [
        str(out),
        str(out.with_suffix(".qml")),
        str(out.with_suffix(".png")),
        str(append),
    ]
    areas = gpd.read_file(out, layer="areas")
    assert areas.crs.to_epsg() == 32617
    assert list(areas["rank"]) == [1, 2, 3, 4]
    assert {"rank", "score", "why", "scene", "expected_objects", "size_m"} <= set(areas.columns)
    assert (areas["scene"] == "OSBS_029.tif").all()
    assert areas["score"].between(0, 1).all() and areas["score"].iloc[0] == areas["score"].max()
    assert (areas["expected_objects"] >= 0).all()
    assert np.allclose(areas.area, 6.4 * 6.4)
    # no overlap with the labelled half, nor with any test chip, nor with each other
    for g in areas.geometry:
        assert g.intersection(done).area <= 0.1 * g.area
        assert all(g.intersection(t).area < 1e-6 for t in _test_chips(demo_chips))
    assert shapely.union_all(areas.geometry.values).area == pytest.approx(4 * 6.4 * 6.4)
    # QGIS style stored in the GeoPackage and beside it; contact sheet is a PNG
    assert 'fieldName="rank"' in out.with_suffix(".qml").read_text()
    import sqlite3

    with sqlite3.connect(out) as db:
        (qml,) = db.execute(
            "SELECT styleQML FROM layer_styles WHERE f_table_name='areas'"
        ).fetchone()
    assert 'fieldName="rank"' in qml
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # --append-to the region's own complete_within file: a second run skips the squares
    done_now = gpd.read_file(append)
    assert len(done_now) == 5  # the original area + the 4 squares
    fresh = tmp_path / "fresh.gpkg"
    code, _, stderr = _suggest(
        region, demo_model, tmp_path / "b.gpkg", "-n", "2", "--size-m", "6.4",
        "--chips", str(demo_chips), "--append-to", str(fresh),
    )  # fmt: skip
    assert code == 0, stderr
    again = gpd.read_file(tmp_path / "b.gpkg", layer="areas")
    assert all(g.intersection(areas.union_all()).area < 1e-6 for g in again.geometry)
    assert len(gpd.read_file(fresh)) == 2  # created when missing


# --------------------------------------------------------------------------- bad input


def test_existing_output_needs_overwrite(
    tmp_path: Path, demo_model: Path, demo_chips: Path
) -> None:
    region = _region(tmp_path)
    out = tmp_path / "a.gpkg"
    out.write_bytes(b"keep")
    args = ["-n", "1", "--size-m", "6.4", "--chips", str(demo_chips)]
    code, _, stderr = _suggest(region, demo_model, out, *args)
    assert code == 2 and "--overwrite" in stderr and str(out) in stderr
    assert out.read_bytes() == b"keep" and not out.with_suffix(".png").exists()
    code, _, stderr = _suggest(region, demo_model, out, *args, "--overwrite")
    assert code == 0, stderr
    assert len(gpd.read_file(out, layer="areas")) == 1


def test_an_output_not_named_gpkg_is_refused(
    tmp_path: Path, demo_model: Path, demo_chips: Path
) -> None:
    """-o areas.geojson wrote a GeoPackage under that name (and replaced areas.qml/.png)."""
    region = _region(tmp_path)
    out = tmp_path / "areas.geojson"
    args = ["-n", "1", "--size-m", "6.4", "--chips", str(demo_chips)]
    code, _, stderr = _suggest(region, demo_model, out, *args)
    assert code == 2 and "AREAS.gpkg" in stderr and str(out) in stderr
    assert len(stderr.strip().splitlines()) == 1
    assert not out.exists() and not out.with_suffix(".png").exists()


def test_too_many_areas_says_how_many(tmp_path: Path, demo_model: Path, demo_chips: Path) -> None:
    region = _region(tmp_path)
    out = tmp_path / "a.gpkg"
    code, _, stderr = _suggest(
        region, demo_model, out, "-n", "500", "--size-m", "6.4", "--chips", str(demo_chips)
    )
    assert code == 2
    assert "-n 500 but only 8 candidate 6.4 m square(s)" in stderr and str(region) in stderr
    assert len([ln for ln in stderr.splitlines() if ln.startswith("geotl: error")]) == 1
    assert not list(tmp_path.glob("a.*"))
    # a few more than there are: the error names a square size that gives them
    code, _, stderr = _suggest(
        region, demo_model, out, "-n", "12", "--size-m", "6.4", "--chips", str(demo_chips)
    )
    assert code == 2 and "ask for at most 8 or lower --size-m (--size-m " in stderr
    size = stderr.split("(--size-m ")[1].split(" ")[0]
    assert float(size) < 6.4 and "gives 12 or more)" in stderr
    code, _, stderr = _suggest(
        region, demo_model, out, "-n", "12", "--size-m", size, "--chips", str(demo_chips)
    )
    assert code == 0, stderr
    assert len(gpd.read_file(out, layer="areas")) == 12


def test_no_area_left(tmp_path: Path, demo_model: Path, demo_chips: Path) -> None:
    region = _region(tmp_path, complete=None)  # no complete_within: the labels' hull counts
    out = tmp_path / "a.gpkg"
    code, _, stderr = _suggest(
        region, demo_model, out, "-n", "1", "--size-m", "20", "--chips", str(demo_chips)
    )
    assert code == 2 and "no 20 m square of the scenes is left outside" in stderr
    assert ("use --size-m " in stderr or "add scenes" in stderr) and not list(tmp_path.glob("a.*"))
    # squares larger than every scene: said so, with a size that fits
    code, _, stderr = _suggest(
        region, demo_model, out, "-n", "1", "--size-m", "500", "--chips", str(demo_chips)
    )
    assert code == 2 and "no 500 m square fits in a scene (the widest is 40 m across)" in stderr
    assert "use --size-m " in stderr
    # squares of a few pixels (0.1 m ones here): refused at once, with the smallest size
    code, _, stderr = _suggest(
        region, demo_model, out, "-n", "1", "--size-m", "0.5", "--chips", str(demo_chips)
    )
    assert code == 2 and "--size-m 0.5 is under 16 pixels" in stderr
    assert "use --size-m 2 or more" in stderr and not list(tmp_path.glob("a.*"))


@pytest.mark.parametrize(
    ("classes", "bands", "expect"),
    [('["building"]', None, "classes"), ('["tree"]', '["nir", "green", "blue"]', "bands")],
)
def test_model_must_fit_the_region(
    tmp_path: Path, demo_model: Path, classes: str, bands: str | None, expect: str
) -> None:
    region = _region(tmp_path, classes=classes, bands=bands)
    if expect == "classes":
        region.write_text(region.read_text().replace('Tree = "tree"', 'Tree = "building"'))
    code, _, stderr = _suggest(region, demo_model, tmp_path / "a.gpkg", "-n", "1")
    assert code == 2, stderr
    assert str(region) in stderr and expect in stderr and "use a model trained" in stderr
    assert not list(tmp_path.glob("a.*"))


def test_failed_contact_sheet_leaves_nothing(
    tmp_path: Path, demo_model: Path, demo_chips: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import geotl.suggest.outputs as outputs

    def boom(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(outputs, "write_contact_sheet", boom)
    region = _region(tmp_path)
    from geotl.config import load_region
    from geotl.suggest import SuggestOptions, suggest_areas

    with pytest.raises(OSError, match="disk full"):
        suggest_areas(
            load_region(region),
            demo_model,
            tmp_path / "a.gpkg",
            SuggestOptions(n=1, size_m=6.4, chips_dir=demo_chips, progress=False),
        )
    assert not list(tmp_path.glob("a.*")) and not list(tmp_path.glob(".tmp-*"))


_QGIS_CHECK = """
import json, os, sys
from qgis.core import QgsApplication, QgsVectorLayer
app = QgsApplication([], False)
app.initQgis()
layer = QgsVectorLayer(sys.argv[1] + "|layername=areas", "areas", "ogr")
msg, loaded = layer.loadDefaultStyle()
print(json.dumps({
    "valid": layer.isValid(), "count": layer.featureCount(), "crs": layer.crs().authid(),
    "loaded": loaded, "renderer": layer.renderer().type(), "labels": layer.labelsEnabled(),
    "label_field": layer.labeling().settings().fieldName if layer.labeling() else None,
    "fields": [f.name() for f in layer.fields()],
}), flush=True)
os._exit(0)  # exitQgis() may crash a headless QGIS after the report
"""


def test_qgis_opens_the_styled_areas(tmp_path: Path) -> None:
    """Real QGIS (Debian's python3-qgis) loads the GeoPackage with its numbered outlines."""
    import json
    import os
    import subprocess

    from geotl.predict.outputs.quicklook import ScenePicture
    from geotl.suggest.outputs import write_areas

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(QT_QPA_PLATFORM="offscreen", PATH="/usr/bin:/bin")
    probe = subprocess.run(["/usr/bin/python3", "-c", "import qgis.core"], env=env, check=False)
    if probe.returncode != 0:
        pytest.skip("python3-qgis is not installed (scripts/install_system_deps.sh)")
    with rasterio.open(SCENE) as ds:
        t, crs = ds.transform, ds.crs
    squares = [box(*window_bounds(t, Window(c, r, 64, 64))) for r, c in ((0, 0), (128, 192))]
    areas = gpd.GeoDataFrame(
        {"rank": [1, 2], "score": [0.6, 0.5], "scene": SCENE.name, "expected_objects": [3, 0]},
        geometry=squares,
        crs=crs,
    )
    gpkg, _, png = write_areas(
        tmp_path / "areas.gpkg", areas, {SCENE.name: ScenePicture(SCENE, [1, 2, 3])}, {}
    )
    assert png.read_bytes()[:4] == b"\x89PNG"
    res = subprocess.run(
        ["/usr/bin/python3", "-c", _QGIS_CHECK, str(gpkg)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
    assert lines, res.stderr[-2000:]
    seen = json.loads(lines[-1])
    assert seen["valid"] and seen["count"] == 2 and seen["crs"] == "EPSG:32617"
    assert seen["loaded"] and seen["renderer"] == "singleSymbol"
    assert seen["labels"] and seen["label_field"] == "rank"
    assert {"rank", "score", "scene", "expected_objects"} <= set(seen["fields"])


# ------------------------------------------------------------ detection and instances


@pytest.fixture(scope="module")
def detector(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A briefly trained (40 steps) ``task = "detection"`` model of the demo plot, and its region."""
    import torch

    from geotl.config import load_region
    from geotl.train import TrainOptions, train_model

    tmp = tmp_path_factory.mktemp("detsuggest")
    region = _region(tmp)
    text = region.read_text().replace('task = "segmentation"', 'task = "detection"')
    text = text.replace("size_px = 64\nstride_px = 64", "size_px = 128\nstride_px = 128")
    region.write_text(text.replace("block_size_m = 24.0", "block_size_m = 40.0"))
    torch.set_num_threads(2)
    train_model(
        [load_region(region)],
        tmp / "m",
        TrainOptions(steps=40, batch_size=4, seed=0),  # enough for boxes above its floor
    )
    return tmp / "m", region


def test_suggest_scores_a_detector_by_its_boxes(
    tmp_path: Path, detector: tuple[Path, Path]
) -> None:
    from geotl.config import load_region
    from geotl.models.artefact import load_artefact
    from geotl.predict import PredictOptions, predict_scene

    model, region = detector
    out = tmp_path / "boxes.gpkg"
    code, _, stderr = _suggest(region, model, out, "-n", "4", "--size-m", "6.4")
    assert code == 0, stderr
    areas = gpd.read_file(out, layer="areas")
    assert list(areas["rank"]) == [1, 2, 3, 4]
    assert areas["score"].between(0, 1).all() and areas["score"].iloc[0] == areas["score"].max()
    assert areas["score"].max() > 0  # the boxes (down to the detector's floor) were scored
    # expected objects: the boxes `geotl predict` keeps at the region's threshold
    kept = predict_scene(
        load_artefact(model), SCENE, PredictOptions.from_region(load_region(region))
    ).native
    points = kept.geometry.representative_point()
    assert list(areas["expected_objects"]) == [int(points.within(g).sum()) for g in areas.geometry]
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def instance_net(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained ``task = "instances"`` network (classes, then border and contact)."""
    import torch

    from geotl.models.artefact import write_artefact
    from geotl.models.network import build_network

    base = data.card()
    card = base.model_copy(
        update={
            "task": "instances",
            "network": base.network.model_copy(update={"num_classes": 4}),
        }
    )
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("instances")
    write_artefact(out, build_network(card.network), card)
    return out


def test_suggest_counts_where_instances_meet(
    tmp_path: Path, instance_net: Path, demo_chips: Path
) -> None:
    """An instance model's probabilities carry its border and contact maps, and a square's
    score is the mean of class entropy or those maps' entropy, whichever is higher."""
    from geotl.suggest.ranking import binary_entropy

    prob = tmp_path / "prob.tif"
    code, _, stderr = _run(
        "predict", str(instance_net), str(SCENE), "-o", str(tmp_path / "p.geojson"),
        "--probabilities", str(prob),
    )  # fmt: skip
    assert code == 0, stderr
    with rasterio.open(prob) as ds:
        assert ds.descriptions == ("tree", "border", "contact")
        planes = ds.read().astype(np.float64)
        transform = ds.transform
    out = tmp_path / "next.gpkg"
    args = ["-n", "3", "--size-m", "6.4", "--chips", str(demo_chips)]
    code, _, stderr = _suggest(_region(tmp_path), instance_net, out, *args)
    assert code == 0, stderr
    areas = gpd.read_file(out, layer="areas")
    from rasterio.windows import from_bounds

    for g, score, why in zip(areas.geometry, areas["score"], areas["why"], strict=True):
        win = from_bounds(*g.bounds, transform).round_offsets().round_lengths()
        r, c, h, w = int(win.row_off), int(win.col_off), int(win.height), int(win.width)
        sq = planes[:, r : r + h, c : c + w]
        sq = sq[:, (sq >= 0).all(axis=0)]  # -1: no data
        cls = entropy(np.stack([1 - sq[0], sq[0]]))
        both = np.maximum(cls, binary_entropy(sq[1:]).max(axis=0))
        assert score == pytest.approx(both.mean(), abs=1e-3)
        assert both.mean() > cls.mean()  # the maps add to what the classes say
        edges = binary_entropy(sq[1:]).max(axis=0)
        # the why says which of the two carries most: where to look when labelling
        if edges.sum() > cls.sum():
            assert why == "where objects meet or end?"
        else:
            assert why in ("tree or background?", "background or tree?")


def test_a_read_failure_without_a_message_is_one_line(monkeypatch, tmp_path: Path) -> None:
    """GDAL errors can carry no text: the error still names the file (no IndexError)."""
    import rasterio

    from geotl.errors import RasterError
    from geotl.suggest import core

    def fail(path: object) -> object:
        raise rasterio.errors.RasterioIOError()

    monkeypatch.setattr(core.rasterio, "open", fail)
    with (
        pytest.raises(RasterError, match=r"read failed \(RasterioIOError\)") as err,
        core._reading(tmp_path / "scene.tif"),
    ):
        pass
    assert "scene.tif" in str(err.value)


def test_the_same_ground_in_two_passes_is_suggested_once(shared_data: Path) -> None:
    # two NAIP dates of one tile (grids 1 m apart): their squares were picked twice, the
    # same ground at ranks 2 and 7, while one label layer serves both scenes
    from geotl.io.rasters import read_scene_info
    from geotl.suggest.candidates import scene_candidates
    from geotl.suggest.core import _same_ground, _Scored
    from geotl.suggest.ranking import pick_diverse

    naip = shared_data / "naip-landsat-timeseries" / "naip"
    if not naip.is_dir():
        pytest.skip(f"{naip} not found")
    items = []
    for name in ("m_4709963_se_14_1_20090818.tif", "m_4709963_se_14_1_20100629.tif"):
        cands, _, _ = scene_candidates(read_scene_info(naip / name, 4), (100, 100), [], [])
        items += [_Scored(c, 0.5, np.zeros(1), 0, "") for c in cands]
    per_scene = len(items) // 2
    same = _same_ground([it.candidate for it in items])
    # each square shares its ground with the square of the other date (and no more: the
    # grids are 1 m apart, a 500 m square's neighbours get far under a tenth)
    assert [len(s) for s in same] == [1] * len(items)
    assert all(same[i] == [i + per_scene] for i in range(per_scene))
    order = pick_diverse([it.score for it in items], np.zeros((len(items), 1)), per_scene, same)
    picked = {tuple(items[i].candidate.geometry.bounds) for i in order}
    assert len(order) == per_scene and len(picked) == per_scene
    assert not any(j in order for i in order for j in same[i])


def test_a_square_counts_the_pixels_chips_count(tmp_path: Path) -> None:
    # a scene without a nodata value and a black collar; the region says [imagery] nodata = 0
    # (as chips and predict read it): the collar is no data, the square mostly nodata
    from geotl.io.rasters import read_scene_info
    from geotl.suggest.candidates import Candidate
    from geotl.suggest.core import _read_square

    bands = np.stack([data.blobs(64, 64), np.full((64, 64), 90), np.full((64, 64), 70)])
    bands = bands.astype(np.uint8)
    bands[:, :, :40] = 0
    path = data.write_bands(tmp_path / "collar.tif", bands)
    square = Candidate(read_scene_info(path, 3), Window(0, 0, 64, 64), box(0, 0, 1, 1))
    assert _read_square(square, 0.5, 0) is None  # 62.5 % nodata: dropped
    got = _read_square(square, 0.7, 0)
    assert got is not None
    pixels, valid = got
    assert not valid[:, :40].any() and valid[:, 40:].all() and pixels.shape == (3, 64 * 24)
    got = _read_square(square, 0.5, None)  # the file's own (none): every pixel is data
    assert got is not None and got[1].all()
