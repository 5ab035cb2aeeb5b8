"""``geotl predict`` through click's CliRunner: outputs, exit codes, bad input."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from geotl.cli.main import cli

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from predict import data


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("model")
    data.write_constant_model(d)
    return d


def _stripe_scene(path: Path) -> Path:
    band0 = np.full((140, 150), 120, dtype=np.uint8)
    band0[:, 60:70] = 0  # nodata stripe: the constant model makes two polygons
    return data.write_bands(path, np.stack([band0] * 3), nodata=0)


def _run(*args: str) -> tuple[int, str, str]:
    res = CliRunner().invoke(cli, ["-q", *args])
    return res.exit_code, res.stdout, res.stderr


def test_predict_writes_everything(tmp_path: Path, model_dir: Path) -> None:
    scene = _stripe_scene(tmp_path / "scene_20210603.tif")
    out = tmp_path / "out.geojson"
    code, stdout, stderr = _run(
        "predict",
        str(model_dir),
        str(scene),
        "-o",
        str(out),
        "--gpkg",
        str(tmp_path / "out.gpkg"),
        "--quicklook",
        str(tmp_path / "ql.png"),
        "--probabilities",
        str(tmp_path / "p.tif"),
        "--no-progress",
    )
    assert code == 0, stderr
    printed = stdout.split()
    assert str(out) in printed and str(tmp_path / "ql.png") in printed
    fc = json.loads(out.read_text())
    assert fc["type"] == "FeatureCollection" and "crs" not in fc
    assert len(fc["features"]) == 2
    props = fc["features"][0]["properties"]
    assert set(props) == {"id", "class", "score", "area_m2", "scene", "acquired", "model"}
    assert props["acquired"] == "2021-06-03"
    assert sum(f["properties"]["area_m2"] for f in fc["features"]) == pytest.approx(
        140 * 140 * 0.01, rel=2e-3
    )
    for name in ("out.qml", "out.gpkg", "ql.png", "p.tif"):
        assert (tmp_path / name).stat().st_size > 0
    assert not list(tmp_path.glob(".tmp-*"))


def test_an_alpha_band_is_the_mask_not_a_band(tmp_path: Path, model_dir: Path) -> None:
    # an RGBA orthomosaic (drone software, gdalwarp -dstalpha): the stripe is transparent
    rgba = np.full((4, 140, 150), 120, dtype=np.uint8)
    rgba[3] = 255
    rgba[3, :, 60:70] = 0
    scene = data.write_bands(tmp_path / "rgba_20210603.tif", rgba, photometric="RGB", alpha="YES")
    out = tmp_path / "out.geojson"
    code, _, stderr = _run("predict", str(model_dir), str(scene), "-o", str(out), "--no-progress")
    assert code == 0, stderr
    fc = json.loads(out.read_text())
    assert len(fc["features"]) == 2  # split by the transparent stripe, as by a nodata one
    assert sum(f["properties"]["area_m2"] for f in fc["features"]) == pytest.approx(
        140 * 140 * 0.01, rel=2e-3
    )


def test_a_fourth_band_gdal_tags_alpha_is_data_for_a_four_band_model(tmp_path: Path) -> None:
    # a NAIP-like red-green-blue-NIR byte file written with GDAL's defaults: band 4 is
    # tagged alpha, and without a nodata value GDAL masks with it (NIR 0 here: "no data")
    import rasterio

    model = tmp_path / "m4"
    data.write_constant_model(model, bands=["red", "green", "blue", "nir"])
    arr = np.full((4, 140, 150), 120, dtype=np.uint8)
    arr[3, :, :50] = 0
    scene = data.write_bands(tmp_path / "naip.tif", arr)
    with rasterio.open(scene) as ds:
        assert rasterio.enums.MaskFlags.alpha in ds.mask_flag_enums[0]
    out = tmp_path / "out.geojson"
    code, _, stderr = _run("predict", str(model), str(scene), "-o", str(out), "--no-progress")
    assert code == 0, stderr
    assert len(json.loads(out.read_text())["features"]) == 1


def test_a_vrt_stack_of_mixed_dtypes_predicts(tmp_path: Path, model_dir: Path) -> None:
    from chips.data import write_stack

    rgb = np.full((140, 150), 120, dtype=np.uint8)
    blue = np.full((140, 150), 120, dtype=np.int16)
    blue[:, 60:70] = -1  # no data in every band: the constant model makes two polygons
    rgb[:, 60:70] = 0
    scene = write_stack(
        tmp_path / "stack_20210603.vrt", [(rgb, 0), (rgb, 0), (blue, -1)], data.UTM17, data.ORIGIN
    )
    out = tmp_path / "out.geojson"
    code, _, stderr = _run(
        "predict",
        str(model_dir),
        str(scene),
        "-o",
        str(out),
        "--quicklook",
        str(tmp_path / "q.png"),
        "--no-progress",
    )
    assert code == 0, stderr
    fc = json.loads(out.read_text())
    assert len(fc["features"]) == 2


def test_existing_output_needs_overwrite(tmp_path: Path, model_dir: Path) -> None:
    scene = _stripe_scene(tmp_path / "s.tif")
    out = tmp_path / "out.geojson"
    out.write_text("old")
    code, _, stderr = _run("predict", str(model_dir), str(scene), "-o", str(out), "--no-progress")
    assert code == 2 and "--overwrite" in stderr
    assert out.read_text() == "old"
    code, _, _ = _run(
        "predict", str(model_dir), str(scene), "-o", str(out), "--overwrite", "--no-progress"
    )
    assert code == 0 and out.read_text() != "old"


def test_missing_output_folder_exit_2_before_work(tmp_path: Path, model_dir: Path) -> None:
    scene = _stripe_scene(tmp_path / "s.tif")
    code, _, stderr = _run(
        "predict", str(model_dir), str(scene), "-o", str(tmp_path / "nope" / "o.geojson")
    )
    assert code == 2
    assert "does not exist" in stderr and stderr.count("\n") == 1


def test_output_that_is_a_folder_exit_2_before_work(tmp_path: Path, model_dir: Path) -> None:
    scene = _stripe_scene(tmp_path / "s.tif")
    folder = tmp_path / "detections"
    (folder / "kept.txt").parent.mkdir()
    (folder / "kept.txt").write_text("mine")
    for extra in ([], ["--overwrite"]):
        code, _, stderr = _run(
            "predict", str(model_dir), str(scene), "-o", str(folder), "--no-progress", *extra
        )
        assert code == 2 and "is a folder: name the file to write" in stderr
        assert stderr.count("\n") == 1 and "Traceback" not in stderr
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("detections")] == ["detections"]
    assert (folder / "kept.txt").read_text() == "mine"


def test_read_only_output_folder_exit_2_before_work(
    tmp_path: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A folder files cannot be created in (a read-only disk: root is refused too)."""
    import errno
    import tempfile

    import geotl.predict.core

    scene = _stripe_scene(tmp_path / "s.tif")
    ro = tmp_path / "ro"
    ro.mkdir()
    mkstemp = tempfile.mkstemp

    def refuse_ro(*args: object, **kwargs: object) -> tuple[int, str]:
        if Path(str(kwargs.get("dir"))) == ro:
            raise OSError(errno.EROFS, "Read-only file system")
        return mkstemp(*args, **kwargs)  # type: ignore[call-overload,no-any-return]

    def no_work(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was loaded before the outputs were checked")

    monkeypatch.setattr(tempfile, "mkstemp", refuse_ro)
    monkeypatch.setattr(geotl.predict.core, "load_model", no_work)
    for outputs in (
        ["-o", str(ro / "o.geojson")],
        ["-o", str(tmp_path / "o.geojson"), "--gpkg", str(ro / "o.gpkg")],
        ["-o", str(tmp_path / "o.geojson"), "--quicklook", str(ro / "o.png")],
    ):
        code, _, stderr = _run("predict", str(model_dir), str(scene), *outputs, "--no-progress")
        assert code == 2, stderr
        assert "cannot write in folder" in stderr and "Read-only file system" in stderr
        assert stderr.count("\n") == 1 and "Traceback" not in stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ro", "s.tif"]


def test_corrupt_scene_skipped_others_written_exit_1(tmp_path: Path, model_dir: Path) -> None:
    good = _stripe_scene(tmp_path / "good.tif")
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"II*\x00" + b"\x00" * 100)
    out = tmp_path / "o.geojson"
    code, _, stderr = _run(
        "predict", str(model_dir), str(bad), str(good), "-o", str(out), "--no-progress"
    )
    assert code == 1
    assert "bad.tif" in stderr
    fc = json.loads(out.read_text())
    assert len(fc["features"]) == 2 and {f["properties"]["scene"] for f in fc["features"]} == {
        "good.tif"
    }


