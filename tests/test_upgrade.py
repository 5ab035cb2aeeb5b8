"""Upgrading geotl over what an earlier geotl wrote: chips, model cards and monitor states.

The earlier files are made by the earlier geotl itself (:mod:`old_geotl`: a fixed commit of
this repository, run by this virtual environment) on the demo plot. Today's geotl must
either give what re-made files would give, or refuse them in one line (exit 2) that names
the file and the fix; never a traceback, never different results silently. A team that
goes back to the earlier geotl must find a state it can use.
"""

from __future__ import annotations

import csv
import json
import shutil
import sqlite3
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from old_geotl import CUT_RULES_1, REPO, SCHEMA_1, TODAY, ok, old_geotl, one_line_error

sys.path.insert(0, str(Path(__file__).resolve().parent / "monitor"))
from alert_helpers import Receiver

DEMO = REPO / "regions" / "demo-osbs"
SCENE = DEMO / "imagery" / "OSBS_029.tif"
#: three passes of the demo plot: its pixels, then brighter, then darker
PASSES = {"20200115": 0, "20210115": 6, "20220115": -6}


def _region(folder: Path, webhook: str | None = None) -> Path:
    """The demo region (tiny trainings), watching ``folder/incoming``; alerts to ``webhook``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "incoming").mkdir(exist_ok=True)
    text = f"""name = "demo-osbs"
task = "segmentation"
classes = ["tree"]

[imagery]
paths = [{json.dumps(str(DEMO / "imagery" / "*.tif"))}]
bands = ["red", "green", "blue"]

[labels]
path = {json.dumps(str(DEMO / "labels" / "OSBS_029_crowns.geojson"))}
class_field = "label"
class_map = {{ Tree = "tree" }}

[chips]
size_px = 64
stride_px = 64

[split]
block_size_m = 24.0
val_fraction = 0.15
test_fraction = 0.2
seed = 0
guard_px = 16

[model]
base = "pkg:efficientnet-lite0"
freeze = "partial"
steps = 4
val_every = 2
batch_size = 8

[predict]
min_area_m2 = 0.5

[monitor]
source = "folder"
paths = ["incoming/*.tif"]
datetime_regex = '_(\\d{{8}})'
"""
    if webhook is not None:
        text += f"""
[monitor.alerts]
webhook = "{webhook}"
persistence = {{ passes = 1, of = 1 }}

[[monitor.alerts.rule]]
class = "tree"
when = "present"
min_area_m2 = 2.0
"""
    region = folder / "demo-osbs.toml"
    region.write_text(text, encoding="utf-8")
    return region


def _deliver(region: Path, date: str) -> None:
    """Pass ``date`` of the demo plot arrives in the region's watched folder."""
    with rasterio.open(SCENE) as src:
        profile, pixels = src.profile, src.read()
    shifted = np.clip(pixels.astype(np.int16) + PASSES[date], 0, 254).astype(np.uint8)
    with rasterio.open(region.parent / "incoming" / f"OSBS_029_{date}.tif", "w", **profile) as dst:
        dst.write(shifted)


def _scores(path: Path) -> list[float]:
    return sorted(f["properties"]["score"] for f in json.loads(path.read_text())["features"])


@pytest.mark.slow
def test_chips_cut_before_the_guard_band_objects_rule_are_refused(tmp_path: Path) -> None:
    """Chips that list objects their guard bands hid are cut again, not trained on silently.

    Such chips (geotl before cut rules 2) have today's pixels, but a label budget drew
    objects no chip shows any more, and the card counted them: train --chips took them.
    """
    old = old_geotl(CUT_RULES_1, tmp_path / "old")
    region = _region(tmp_path / "region")
    ok(old.run("chip", region, "--out", tmp_path / "chips", cwd=tmp_path))
    refused = TODAY.run(
        "train", region, "--chips", tmp_path / "chips", "--out", tmp_path / "model", cwd=tmp_path
    )
    line = one_line_error(refused, 2)
    assert str(tmp_path / "chips") in line and "cut by an earlier geotl" in line
    assert "chip again (geotl chip --overwrite) or drop --chips" in line
    assert not (tmp_path / "model").exists()


@pytest.mark.slow
def test_chips_of_a_recent_geotl_train_as_chips_cut_today(tmp_path: Path) -> None:
    """Chips cut by the same rules are used as they are: the same weights as fresh chips."""
    old = old_geotl(SCHEMA_1, tmp_path / "old")
    region = _region(tmp_path / "region")
    ok(old.run("chip", region, "--out", tmp_path / "old-chips", cwd=tmp_path))
    ok(TODAY.run("chip", region, "--out", tmp_path / "chips", cwd=tmp_path))
    cards = []
    for chips in ("old-chips", "chips"):
        model = tmp_path / f"model-{chips}"
        ok(TODAY.run("train", region, "--chips", tmp_path / chips, "--out", model, cwd=tmp_path))
        cards.append(json.loads((model / "model.json").read_text()))
    assert cards[0]["weights_sha256"] == cards[1]["weights_sha256"]
    assert cards[0]["regions"][0]["labels_available"] == cards[1]["regions"][0]["labels_available"]


