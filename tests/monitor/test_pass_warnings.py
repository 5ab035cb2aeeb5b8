"""A pass keeps what was warned while it was processed: status, report and history show it."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
import rasterio
from monitor_helpers import NAIP_BANDS, NAIP_REGEX, copy_in, write_region

from geotl.config import load_region
from geotl.monitor import MonitorOptions, monitor_status, run_monitor
from geotl.monitor.outputs import HISTORY_COLUMNS
from geotl.monitor.status import format_status


def _history(rdir: Path) -> list[dict[str, str]]:
    with open(rdir / "history.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _jpeg(src: Path, dest: Path) -> Path:
    """The scene JPEG-compressed (lossy: predict warns about it)."""
    with rasterio.open(src) as ds:
        profile: dict[str, Any] = {**ds.profile, "compress": "jpeg", "photometric": "minisblack"}
        data = ds.read()
    with rasterio.open(dest, "w", **profile) as out:
        out.write(data)
    return dest


@pytest.mark.slow
def test_a_pass_that_warned_says_so_a_week_later(
    naip_small: list[Path], naip_model: Path, tmp_path: Path
) -> None:
    region_file = write_region(
        tmp_path / "region",
        "naip-warned",
        naip_small[:1],
        NAIP_BANDS,
        ["water"],
        'source = "folder"\npaths = ["incoming/*.tif"]',
        datetime_regex=NAIP_REGEX,
        min_area_m2=200.0,
    )
    region = load_region(region_file)
    out = tmp_path / "out"
    opts = MonitorOptions(out_dir=out, model_dir=naip_model)
    copy_in(region_file, naip_small[0])
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    copy_in(region_file, _jpeg(naip_small[1], scratch / naip_small[1].name))
    assert len(run_monitor(region, opts).processed) == 2

    rdir = out / "naip-warned"
    history = _history(rdir)
    assert list(history[0]) == HISTORY_COLUMNS
    assert HISTORY_COLUMNS[-2:] == ["warnings", "first_warning"]
    assert [h["warnings"] for h in history] == ["0", "1"]
    assert history[0]["first_warning"] == ""
    assert "JPEG" in history[1]["first_warning"]
    assert naip_small[1].name in history[1]["first_warning"]

    status = monitor_status(region, out)
    text = format_status(status)
    assert "passes with warnings: 1" in text
    assert f"  {naip_small[1].stem} acquired" in text and "JPEG" in text
    warned = status.to_dict()["warned"]
    assert [w["scene"] for w in warned] == [naip_small[1].stem]
    assert warned[0]["warnings"] == 1
    json.dumps(status.to_dict())

    from geotl.monitor.alerts.report import write_report

    write_report(region, rdir, tmp_path / "report")
    page = (tmp_path / "report" / "index.html").read_text(encoding="utf-8")
    assert "<th>warnings</th>" in page
    row = next(line for line in page.splitlines() if f'data-scene="{naip_small[1].stem}"' in line)
    assert 'class="warned"' in row and "JPEG" in row

    # the scene replaced by a clean file: its pass is redone and its warnings go
    copy_in(region_file, naip_small[1])
    assert len(run_monitor(region, opts).processed) == 1
    assert [h["warnings"] for h in _history(rdir)] == ["0", "0"]
    assert "passes with warnings" not in format_status(monitor_status(region, out))
