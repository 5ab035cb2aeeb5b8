"""Alert persistence counts acquisitions, not tiles.

Found driving a Sentinel-2 region across the UTM zone 31/32 boundary: two tiles per
acquisition (same sensing time, 3 km of shared ground) were two passes each to the alert
rules, so after one new acquisition the look-back window held the new tile and both tiles of
the acquisition before. 27 of 28 ``new`` alerts (2 of 3) fired there, off one sighting and
two earlier tiles that disagreed; ``present`` objects both earlier tiles saw were "seen 3 of
3" after two acquisitions. Here two NAIP dates are cut into two overlapping tiles each, one
in UTM zone 14, one warped into zone 13: named with a sensing time they are one look per
date, named by their day alone they stay two passes (two passes of one day).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import rasterio
import rasterio.shutil
from alert_helpers import add_alerts
from monitor_helpers import NAIP_BANDS, write_region
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.warp import calculate_default_transform
from rasterio.windows import Window
from shapely.geometry import box
from test_alerts_rules import X0, Y0, _b, _config, _pass

from geotl.config import load_region
from geotl.monitor import MonitorOptions, MonitorState, run_monitor
from geotl.monitor.alerts import evaluate_rules

ALERTS = """
[monitor.alerts]
persistence = { passes = 2, of = 3 }

[[monitor.alerts.rule]]
name = "water-present"
class = "water"
when = "present"
min_area_m2 = 200

[[monitor.alerts.rule]]
name = "water-thrice"
class = "water"
when = "present"
min_area_m2 = 200
persistence = { passes = 3, of = 3 }
"""

WEST = Window(0, 250, 420, 400)  # zone 14, as delivered
EAST = Window(220, 250, 420, 400)  # warped into zone 13: 200 px (1 km) of shared ground


def _crop(scene: Path, window: Window, out: Path) -> Path:
    with rasterio.open(scene) as src:
        profile = {
            **src.profile,
            "width": int(window.width),
            "height": int(window.height),
            "transform": src.window_transform(window),
        }
        for k in ("blockxsize", "blockysize", "tiled"):
            profile.pop(k, None)
        with rasterio.open(out, "w", **profile) as dst:
            dst.write(src.read(window=window))
    return out


def _tiles(scene: Path, folder: Path, stamp: str) -> list[Path]:
    """Two overlapping tiles of ``scene``, in EPSG:26914 and EPSG:26913 (5 m), named by ``stamp``."""
    east = _crop(scene, EAST, folder.parent / f"east_{stamp}.tif")
    with rasterio.open(east) as src:
        transform, width, height = calculate_default_transform(
            src.crs, "EPSG:26913", src.width, src.height, *src.bounds, resolution=5.0
        )
        with WarpedVRT(
            src,
            crs="EPSG:26913",
            transform=transform,
            width=width,
            height=height,
            resampling=Resampling.bilinear,
            nodata=0,
        ) as vrt:
            rasterio.shutil.copy(vrt, folder / f"T13_{stamp}.tif", driver="GTiff")
    east.unlink()
    return [_crop(scene, WEST, folder / f"T14_{stamp}.tif"), folder / f"T13_{stamp}.tif"]


@pytest.mark.parametrize("sensed", [True, False], ids=["sensing-time", "day-alone"])
def test_tiles_of_one_acquisition_are_one_look(
    naip_scenes: list[Path], naip_model: Path, tmp_path: Path, sensed: bool
) -> None:
    incoming = tmp_path / "region" / "incoming"
    incoming.mkdir(parents=True)
    region_file = write_region(
        tmp_path / "region",
        "naip-zones",
        naip_scenes[:1],
        NAIP_BANDS,
        ["water"],
        'source = "folder"\npaths = ["incoming/*.tif"]',
        min_area_m2=200.0,
    )
    add_alerts(region_file, ALERTS)
    region = load_region(region_file)
    opts = MonitorOptions(out_dir=tmp_path / "out", model_dir=naip_model)
    for scene, day in ((naip_scenes[2], "20120731"), (naip_scenes[3], "20140715")):
        _tiles(scene, incoming, f"{day}T171500" if sensed else day)
        run_monitor(region, opts)

    rdir = tmp_path / "out" / "naip-zones"
    with MonitorState(rdir / "state.sqlite", readonly=True) as state:
        alerts = state.alerts()
    present = [a for a in alerts if a.rule == "water-present"]
    thrice = [a for a in alerts if a.rule == "water-thrice"]
    # ponds in the shared kilometre were seen by both tiles of each date
    overlap_ponds = [a for a in present if a.looked == (2 if sensed else 3)]
    assert overlap_ponds, [(a.seen, a.looked) for a in present]
    if sensed:
        # two acquisitions are two looks, however many tiles each came in
        assert all(a.looked <= 2 for a in present), [(a.seen, a.looked) for a in present]
        assert thrice == []
    else:
        # days alone: the tiles may be two passes of that day, each a look as before
        assert thrice


def test_new_is_not_made_of_two_disagreeing_tiles_of_one_acquisition() -> None:
    """The drive's case: one new sighting, and the tiles before it disagreed in the overlap."""
    west = box(X0 - 100, Y0 - 100, X0 + 1100, Y0 + 2000)
    east = box(X0 + 700, Y0 - 100, X0 + 2000, Y0 + 2000)  # 400 m shared with the west tile
    pond = _b(800, 500)
    config = _config(when="new", persistence={"passes": 2, "of": 3})
    before = [_pass(1, {}, west), _pass(1, {"e1": pond}, east)]  # one time: one acquisition
    current = _pass(2, {"w2": pond}, west)
    passes = [current, before[1], before[0]]
    assert [c.object_id for c in evaluate_rules(config, passes, {})] == ["w2"]  # per tile
    # one look: the object was there before (the east tile saw it), so it is not new
    assert evaluate_rules(config, passes, {}, looks=[0, 1, 1]) == []
    # there now and in the acquisition before, not in the one before that: new, 2 of 3 looks
    older = _pass(0, {}, box(X0 - 100, Y0 - 100, X0 + 2000, Y0 + 2000))
    [cand] = evaluate_rules(config, [*passes, older], {}, looks=[0, 1, 1, 2])
    assert (cand.object_id, cand.seen, cand.looked, cand.first_scene) == ("w2", 2, 3, "p1")
    with pytest.raises(ValueError):
        evaluate_rules(config, passes, {}, looks=[0, 0, 1])
