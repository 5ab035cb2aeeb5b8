"""The report page: a static folder a stakeholder opens in a browser, offline.

``geotl monitor report`` writes ``index.html`` with

- a map of the open alerts over the latest pass's quicklook (Leaflet, vendored from the npm
  package ``leaflet`` with its licence and copied beside the page: nothing is fetched when
  the page is viewed; the quicklook is warped to Web Mercator so it lies exactly under the
  alerts);
- a timeline of object counts and alerts per pass (an SVG drawn here, no script needed);
- a table of the passes: objects detected, new and gone since the previous pass, each with
  its area in hectares (how much was cleared is what is acted on, not how many patches);
- a table of every alert (status, rule, class, area when raised and when last seen, first and
  last pass, reference features, delivery or withdrawal), each linking to its own GeoJSON
  file.

The data the map needs are in ``data.js`` (a script, not JSON fetched at run time, because
browsers refuse ``fetch`` from ``file://`` pages). The folder is built under a temporary name
and swapped into place, so a reader never sees half a report.
"""

from __future__ import annotations

import html
import json
import logging
import tempfile
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from geotl.bands import canonical_band
from geotl.config import Region
from geotl.errors import GeotlInputError, OutputExistsError
from geotl.io.atomic import atomic_dir
from geotl.io.rasters import data_band_indexes, nodata_vrt_options, read_data
from geotl.monitor.alerts.delivery import alert_feature
from geotl.monitor.outputs import format_ha
from geotl.monitor.state import DB_FILE, AlertRecord, MonitorState, PassRecord, PassWarnings

__all__ = ["REPORT_MARKER", "ReportSummary", "write_report"]

log = logging.getLogger(__name__)

#: A file that marks a folder as a geotl report (it may be replaced without --overwrite).
REPORT_MARKER = ".geotl-report"
QUICKLOOK_MAX_PX = 1024
OPEN = ("open", "delivered", "failed")


@dataclass(frozen=True)
class ReportSummary:
    """What a report shows."""

    path: Path
    passes: int
    alerts: int
    open_alerts: int
    quicklook: bool


def _static(name: str) -> Any:
    return resources.files("geotl.monitor.alerts").joinpath("static", name)


def _copy_static(dest: Path) -> None:
    assets = dest / "assets"
    (assets / "leaflet" / "images").mkdir(parents=True)
    for name in ("report.js", "report.css"):
        (assets / name).write_bytes(_static(name).read_bytes())
    leaflet = _static("leaflet")
    for name in ("leaflet.js", "leaflet.css", "LICENSE", "VENDORED.md"):
        (assets / "leaflet" / name).write_bytes(leaflet.joinpath(name).read_bytes())
    for item in leaflet.joinpath("images").iterdir():
        if item.name.endswith(".png"):
            (assets / "leaflet" / "images" / item.name).write_bytes(item.read_bytes())


def _rgb_indexes(region: Region, data_bands: list[int]) -> list[int]:
    """File indexes of red, green, blue among the data bands (an alpha band is not one)."""
    names = [canonical_band(b) for b in region.imagery.bands]
    wanted = [canonical_band(b) for b in ("red", "green", "blue")]
    if len(names) == len(data_bands) and all(w in names for w in wanted):
        return [data_bands[names.index(w)] for w in wanted]
    return data_bands[:3] if len(data_bands) >= 3 else data_bands[:1]


