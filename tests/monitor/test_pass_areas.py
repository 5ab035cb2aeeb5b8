"""Areas of what a monitor reports per pass: detected, new and gone, in m² and hectares.

An analyst watching forest clearing asks how many hectares were cleared since the last
pass, not how many patches: the Peru Landsat series (real GeoTIFFs, a real SQLite state)
is monitored, then its state is taken back to schema 1 (what an earlier geotl wrote) and
migrated in place.
"""

from __future__ import annotations

import csv
import json
import sqlite3
from pathlib import Path

import pytest
from monitor_helpers import deliver, peru_folder_region

from geotl.config import Region, load_region
from geotl.monitor import MonitorOptions, MonitorState, format_status, monitor_status, run_monitor
from geotl.monitor.alerts import write_report
from geotl.monitor.outputs import HISTORY_COLUMNS, format_ha

OLD_COLUMNS = [
    "acquired",
    "scene",
    "detections",
    "new",
    "gone",
    "duration_s",
    "processed",
    "previous_scene",
    "model",
    "pass_file",
    "changes_file",
]


def _history(rdir: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(rdir / "history.csv", newline="") as fh:
        header = next(csv.reader(fh))
        fh.seek(0)
        return header, list(csv.DictReader(fh))


def _features(path: Path) -> list[dict]:
    return [f["properties"] for f in json.loads(path.read_text())["features"]]


def _area(props: list[dict], change: str | None = None) -> float:
    return sum(p["area_m2"] for p in props if change is None or p["change"] == change)


def _peru(tmp_path: Path, scenes: list[Path]) -> tuple[Region, Path]:
    region_file = peru_folder_region(tmp_path / "region", scenes[:1])
    deliver(region_file, scenes)
    return load_region(region_file), tmp_path / "out"


def _downgrade_to_schema_1(db_path: Path) -> None:
    """The state as a geotl before areas wrote it: no area columns, schema 1."""
    db = sqlite3.connect(db_path)
    for column in ("detected_area_m2", "new_area_m2", "gone_area_m2"):
        db.execute(f"ALTER TABLE jobs DROP COLUMN {column}")
    db.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    db.commit()
    db.close()


@pytest.mark.slow
def test_history_status_and_report_carry_the_areas(
    tmp_path: Path, peru_scenes: list[Path], peru_model: Path
) -> None:
    region, out = _peru(tmp_path, peru_scenes[:4])
    assert run_monitor(region, MonitorOptions(out_dir=out, model_dir=peru_model)).exit_code == 0
    rdir = out / "peru"
    header, rows = _history(rdir)
    # other tools read the columns by position: the old ones first, in order
    assert header == HISTORY_COLUMNS
    assert header[: len(OLD_COLUMNS)] == OLD_COLUMNS
    areas = header[len(OLD_COLUMNS) : len(OLD_COLUMNS) + 3]
    assert areas == ["detected_area_m2", "new_area_m2", "gone_area_m2"]
    assert rows[0]["new_area_m2"] == "" and rows[0]["gone_area_m2"] == ""
    for row in rows:
        detected = _features(rdir / row["pass_file"])
        assert float(row["detected_area_m2"]) == pytest.approx(_area(detected), abs=0.01)
        assert float(row["detected_area_m2"]) > 0
    changed = 0.0
    for row in rows[1:]:
        props = _features(rdir / row["changes_file"])
        assert float(row["new_area_m2"]) == pytest.approx(_area(props, "new"), abs=0.01)
        assert float(row["gone_area_m2"]) == pytest.approx(_area(props, "gone"), abs=0.01)
        changed += float(row["new_area_m2"]) + float(row["gone_area_m2"])
        # every change names the pass it belongs to by date too, gone ones included (their
        # own `acquired` is the previous pass's)
        prev = next(r for r in rows if r["scene"] == row["previous_scene"])
        for p in props:
            assert p["pass_scene"] == row["scene"] and p["pass_acquired"] == row["acquired"]
            assert p["previous_acquired"] == prev["acquired"]
            assert p["acquired"] == (row["acquired"] if p["change"] == "new" else prev["acquired"])
    assert changed > 0  # clearings come and go between the epochs

    status = monitor_status(region, out)
    last = rows[-1]
    latest = status.to_dict()["latest"]
    assert latest["detected_area_m2"] == pytest.approx(float(last["detected_area_m2"]), abs=0.01)
    assert latest["new_area_m2"] == pytest.approx(float(last["new_area_m2"]), abs=0.01)
    assert latest["gone_area_m2"] == pytest.approx(float(last["gone_area_m2"]), abs=0.01)
    assert (latest["new"], latest["gone"]) == (int(last["new"]), int(last["gone"]))
    text = format_status(status)
    ha = float(last["detected_area_m2"]) / 1e4
    assert f"({last['detections']} detections, {ha:,.1f} ha)" in text
    new_ha = format_ha(float(last["new_area_m2"]))
    assert f"since {last['previous_scene']}: {last['new']} new ({new_ha})" in text

    page = (write_report(region, rdir, tmp_path / "report").path).read_text()
    assert '<table id="passes">' in page
    assert page.count('class="pass-row"') == len(rows)
    assert f"{ha:,.1f} ha" in page


@pytest.mark.slow
def test_a_state_of_an_earlier_geotl_is_migrated_in_place(
    tmp_path: Path, peru_scenes: list[Path], peru_model: Path
) -> None:
    region, out = _peru(tmp_path, peru_scenes[:4])
    opts = MonitorOptions(out_dir=out, model_dir=peru_model)
    assert run_monitor(region, opts).exit_code == 0
    rdir = out / "peru"
    db_path = rdir / "state.sqlite"
    _, before = _history(rdir)
    _downgrade_to_schema_1(db_path)
    # the changes file of the third pass no longer matches its recorded counts (a run
    # killed between rewriting it and recording them): its areas must not be taken from it
    tampered = rdir / before[2]["changes_file"]
    fc = json.loads(tampered.read_text())
    fc["features"].append({**fc["features"][0]} if fc["features"] else {})
    tampered.write_text(json.dumps(fc))

    # read-only (status, report) before any run migrated it: works, areas not known
    status = monitor_status(region, out)
    assert status.latest is not None and status.latest.detected_area_m2 is None
    assert status.to_dict()["latest"]["new_area_m2"] is None
    assert "detections" in format_status(status) and "ha" not in format_status(status)
    with sqlite3.connect(db_path) as db:
        assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (
            "1",
        )

    # opened for writing: migrated in place, areas from the passes' own files
    with MonitorState(db_path) as state:
        assert state.get_meta("schema_version") == "2"
        passes = {p.name: p for p in state.done_passes()}
    for row in before:
        rec = passes[row["scene"]]
        assert rec.detected_area_m2 == pytest.approx(float(row["detected_area_m2"]), abs=0.01)
        if row["scene"] == before[2]["scene"]:
            assert (rec.new_area_m2, rec.gone_area_m2) == (None, None)
        elif row["new"] == "":
            assert rec.new_area_m2 is None
        else:
            assert rec.new_area_m2 == pytest.approx(float(row["new_area_m2"]), abs=0.01)
            assert rec.gone_area_m2 == pytest.approx(float(row["gone_area_m2"]), abs=0.01)
    with MonitorState(db_path) as state:  # opened again: nothing migrated twice
        assert state.get_meta("schema_version") == "2"

    # the next run processes new passes with areas and rewrites history.csv with them
    deliver(region.path, peru_scenes[:6])
    summary = run_monitor(region, opts)
    assert summary.exit_code == 0 and [p.scene for p in summary.processed] == ["2005", "2010"]
    assert all(p.detected_area_m2 is not None for p in summary.processed)
    header, after = _history(rdir)
    assert header == HISTORY_COLUMNS
    by_scene = {r["scene"]: r for r in after}
    assert by_scene[before[2]["scene"]]["new_area_m2"] == ""
    assert by_scene[before[2]["scene"]]["new"] == before[2]["new"]
    assert by_scene["2010"]["new_area_m2"] != "" and by_scene["2010"]["detected_area_m2"] != ""
