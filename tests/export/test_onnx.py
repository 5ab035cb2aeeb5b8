"""ONNX export: the graph equals the torch model on the demo region's real chips; metadata;
int8 calibrated on the training chips; the onnxruntime engine in ``geotl predict``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from geotl.cli.main import cli
from geotl.config import load_region
from geotl.export import export_onnx, read_onnx
from geotl.export.onnx import INPUT_NAME
from geotl.models.artefact import load_artefact
from geotl.predict.engine import TorchEngine, engine_for, load_model
from geotl.predict.vectorise import class_map_from_probabilities
from geotl.train import load_region_chips

REPO = Path(__file__).resolve().parents[2]
DEMO_REGION = REPO / "regions" / "demo-osbs.toml"
DEMO_SCENE = REPO / "regions" / "demo-osbs" / "imagery" / "OSBS_029.tif"
TIE = 1e-4  # pixels whose probability is this close to the threshold may flip


@pytest.fixture(scope="module")
def chips(demo_model: Path, demo_chips: Path) -> tuple[np.ndarray, np.ndarray]:
    """The demo region's real test and train chips, normalised (nodata -> 0 as in predict)."""
    region = load_region(DEMO_REGION)
    art = load_artefact(demo_model)
    xs, vs = [], []
    for split in ("test", "train"):
        d = load_region_chips(region, demo_chips, split, list(art.card.bands))
        x = art.normalise(d.images)
        x[np.broadcast_to(~d.valid[:, None], x.shape)] = 0.0
        xs.append(x)
        vs.append(d.valid)
    return np.concatenate(xs), np.concatenate(vs)