def _write_quicklook(region: Region, scene: Path, out: Path) -> list[list[float]] | None:
    """The scene warped to Web Mercator, stretched, nodata transparent; its lat/lon bounds."""
    import rasterio
    from PIL import Image
    from rasterio.enums import Resampling
    from rasterio.errors import NodataShadowWarning
    from rasterio.vrt import WarpedVRT
    from rasterio.warp import transform_bounds

    try:
        # the region's nodata value, as prediction read the scene (a collar it names is
        # transparent here too)
        nodata = nodata_vrt_options(region.imagery.nodata)
        with rasterio.open(scene) as src, WarpedVRT(src, crs="EPSG:3857", **nodata) as vrt:
            scale = max(vrt.width, vrt.height) / QUICKLOOK_MAX_PX
            width = max(1, round(vrt.width / max(scale, 1.0)))
            height = max(1, round(vrt.height / max(scale, 1.0)))
            bands = _rgb_indexes(region, data_band_indexes(src, len(region.imagery.bands)))
            data = read_data(
                vrt, bands, out_shape=(len(bands), height, width), resampling=Resampling.average
            )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NodataShadowWarning)  # nodata wins: fine here
                mask = vrt.read_masks(1, out_shape=(height, width)) > 0
            west, south, east, north = transform_bounds("EPSG:3857", "EPSG:4326", *vrt.bounds)
    except (rasterio.errors.RasterioError, OSError) as exc:
        log.warning("no quicklook: %s cannot be read (%s)", scene, exc)
        return None
    data = data.astype(np.float32)
    rgb = np.zeros((height, width, 3), dtype=np.uint8)
    for i, band in enumerate(data if len(data) == 3 else [data[0]] * 3):
        values = band[mask]
        if values.size:
            lo, hi = np.percentile(values, (2, 98))
            scaled = np.clip((band - lo) / max(float(hi - lo), 1e-6), 0, 1)
            rgb[..., i] = (scaled * 255).astype(np.uint8)
    alpha = np.where(mask, 255, 0).astype(np.uint8)
    Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(out, format="PNG", optimize=True)
    return [[south, west], [north, east]]


