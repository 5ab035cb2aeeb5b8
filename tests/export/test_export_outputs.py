"""``geotl export``'s outputs: the .onnx and its STAC item come as a pair or not at all, in
a folder that can take them, never over the model folder's own item; refusals name the
file to change before any work."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from geotl.cli.main import cli
from geotl.errors import GeotlInputError
from geotl.export import export_onnx

REPO = Path(__file__).resolve().parents[2]
DEMO_REGION = REPO / "regions" / "demo-osbs.toml"


def _run(*args: str) -> tuple[int, str, str]:
    res = CliRunner().invoke(cli, ["-q", *args])
    return res.exit_code, res.stdout, res.stderr


def _one_line(code: int, stdout: str, stderr: str) -> str:
    assert code == 2, stderr
    assert stdout == "" and len(stderr.strip().splitlines()) == 1, stderr
    assert "Traceback" not in stderr
    return stderr


def test_export_beside_the_weights_keeps_the_model_folders_stac_item(
    demo_model: Path, tmp_path: Path
) -> None:
    model = tmp_path / "m"
    shutil.copytree(demo_model, model)
    item = (model / "model.stac.json").read_bytes()
    for extra in ([], ["--overwrite"]):  # --overwrite must not replace it either
        code, stdout, stderr = _run(
            "export", str(model), "--onnx", str(model / "model.onnx"), "--tile-px", "64", *extra
        )
        said = _one_line(code, stdout, stderr)
        assert str(model / "model.onnx") in said and "model.stac.json" in said
        assert "--onnx" in said  # the fix: another name
    assert (model / "model.stac.json").read_bytes() == item
    assert not (model / "model.onnx").exists()
    code, _, stderr = _run("models", "verify", str(model))
    assert code == 0, stderr


def test_export_to_a_read_only_folder_is_refused_before_exporting(
    demo_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tempfile

    from geotl.export import trace

    folder = tmp_path / "share"
    folder.mkdir()
    real = tempfile.mkstemp

    def read_only(*args: object, **kwargs: object) -> tuple[int, str]:
        if Path(str(kwargs.get("dir", ""))) == folder:
            raise OSError(30, "Read-only file system")
        return real(*args, **kwargs)  # type: ignore[call-overload,no-any-return]

    def no_export(*args: object) -> None:
        raise AssertionError("exported before finding the folder read-only")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    monkeypatch.setattr(trace, "torch_to_onnx", no_export)
    out = folder / "m.onnx"
    said = _one_line(*_run("export", str(demo_model), "--onnx", str(out)))
    assert str(out) in said and "Read-only file system" in said and "writable folder" in said
    assert list(folder.iterdir()) == []


def test_a_failed_stac_item_leaves_no_onnx_behind(
    demo_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from geotl.export import stac

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(stac, "write_model_item", full)
    out = tmp_path / "m.onnx"
    with pytest.raises(OSError, match="No space left"):
        export_onnx(demo_model, out, tile_px=64)
    assert list(tmp_path.iterdir()) == []  # neither file, no temporary one


def test_the_stac_item_names_the_onnx_file(demo_model: Path, tmp_path: Path) -> None:
    import hashlib
    import json

    out = tmp_path / "m.onnx"
    result = export_onnx(demo_model, out, tile_px=64)
    asset = json.loads(result.stac.read_text())["assets"]["model"]
    assert asset["href"] == "m.onnx"
    assert asset["file:size"] == out.stat().st_size
    assert asset["file:checksum"] == "1220" + hashlib.sha256(out.read_bytes()).hexdigest()


def test_exporting_an_onnx_file_says_to_export_the_model_folder(
    demo_model: Path, tmp_path: Path
) -> None:
    onnx_file = tmp_path / "m.onnx"
    export_onnx(demo_model, onnx_file, tile_px=64)
    said = _one_line(*_run("export", str(onnx_file), "--onnx", str(tmp_path / "q.onnx")))
    assert str(onnx_file) in said and "already an ONNX export" in said
    assert "model folder" in said and "the scenes" not in said


def test_int8_calibration_on_a_region_of_other_bands_names_the_region(
    demo_model: Path, tmp_path: Path
) -> None:
    # the demo region with its imagery named as other bands: refused before it is chipped
    text = DEMO_REGION.read_text().replace('"demo-osbs/', f'"{DEMO_REGION.parent}/demo-osbs/')
    text = text.replace('bands = ["red", "green", "blue"]', 'bands = ["red", "green", "nir"]')
    other = tmp_path / "other.toml"
    other.write_text(text)
    with pytest.raises(GeotlInputError) as exc:
        export_onnx(demo_model, tmp_path / "m.onnx", int8=True, tile_px=64, region_path=other)
    said = str(exc.value)
    assert said.startswith(f"{other}: ") and "['blue']" in said and "--calibrate" in said
    assert not (tmp_path / "m.onnx").exists()
