"""Real client: the geotl Processing plugin in headless QGIS (Debian's python3-qgis).

The plugin is loaded from the contents of the zip ``make qgis-plugin`` builds and runs the
geotl executable of this checkout (a small wrapper script), as QGIS would.
"""

from __future__ import annotations

import functools
import http.server
import io
import json
import os
import re
import subprocess
import sys
import threading
import zipfile
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from test_qgis_opens_outputs import _MISSING, SYSTEM_PYTHON, _qgis_env

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SCENE = REPO / "regions" / "demo-osbs" / "imagery" / "OSBS_029.tif"
needs_qgis = pytest.mark.skipif(_MISSING is not None, reason=_MISSING or "")
pytestmark = pytest.mark.qgis


@pytest.fixture(scope="module")
def plugin_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The zip ``make qgis-plugin`` builds (same script, into a temporary folder)."""
    out = tmp_path_factory.mktemp("dist") / "geotl_processing.zip"
    subprocess.run(
        [sys.executable, str(REPO / "scripts" / "build_qgis_plugin.py"), "--out", str(out)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return out


@pytest.fixture(scope="module")
def plugins_dir(plugin_zip: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The zip extracted, as *Install from ZIP* does into QGIS's plugins folder."""
    folder = tmp_path_factory.mktemp("plugins")
    with zipfile.ZipFile(plugin_zip) as zf:
        zf.extractall(folder)
    return folder


@pytest.fixture(scope="module")
def geotl_exe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An executable ``geotl`` that runs this checkout with the test's interpreter."""
    exe = tmp_path_factory.mktemp("bin") / "geotl"
    exe.write_text(
        f'#!/bin/sh\nPYTHONPATH="{REPO}" exec "{sys.executable}" -m geotl "$@"\n',
        encoding="utf-8",
    )
    exe.chmod(0o755)
    return exe