def _timeline_svg(passes: list[PassRecord], fired: dict[str, int]) -> str:
    """Detections per pass (line) and alerts raised per pass (bars), one column per pass."""
    if not passes:
        return '<p class="note">No pass processed yet.</p>'
    width, height, left, right, top, bottom = 900, 240, 56, 56, 16, 54
    plot_w, plot_h = width - left - right, height - top - bottom
    n = len(passes)
    step = plot_w / max(n, 1)
    counts = [p.detections or 0 for p in passes]
    alerts = [fired.get(p.name, 0) for p in passes]
    max_count = max(max(counts), 1)
    max_alerts = max(max(alerts), 1)

    def x(i: int) -> float:
        return left + step * (i + 0.5)

    parts = [
        f'<svg viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="objects and alerts per pass">',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#999"/>',
    ]
    bar_w = max(step * 0.5, 1.0)
    for i, a in enumerate(alerts):
        h = plot_h * a / max_alerts
        parts.append(
            f'<rect class="alerts-bar" x="{x(i) - bar_w / 2:.1f}" y="{top + plot_h - h:.1f}" '
            f'width="{bar_w:.1f}" height="{h:.1f}" fill="#e41a1c" fill-opacity="0.6">'
            f"<title>{html.escape(passes[i].name)}: {a} alert(s)</title></rect>"
        )
    points = " ".join(
        f"{x(i):.1f},{top + plot_h - plot_h * c / max_count:.1f}" for i, c in enumerate(counts)
    )
    parts.append(f'<polyline points="{points}" fill="none" stroke="#1b3a4b" stroke-width="2"/>')
    for i, c in enumerate(counts):
        cy = top + plot_h - plot_h * c / max_count
        parts.append(
            f'<circle class="count-dot" cx="{x(i):.1f}" cy="{cy:.1f}" r="3" fill="#1b3a4b">'
            f"<title>{html.escape(passes[i].name)}: {c} object(s)</title></circle>"
        )
    every = max(1, n // 12)
    for i in range(0, n, every):
        label = passes[i].acquired.date().isoformat()
        parts.append(
            f'<text x="{x(i):.1f}" y="{top + plot_h + 16}" text-anchor="middle">{label}</text>'
        )
    parts += [
        f'<text x="{left - 6}" y="{top + 4}" text-anchor="end" fill="#1b3a4b">{max_count}</text>',
        f'<text x="{left - 6}" y="{top + plot_h}" text-anchor="end" fill="#1b3a4b">0</text>',
        f'<text x="{left + plot_w + 6}" y="{top + 4}" fill="#e41a1c">{max_alerts}</text>',
        f'<text x="{left + plot_w + 6}" y="{top + plot_h}" fill="#e41a1c">0</text>',
        f'<text x="{left}" y="{height - 8}" fill="#1b3a4b">objects per pass (line)</text>',
        f'<text x="{left + plot_w}" y="{height - 8}" text-anchor="end" fill="#e41a1c">'
        "alerts raised per pass (bars)</text>",
        "</svg>",
    ]
    return "\n".join(parts)


def _fmt(v: datetime | None) -> str:
    return v.date().isoformat() if v else ""


def _passes_table(
    passes: list[PassRecord],
    fired: dict[str, int],
    heard: dict[tuple[str, str], PassWarnings] | None = None,
) -> str:
    """One row per pass, newest first: counts and areas (empty where not known).

    ``heard``: the warnings said while each pass was processed (its scene's units, lossy
    compression, ...), shown beside its counts: they may be artefacts of the scene.
    """
    if not passes:
        return '<p class="note">No pass processed yet.</p>'
    e = html.escape

    def n(v: int | None) -> str:
        return "" if v is None else str(v)

    def ha(v: float | None) -> str:
        return "" if v is None else format_ha(v)

    def said(p: PassRecord) -> str:
        w = (heard or {}).get((p.key, p.model_id))
        if w is None:
            return "<td></td>"
        more = f" (+{w.count - 1} more)" if w.count > 1 else ""
        return (
            f'<td class="warned" title="{e(chr(10).join(w.lines))}">{w.count}: '
            f"{e(w.lines[0])}{more}</td>"
        )

    head = (
        "<tr><th>acquired</th><th>scene</th><th>objects</th><th>area</th><th>new</th>"
        "<th>new area</th><th>gone</th><th>gone area</th><th>since</th><th>alerts</th>"
        "<th>warnings</th></tr>"
    )
    rows = [
        f'<tr class="pass-row" data-scene="{e(p.name)}"><td>{_fmt(p.acquired)}</td>'
        f"<td>{e(p.name)}</td><td class='num'>{n(p.detections)}</td>"
        f"<td class='num'>{ha(p.detected_area_m2)}</td><td class='num'>{n(p.new)}</td>"
        f"<td class='num'>{ha(p.new_area_m2)}</td><td class='num'>{n(p.gone)}</td>"
        f"<td class='num'>{ha(p.gone_area_m2)}</td><td>{e(p.previous_scene or '')}</td>"
        f"<td class='num'>{fired.get(p.name, 0)}</td>{said(p)}</tr>"
        for p in sorted(passes, key=lambda p: (p.acquired, p.name), reverse=True)
    ]
    return f'<table id="passes">\n{head}\n' + "\n".join(rows) + "\n</table>"


def _table(alerts: list[AlertRecord], deliveries: dict[str, str]) -> str:
    if not alerts:
        return '<p class="note">No alert so far.</p>'
    head = (
        "<tr><th>id</th><th>status</th><th>rule</th><th>class</th><th>change</th>"
        "<th>area m²</th><th>last seen m²</th><th>score</th><th>first seen</th><th>last seen</th><th>raised in</th>"
        "<th>reference</th><th>delivery</th><th>map</th></tr>"
    )
    rows = []
    for a in alerts:
        e = html.escape
        ref = ""
        if a.reference_layer:
            ids = ", ".join(a.reference_ids[:5]) + (" ..." if len(a.reference_ids) > 5 else "")
            ref = f"{e(Path(a.reference_layer).name)}{': ' + e(ids) if ids else ''}"
        zoom = (
            f'<a class="zoom" href="#map" data-id="{e(a.id)}">show</a>' if a.status in OPEN else ""
        )
        rows.append(
            f'<tr class="alert-row status-{e(a.status)}" data-id="{e(a.id)}">'
            f'<td><a href="alerts/{e(a.id)}.geojson">{e(a.id)}</a></td>'
            f"<td>{e(a.status)}</td><td>{e(a.rule)}</td><td>{e(a.class_name)}</td>"
            f"<td>{e(a.change)}{_grown_text(a)}</td><td class='num'>{a.area_m2:,.0f}</td>"
            # the area in its last pass: a pond that grew (or shrank) since it fired
            f"<td class='num'>{a.area_m2 if a.last_area_m2 is None else a.last_area_m2:,.0f}</td>"
            f"<td class='num'>{'' if a.score is None else f'{a.score:.2f}'}</td>"
            f"<td title='{e(a.first_scene)}'>{_fmt(a.first_acquired)}</td>"
            f"<td title='{e(a.last_scene)}'>{_fmt(a.last_acquired)}</td>"
            f"<td title='{e(a.fired_scene)}'>{_fmt(a.fired_acquired)}</td>"
            f"<td>{ref}</td><td>{e(deliveries.get(a.id, ''))}</td><td>{zoom}</td></tr>"
        )
    return f'<table id="alerts">\n{head}\n' + "\n".join(rows) + "\n</table>"


def _grown_text(a: AlertRecord) -> str:
    """A growth alert's link to the alert first raised for its object, and its area then."""
    if a.grown_from is None:
        return ""
    since = "" if a.grown_from_area_m2 is None else f", {a.grown_from_area_m2:,.0f} m²"
    return f' (from <a href="alerts/{html.escape(a.grown_from)}.geojson">{html.escape(a.grown_from)}</a>{since})'


def _delivery_text(a: AlertRecord) -> str:
    if a.withdrawn is not None:  # why it left the map, and whether its receiver knows
        told = {"sent": "; receiver told", "pending": "; receiver not told yet"}.get(
            a.withdrawal_notice or "", "; receiver not told" if a.withdrawal_notice else ""
        )
        when = a.withdrawn.isoformat(timespec="seconds")
        return f"withdrawn {when}: pass {a.withdrawn_scene} done again without it{told}"
    if a.delivered:
        return f"delivered {a.delivered.isoformat(timespec='seconds')}"
    if a.attempts == 0:
        return "not sent" if a.status != "acknowledged" else ""
    status = f" (HTTP {a.http_status})" if a.http_status else ""
    return f"{a.attempts} attempt(s){status}: {a.last_error or ''}".strip()


def _check_report_dir(path: Path, overwrite: bool, region_dir: Path, region: Region) -> None:
    here, state = path.resolve(), region_dir.resolve()
    inside = state in here.parents and here != state / "report"
    if here == state or here in state.parents or inside:
        # replacing it would delete the monitor's state, passes and alerts (--overwrite too)
        raise GeotlInputError(
            f"is the monitor's folder {region_dir}, inside it or above it: choose a folder of "
            f"its own for --report-dir (default: {region_dir / 'report'})",
            path,
        )
    cwd = Path.cwd().resolve()
    if here == cwd or here in cwd.parents:  # replaced whole, it would leave the shell nowhere
        raise GeotlInputError(
            "is the folder this command runs in, or above it: choose a folder of its own for "
            f"--report-dir, e.g. {path / 'report'}",
            path,
        )
    held = [p for p in region.input_paths() if p == here or here in p.parents]
    if held:  # replacing it would delete the region file, its scenes or reference layers
        raise GeotlInputError(
            f"holds this region's input {held[0]}: replacing the folder would delete it; "
            f"choose a folder of its own for --report-dir (default: {region_dir / 'report'})",
            path,
        )
    if path.exists() and not path.is_dir():
        raise GeotlInputError("exists and is a file: choose a folder for --report-dir", path)
    try:  # the page is written beside its folder first, then renamed into place
        path.parent.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=path.parent).close()
    except OSError as exc:
        raise GeotlInputError(
            f"cannot write the report here ({exc.strerror or exc}): pass --report-dir with "
            "a writable folder",
            path,
        ) from exc
    if (
        path.is_dir()
        and any(path.iterdir())
        and not (path / REPORT_MARKER).exists()
        and not overwrite
    ):
        raise OutputExistsError(
            "folder exists and is not a geotl report: pass --overwrite to replace it", path
        )