def test_unmappable_bands_exit_2(tmp_path: Path, model_dir: Path) -> None:
    scene = data.write_scene(tmp_path / "two.tif", data.blobs(64, 64), count=2)
    code, _, stderr = _run("predict", str(model_dir), str(scene), "-o", str(tmp_path / "o.geojson"))
    assert code == 2  # the only scene cannot be used: an input error, nothing written
    assert "two.tif" in stderr and "['red', 'green', 'blue']" in stderr
    assert not (tmp_path / "o.geojson").exists()
    code, _, stderr = _run(
        "predict",
        str(model_dir),
        str(scene),
        "-o",
        str(tmp_path / "o.geojson"),
        "--bands",
        "red,nir",
    )
    assert "lack ['green', 'blue']" in stderr


def test_incompatible_model_exit_2(tmp_path: Path, model_dir: Path) -> None:
    import shutil

    old = tmp_path / "old-model"
    shutil.copytree(model_dir, old)
    card = json.loads((old / "model.json").read_text())
    card["card_format"] = 0
    card["geotl_version"] = "0.0.1"
    (old / "model.json").write_text(json.dumps(card))
    scene = _stripe_scene(tmp_path / "s.tif")
    code, _, stderr = _run("predict", str(old), str(scene), "-o", str(tmp_path / "o.geojson"))
    assert code == 2 and "retrain" in stderr and "0.0.1" in stderr


