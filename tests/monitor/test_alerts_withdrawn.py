"""Alerts whose pass was done again from a corrected file that no longer holds their object."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import rasterio
from alert_helpers import Receiver, add_alerts
from monitor_helpers import NAIP_BANDS, copy_in, deliver, write_region

from geotl.config import load_region
from geotl.monitor import MonitorOptions, MonitorState, format_status, monitor_status, run_monitor


def test_a_corrected_pass_without_the_lakes_withdraws_their_alerts(
    naip_region: Path, naip_small: list[Path], naip_model: Path, tmp_path: Path
) -> None:
    """2012's file first came with new lakes; its correction is 2010's ground again.

    The alerts raised on the lakes stayed delivered and in alerts.geojson, pointing at a
    pass without them. Now they are withdrawn: kept in the state under their ids, out of
    alerts.geojson, the receiver told once per alert under a key of its own.
    """
    out = tmp_path / "out"
    receiver = Receiver()
    try:
        add_alerts(
            naip_region,
            f'\n[monitor.alerts]\nwebhook = "{receiver.url}"\npersistence = {{ passes = 1, of = 1 }}\n'
            '[[monitor.alerts.rule]]\nname = "lake-new"\nclass = "water"\nwhen = "new"\n'
            "min_area_m2 = 1\n",
        )
        region = load_region(naip_region)
        opts = MonitorOptions(out_dir=out, model_dir=naip_model)
        deliver(naip_region, naip_small[:1])
        second = copy_in(naip_region, naip_small[1])
        assert run_monitor(region, opts).exit_code == 0
        with MonitorState(out / "naip-nd" / "state.sqlite", readonly=True) as state:
            raised = {a.id: a for a in state.alerts()}
        assert raised and {a.status for a in raised.values()} == {"delivered"}
        assert {a.fired_scene for a in raised.values()} == {second.stem}
        sent = len(receiver.requests)

        # the corrected file: the earlier ground (one pixel differs: not a byte copy)
        copy_in(naip_region, naip_small[0], second.name)
        with rasterio.open(second, "r+") as ds:
            ds.write(np.full((4, 1, 1), 99, dtype="uint8"), window=((0, 1), (0, 1)))
        os.utime(second, ns=(second.stat().st_atime_ns, second.stat().st_mtime_ns + 10**9))
        summary = run_monitor(region, opts)
        assert len(summary.processed) == 1 and summary.exit_code == 0

        with MonitorState(out / "naip-nd" / "state.sqlite", readonly=True) as state:
            after = {a.id: a for a in state.alerts()}
        assert set(after) == set(raised)  # never lost, ids kept
        assert {a.status for a in after.values()} == {"withdrawn"}
        assert {a.withdrawn_scene for a in after.values()} == {second.stem}
        assert json.loads((out / "naip-nd" / "alerts.geojson").read_text())["features"] == []
        told = receiver.requests[sent:]
        assert sorted(r["key"] for r in told) == sorted(
            f"geotl:naip-nd:{i}:withdrawn" for i in raised
        )
        assert {r["body"]["properties"]["status"] for r in told} == {"withdrawn"}
        assert f"withdrawn {len(raised)}" in format_status(monitor_status(region, out))

        # told once: the next run sends nothing
        assert run_monitor(region, opts).exit_code == 0
        assert len(receiver.requests) == sent + len(raised)
    finally:
        receiver.close()


def test_a_pass_republished_and_replaced_without_the_lakes_withdraws_their_alerts(
    naip_small: list[Path], naip_model: Path, tmp_path: Path
) -> None:
    """``republished = "replace"``: a corrected file under another name, same sensing time."""
    region_file = write_region(
        tmp_path / "region",
        "naip-replaced",
        naip_small[:1],
        NAIP_BANDS,
        ["water"],
        'source = "folder"\npaths = ["incoming/*.tif"]\nrepublished = "replace"',
        datetime_regex=r"_(\d{8}T\d{6})\.tif$",
        min_area_m2=200.0,
    )
    receiver = Receiver()
    try:
        add_alerts(
            region_file,
            f'\n[monitor.alerts]\nwebhook = "{receiver.url}"\npersistence = {{ passes = 1, of = 1 }}\n'
            '[[monitor.alerts.rule]]\nname = "lake-new"\nclass = "water"\nwhen = "new"\n',
        )
        region = load_region(region_file)
        opts = MonitorOptions(out_dir=tmp_path / "out", model_dir=naip_model)
        timed = [s.name.replace(".tif", "T170000.tif") for s in naip_small[:2]]
        copy_in(region_file, naip_small[0], timed[0])
        copy_in(region_file, naip_small[1], timed[1])
        assert run_monitor(region, opts).exit_code == 0
        db = tmp_path / "out" / "naip-replaced" / "state.sqlite"
        with MonitorState(db, readonly=True) as state:
            raised = {a.id for a in state.alerts(("delivered",))}
        assert raised
        sent = len(receiver.requests)

        corrected = copy_in(region_file, naip_small[0], "v2_" + timed[1])
        with rasterio.open(corrected, "r+") as ds:
            ds.write(np.full((4, 1, 1), 99, dtype="uint8"), window=((0, 1), (0, 1)))
        assert run_monitor(region, opts).exit_code == 0
        with MonitorState(db, readonly=True) as state:
            assert {a.id: a.status for a in state.alerts()} == dict.fromkeys(raised, "withdrawn")
        assert sorted(r["key"] for r in receiver.requests[sent:]) == sorted(
            f"geotl:naip-replaced:{i}:withdrawn" for i in raised
        )
    finally:
        receiver.close()


def test_a_pass_corrected_back_raises_its_lakes_again_under_new_keys(
    naip_region: Path, naip_small: list[Path], naip_model: Path, tmp_path: Path
) -> None:
    """2012's file, corrected to 2010's ground, then corrected back: the lakes are there again.

    They were raised again under the withdrawn alerts' ids, so sent again under the keys
    their first delivery had: a receiver that drops a key it has seen (Idempotency-Key, a
    PagerDuty dedup_key, an Opsgenie alias) dropped the reopening, or appended it to the
    incident the withdrawal had resolved. Each opening is an alert of its own now, as
    PagerDuty makes a new incident of a trigger after a resolve.
    """
    out = tmp_path / "out"
    receiver = Receiver()
    try:
        add_alerts(
            naip_region,
            f'\n[monitor.alerts]\nwebhook = "{receiver.url}"\npersistence = {{ passes = 1, of = 1 }}\n'
            '[[monitor.alerts.rule]]\nname = "lake-new"\nclass = "water"\nwhen = "new"\n'
            "min_area_m2 = 1\n",
        )
        region = load_region(naip_region)
        opts = MonitorOptions(out_dir=out, model_dir=naip_model)
        deliver(naip_region, naip_small[:1])
        second = copy_in(naip_region, naip_small[1])

        def replace_with(scene: Path, pixel: int) -> None:
            # a new file of the same name (one pixel differs: never a byte copy of another)
            copy_in(naip_region, scene, second.name)
            with rasterio.open(second, "r+") as ds:
                ds.write(np.full((4, 1, 1), pixel, dtype="uint8"), window=((0, 1), (0, 1)))
            stat = second.stat()
            os.utime(second, ns=(stat.st_atime_ns, stat.st_mtime_ns + pixel * 10**9))

        assert run_monitor(region, opts).exit_code == 0
        with MonitorState(out / "naip-nd" / "state.sqlite", readonly=True) as state:
            first = {a.id: a for a in state.alerts()}
        assert first and {a.status for a in first.values()} == {"delivered"}
        replace_with(naip_small[0], 99)  # the correction: 2010's ground, no lakes
        assert run_monitor(region, opts).exit_code == 0
        replace_with(naip_small[1], 98)  # corrected back: the lakes again
        assert run_monitor(region, opts).exit_code == 0

        with MonitorState(out / "naip-nd" / "state.sqlite", readonly=True) as state:
            alerts = {a.id: a for a in state.alerts()}
        # the first openings stay withdrawn (their receiver was told); the lakes are open
        # again as alerts of their own, of the same pass and objects
        assert {i: alerts[i].status for i in first} == dict.fromkeys(first, "withdrawn")
        again = {i: a for i, a in alerts.items() if i not in first}
        assert len(again) == len(first)
        assert {a.status for a in again.values()} == {"delivered"}
        assert sorted((a.fired_scene, a.object_id) for a in again.values()) == sorted(
            (a.fired_scene, a.object_id) for a in first.values()
        )
        listed = json.loads((out / "naip-nd" / "alerts.geojson").read_text())["features"]
        assert sorted(f["id"] for f in listed) == sorted(again)

        # every message the receiver got has a key of its own, in the order it happened
        keys = [r["key"] for r in receiver.requests]
        assert len(keys) == len(set(keys)) == 3 * len(first), keys
        statuses = [r["body"]["properties"]["status"] for r in receiver.requests]
        n = len(first)
        assert statuses == ["open"] * n + ["withdrawn"] * n + ["open"] * n
        assert {r["body"]["idempotency_key"] for r in receiver.requests[2 * n :]} == {
            f"geotl:naip-nd:{i}" for i in again
        }
    finally:
        receiver.close()