def write_report(
    region: Region, region_dir: Path, report_dir: Path, *, overwrite: bool = False
) -> ReportSummary:
    """Write the report folder of a monitored region.

    Args:
        region: the region.
        region_dir: ``--out/<region name>`` (holds ``state.sqlite``).
        report_dir: the folder to write (replaced whole when it is an earlier report, or with
            ``overwrite``).
        overwrite: replace a folder that is not a geotl report.

    Raises:
        GeotlInputError: the region was never monitored into ``region_dir``.
        OutputExistsError: ``report_dir`` holds something else and ``overwrite`` is false.
    """
    db = Path(region_dir) / DB_FILE
    if not db.exists():
        raise GeotlInputError(
            f"no monitor state for region '{region.name}' here: run geotl monitor "
            f"{region.path.name} --out DIR first, and pass the same --out",
            db,
        )
    report_dir = Path(report_dir)
    _check_report_dir(report_dir, overwrite, Path(region_dir), region)
    with MonitorState(db, readonly=True) as state:
        state.check_region_file(region.path, region.name)
        passes = state.latest_passes()
        heard = state.pass_warnings()
        alerts = state.alerts()
        deliveries = {a.id: _delivery_text(a) for a in alerts}
    fired: dict[str, int] = {}
    for a in alerts:
        fired[a.fired_scene] = fired.get(a.fired_scene, 0) + 1
    open_alerts = [a for a in alerts if a.status in OPEN]
    # resolved: "." (the folder the command runs in) cannot be renamed as "." itself
    with atomic_dir(report_dir.resolve(), overwrite=True) as tmp:
        _copy_static(tmp)
        (tmp / REPORT_MARKER).write_text(f"geotl monitor report of {region.name}\n")
        (tmp / "alerts").mkdir()
        for a in alerts:
            (tmp / "alerts" / f"{a.id}.geojson").write_text(
                json.dumps(alert_feature(a), ensure_ascii=False) + "\n", encoding="utf-8"
            )
        latest = max(passes, key=lambda p: p.acquired) if passes else None
        bounds = None
        if latest is not None and Path(latest.uri).exists():
            bounds = _write_quicklook(region, Path(latest.uri), tmp / "quicklook.png")
        data = {
            "region": region.name,
            "generated": datetime.now(UTC).isoformat(timespec="seconds"),
            "latest": None
            if latest is None
            else {"scene": latest.name, "acquired": latest.acquired.isoformat()},
            "quicklook": None if bounds is None else {"href": "quicklook.png", "bounds": bounds},
            "alerts": {
                "type": "FeatureCollection",
                "features": [alert_feature(a) for a in open_alerts],
            },
        }
        (tmp / "data.js").write_text(
            "window.GEOTL_REPORT = " + json.dumps(data, ensure_ascii=False) + ";\n",
            encoding="utf-8",
        )
        (tmp / "index.html").write_text(
            _page(region, passes, alerts, open_alerts, fired, deliveries, latest, bounds, heard),
            encoding="utf-8",
        )
    log.info("report of %s: %s", region.name, report_dir / "index.html")
    return ReportSummary(
        path=report_dir / "index.html",
        passes=len(passes),
        alerts=len(alerts),
        open_alerts=len(open_alerts),
        quicklook=bounds is not None,
    )


