"""Labels in longitude/latitude that go round the world the wrong way are refused, said once.

The geometries are what ``ogr2ogr -t_srs EPSG:4326 -wrapdateline`` wrote from polygons
drawn in Antarctic Polar Stereographic (EPSG:3031): a crescent across the antimeridian
with a vertex on 180 came out uncut, joined the long way round (358 degrees of
longitude), while a square round the south pole came out as a cap that rightly spans
all longitudes and reaches -90.
"""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import pytest
from shapely.geometry import MultiPolygon, Polygon, box

from geotl.config import load_region
from geotl.errors import LabelError
from geotl.io.vectors import read_labels

LONG_WAY = Polygon(  # ogr2ogr -wrapdateline output, vertex on 180: not cut
    [
        (-179.23610153907003, -76.25689370718446),
        (179.23610153907003, -76.25689370718446),
        (180.0, -76.43967980249352),
        (179.2151753970081, -76.62007714577479),
        (-179.2151753970081, -76.62007714577479),
    ]
)
POLE_CAP = Polygon(  # ogr2ogr -wrapdateline output of a square round the south pole
    [
        (-135.0, -88.698459806716741),
        (-45.0, -88.698459806716741),
        (45.0, -88.698459806716741),
        (135.0, -88.698459806716741),
        (180.0, -89.079653115178559),
        (180.0, -90.0),
        (-180.0, -90.0),
        (-180.0, -89.079653115178559),
    ]
)
BOW_TIE = Polygon(  # self-crossing: make_valid keeps two strips of about 180 degrees each
    [(-179.5, -70.0), (179.5, -70.0), (-179.5, -69.0), (179.5, -69.0)]
)
CUT = MultiPolygon([box(179.2, -76.6, 180.0, -76.2), box(-180.0, -76.6, -179.2, -76.2)])


def _region(tmp_path: Path, geoms: list[Polygon | MultiPolygon]) -> Path:
    gpd.GeoDataFrame({"label": ["Ice"] * len(geoms)}, geometry=geoms, crs="EPSG:4326").to_file(
        tmp_path / "ice.geojson"
    )
    (tmp_path / "s.tif").write_bytes(b"")  # the glob must match; never opened here
    path = tmp_path / "r.toml"
    path.write_text(
        'name = "t"\nclasses = ["ice"]\n[imagery]\npaths = ["s.tif"]\nbands = ["red"]\n'
        '[labels]\npath = "ice.geojson"\nclass_field = "label"\nclass_map = { Ice = "ice" }\n'
    )
    return path


def test_labels_round_the_world_are_ignored_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    region = load_region(_region(tmp_path, [LONG_WAY, CUT, POLE_CAP, BOW_TIE]))
    with caplog.at_level("WARNING", logger="geotl"):
        labels = read_labels(region)
        again = read_labels(region)
    # the cut crescent (one object) and the pole cap stay; the long way and the bow-tie go
    assert labels["label_id"].tolist() == [1, 2]
    assert again["label_id"].tolist() == [1, 2]
    assert labels.attrs["n_round_the_world"] == 2 and labels.attrs["n_dropped"] == 2
    warned = [r.getMessage() for r in caplog.records if "180 degrees" in r.getMessage()]
    assert len(warned) == 1  # once per file, not per read
    assert "ignored 2 label(s)" in warned[0] and "ice.geojson" in warned[0]
    assert "-wrapdateline" in warned[0] and "projected CRS" in warned[0]


def test_only_labels_round_the_world_are_no_usable_polygons(tmp_path: Path) -> None:
    with pytest.raises(LabelError, match="round the world"):
        read_labels(load_region(_region(tmp_path, [LONG_WAY])))


def test_a_wide_label_in_a_projected_crs_is_kept(tmp_path: Path) -> None:
    region = load_region(_region(tmp_path, [box(-179.5, -70.0, 179.5, -69.0)]))
    frame = gpd.read_file(tmp_path / "ice.geojson").set_crs("EPSG:3031", allow_override=True)
    frame.to_file(tmp_path / "ice.geojson")  # 359 m wide in metres: nothing wrapped
    assert len(read_labels(region)) == 1
