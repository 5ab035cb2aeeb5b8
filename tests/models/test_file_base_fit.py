"""``file:<path>`` bases put into the encoder ``--encoder`` names: plain timm files fit
smp's ``tu-`` encoders, and files of another architecture are refused in words."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from click.testing import CliRunner

from geotl.cli.main import cli
from geotl.errors import BaseModelError
from geotl.models.adapt import build_adapted_network
from geotl.models.catalogue import load_base

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[2]
DEMO_REGION = REPO / "regions" / "demo-osbs.toml"


def _save_timm(tmp_path: Path, name: str) -> Path:
    torch.manual_seed(0)
    path = tmp_path / f"{name}.pth"
    torch.save(timm.create_model(name, pretrained=False).state_dict(), path)
    return path


def test_a_plain_timm_file_fills_the_tu_encoder(tmp_path: Path) -> None:
    # timm names the stem "stem.0", smp's features_only wrapper "model.stem_0": it was
    # refused with "have no 'model.stem_0.weight' ... --encoder NAME", the very name given
    path = _save_timm(tmp_path, "convnext_tiny")
    saved = torch.load(path, weights_only=True)
    base = load_base(f"file:{path}", encoder="tu-convnext_tiny")
    net, _, _ = build_adapted_network(base, ["red", "green", "blue"], ["tree"])
    own = net.encoder.state_dict()  # type: ignore[union-attr]
    assert torch.equal(own["model.stem_0.weight"], saved["stem.0.weight"])
    assert torch.equal(own["model.stages_3.blocks.2.gamma"], saved["stages.3.blocks.2.gamma"])


@pytest.mark.parametrize(
    ("timm_name", "encoder", "said"),
    [
        # same key names, other shapes: torch's multi-line "size mismatch" dump, exit 1
        ("resnet18", "resnet50", "layer1.0.conv1.weight is (64, 64, 3, 3) in the file"),
        ("resnet50", "resnet34", "layer1.0.conv1.weight is (64, 64, 1, 1) in the file"),
        # fewer blocks: named by the first missing tensor
        ("resnet18", "resnet34", "missing tensors (first: layer1.2.conv1.weight)"),
    ],
)
def test_a_file_of_another_architecture_is_refused_in_one_line(
    tmp_path: Path, timm_name: str, encoder: str, said: str
) -> None:
    path = _save_timm(tmp_path, timm_name)
    base = load_base(f"file:{path}", encoder=encoder)
    with pytest.raises(BaseModelError) as info:
        build_adapted_network(base, ["red", "green", "blue"], ["tree"])
    text = str(info.value)
    assert said in text and str(path) in text and "--encoder NAME" in text, text
    assert "\n" not in text


def test_train_refuses_it_with_exit_2(tmp_path: Path, demo_chips: Path) -> None:
    path = _save_timm(tmp_path, "resnet18")
    out = tmp_path / "m"
    args = ["train", str(DEMO_REGION), "--chips", str(demo_chips), "--out", str(out)]
    args += ["--base", f"file:{path}", "--encoder", "resnet50", "--epochs", "1"]
    res = CliRunner().invoke(cli, ["-q", *args])
    assert res.exit_code == 2, res.output
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
    assert str(path) in res.stderr and "in the encoder" in res.stderr
    assert not out.exists()
