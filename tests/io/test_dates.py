"""One reader of acquisition dates for prediction and monitoring."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

from geotl.io.dates import acquired_text, read_acquired


def _tif(path: Path, tags: dict[str, str] | None = None) -> Path:
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=4,
        height=4,
        count=1,
        dtype="uint8",
        crs="EPSG:32617",
        transform=Affine(1, 0, 0, 0, -1, 0),
    ) as ds:
        ds.write(np.zeros((1, 4, 4), np.uint8))
        if tags:
            ds.update_tags(**tags)
    return path


def test_regex_then_acquisition_tag_then_write_tag_of_the_names_day_then_name(
    tmp_path: Path,
) -> None:
    f = _tif(tmp_path / "pass_20190904_20200101.tif", {"TIFFTAG_DATETIME": "2021:05:04 10:30:00"})
    by_regex = read_acquired(f, None, r"pass_(\d{8})")
    assert by_regex is not None and by_regex.source == "regex"
    assert by_regex.when == datetime(2019, 9, 4, tzinfo=UTC)
    by_name = read_acquired(f)  # the file's write time, another day than its name's
    assert by_name is not None and by_name.source == "file-name"
    assert acquired_text(by_name) == "2019-09-04"
    same_day = _tif(tmp_path / "pass_20210504.tif", {"TIFFTAG_DATETIME": "2021:05:04 10:30:00"})
    by_tag = read_acquired(same_day)  # the name's day, to the second
    assert by_tag is not None and by_tag.source == "tiff-tag"
    assert acquired_text(by_tag) == "2021-05-04T10:30:00+00:00"
    acq = _tif(tmp_path / "p_20190904.tif", {"ACQUISITIONDATETIME": "2019-09-05T01:00:00Z"})
    assert acquired_text(read_acquired(acq)) == "2019-09-05T01:00:00+00:00"
    plain = _tif(tmp_path / "pass_20200101.tif")
    assert acquired_text(read_acquired(plain)) == "2020-01-01"
    assert read_acquired(_tif(tmp_path / "undated.tif")) is None


def test_monitor_and_predict_read_the_same_date(tmp_path: Path) -> None:
    from geotl.monitor.sources import FolderSource

    f = _tif(tmp_path / "x_20210504.tif", {"TIFFTAG_DATETIME": "2021:05:04 10:30:00"})
    source = FolderSource.__new__(FolderSource)
    source._regex = None
    when, origin, _ = source.acquisition_time(f, 0.0)
    acquired = read_acquired(f)
    assert acquired is not None
    assert (
        (when, origin)
        == (acquired.when, acquired.source)
        == (
            datetime(2021, 5, 4, 10, 30, tzinfo=UTC),
            "tiff-tag",
        )
    )
