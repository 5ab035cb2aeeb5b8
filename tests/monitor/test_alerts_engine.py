"""The alert engine on a monitor state built in code: passes recorded, rules evaluated, stored."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
import shapely
from rasterio.transform import from_origin
from shapely.geometry import box

from geotl.config import Region, load_region
from geotl.monitor.alerts import AlertEngine
from geotl.monitor.sources import Scene
from geotl.monitor.state import MonitorState

UTM = "EPSG:32614"
X0, Y0 = 480_000.0, 5_205_000.0
T0 = datetime(2020, 6, 1, tzinfo=UTC)
MODEL = "m1"


def _region(folder: Path, rules: str) -> Region:
    """A region over a 2 km square of 10 m pixels, with ``rules`` as its alert rules."""
    (folder / "incoming").mkdir(parents=True)
    with rasterio.open(
        folder / "scene.tif",
        "w",
        driver="GTiff",
        width=200,
        height=200,
        count=1,
        dtype="uint8",
        crs=UTM,
        transform=from_origin(X0, Y0 + 2000, 10, 10),
    ) as ds:
        ds.write(np.ones((1, 200, 200), dtype=np.uint8))
    path = folder / "r.toml"
    path.write_text(
        'name = "eng"\nclasses = ["clearing"]\n\n[imagery]\npaths = ["scene.tif"]\n'
        'bands = ["red"]\n\n[monitor]\nsource = "folder"\npaths = ["incoming/*.tif"]\n\n'
        f"[monitor.alerts]\npersistence = {{ passes = 1, of = 1 }}\n\n{rules.strip()}\n",
        encoding="utf-8",
    )
    return load_region(path)


def _record_passes(rdir: Path, passes: list[dict[str, shapely.Polygon]]) -> None:
    """Done passes ``p0``, ``p1``, ... over the region, 10 days apart, with these objects."""
    (rdir / "passes").mkdir(parents=True)
    footprint = gpd.GeoSeries([box(X0, Y0, X0 + 2000, Y0 + 2000)], crs=UTM).to_crs("EPSG:4326")
    fp_wkt = footprint.iloc[0].wkt
    scenes = [
        Scene(
            key=f"k{i}",
            name=f"p{i}",
            acquired=T0 + timedelta(days=10 * i),
            acquired_from="regex",
            uri=f"/nowhere/p{i}.tif",
            fingerprint=str(i),
            footprint_wkt=fp_wkt,
        )
        for i in range(len(passes))
    ]
    with MonitorState(rdir / "state.sqlite") as state:
        state.record_scenes(scenes, "folder", MODEL, T0)
        for scene, objects in zip(scenes, passes, strict=True):
            frame = gpd.GeoDataFrame(
                {
                    "id": list(objects),
                    "class": ["clearing"] * len(objects),
                    "score": [0.9] * len(objects),
                    "area_m2": [g.area for g in objects.values()],
                },
                geometry=list(objects.values()),
                crs=UTM,
            ).to_crs("EPSG:4326")
            rel = f"passes/{scene.name}.geojson"
            frame.to_file(rdir / rel, driver="GeoJSON")
            state.mark_done(
                scene.key,
                MODEL,
                now=scene.acquired,
                duration_s=1.0,
                pass_path=rel,
                changes_path=None,
                detections=len(objects),
                new=None,
                gone=None,
                previous_scene=None,
                footprint_wkt=fp_wkt,
            )


def _b(x: float, y: float, size: float = 100.0) -> shapely.Polygon:
    return box(X0 + x, Y0 + y, X0 + x + size, Y0 + y + size)


def test_last_pass_moves_on_when_the_rule_fires_for_another_object(tmp_path: Path) -> None:
    region = _region(tmp_path / "region", '[[monitor.alerts.rule]]\nclass = "clearing"')
    rdir = tmp_path / "out" / "eng"
    a, b, c = _b(100, 100), _b(800, 800), _b(1500, 300)
    # a appears in p1 and stays; b appears in p2, c in p3: the rule fires in p1, p2 and p3
    _record_passes(rdir, [{}, {"a": a}, {"a2": a, "b": b}, {"a3": a, "b3": b, "c": c}])
    with MonitorState(rdir / "state.sqlite") as state:
        evaluated, new = AlertEngine(region, state, rdir, None).evaluate_pending(MODEL)
        alerts = {a.object_id: a for a in state.alerts()}
    assert evaluated == 4 and len(new) == 3
    assert sorted(alerts) == ["a", "b", "c"]
    # each object's alert follows it to the last pass that saw it (p3), although its rule
    # fired for another object in p2 and p3
    assert {k: (x.fired_scene, x.last_scene) for k, x in alerts.items()} == {
        "a": ("p1", "p3"),
        "b": ("p2", "p3"),
        "c": ("p3", "p3"),
    }


def test_ack_takes_ids_as_pasted(tmp_path: Path) -> None:
    # ids copied from a mail or a spreadsheet ("57E5FCA6623D," ) were unknown ids, exit 2
    import json

    from geotl.monitor.alerts.engine import acknowledge_alerts

    region = _region(tmp_path / "region", '[[monitor.alerts.rule]]\nclass = "clearing"')
    rdir = tmp_path / "out" / "eng"
    _record_passes(rdir, [{}, {"a": _b(100, 100), "b": _b(800, 800)}])
    with MonitorState(rdir / "state.sqlite") as state:
        _, new = AlertEngine(region, state, rdir, None).evaluate_pending(MODEL)
    assert len(new) == 2
    done = acknowledge_alerts(rdir, [f" {new[0].upper()},"], region)
    assert done == [new[0]]
    with MonitorState(rdir / "state.sqlite", readonly=True) as state:
        assert {a.id: a.status for a in state.alerts()} == {new[0]: "acknowledged", new[1]: "open"}
    features = json.loads((rdir / "alerts.geojson").read_text())["features"]
    assert [f["id"] for f in features] == [new[1]]