def test_all_nodata_scene_empty_collection(tmp_path: Path, model_dir: Path) -> None:
    scene = data.write_scene(tmp_path / "empty.tif", np.zeros((70, 70), dtype=np.uint8))
    import rasterio

    with rasterio.open(scene, "r+") as ds:
        ds.write(np.zeros((3, 70, 70), dtype=np.uint8))
    out = tmp_path / "o.geojson"
    code, _, stderr = _run(
        "predict", str(model_dir), str(scene), "-o", str(out), "--gpkg", str(tmp_path / "o.gpkg")
    )
    assert code == 0, stderr
    assert json.loads(out.read_text()) == {"type": "FeatureCollection", "features": []}


def test_scenes_of_one_name_in_two_folders_keep_their_outputs_apart(
    tmp_path: Path, model_dir: Path
) -> None:
    import pyogrio

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = _stripe_scene(tmp_path / "a" / "plot.tif")
    band0 = np.full((140, 150), 120, dtype=np.uint8)
    second = data.write_bands(tmp_path / "b" / "plot.tif", np.stack([band0] * 3), crs="EPSG:32618")
    out = tmp_path / "o.geojson"
    code, stdout, stderr = _run(
        "predict",
        str(model_dir),
        str(first),
        str(second),
        "-o",
        str(out),
        "--gpkg",
        str(tmp_path / "o.gpkg"),
        "--quicklook",
        str(tmp_path / "q.png"),
        "--no-progress",
    )
    assert code == 0, stderr
    quicklooks = [tmp_path / "q_a_plot.png", tmp_path / "q_b_plot.png"]
    assert all(str(q) in stdout.split() and q.stat().st_size > 0 for q in quicklooks)
    features = json.loads(out.read_text())["features"]
    by_scene = {f["properties"]["scene"] for f in features}
    assert by_scene == {"a/plot.tif", "b/plot.tif"} and len(features) == 3
    assert len({f["properties"]["id"] for f in features}) == 3
    layers = sorted(str(n) for n, _ in pyogrio.list_layers(tmp_path / "o.gpkg"))
    assert [n for n in layers if n.startswith("detections")] == [
        "detections_a_plot",
        "detections_b_plot",
    ]
    # the same file twice: refused before any work, nothing written
    again = tmp_path / "again.geojson"
    code, _, stderr = _run(
        "predict", str(model_dir), str(first), str(tmp_path / "a" / ".." / "a" / "plot.tif"),
        "-o", str(again), "--no-progress",
    )  # fmt: skip
    assert code == 2 and "given twice" in stderr and "plot.tif" in stderr
    assert not again.exists()


