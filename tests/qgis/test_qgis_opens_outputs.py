"""Real client: QGIS (Debian's python3-qgis, headless) opens the GeoJSON and the styled GPKG."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from predict import data

SYSTEM_PYTHON = "/usr/bin/python3"
HERE = Path(__file__).resolve().parent


def _qgis_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["QT_QPA_PLATFORM"] = "offscreen"
    env["PATH"] = "/usr/bin:/bin"
    return env


def _qgis_missing() -> str | None:
    if not Path(SYSTEM_PYTHON).exists():
        return f"{SYSTEM_PYTHON} not found"
    res = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import qgis.core"],
        env=_qgis_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    if res.returncode != 0:
        return f"{SYSTEM_PYTHON} cannot import qgis.core (install python3-qgis: scripts/install_system_deps.sh)"
    return None


_MISSING = _qgis_missing()
pytestmark = [pytest.mark.qgis, pytest.mark.skipif(_MISSING is not None, reason=_MISSING or "")]


def _open_in_qgis(spec: dict[str, object], tmp_path: Path) -> dict[str, object]:
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(spec))
    res = subprocess.run(
        [SYSTEM_PYTHON, str(HERE / "check_layers.py"), str(spec_path)],
        env=_qgis_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
    assert lines, f"no report from QGIS (exit {res.returncode}): {res.stderr[-2000:]}"
    report: dict[str, object] = json.loads(lines[-1])
    failed = {k: v for k, v in report["checks"].items() if not v["ok"]}  # type: ignore[union-attr]
    assert report["ok"] and res.returncode == 0, failed
    # QGIS 3.22's GDAL (3.6) warns of GeoPackage 1.4 files: geotl writes 1.2
    assert "partially supported" not in res.stderr, res.stderr[-2000:]
    return report


def test_qgis_opens_geojson_and_styled_gpkg(tmp_path: Path) -> None:
    from geotl.predict import PredictOptions, predict_scenes

    model = tmp_path / "model"
    data.write_constant_model(model)
    # object present where band 0 is valid; a nodata stripe splits the scene
    import numpy as np
    import rasterio

    band0 = np.full((160, 180), 150, dtype=np.uint8)
    arr = np.stack([band0] * 3)
    arr[:, :, 70:80] = 0
    arr[:, 100:110, :] = 0
    scene = tmp_path / "plot.tif"
    with rasterio.open(
        scene,
        "w",
        driver="GTiff",
        width=180,
        height=160,
        count=3,
        dtype="uint8",
        crs=data.UTM17,
        transform=data.ORIGIN,
        nodata=0,
    ) as ds:
        ds.write(arr)
    summary = predict_scenes(
        model,
        [scene],
        tmp_path / "d.geojson",
        gpkg=tmp_path / "d.gpkg",
        options=PredictOptions(progress=False),
    )
    assert summary.features == 4
    fp = summary.scenes[0].footprint.bounds
    _open_in_qgis(
        {
            "geojson": str(summary.geojson),
            "gpkg": str(summary.gpkg),
            "qml": str(summary.qml[0]),
            "count": 4,
            "footprint": list(fp),
        },
        tmp_path,
    )


def test_qgis_opens_real_scene_output(tmp_path: Path, shared_data: Path) -> None:
    """NEON plot (EPSG:32617 UTM) through a real artefact, opened in QGIS."""
    from geotl.predict import PredictOptions, predict_scenes

    scene = shared_data / "neon-trees" / "OSBS.tif"
    if not scene.exists():
        candidates = sorted((shared_data / "neon-trees").glob("**/OSBS*.tif"))
        if not candidates:
            pytest.skip("no OSBS scene in neon-trees")
        scene = candidates[0]
    model = tmp_path / "model"
    data.write_constant_model(model)
    summary = predict_scenes(
        model,
        [scene],
        tmp_path / "d.geojson",
        gpkg=tmp_path / "d.gpkg",
        options=PredictOptions(progress=False),
    )
    assert summary.features >= 1
    _open_in_qgis(
        {
            "geojson": str(summary.geojson),
            "gpkg": str(summary.gpkg),
            "qml": str(summary.qml[0]),
            "count": summary.features,
            "footprint": list(summary.scenes[0].footprint.bounds),
        },
        tmp_path,
    )


def test_qgis_reads_acquired_as_a_date_in_both_files(tmp_path: Path) -> None:
    """The pass's day: a Date field in the GeoJSON and in the GeoPackage alike.

    QGIS (GDAL) reads the GeoJSON's ISO 8601 strings as a Date field, while the GeoPackage
    stored them as text: a date filter or the temporal controller worked on one file only.
    """
    import numpy as np

    from geotl.predict import PredictOptions, predict_scenes

    model = tmp_path / "model"
    data.write_constant_model(model)
    scene = data.write_scene(tmp_path / "plot_20200615.tif", np.full((60, 70), 150, np.uint8))
    summary = predict_scenes(
        model,
        [scene],
        tmp_path / "d.geojson",
        gpkg=tmp_path / "d.gpkg",
        options=PredictOptions(progress=False),
    )
    assert summary.scenes[0].features["acquired"].tolist() == ["2020-06-15"]
    _open_in_qgis(
        {
            "geojson": str(summary.geojson),
            "gpkg": str(summary.gpkg),
            "qml": str(summary.qml[0]),
            "count": summary.features,
            "footprint": list(summary.scenes[0].footprint.bounds),
            "acquired_type": "Date",
        },
        tmp_path,
    )
