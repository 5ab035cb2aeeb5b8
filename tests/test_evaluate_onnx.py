"""``geotl evaluate`` scores an ``.onnx`` export (fp32 or int8) as it scores its folder.

A user who quantised a model to int8 measures what it lost with the same evaluator: object
P/R/F1 and pixel IoU with their intervals, on the same test chips. Before, click refused the
file ("Directory ... is a file").
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from geotl.cli.main import cli
from geotl.export import export_onnx

REPO = Path(__file__).resolve().parents[1]
DEMO_REGION = REPO / "regions" / "demo-osbs.toml"


@pytest.fixture(scope="module")
def exports(
    demo_model: Path, demo_chips: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """The demo model exported at its chips' size, fp32 and int8, and at 128 px."""
    d = tmp_path_factory.mktemp("eval-onnx")
    paths = {k: d / f"m-{k}.onnx" for k in ("fp32", "int8", "128")}
    export_onnx(demo_model, paths["fp32"], tile_px=64)
    export_onnx(
        demo_model,
        paths["int8"],
        tile_px=64,
        int8=True,
        region_path=DEMO_REGION,
        chips_dir=demo_chips,
    )
    export_onnx(demo_model, paths["128"], tile_px=128)
    return paths


def _evaluate(*args: str) -> tuple[int, str, str]:
    res = CliRunner().invoke(cli, ["-q", "evaluate", *args])
    return res.exit_code, res.stdout, res.stderr


def _scores(metrics: dict) -> dict:
    """The numbers a person compares: pixel and object scores, intervals, counts."""
    return {"pixel": metrics["pixel"], "objects": metrics["objects"], "chips": metrics["chips"]}


def test_onnx_exports_score_as_their_folder(
    demo_model: Path, demo_chips: Path, exports: dict[str, Path], tmp_path: Path
) -> None:
    chips = ["--chips", str(demo_chips)]
    runs = {}
    for name, model in (
        ("torch", demo_model),
        ("fp32", exports["fp32"]),
        ("int8", exports["int8"]),
    ):
        out = tmp_path / f"{name}.json"
        code, stdout, stderr = _evaluate(str(model), str(DEMO_REGION), *chips, "--out", str(out))
        assert code == 0, stderr
        runs[name] = json.loads(out.read_text())
        assert json.loads(stdout) == runs[name]
    torch_m, fp32, int8 = runs["torch"], runs["fp32"], runs["int8"]
    # the fp32 graph is the network (probabilities within 1e-5): the same numbers
    assert _scores(fp32) == _scores(torch_m)
    assert torch_m["pixel"]["mean_iou"] is not None and torch_m["chips"] > 0
    # int8: within a tolerance of the network (a 2-epoch demo model: IoU 0.5959 -> 0.5968, one of
    # 21 objects more found), with intervals
    assert int8["pixel"] != torch_m["pixel"]  # another graph, not the torch network again
    assert abs(int8["pixel"]["mean_iou"] - torch_m["pixel"]["mean_iou"]) < 0.02
    for cls, o in torch_m["objects"].items():
        q = int8["objects"][cls]
        assert all(abs(q[k] - o[k]) <= 2 for k in ("tp", "fp", "fn")), (cls, q, o)
        assert len(q["f1_ci95"]) == 2
    assert len(int8["pixel"]["mean_iou_ci95"]) == 2
    # the metrics say what was evaluated
    assert torch_m["engine"] == "torch" and torch_m["quantisation"] == "none"
    assert "onnx" not in torch_m
    assert fp32["engine"] == int8["engine"] == "onnxruntime"
    assert fp32["quantisation"] == "none" and "int8" in int8["quantisation"]
    assert int8["model"].endswith("-int8") and int8["model_dir"] == str(exports["int8"])
    assert int8["onnx"]["file"] == str(exports["int8"]) and int8["onnx"]["tile_px"] == 64
    assert len(int8["onnx"]["graph_sha256"]) == 64


def test_onnx_without_chips_chips_the_region_afresh(
    exports: dict[str, Path], demo_model: Path, demo_chips: Path
) -> None:
    # no chips live beside a file: cut as for a model folder, the same test split
    code, stdout, stderr = _evaluate(str(exports["fp32"]), str(DEMO_REGION))
    assert code == 0, stderr
    code, given, stderr = _evaluate(
        str(exports["fp32"]), str(DEMO_REGION), "--chips", str(demo_chips)
    )
    assert code == 0, stderr
    assert _scores(json.loads(stdout)) == _scores(json.loads(given))


def test_a_graph_of_another_tile_size_is_refused(
    exports: dict[str, Path], demo_chips: Path, tmp_path: Path
) -> None:
    out = tmp_path / "m.json"
    for chips in (["--chips", str(demo_chips)], []):  # given, or to be cut (refused before)
        code, stdout, stderr = _evaluate(
            str(exports["128"]), str(DEMO_REGION), *chips, "--out", str(out)
        )
        assert code == 2 and stdout == "" and not out.exists(), stderr
        line = stderr.strip()
        assert len(line.splitlines()) == 1 and "Traceback" not in line
        assert "takes 128 px tiles" in line and "--tile-px 64" in line, line


def test_onnx_refuses_cuda_and_curve(exports: dict[str, Path]) -> None:
    code, _, stderr = _evaluate(str(exports["fp32"]), str(DEMO_REGION), "--curve", "10")
    assert code == 2 and "--curve" in stderr and len(stderr.strip().splitlines()) == 1, stderr
    from geotl.config import load_region
    from geotl.errors import GeotlInputError
    from geotl.evaluate import evaluate_model

    with pytest.raises(GeotlInputError, match="ONNX Runtime on the CPU"):
        evaluate_model(exports["fp32"], load_region(DEMO_REGION), device="cuda")


def test_a_file_that_is_not_an_export_is_refused(tmp_path: Path) -> None:
    for name, data in (("m.onnx", b"not a graph"), ("m.txt", b"text")):
        f = tmp_path / name
        f.write_bytes(data)
        code, stdout, stderr = _evaluate(str(f), str(DEMO_REGION))
        assert code == 2 and stdout == "", stderr
        assert len(stderr.strip().splitlines()) == 1 and str(f) in stderr, stderr