def _page(
    region: Region,
    passes: list[PassRecord],
    alerts: list[AlertRecord],
    open_alerts: list[AlertRecord],
    fired: dict[str, int],
    deliveries: dict[str, str],
    latest: PassRecord | None,
    bounds: list[list[float]] | None,
    heard: dict[tuple[str, str], PassWarnings] | None = None,
) -> str:
    e = html.escape
    latest_text = (
        f"latest pass {e(latest.name)} acquired {latest.acquired.date().isoformat()}"
        if latest
        else "no pass processed yet"
    )
    if latest is None:
        map_note = "Alerts not acknowledged (no quicklook: no pass processed yet)."
    elif bounds:
        map_note = f"Alerts not acknowledged over the quicklook of {e(latest.name)}."
    else:
        map_note = (
            f"Alerts not acknowledged (no quicklook: the latest pass's scene {e(latest.uri)} is not a "
            "readable local file)."
        )
    legend = "".join(
        f'<span><i class="swatch" style="background:{c}"></i>{s}</span>'
        for s, c in (("open", "#e41a1c"), ("delivered", "#ff7f00"), ("failed", "#984ea3"))
    )
    generated = datetime.now(UTC).isoformat(timespec="seconds")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>geotl report: {e(region.name)}</title>
<link rel="stylesheet" href="assets/leaflet/leaflet.css">
<link rel="stylesheet" href="assets/report.css">
</head>
<body>
<header>
<h1>{e(region.name)}: {len(open_alerts)} alert(s) not acknowledged</h1>
<p>{len(passes)} pass(es), {latest_text}; {len(alerts)} alert(s) in all. Generated {generated} by geotl.</p>
</header>
<main>
<section>
<h2>Map</h2>
<p class="note">{map_note} <span class="legend">{legend}</span></p>
<div id="map"></div>
</section>
<section class="timeline">
<h2>Timeline</h2>
{_timeline_svg(passes, fired)}
</section>
<section>
<h2>Passes</h2>
<p class="note">New and gone: since the previous pass over the same ground (empty for the
first pass, and areas empty for passes a geotl without areas processed). Warnings: what geotl
said about the pass while processing it (units, offsets, lossy compression): its counts may
come from the scene, not the ground.</p>
{_passes_table(passes, fired, heard)}
</section>
<section>
<h2>Alerts</h2>
<p class="note">Each id links to the alert's GeoJSON. Acknowledge with
<code>geotl monitor ack {e(region.path.name)} --out DIR ID...</code></p>
{_table(alerts, deliveries)}
</section>
</main>
<script src="assets/leaflet/leaflet.js"></script>
<script src="data.js"></script>
<script src="assets/report.js"></script>
</body>
</html>
"""