@pytest.mark.slow
def test_a_schema_1_state_goes_on_under_this_geotl_and_back(tmp_path: Path) -> None:
    """An earlier geotl's model and monitor state: a third pass, then back to that geotl.

    The state is migrated in place (its copy as schema 1 kept); the earlier passes are not
    predicted again and their alerts not sent again; the earlier geotl refuses the migrated
    state in one line, and goes on from the copy put back, sending nothing under new keys.
    """
    old = old_geotl(SCHEMA_1, tmp_path / "old")
    receiver = Receiver()
    try:
        region = _region(tmp_path / "region", webhook=receiver.url)
        model, out = tmp_path / "model", tmp_path / "out"
        ok(old.run("train", region, "--out", model, cwd=tmp_path))
        monitor = ("monitor", region, "--model", model, "--out", out, "--once")
        for date in ("20200115", "20210115"):
            _deliver(region, date)
            ok(old.run(*monitor, cwd=tmp_path))
        rdir = out / "demo-osbs"
        earlier = {p.name: p.read_bytes() for p in (rdir / "passes").iterdir()}
        sent = {r["key"] for r in receiver.requests}
        assert len(earlier) == 2 and sent  # the earlier geotl raised and delivered alerts

        # read before any run of this geotl: nothing migrated
        ok(TODAY.run("monitor", "status", region, "--out", out, cwd=tmp_path))
        copy = rdir / "state-schema-1.sqlite"
        assert not copy.exists()

        _deliver(region, "20220115")
        ran = ok(TODAY.run(*monitor, cwd=tmp_path))
        assert "migrated from schema 1 to 2" in ran.stderr and copy.name in ran.stderr
        passes = {p.name: p.read_bytes() for p in (rdir / "passes").iterdir()}
        assert {k: passes[k] for k in earlier} == earlier  # not predicted again
        keys = [r["key"] for r in receiver.requests]
        assert len(keys) == len(set(keys))  # no alert sent twice
        with open(rdir / "history.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
        assert [r["scene"][-8:] for r in rows] == list(PASSES)
        assert all(float(r["detected_area_m2"]) > 0 for r in rows)  # the earlier ones' too
        with sqlite3.connect(copy) as db:
            assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (
                "1",
            )
            assert db.execute("SELECT count(*) FROM jobs WHERE status = 'done'").fetchone() == (2,)

        # back to the earlier geotl: refused in one line, the migrated state left as it is
        state = (rdir / "state.sqlite").read_bytes()
        line = one_line_error(old.run(*monitor, cwd=tmp_path), 1)
        assert "schema 2" in line
        assert (rdir / "state.sqlite").read_bytes() == state
        # ... and going on from the copy: the third pass again, with today's objects and
        # nothing sent under a key the receiver has not seen
        third = rdir / "passes" / "20220115T000000Z_OSBS_029_20220115.geojson"
        today = _scores(third)
        for suffix in ("-wal", "-shm"):
            (rdir / f"state.sqlite{suffix}").unlink(missing_ok=True)
        shutil.move(copy, rdir / "state.sqlite")
        ok(old.run(*monitor, cwd=tmp_path))
        assert _scores(third) == today  # the card's bands and normalisation read alike
        assert {r["key"] for r in receiver.requests} == set(keys)
    finally:
        receiver.close()


def test_a_state_of_a_newer_geotl_is_refused_in_one_line(tmp_path: Path) -> None:
    """A state a newer geotl migrated: exit 2, naming the copy that geotl kept of this one."""
    region = _region(tmp_path / "region")
    rdir = tmp_path / "out" / "demo-osbs"
    rdir.mkdir(parents=True)
    with sqlite3.connect(rdir / "state.sqlite") as db:
        db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        db.execute("INSERT INTO meta VALUES ('schema_version', '3')")
    status = ("monitor", "status", region, "--out", tmp_path / "out")
    line = one_line_error(TODAY.run(*status, cwd=tmp_path), 2)
    assert "schema 3, written by a newer geotl" in line and "start a new --out folder" in line
    (rdir / "state-schema-2.sqlite").write_bytes(b"")
    line = one_line_error(TODAY.run(*status, cwd=tmp_path), 2)
    assert "put back state-schema-2.sqlite" in line
