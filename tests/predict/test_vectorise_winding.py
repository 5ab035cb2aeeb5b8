"""Polygons come out of the vectoriser wound one way, whatever the simplifier returns.

Found driving geotl on the Sentinel-2 fields reprojected to EPSG:4326 (task "instances"):
GEOS's coverage simplifier gave one field of a cluster of touching fields a hole wound like
its shell. The GeoPackage kept it so (a reader that goes by winding takes the hole for a
second part), and its ``area_m2`` added the hole instead of taking it off. Which clusters
trigger GEOS is not known, so the simplifier is made to return such a polygon here.
"""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from affine import Affine
from shapely.geometry import Polygon

from geotl.predict.vectorise import vectorise


def _reversed_holes(geoms: np.ndarray) -> np.ndarray:
    out = np.empty(len(geoms), dtype=object)
    for i, g in enumerate(geoms):
        out[i] = Polygon(g.exterior.coords, [h.coords[::-1] for h in g.interiors])
    return out


def test_a_hole_the_simplifier_winds_like_its_shell_is_wound_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cm = np.zeros((12, 12), dtype=np.uint8)
    cm[1:11, 1:11] = 1
    cm[4:7, 4:7] = 0  # a field with a hole of 9 pixels
    transform = Affine(10, 0, 500_000, 0, -10, 5_650_000)
    want = vectorise(cm, transform, simplify_px=1.0)
    simplify = shapely.coverage_simplify
    monkeypatch.setattr(
        shapely, "coverage_simplify", lambda g, tol: _reversed_holes(simplify(g, tol))
    )

    got = vectorise(cm, transform, simplify_px=1.0)

    assert len(got) == len(want) == 1
    polygon = got[0].geometry
    assert len(polygon.interiors) == 1
    assert polygon.interiors[0].is_ccw != polygon.exterior.is_ccw
    assert polygon.equals(want[0].geometry) and polygon.area == pytest.approx(100 * 91)
