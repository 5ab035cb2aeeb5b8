"""Helpers of the alert tests: reference layers, alert regions, a webhook receiver."""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import geopandas as gpd
import rasterio
from shapely.geometry import box


def scene_bounds(scene: Path) -> tuple[tuple[float, float, float, float], str]:
    with rasterio.open(scene) as ds:
        return tuple(ds.bounds), str(ds.crs)  # type: ignore[return-value]


def write_reference(
    path: Path,
    scene: Path,
    parts: list[tuple[float, float, float, float]],
    crs: str | None = "scene",
) -> Path:
    """A GeoPackage of boxes given as fractions (x0, y0, x1, y1) of ``scene``'s extent."""
    (left, bottom, right, top), scene_crs = scene_bounds(scene)
    w, h = right - left, top - bottom
    geoms = [
        box(left + a * w, bottom + b * h, left + c * w, bottom + d * h) for a, b, c, d in parts
    ]
    frame = gpd.GeoDataFrame(
        {"id": [f"ref-{i}" for i in range(len(geoms))]},
        geometry=geoms,
        crs=scene_crs if crs == "scene" else crs,
    )
    frame.to_file(path)  # the driver follows the suffix (.gpkg, .geojson, .shp)
    return path


def add_alerts(region_file: Path, alerts_toml: str) -> Path:
    """Append a ``[monitor.alerts]`` table (and its rules) to a region file."""
    text = region_file.read_text(encoding="utf-8")
    region_file.write_text(
        text.rstrip("\n") + "\n\n" + alerts_toml.strip() + "\n", encoding="utf-8"
    )
    return region_file


@dataclass
class Receiver:
    """A webhook receiver on 127.0.0.1: answers ``statuses`` in turn, then 200.

    ``redirect``: every POST is answered 301 to ``/moved``, where a GET (recorded in ``gets``)
    is answered 200 (an http:// hook that moved to https://).
    """

    statuses: list[int] = field(default_factory=list)
    kill_pid_on_first: Callable[[], int | None] | None = None
    requests: list[dict] = field(default_factory=list)
    redirect: bool = False
    gets: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length))
                receiver.requests.append(
                    {
                        "key": self.headers.get("Idempotency-Key"),
                        "body": body,
                        "path": self.path,
                        "auth": self.headers.get("Authorization"),
                    }
                )
                if receiver.redirect:
                    self.send_response(301)
                    self.send_header("Location", receiver.url.replace("/hook", "/moved"))
                    self.end_headers()
                    return
                if receiver.kill_pid_on_first is not None and len(receiver.requests) == 1:
                    pid = receiver.kill_pid_on_first()
                    if pid:
                        os.kill(pid, signal.SIGKILL)  # killed after sending, before recording
                        return
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"ok": true}' if status < 300 else b'{"error": "no"}')

            def do_GET(self) -> None:
                receiver.gets.append(self.path)
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"moved here")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def fake_monitor_state(
    region_dir: Path, scenes: list[Path], alerts_per_pass: list[int], detections: int = 7
) -> list[str]:
    """A monitor state with done passes over ``scenes`` and made-up alerts; returns alert ids.

    Alert geometries are small squares inside each scene, so the report can map them.
    """
    from datetime import UTC, datetime, timedelta

    from shapely.geometry import mapping

    from geotl.monitor.alerts import alert_id
    from geotl.monitor.changes import scene_footprint
    from geotl.monitor.sources import Scene
    from geotl.monitor.state import AlertRecord, MonitorState

    region_dir.mkdir(parents=True, exist_ok=True)
    ids: list[str] = []
    t0 = datetime(2019, 6, 1, tzinfo=UTC)
    with MonitorState(region_dir / "state.sqlite") as state:
        records = []
        for i, scene in enumerate(scenes):
            fp = scene_footprint(scene)
            records.append(
                Scene(
                    key=f"{scene}#{i}",
                    name=f"{scene.stem}-{i}",
                    acquired=t0 + timedelta(days=30 * i),
                    acquired_from="regex",
                    uri=str(scene),
                    fingerprint=str(i),
                    footprint_wkt=fp.wkt,
                )
            )
        state.record_scenes(records, "folder", "m1", t0)
        for i, (rec, n_alerts) in enumerate(zip(records, alerts_per_pass, strict=True)):
            state.mark_done(
                rec.key,
                "m1",
                now=rec.acquired,
                duration_s=1.0,
                pass_path="passes/x.geojson",
                changes_path=None,
                detections=detections + i,
                new=None,
                gone=None,
                previous_scene=None,
                footprint_wkt=rec.footprint_wkt,
            )
            minx, miny, maxx, maxy = scene_footprint(scenes[i]).bounds
            new = []
            for k in range(n_alerts):
                fx = minx + (maxx - minx) * (0.1 + 0.15 * k)
                fy = miny + (maxy - miny) * 0.5
                size = (maxx - minx) * 0.08
                aid = alert_id("naip-nd", "water-new", rec.name, str(k))
                ids.append(aid)
                new.append(
                    AlertRecord(
                        id=aid,
                        rule="water-new",
                        class_name="water",
                        change="new",
                        status="open",
                        geometry=mapping(box(fx, fy, fx + size, fy + size)),
                        object_id=str(k),
                        score=0.8,
                        area_m2=1234.5,
                        model_id="m1",
                        fired_scene=rec.name,
                        fired_acquired=rec.acquired,
                        first_scene=rec.name,
                        first_acquired=rec.acquired,
                        last_scene=rec.name,
                        last_acquired=rec.acquired,
                        reference_layer="permits.gpkg",
                        reference_ids=["P1"],
                        seen=1,
                        looked=1,
                        created=rec.acquired,
                        updated=rec.acquired,
                    )
                )
            state.record_alert_evaluation(
                rec.key, "m1", "r", now=rec.acquired, new=new, sightings=[]
            )
    return ids