@pytest.fixture(scope="module")
def exported(demo_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("onnx") / "demo.onnx"
    export_onnx(demo_model, out, tile_px=64)  # the region's chip size
    return out


def _class_maps(fg: np.ndarray, threshold: float) -> np.ndarray:
    return np.stack(
        [
            class_map_from_probabilities(np.concatenate([1 - p.sum(0)[None], p]), threshold)[0]
            for p in fg
        ]
    )


def test_graph_equals_torch_on_real_chips(
    demo_model: Path, exported: Path, chips: tuple[np.ndarray, np.ndarray]
) -> None:
    x, valid = chips
    art = load_artefact(demo_model)
    torch_fg = TorchEngine(art.network, art.device).probabilities(x)
    onnx_art = load_model(exported, "onnxruntime")
    ort_fg = engine_for(onnx_art).probabilities(x)
    assert ort_fg.shape == torch_fg.shape == (len(x), 1, 64, 64)
    assert float(np.abs(ort_fg - torch_fg).max()) < 1e-4
    thr = art.card.threshold
    a, b = _class_maps(torch_fg, thr), _class_maps(ort_fg, thr)
    tie = (np.abs(torch_fg - thr) < TIE).any(axis=1)
    assert np.array_equal(a[~tie], b[~tie])
    assert np.unique(a[valid]).size == 2  # a real, non-constant map (trees and ground)


def test_metadata_for_geotl_and_deepness(demo_model: Path, exported: Path) -> None:
    import onnx

    model = onnx.load(str(exported))
    meta = {p.key: json.loads(p.value) for p in model.metadata_props}
    card = load_artefact(demo_model).card
    assert meta["model_type"] == "Segmentor"
    assert meta["class_names"] == {"0": "background", "1": "tree"}
    assert meta["resolution"] == pytest.approx(card.resolution_m * 100)  # cm per pixel
    assert meta["tiles_size"] == meta["tile_size"] == 64
    assert meta["tiles_overlap"] == 25
    assert meta["seg_thresh"] == card.threshold
    # Deepness feeds raw / 255 then standardises: identity, the normalisation is in the graph
    assert meta["standardization_mean"] == [0.0, 0.0, 0.0]
    assert meta["standardization_std"] == [1.0, 1.0, 1.0]
    embedded = meta["geotl_card"]
    assert embedded["bands"] == ["red", "green", "blue"]
    assert embedded["normalisation"] == card.normalisation.model_dump()
    assert embedded["base"]["licence"] and embedded["weights_sha256"] == card.weights_sha256
    shape = [d.dim_value or d.dim_param for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert model.graph.input[0].name == INPUT_NAME and shape == ["batch", 3, 64, 64]
    assert read_onnx(exported).card.model_id == card.model_id


def test_deepness_scaling_gives_geotl_probabilities(
    demo_model: Path, exported: Path, demo_chips: Path
) -> None:
    """What Deepness does (uint8 tile / 255, NCHW) gives what geotl's torch model gives."""
    import onnxruntime as ort

    region = load_region(DEMO_REGION)
    raw = load_region_chips(region, demo_chips, "test", ["red", "green", "blue"]).images[:4]
    sess = ort.InferenceSession(str(exported), providers=["CPUExecutionProvider"])
    probs = sess.run(None, {INPUT_NAME: (raw / 255.0).astype(np.float32)})[0]
    art = load_artefact(demo_model)
    ref = TorchEngine(art.network, art.device).probabilities(art.normalise(raw))
    assert np.abs(probs[:, 1:] - ref).max() < 1e-4
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_int8_calibrated_on_training_chips(
    demo_model: Path,
    demo_chips: Path,
    exported: Path,
    chips: tuple[np.ndarray, np.ndarray],
    tmp_path: Path,
) -> None:
    res = export_onnx(
        demo_model,
        tmp_path / "int8.onnx",
        int8=True,
        tile_px=64,
        chips_dir=demo_chips,
        region_path=DEMO_REGION,
    )
    assert "int8 static" in res.card.quantisation and "demo-osbs" in res.card.quantisation
    assert "shape-arithmetic nodes" in res.card.quantisation
    assert res.card.model_id.endswith("-int8")
    assert res.size_bytes < 0.5 * exported.stat().st_size
    x, valid = chips
    fp = engine_for(load_model(exported, "onnxruntime")).probabilities(x)
    q = engine_for(load_model(res.path, "onnxruntime")).probabilities(x)
    agree = (_class_maps(fp, 0.5) == _class_maps(q, 0.5))[valid].mean()
    assert agree > 0.97, agree


def _pads(path: Path, tiles: np.ndarray) -> list[list[int]]:
    """The padding every Pad node of the graph applies to ``tiles`` (raw / 255)."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(path))
    names = [n.input[1] for n in model.graph.node if n.op_type == "Pad"]
    model.graph.output.extend(
        onnx.helper.make_tensor_value_info(n, onnx.TensorProto.INT64, None) for n in names
    )
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return [p.tolist() for p in sess.run(names, {INPUT_NAME: tiles})]


@pytest.mark.parametrize("tile_px", [128, 256])
def test_int8_keeps_padding_sizes_exact(
    demo_model: Path, demo_chips: Path, tmp_path: Path, tile_px: int
) -> None:
    """EfficientNet's "same" padding is computed from the tile's shape in the graph: int8
    keeps that arithmetic in float, so every padding equals fp32's (quantised, the sizes
    moved by a pixel at 128 and 256 px, and NEON SJER lost 0.031 test IoU); the nodes kept in
    float are listed in the metadata."""
    import onnx

    from geotl.export.onnx import INT8_FLOAT_NODES_KEY
    from geotl.export.quantise import Int8Scheme, region_calibration

    calib = region_calibration(demo_model, tile_px, DEMO_REGION, demo_chips)
    paths = {}
    for key, int8, scheme in (
        ("fp32", False, None),
        ("int8", True, None),
        ("before", True, Int8Scheme(float_shape_arithmetic=False)),
    ):
        paths[key] = tmp_path / f"{key}.onnx"
        export_onnx(
            demo_model, paths[key], int8=int8, tile_px=tile_px, calibration=calib, scheme=scheme
        )
    pads = {k: _pads(p, calib.tiles[:2]) for k, p in paths.items()}
    assert len(pads["fp32"]) >= 5 and any(any(p) for p in pads["fp32"])  # strided convs pad
    assert pads["int8"] == pads["fp32"]
    assert pads["before"] != pads["fp32"]  # the earlier export: the test tells them apart
    meta = {p.key: json.loads(p.value) for p in onnx.load(str(paths["int8"])).metadata_props}
    kept = meta[INT8_FLOAT_NODES_KEY]
    assert len(kept["shape arithmetic"]) > 100 and kept["compute layers"] == []
    assert len(kept["input scaling and output head"]) == 3


def _run(*args: str) -> tuple[int, str, str]:
    res = CliRunner().invoke(cli, ["-q", *args])
    return res.exit_code, res.stdout, res.stderr


def test_predict_with_onnxruntime_equals_torch(
    demo_model: Path, exported: Path, tmp_path: Path
) -> None:
    outs = {}
    for engine in ("torch", "onnxruntime"):
        out = tmp_path / f"{engine}.geojson"
        code, _, stderr = _run(
            "predict",
            str(demo_model),
            str(DEMO_SCENE),
            "-o",
            str(out),
            "--engine",
            engine,
            "--no-progress",
        )
        assert code == 0, stderr
        outs[engine] = json.loads(out.read_text())["features"]
    from shapely.geometry import shape

    a = {f["properties"]["id"]: shape(f["geometry"]) for f in outs["torch"]}
    b = {f["properties"]["id"]: shape(f["geometry"]) for f in outs["onnxruntime"]}
    assert len(a) > 5
    same = [k for k in a if k in b and a[k].symmetric_difference(b[k]).area < 1e-12]
    assert len(same) >= len(a) - 1, (len(a), len(b), len(same))  # up to a tie
    # the exported file itself (64 px tiles) predicts with its graph's tile as the window
    code, _, stderr = _run(
        "predict",
        str(exported),
        str(DEMO_SCENE),
        "-o",
        str(tmp_path / "x.geojson"),
        "--engine",
        "onnxruntime",
        "--no-progress",
    )
    assert code == 0, stderr
    # another window is the user's choice, refused with the fix
    code, _, stderr = _run(
        "predict", str(exported), str(DEMO_SCENE), "-o", str(tmp_path / "y.geojson"),
        "--window", "128", "--no-progress",
    )  # fmt: skip
    assert code != 0 and "takes 64 px tiles" in stderr


def test_export_cli_and_bad_onnx_files(demo_model: Path, exported: Path, tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    out = tmp_path / "m.onnx"
    code, stdout, stderr = _run("export", str(demo_model), "--onnx", str(out), "--tile-px", "64")
    assert code == 0, stderr
    assert stdout.splitlines()[0] == str(out) and out.is_file()
    code, _, stderr = _run("export", str(demo_model), "--onnx", str(out))
    assert code == 2 and "--overwrite" in stderr
    # another suffix: predict would not take the file for a model, so nothing is written
    code, stdout, stderr = _run("export", str(demo_model), "--onnx", str(tmp_path / "m.bin"))
    assert code == 2 and stdout == "" and len(stderr.strip().splitlines()) == 1
    assert "m.bin" in stderr and str(tmp_path / "m.onnx") in stderr, stderr
    assert not (tmp_path / "m.bin").exists()
    code, stdout, _ = _run("models", "verify", str(out))
    assert code == 0 and stdout.strip() == str(out)

    scene_out = tmp_path / "o.geojson"

    def refused(model: Path, *words: str) -> None:
        code, stdout, stderr = _run(
            "predict", str(model), str(DEMO_SCENE), "-o", str(scene_out), "--engine", "onnxruntime"
        )
        assert code == 2, stderr
        assert stdout == ""
        assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr
        assert str(model) in stderr and all(w in stderr for w in words), stderr
        assert not scene_out.exists()

    data = out.read_bytes()
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(data[: len(data) // 2])
    refused(truncated, "export it again")
    # one byte of the largest weight altered: still a valid ONNX file
    model = onnx.load_from_string(data)
    big = max(model.graph.initializer, key=lambda t: len(t.raw_data)).raw_data
    at = data.find(big[:64]) + len(big) // 2
    altered = tmp_path / "altered.onnx"
    altered.write_bytes(data[:at] + bytes([data[at] ^ 1]) + data[at + 1 :])
    onnx.load(str(altered))
    refused(altered, "sha256", "export it again")
    code, _, stderr = _run("models", "verify", str(altered))
    assert code == 2 and "sha256" in stderr
    # a foreign ONNX file without geotl's metadata
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 64, 64])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 64, 64])
    foreign = tmp_path / "foreign.onnx"
    onnx.save(
        helper.make_model(
            helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
        ),
        str(foreign),
    )
    refused(foreign, "without geotl metadata")
    # an opset this onnxruntime does not know
    from geotl.export.onnx import onnx_to_bytes
    from geotl.models.artefact import ModelCard

    future = onnx.load_from_string(data)
    future.opset_import[0].version = 99
    meta = {p.key: p.value for p in future.metadata_props}
    card = ModelCard.model_validate(json.loads(meta["geotl_card"]))
    too_new = tmp_path / "too_new.onnx"
    too_new.write_bytes(onnx_to_bytes(future, card, 64)[0])
    refused(too_new, "upgrade onnxruntime")
    # an .onnx runs on onnxruntime only
    code, _, stderr = _run(
        "predict", str(exported), str(DEMO_SCENE), "-o", str(scene_out), "--engine", "torch"
    )
    assert code == 2 and "--engine onnxruntime" in stderr


@pytest.fixture(scope="module")
def instance_model(demo_chips: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1-epoch ``task = "instances"`` model of the demo region."""
    import torch

    from geotl.train import TrainOptions, train_model

    root = tmp_path_factory.mktemp("instances")
    text = (
        DEMO_REGION.read_text()
        .replace('task = "segmentation"', 'task = "instances"')
        .replace('"demo-osbs/', f'"{DEMO_REGION.parent}/demo-osbs/')
    )
    (root / "region.toml").write_text(text)
    torch.set_num_threads(2)
    train_model(
        [load_region(root / "region.toml")],
        root / "m",
        TrainOptions(chips=(demo_chips,), epochs=1, samples_per_epoch=1, seed=0, batch_size=8),
    )
    return root / "m"


def test_instance_model_on_onnxruntime_equals_torch(
    instance_model: Path, demo_chips: Path, chips: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    """The graph ends in the class softmax and the border / contact sigmoids; ONNX Runtime
    gives torch's probabilities, objects and scores (``auto`` picks it on CPU)."""
    import onnx

    from geotl.evaluate.segmentation import evaluate_chips
    from geotl.predict import PredictOptions, predict_scene
    from geotl.predict.objects import extractor_for

    out = tmp_path / "inst.onnx"
    export_onnx(instance_model, out, tile_px=64)
    meta = {p.key: json.loads(p.value) for p in onnx.load(str(out)).metadata_props}
    assert meta["class_names"] == {"0": "background", "1": "tree", "2": "border", "3": "contact"}
    x, _ = chips
    art = load_artefact(instance_model)
    head = extractor_for("instances", 1).probabilities
    torch_p = TorchEngine(art.network, art.device, head).probabilities(x)
    ort_p = engine_for(load_model(out, "onnxruntime")).probabilities(x)
    assert ort_p.shape == torch_p.shape == (len(x), 3, 64, 64)
    assert float(np.abs(ort_p - torch_p).max()) < 1e-4

    auto = load_model(instance_model, "auto")
    assert auto.engine is not None and auto.engine.name == "onnxruntime"
    opts = PredictOptions(progress=False)
    a = predict_scene(load_model(instance_model, "torch"), DEMO_SCENE, opts).features
    b = predict_scene(auto, DEMO_SCENE, opts).features
    assert len(a) > 5
    same = sum(
        1
        for ga, gb in zip(a.geometry, b.geometry, strict=False)
        if ga.symmetric_difference(gb).area < 1e-12
    )
    assert len(b) == len(a) and same >= len(a) - 1, (len(a), len(b), same)  # up to a tie
    assert np.allclose(a["score"].to_numpy(), b["score"].to_numpy(), atol=1e-4)

    # evaluate runs the exported graph unchanged: sigmoid maps come back as log-odds
    import torch

    logits = load_model(out, "onnxruntime").network(torch.from_numpy(x[:4]))
    assert float((head(logits).numpy() - torch_p[:4]).__abs__().max()) < 1e-4
    inst_region = load_region(instance_model.parent / "region.toml")
    scores = {
        name: evaluate_chips(m, inst_region, demo_chips, "test", 16, 20, 0)
        for name, m in (("torch", art), ("onnx", load_model(out, "onnxruntime")))
    }
    t, o = scores["torch"]["objects"]["tree"], scores["onnx"]["objects"]["tree"]
    assert abs(scores["torch"]["pixel"]["mean_iou"] - scores["onnx"]["pixel"]["mean_iou"]) < 1e-3
    assert abs(t["tp"] - o["tp"]) <= 1 and abs(t["fp"] - o["fp"]) <= 1


def test_cached_export_is_refreshed_when_used_and_pruned_on_export(
    demo_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    from geotl.predict.engine import _cached_export

    monkeypatch.setenv("GEOTL_CACHE_DIR", str(tmp_path / "cache"))
    folder = tmp_path / "cache" / "onnx"
    folder.mkdir(parents=True)
    stale = folder / "stale.onnx"
    stale.write_bytes(b"x" * 1000)
    os.utime(stale, (1000, 1000))
    art = load_artefact(demo_model)
    monkeypatch.setenv("GEOTL_ONNX_CACHE_MB", "0")  # nothing fits but what was just written
    first = _cached_export(art, 64)
    assert first.path.parent == folder and first.path.exists() and not stale.exists()
    os.utime(first.path, (1000, 1000))
    again = _cached_export(art, 64)  # read from the cache, and marked as used now
    assert again.path == first.path and first.path.stat().st_mtime > 1000


def test_a_per_pixel_model_exports_and_equals_torch(
    demo_model_options: Any,
    demo_chips: Path,
    chips: tuple[np.ndarray, np.ndarray],
    tmp_path: Path,
) -> None:
    """The model training keeps when it beats the U-Net: the same graph in ONNX, int8 too."""
    from dataclasses import replace

    from geotl.train import train_model

    model = tmp_path / "pixel"
    options = replace(demo_model_options, pixel_model=True)
    card = train_model([load_region(DEMO_REGION)], model, options)
    assert card.network.arch == "pixel"  # two epochs: the U-Net scores below it
    x, valid = chips
    art = load_artefact(model)
    torch_fg = TorchEngine(art.network, art.device).probabilities(x)
    for name, int8 in (("fp32", False), ("int8", True)):
        out = tmp_path / f"{name}.onnx"
        calibration = {"chips_dir": demo_chips, "region_path": DEMO_REGION} if int8 else {}
        export_onnx(model, out, tile_px=64, int8=int8, **calibration)
        ort_fg = engine_for(load_model(out, "onnxruntime")).probabilities(x)
        assert ort_fg.shape == torch_fg.shape == (len(x), 1, 64, 64)
        err = float(np.abs(ort_fg - torch_fg)[:, 0][valid].mean())
        assert err < (1e-5 if name == "fp32" else 0.02), (name, err)
    assert read_onnx(tmp_path / "fp32.onnx").card.network.arch == "pixel"


def test_onnx_runtime_builds_the_torch_network_only_to_export(
    demo_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a cached export runs without smp, timm or torchvision: 2-3 s less per geotl predict
    import subprocess
    import sys

    from geotl.predict.engine import load_model

    monkeypatch.setenv("GEOTL_CACHE_DIR", str(tmp_path / "cache"))
    x = np.zeros((1, 3, 64, 64), dtype=np.float32)
    first = load_model(demo_model, "onnxruntime")
    assert first._network is None  # the weights' sha256 was checked; nothing built yet
    first.engine.probabilities(x)  # type: ignore[union-attr]  # exports: builds it
    assert first._network is not None
    again = load_model(demo_model, "onnxruntime")
    want = again.engine.probabilities(x)  # type: ignore[union-attr]  # from the cache
    assert again._network is None
    np.testing.assert_array_equal(want, first.engine.probabilities(x))  # type: ignore[union-attr]
    code = (
        "import sys; from geotl.predict.engine import load_model; import numpy as np\n"
        f"a = load_model({str(demo_model)!r}, 'onnxruntime')\n"
        "a.engine.probabilities(np.zeros((1, 3, 64, 64), np.float32))\n"
        "print([m for m in ('segmentation_models_pytorch', 'timm', 'torchvision') "
        "if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_graph_says_its_output_is_the_tile_size(exported: Path) -> None:
    import onnx

    graph = onnx.load(str(exported)).graph
    dims = [
        [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in graph.output
    ]
    assert dims == [["batch", 2, 64, 64]]  # background and tree, on the 64 px tile