def _run_case(spec: dict[str, Any], tmp_path: Path, env: dict[str, str] | None = None) -> Any:
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(spec))
    res = subprocess.run(
        [SYSTEM_PYTHON, str(HERE / "run_plugin.py"), str(spec_path)],
        env={**_qgis_env(), **(env or {})},
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
    assert lines, f"no report from QGIS (exit {res.returncode}): {res.stderr[-3000:]}"
    report = json.loads(lines[-1])
    assert "crash" not in report, report["crash"]
    assert report["plugin_file"].startswith(spec["plugins"])  # the zip's copy, not the repo's
    return report


def test_zip_is_an_installable_plugin(plugin_zip: Path) -> None:
    with zipfile.ZipFile(plugin_zip) as zf:
        names = set(zf.namelist())
        metadata = zf.read("geotl_processing/metadata.txt").decode()
        build = json.loads(zf.read("geotl_processing/build.json"))
    # one top folder with what the plugin manager reads
    assert {n.split("/")[0] for n in names} == {"geotl_processing"}
    for name in ("__init__.py", "metadata.txt", "icon.svg", "LICENSE", "provider.py"):
        assert f"geotl_processing/{name}" in names
    assert not any("__pycache__" in n for n in names)
    for key in ("name=", "qgisMinimumVersion=", "version=", "author=", "about=", "license="):
        assert f"\n{key}" in metadata
    assert "hasProcessingProvider=yes" in metadata
    assert "icon=icon.svg" in metadata
    assert build["repository"] == str(REPO)


def test_plugin_never_imports_geotl_or_torch() -> None:
    for path in (REPO / "qgis" / "geotl_processing").glob("*.py"):
        text = path.read_text()
        for banned in ("import geotl", "from geotl", "import torch", "from torch"):
            assert banned not in text, f"{path.name}: {banned}"


@needs_qgis
def test_predict_in_qgis(
    plugins_dir: Path, geotl_exe: Path, demo_model: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    report = _run_case(
        {
            "plugins": str(plugins_dir),
            "geotl": str(geotl_exe),
            "case": "predict",
            "scene": str(SCENE),
            "model": str(demo_model),
            "output": str(out / "trees.geojson"),
            "gpkg": str(out / "trees.gpkg"),
        },
        tmp_path,
    )
    assert report["algorithms"] == [
        "geotl:monitor_status",
        "geotl:predict",
        "geotl:suggest",
        "geotl:train",
    ]
    assert "results" in report, report.get("error")
    layer = report["output"]
    assert layer["valid"] and layer["count"] > 0
    assert {"id", "class", "score", "area_m2", "scene", "acquired", "model"} <= set(layer["fields"])
    assert layer["crs"] == "EPSG:4326"
    assert layer["classes"] == ["tree"]
    assert layer["geometry_valid"]
    # geotl's QML beside the GeoJSON is the layer's default style: categories by class
    assert (layer["renderer"], layer["class_attribute"]) == ("categorizedSymbol", "class")
    # ... and the dialog's post-processor applies it to the loaded layer too
    post = report["output_post_processed"]
    assert post["renderer_before_post_processor"] != "categorizedSymbol"
    assert (post["renderer"], post["class_attribute"]) == ("categorizedSymbol", "class")
    assert report["gpkg"]["valid"] and report["gpkg"]["count"] == layer["count"]
    assert report["gpkg"]["crs"] == "EPSG:32617"
    # the bar moved with geotl's JSON progress lines, up to 100 %
    assert report["progress"] and max(report["progress"]) == 100
    assert any(t.startswith("predict OSBS_029.tif") for t in report["texts"])
    assert "--resample --window 128" in " ".join(report["log"])  # passed on to geotl
    assert sorted(p.name for p in out.iterdir()) == ["trees.geojson", "trees.gpkg", "trees.qml"]


@needs_qgis
def test_cancel_leaves_nothing_behind(
    plugins_dir: Path, geotl_exe: Path, demo_model: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    report = _run_case(
        {
            "plugins": str(plugins_dir),
            "geotl": str(geotl_exe),
            "case": "cancel",
            "scene": str(SCENE),
            "model": str(demo_model),
            "output": str(out / "trees.geojson"),
        },
        tmp_path,
        env={"TMPDIR": str(scratch)},
    )
    # cancelled at the first progress line, while the model runs
    assert report["progress"] == [0.0], report["progress"]
    assert "results" not in report
    assert report["error"].startswith("cancelled"), report["error"]
    assert list(out.iterdir()) == []
    assert not [p for p in scratch.iterdir() if p.name.startswith("geotl-")]


@needs_qgis
def test_bad_input_messages(
    plugins_dir: Path, geotl_exe: Path, demo_model: Path, tmp_path: Path
) -> None:
    empty = tmp_path / "not-a-model"
    empty.mkdir()
    other = tmp_path / "other-version"
    other.mkdir()
    for name in ("model.json", "model.safetensors"):
        (other / name).write_bytes((demo_model / name).read_bytes())
    card = json.loads((other / "model.json").read_text())
    card.update(card_format=99, geotl_version="9.0.0")
    (other / "model.json").write_text(json.dumps(card))
    oneband = tmp_path / "oneband.tif"
    import rasterio

    with rasterio.open(SCENE) as src:
        profile = src.profile | {"count": 1}
        with rasterio.open(oneband, "w", **profile) as dst:
            dst.write(src.read(1), 1)
    out = tmp_path / "out"
    out.mkdir()
    scene = {"uri": str(SCENE)}
    tiles = tmp_path / "tiles"  # a web (XYZ) layer, served from a local folder: no network
    xyz = {
        "provider": "wms",
        "name": "tiles",
        "uri": f"type=xyz&url=file://{tiles}/{{z}}/{{x}}/{{y}}.png",
    }

    def attempt(**kw: Any) -> dict[str, Any]:
        return {"inputs": [scene], "model": str(demo_model), "output": str(out / "d.geojson")} | kw

    report = _run_case(
        {
            "plugins": str(plugins_dir),
            "geotl": str(geotl_exe),
            "case": "errors",
            "attempts": [
                attempt(model=str(empty)),
                attempt(model=str(other)),
                attempt(inputs=[{"uri": str(oneband)}]),
                attempt(inputs=[xyz]),
                attempt(geotl=str(tmp_path / "nowhere" / "geotl")),
                attempt(geotl="/bin/echo"),
            ],
        },
        tmp_path,
    )
    errors = [r.get("error", "") for r in report["errors"]]
    assert all("Traceback" not in e and "\n" not in e.strip() for e in errors), errors
    bad_folder, other_version, bands, web, missing, wrong = errors
    assert str(empty) in bad_folder and "not a geotl model folder" in bad_folder
    assert str(other) in other_version and "retrain" in other_version
    assert str(oneband) in bands and "gdalbuildvrt -separate" in bands  # one band of several
    assert "not file-backed" in web and "Export > Save As" in web
    for msg in (missing, wrong):
        assert "Processing > Options > Providers > geotl" in msg, msg
    assert "not found" in missing and "not the geotl executable" in wrong
    assert list(out.iterdir()) == []


@needs_qgis
def test_train_form_and_monitor_table(
    plugins_dir: Path, geotl_exe: Path, demo_model: Path, tmp_path: Path
) -> None:
    region = REPO / "regions" / "demo-osbs.toml"
    monitor_out = tmp_path / "monitor"
    subprocess.run(
        [
            str(geotl_exe),
            "-q",
            "monitor",
            str(region),
            "--model",
            str(demo_model),
            "--out",
            str(monitor_out),
            "--once",
        ],
        check=True,
        capture_output=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    report = _run_case(
        {
            "plugins": str(plugins_dir),
            "geotl": str(geotl_exe),
            "case": "forms",
            "region": str(region),
            "monitor_out": str(monitor_out),
            "monitor_table": str(tmp_path / "passes.gpkg"),
        },
        tmp_path,
    )
    options = report["base_options"]
    assert options[0].startswith("(the region file's")
    assert "pkg:efficientnet-lite0  [Apache-2.0, commercial use: yes]" in options
    assert "results" in report["monitor"], report["monitor"].get("error")
    table = report["monitor_layer"]
    assert table["valid"] and table["count"] == 1
    row = table["rows"][0]
    assert row["status"] == "done" and row["scene"].startswith("OSBS_029")
    assert int(row["detections"]) > 0 and row["pass_file"].endswith(".geojson")
    assert float(row["detected_area_m2"]) > 0  # history.csv's areas reach the table


@needs_qgis
def test_suggest_in_qgis(
    plugins_dir: Path, geotl_exe: Path, demo_model: Path, tmp_path: Path
) -> None:
    from test_suggest import _region  # the demo region, labels complete in the left half

    region = _region(tmp_path)
    report = _run_case(
        {
            "plugins": str(plugins_dir),
            "geotl": str(geotl_exe),
            "case": "suggest",
            "region": str(region),
            "model": str(demo_model),
            "output": str(tmp_path / "areas.gpkg"),
        },
        tmp_path,
    )
    assert "results" in report, report.get("error")
    areas = report["areas"]
    assert areas["valid"] and areas["count"] == 3 and areas["crs"] == "EPSG:32617"
    assert {"rank", "score", "scene", "expected_objects", "size_m"} <= set(areas["fields"])
    # the dialog loads the squares under this name, numbered by geotl's style
    assert areas["load_name"] == "Areas to label" and areas["labels"] == "rank"
    assert any(t.startswith("predict OSBS_029.tif") for t in report["texts"])


@needs_qgis
def test_predict_outputs_load_in_qgis(plugins_dir: Path, geotl_exe: Path, tmp_path: Path) -> None:
    # an empty GeoJSON was loaded as a table (no geometry, no CRS, no style), and with
    # several scenes the dialog looked for a PROBABILITIES file that is never written
    import numpy as np
    from predict import data

    none, every = tmp_path / "none", tmp_path / "every"
    data.write_constant_model(none, fg=False)
    data.write_constant_model(every)
    band0 = np.full((60, 70), 150, dtype=np.uint8)
    utm17 = data.write_scene(tmp_path / "a.tif", band0)
    utm18 = data.write_scene(tmp_path / "b.tif", band0, crs="EPSG:32618")
    out = tmp_path / "out"
    out.mkdir()
    base = {"plugins": str(plugins_dir), "geotl": str(geotl_exe), "case": "predict_loads"}
    empty = _run_case(
        base | {"scenes": [str(utm17)], "model": str(none), "output": str(out / "e.geojson")},
        tmp_path,
    )
    assert "results" in empty, empty.get("error")
    (layer,) = empty["loaded"]
    assert layer["valid"] and layer["count"] == 0
    assert (layer["geometry"], layer["crs"]) == ("Polygon", "EPSG:4326")
    assert layer["renderer"] == "categorizedSymbol"
    probs = str(out / "p.tif")
    many = _run_case(
        base
        | {
            "scenes": [str(utm17), str(utm18)],
            "model": str(every),
            "output": str(out / "m.geojson"),
            "probabilities": probs,
        },
        tmp_path,
    )
    assert "results" in many, many.get("error")
    per_scene = [str(out / "p_a.tif"), str(out / "p_b.tif")]
    assert many["results"]["PROBABILITIES"] is None
    assert many["results"]["PROBABILITIES_PER_SCENE"] == per_scene
    loaded = {item["source"]: item for item in many["loaded"]}
    assert set(loaded) == {str(out / "m.geojson"), *per_scene}
    assert all(item["valid"] for item in loaded.values()), loaded
    assert [loaded[p]["crs"] for p in per_scene] == ["EPSG:32617", "EPSG:32618"]
    assert loaded[str(out / "m.geojson")]["renderer"] == "categorizedSymbol"
    # a scene geotl skips (exit 1, the others written): a warning, not a failure that
    # leaves the written detections unloaded
    oneband = data.write_scene(tmp_path / "oneband.tif", band0, count=1)
    partial = _run_case(
        base
        | {
            "scenes": [str(utm17), str(oneband)],
            "model": str(every),
            "output": str(out / "partial.geojson"),
        },
        tmp_path,
    )
    assert "results" in partial, partial.get("error")
    (layer,) = partial["loaded"]
    assert layer["valid"] and layer["count"] == 1
    assert any("1 of 2 scene(s) skipped" in line for line in partial["log"]), partial["log"]
    # rasters inside a zip (a download, opened as is): geotl gets GDAL's path to each,
    # not the zip file twice
    import zipfile

    archive = tmp_path / "scenes.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(utm17, "a.tif")
        zf.write(utm18, "b.tif")
    zipped = _run_case(
        base
        | {
            "scenes": [{"uri": f"/vsizip/{archive}/{n}.tif", "name": n} for n in "ab"],
            "model": str(every),
            "output": str(out / "zipped.geojson"),
        },
        tmp_path,
    )
    assert "results" in zipped, zipped.get("error")
    (layer,) = zipped["loaded"]
    assert layer["valid"] and layer["count"] == 2


class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files with HTTP range requests, as GDAL's /vsicurl/ reads a COG."""

    def send_head(self) -> Any:
        path = self.translate_path(self.path)
        ranged = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range") or "")
        if ranged is None or not os.path.isfile(path):
            return super().send_head()
        size = os.path.getsize(path)
        start, end = int(ranged[1]), min(int(ranged[2] or size - 1), size - 1)
        with open(path, "rb") as fh:
            fh.seek(start)
            body = fh.read(end - start + 1)
        self.send_response(206)
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        return io.BytesIO(body)

    def log_message(self, *args: Any) -> None:
        pass


@needs_qgis
def test_predict_remote_cog_layer(plugins_dir: Path, geotl_exe: Path, tmp_path: Path) -> None:
    # a COG added by URL (Layer > Add Raster Layer > HTTP): geotl streams it as GDAL does;
    # the plugin refused it as "not file-backed" and asked for a download
    import numpy as np
    from predict import data

    every = tmp_path / "every"
    data.write_constant_model(every)
    served = tmp_path / "www"
    served.mkdir()
    for name in ("a", "b"):
        data.write_scene(served / f"{name}.tif", np.full((60, 70), 150, dtype=np.uint8))
    handler = functools.partial(_RangeHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    out = tmp_path / "out"
    out.mkdir()
    try:
        report = _run_case(
            {
                "plugins": str(plugins_dir),
                "geotl": str(geotl_exe),
                "case": "predict_loads",
                "scenes": [
                    {"uri": f"/vsicurl/{url}/a.tif", "name": "cog"},
                    {"uri": f"{url}/b.tif", "name": "url"},
                ],
                "model": str(every),
                "output": str(out / "cog.geojson"),
            },
            tmp_path,
        )
    finally:
        server.shutdown()
    assert "results" in report, report.get("error")
    assert f"/vsicurl/{url}/a.tif {url}/b.tif -o" in " ".join(report["log"])  # verbatim
    (layer,) = report["loaded"]
    assert layer["valid"] and layer["count"] == 2  # one object per scene


@needs_qgis
def test_layers_geotl_cannot_read_are_refused(
    plugins_dir: Path, geotl_exe: Path, tmp_path: Path
) -> None:
    # a raster table of a GeoPackage holding several: geotl got the GeoPackage's path and
    # said "raster has no CRS"; a vector layer was "not file-backed"; suggest's areas saved
    # as .geojson were a GeoPackage under that name
    import numpy as np
    import rasterio
    from predict import data

    model = tmp_path / "model"
    data.write_constant_model(model)
    scene = data.write_scene(tmp_path / "a.tif", np.full((60, 70), 150, dtype=np.uint8))
    tables = tmp_path / "tables.gpkg"
    with rasterio.open(scene) as src:
        for table, extra in (("first", {}), ("second", {"APPEND_SUBDATASET": "YES"})):
            profile = src.profile | {"driver": "GPKG", "RASTER_TABLE": table, **extra}
            profile.pop("nodata", None)
            with rasterio.open(tables, "w", **profile) as dst:
                dst.write(src.read())
    vectors = tmp_path / "labels.geojson"
    vectors.write_text(
        '{"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {}, '
        '"geometry": {"type": "Point", "coordinates": [-81.99, 29.69]}}]}'
    )
    out = tmp_path / "out"
    out.mkdir()
    suggest = {
        "REGION": str(REPO / "regions" / "demo-osbs.toml"),
        "MODEL": str(model),
        "N": 3,
        "OUTPUT": str(out / "areas.geojson"),
    }

    def attempt(*inputs: dict[str, str], **kw: Any) -> dict[str, Any]:
        return {"inputs": list(inputs), "model": str(model), "output": str(out / "d.geojson")} | kw

    report = _run_case(
        {
            "plugins": str(plugins_dir),
            "geotl": str(geotl_exe),
            "case": "errors",
            "attempts": [
                attempt({"provider": "gdal", "name": "second", "uri": f"GPKG:{tables}:second"}),
                attempt({"provider": "ogr", "name": "labels", "uri": str(vectors)}),
                attempt(alg="geotl:suggest", params=suggest),
            ],
        },
        tmp_path,
    )
    errors = [r.get("error", "") for r in report["errors"]]
    assert all("Traceback" not in e and "\n" not in e.strip() for e in errors), errors
    table, vector, areas = errors
    assert "'second'" in table and str(tables) in table and "2 rasters" in table, table
    assert "Export > Save As" in table
    assert "'labels' is not a raster layer" in vector, vector
    assert ".gpkg" in areas and "areas.geojson" in areas, areas
    assert list(out.iterdir()) == []


@needs_qgis
def test_probabilities_load_styled_into_new_folders(
    plugins_dir: Path, geotl_exe: Path, tmp_path: Path
) -> None:
    # the probabilities COG loaded as QGIS's default (grey, or an RGB composite of the
    # first three bands for an instance model), not as the class's probability 0-1; the
    # outputs' folders had to exist, and a `geotl run` folder was refused as the model
    import numpy as np
    from predict import data

    run = tmp_path / "run ä"  # what `geotl run --out` makes: the model is run/model
    data.write_constant_model(run / "model")
    scene = data.write_scene(tmp_path / "scène 1.tif", np.full((60, 70), 150, dtype=np.uint8))
    out = tmp_path / "new é" / "deeper"
    probs = tmp_path / "also new" / "p ü.tif"
    base = {"plugins": str(plugins_dir), "geotl": str(geotl_exe), "case": "predict_loads"}
    report = _run_case(
        base
        | {
            "scenes": [{"uri": str(scene), "name": "scène"}],
            "model": str(run),
            "output": str(out / "d.geojson"),
            "probabilities": str(probs),
        },
        tmp_path,
    )
    assert "results" in report, report.get("error")
    assert any("geotl run folder" in line for line in report["log"]), report["log"]
    loaded = {item["source"]: item for item in report["loaded"]}
    assert loaded[str(out / "d.geojson")]["renderer"] == "categorizedSymbol"
    layer = loaded[str(probs)]
    assert layer["valid"] and layer["renderer"] == "singlebandpseudocolor", layer
    assert (layer["band"], layer["range"]) == (1, [0.0, 1.0])
    assert layer["legend"] == ["tree 0", "tree 1"]
    # named for what it is, not the form's whole label (a sentence in the Layers panel)
    assert layer["name"] == "Probabilities"
    assert sorted(p.name for p in probs.parent.iterdir()) == ["p ü.qml", "p ü.tif"]
    # geotl fails: the folders made for it are removed again
    failed = _run_case(
        base
        | {
            "scenes": [str(scene)],
            "model": str(tmp_path / "also new"),
            "output": str(tmp_path / "gone" / "a" / "d.geojson"),
        },
        tmp_path,
    )
    assert "missing model.json" in failed["error"]
    assert not (tmp_path / "gone").exists()