def test_an_interrupted_run_leaves_no_output_and_runs_again(
    tmp_path: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import geotl.predict.core as core

    scenes = [_stripe_scene(tmp_path / f"s{i}.tif") for i in range(2)]
    args = [
        "predict", str(model_dir), *map(str, scenes), "-o", str(tmp_path / "o.geojson"),
        "--gpkg", str(tmp_path / "o.gpkg"), "--quicklook", str(tmp_path / "q.png"),
        "--probabilities", str(tmp_path / "p.tif"), "--no-progress",
    ]  # fmt: skip
    real = core.predict_scene
    calls: list[Path] = []

    def ctrl_c_on_the_second(*a: object, **k: object) -> object:
        calls.append(Path(str(a[1])))
        if len(calls) == 2:
            raise KeyboardInterrupt  # the first scene's quicklook and probabilities are done
        return real(*a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(core, "predict_scene", ctrl_c_on_the_second)
    with pytest.raises(KeyboardInterrupt):
        core.predict_scenes(
            model_dir, scenes, tmp_path / "o.geojson", gpkg=tmp_path / "o.gpkg",
            quicklook=tmp_path / "q.png", probabilities=tmp_path / "p.tif",
        )  # fmt: skip
    assert len(calls) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s0.tif", "s1.tif"]
    monkeypatch.setattr(core, "predict_scene", real)
    code, stdout, stderr = _run(*args)
    assert code == 0, stderr
    written = {Path(p).name for p in stdout.split()}
    assert written == {
        "o.geojson",
        "o.qml",
        "o.gpkg",
        "q_s0.png",
        "q_s1.png",
        "p_s0.tif",
        "p_s1.tif",
        "p_s0.qml",
        "p_s1.qml",
    }
    assert all((tmp_path / name).stat().st_size > 0 for name in written)
    assert not list(tmp_path.glob(".tmp-*"))


def test_an_output_named_for_another_format_is_refused(tmp_path: Path, model_dir: Path) -> None:
    scene = _stripe_scene(tmp_path / "s.tif")
    code, _, stderr = _run("predict", str(model_dir), str(scene), "-o", str(tmp_path / "o.shp"))
    assert code == 2 and "o.shp: is written as geojson: name it -o OUT.geojson" in stderr
    code, _, stderr = _run(
        "predict", str(model_dir), str(scene), "-o", str(tmp_path / "o.geojson"),
        "--gpkg", str(tmp_path / "o.sqlite"),
    )  # fmt: skip
    assert code == 2 and "o.sqlite: is written as gpkg" in stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.tif"]


def test_a_scene_where_the_model_goes_says_so(tmp_path: Path) -> None:
    scene = _stripe_scene(tmp_path / "s.tif")
    code, _, stderr = _run("predict", str(scene), str(scene), "-o", str(tmp_path / "o.geojson"))
    assert code == 2 and "s.tif: is a file, not a model folder" in stderr


def test_sigterm_unwinds_like_ctrl_c(tmp_path: Path, model_dir: Path) -> None:
    """``kill`` (systemd, a batch system's limit): exit 143, no scratch folder, no output."""
    import os
    import signal
    import subprocess
    import time

    band = np.full((2048, 2048), 120, dtype=np.uint8)
    scene = data.write_bands(tmp_path / "big.tif", np.stack([band] * 3))
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    out = tmp_path / "o.geojson"
    proc = subprocess.Popen(
        [sys.executable, "-m", "geotl", "-q", "predict", str(model_dir), str(scene), "-o",
         str(out), "--window", "32", "--overlap", "8", "--no-progress"],
        env={**os.environ, "TMPDIR": str(scratch)},
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not list(scratch.glob("geotl-predict-*")) and time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        time.sleep(0.05)
    time.sleep(0.5)  # windows streaming
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr
    assert stderr.strip().endswith("geotl: terminated")
    assert not list(scratch.iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.tif", "tmp"]


def test_a_scene_without_a_valid_pixel_is_said(tmp_path: Path, model_dir: Path) -> None:
    empty = data.write_bands(tmp_path / "empty.tif", np.zeros((3, 90, 90), np.uint8), nodata=0)
    out = tmp_path / "o.geojson"
    code, _, stderr = _run("predict", str(model_dir), str(empty), "-o", str(out), "--no-progress")
    # nothing seen, nothing detected (a tile beyond a swath's edge), and said
    assert code == 0 and "empty.tif: no valid pixel" in stderr
    assert json.loads(out.read_text())["features"] == []


def test_gdal_virtual_paths_are_read_as_given(tmp_path: Path, model_dir: Path) -> None:
    # a scene inside a zip, and one over HTTP (byte ranges, as a COG in a bucket)
    import zipfile

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from monitor.stac_server import FileServer

    (tmp_path / "served").mkdir()
    scene = _stripe_scene(tmp_path / "served" / "scene.tif")
    with zipfile.ZipFile(tmp_path / "scenes.zip", "w") as z:
        z.write(scene, "inner/scene.tif")
    server = FileServer(tmp_path / "served")
    try:
        url = server.url(scene)
        for i, given in enumerate(
            [f"/vsizip/{tmp_path}/scenes.zip/inner/scene.tif", f"/vsicurl/{url}", url]
        ):
            out = tmp_path / f"out{i}.geojson"
            code, _, stderr = _run(
                "predict",
                str(model_dir),
                given,
                "-o",
                str(out),
                "--quicklook",
                str(tmp_path / f"q{i}.png"),
            )
            assert code == 0, stderr
            features = json.loads(out.read_text())["features"]
            assert len(features) == 2 and {f["properties"]["scene"] for f in features} == {
                "scene.tif"
            }
        code, _, stderr = _run(
            "predict",
            str(model_dir),
            f"/vsicurl/{url[:-4]}-gone.tif",
            "-o",
            str(tmp_path / "x.geojson"),
        )
        assert code == 2 and "scene-gone.tif" in stderr and "Traceback" not in stderr
    finally:
        server.close()


def test_a_vrt_whose_source_is_gone_names_the_missing_file_not_damage(
    tmp_path: Path, model_dir: Path
) -> None:
    from chips.data import write_stack

    band = np.full((140, 150), 120, dtype=np.uint8)
    scene = write_stack(tmp_path / "stack.vrt", [(band, 0)] * 3, data.UTM17, data.ORIGIN)
    (tmp_path / "stack_b2.tif").unlink()  # moved away after the VRT was built
    code, _, stderr = _run("predict", str(model_dir), str(scene), "-o", str(tmp_path / "o.geojson"))
    assert code == 2, stderr
    assert "stack.vrt" in stderr and "is missing (a VRT's source" in stderr
    assert "damaged" not in stderr and "Traceback" not in stderr
