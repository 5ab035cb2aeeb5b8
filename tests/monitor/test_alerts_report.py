"""The report page: written offline, opened in a real headless browser (Debian's chromium)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from alert_helpers import fake_monitor_state

from geotl.config import load_region
from geotl.errors import GeotlInputError, OutputExistsError
from geotl.monitor.alerts import write_report
from geotl.monitor.state import MonitorState

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _report(naip_region: Path, naip_small: list[Path], tmp_path: Path) -> tuple[Path, list[str]]:
    rdir = tmp_path / "out" / "naip-nd"
    ids = fake_monitor_state(rdir, naip_small[:4], [0, 3, 0, 2])
    with MonitorState(rdir / "state.sqlite") as state:
        state.acknowledge_alerts([ids[0]], state.alerts()[0].created)
    summary = write_report(load_region(naip_region), rdir, rdir / "report")
    assert (summary.passes, summary.alerts, summary.open_alerts) == (4, 5, 4)
    assert summary.quicklook
    return rdir / "report", ids


def test_report_folder_is_self_contained(
    naip_region: Path, naip_small: list[Path], tmp_path: Path
) -> None:
    report, ids = _report(naip_region, naip_small, tmp_path)
    page = (report / "index.html").read_text()
    assert "http://" not in page and "https://" not in page  # nothing fetched at view time
    for asset in (
        "assets/leaflet/leaflet.js",
        "assets/leaflet/LICENSE",
        "data.js",
        "quicklook.png",
    ):
        assert (report / asset).is_file(), asset
    assert "BSD 2-Clause" in (report / "assets/leaflet/LICENSE").read_text()
    for alert_id in ids:  # every alert has its own GeoJSON, linked from the table
        feature = json.loads((report / "alerts" / f"{alert_id}.geojson").read_text())
        assert feature["type"] == "Feature" and feature["id"] == alert_id
        assert f'href="alerts/{alert_id}.geojson"' in page
    # a second report replaces the first; an unrelated folder needs --overwrite
    write_report(load_region(naip_region), report.parent, report)
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        write_report(load_region(naip_region), report.parent, other)
    assert (other / "notes.txt").read_text() == "keep me"
    with pytest.raises(GeotlInputError, match="run geotl monitor"):
        write_report(load_region(naip_region), tmp_path / "nowhere", tmp_path / "r2")
    # the monitor's own folder, above it or inside it: refused even with --overwrite
    rdir = report.parent
    for place in (rdir, rdir.parent, rdir / "passes"):
        with pytest.raises(GeotlInputError, match="is the monitor's folder"):
            write_report(load_region(naip_region), rdir, place, overwrite=True)
    assert (rdir / "state.sqlite").is_file()


@pytest.mark.skipif(
    CHROMIUM is None, reason="chromium not installed: run scripts/install_system_deps.sh"
)
def test_report_renders_in_headless_chromium(
    naip_region: Path, naip_small: list[Path], tmp_path: Path
) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install -e '.[dev]'")
    report, _ = _report(naip_region, naip_small, tmp_path)
    messages: list[str] = []
    failed: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            context = browser.new_context(offline=True)  # nothing may come from the network
            page = context.new_page()
            page.on("console", lambda m: messages.append(f"{m.type}: {m.text}"))
            page.on("pageerror", lambda e: messages.append(f"pageerror: {e}"))
            page.on("requestfailed", lambda r: failed.append(r.url))
            page.goto((report / "index.html").as_uri())
            page.wait_for_selector("body[data-ready='1']", timeout=20_000)
            drawn = page.locator("#map path.geotl-alert").count()
            shown = page.get_attribute("#map", "data-alerts")
            rows = page.locator("#alerts tr.alert-row").count()
            overlay = page.locator("#map img.leaflet-image-layer")
            natural = overlay.evaluate("img => img.naturalWidth")
            heading = page.inner_text("h1")
            page.click("a.zoom >> nth=0")
            popup = page.locator(".leaflet-popup-content").inner_text()
        finally:
            browser.close()
    errors = [m for m in messages if m.startswith(("error", "pageerror"))]
    assert errors == [] and failed == []
    assert drawn == 4 and shown == "4"  # the open alerts (one of five is acknowledged)
    # "open" is also a status (not delivered yet): the heading counted delivered alerts as
    # "open", beside a table that said "delivered" for each of them
    assert rows == 5 and "4 alert(s) not acknowledged" in heading
    assert natural > 0  # the quicklook loaded from the folder
    assert "water-new" in popup


def test_a_report_folder_that_cannot_be_written_is_an_input_error(
    naip_region: Path, naip_small: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the monitor's folder on a read-only share (simulated: root ignores permissions): the
    # report crashed with an OSError traceback instead of naming --report-dir
    rdir = tmp_path / "out" / "naip-nd"
    fake_monitor_state(rdir, naip_small[:1], [1])

    def read_only(*args: object, **kwargs: object) -> None:
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr("geotl.monitor.alerts.report.tempfile.TemporaryFile", read_only)
    monkeypatch.setattr("geotl.monitor.alerts.report.atomic_dir", read_only)  # failed here
    with pytest.raises(GeotlInputError, match=r"Read-only file system.*--report-dir") as info:
        write_report(load_region(naip_region), rdir, rdir / "report")
    assert info.value.exit_code == 2 and str(rdir / "report") in str(info.value)


def test_a_report_folder_holding_the_region_or_the_shell_is_refused(
    naip_region: Path, naip_small: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # --report-dir REGION_FOLDER --overwrite replaced the folder with the page: the region
    # file, its incoming passes and reference layers were deleted; --report-dir . crashed
    # with a traceback (os.replace of ".") and left a .tmp- folder behind
    rdir = tmp_path / "out" / "naip-nd"
    fake_monitor_state(rdir, naip_small[:1], [1])
    region = load_region(naip_region)
    before = sorted(p.name for p in naip_region.parent.iterdir())
    for place in (naip_region.parent, naip_region.parent / "incoming"):
        with pytest.raises(GeotlInputError, match="holds this region's input") as info:
            write_report(region, rdir, place, overwrite=True)
        assert info.value.exit_code == 2
    assert sorted(p.name for p in naip_region.parent.iterdir()) == before
    here = tmp_path / "shell"
    (here / "sub").mkdir(parents=True)
    monkeypatch.chdir(here / "sub")
    for place in (Path("."), Path("..")):
        with pytest.raises(GeotlInputError, match="the folder this command runs in"):
            write_report(region, rdir, place)
    assert [p.name for p in here.iterdir()] == ["sub"]
    assert write_report(region, rdir, Path("report")).path == Path("report/index.html")
    assert (here / "sub" / "report" / "index.html").is_file()


def test_a_report_dir_that_is_a_file_is_one_line_exit_2(
    naip_region: Path, naip_small: list[Path], tmp_path: Path
) -> None:
    # click answered with its usage text ("Usage: ... Error: Directory ... is a file.")
    from click.testing import CliRunner

    from geotl.cli.main import cli

    fake_monitor_state(tmp_path / "out" / "naip-nd", naip_small[:1], [1])
    afile = tmp_path / "report.html"
    afile.write_text("mine")
    args = ["monitor", "report", str(naip_region), "--out", str(tmp_path / "out")]
    result = CliRunner().invoke(cli, [*args, "--report-dir", str(afile)])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "Usage" not in result.output, result.output
    assert str(afile) in lines[0] and "choose a folder for --report-dir" in lines[0]
    assert afile.read_text() == "mine"


@pytest.mark.parametrize("nodata", [0, None])
def test_the_quicklook_hides_the_collar_the_region_names(
    tmp_path: Path, nodata: int | None
) -> None:
    # a scene without a nodata value whose black collar the region names ([imagery]
    # nodata = 0): transparent on the report's map, as prediction left it out
    import numpy as np
    import rasterio
    from PIL import Image
    from rasterio.transform import from_origin

    from geotl.monitor.alerts.report import _write_quicklook

    pixels = np.full((3, 64, 64), 120, np.uint8)
    pixels[:, :, :10] = 0
    scene = tmp_path / "s.tif"
    profile = {"driver": "GTiff", "width": 64, "height": 64, "count": 3, "dtype": "uint8"}
    transform = from_origin(400_000, 3_300_000, 1, 1)
    with rasterio.open(scene, "w", crs="EPSG:32617", transform=transform, **profile) as ds:
        ds.write(pixels)
    region = tmp_path / "r.toml"
    region.write_text(
        'name = "rq"\ntask = "segmentation"\nclasses = ["tree"]\n[imagery]\npaths = ["*.tif"]\n'
        'bands = ["red", "green", "blue"]\n' + ("" if nodata is None else f"nodata = {nodata}\n")
    )
    assert _write_quicklook(load_region(region), scene, tmp_path / "q.png")
    alpha = np.asarray(Image.open(tmp_path / "q.png"))[..., 3]
    assert alpha[5:60, 20:50].min() == 255  # the imagery
    assert alpha[5:60, 2:8].max() == (0 if nodata == 0 else 255)  # the collar
