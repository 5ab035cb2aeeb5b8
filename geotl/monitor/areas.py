"""Whether a layer the region names lies where the region is (a wrong CRS puts it elsewhere)."""

from __future__ import annotations

from typing import Any

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from geotl.io.vectors import crs_name

__all__ = ["far_from_region"]


def far_from_region(
    region_area: BaseGeometry, geoms_4326: np.ndarray, geoms: np.ndarray, crs: Any
) -> str | None:
    """None when a layer's extent meets the region's area; else where each of them lies.

    Args:
        region_area: the region's area (EPSG:4326).
        geoms_4326: the layer's geometries in EPSG:4326.
        geoms: the same geometries in the layer's own CRS (for the message).
        crs: the layer's own CRS.

    Returns:
        ``"its features in <crs> span x0,y0 to x1,y1; the region is near lon .., lat .."``
        when the layer lies elsewhere (usually a wrong CRS), for a one-line message.
    """
    bounds = shapely.total_bounds(geoms_4326)
    if np.isfinite(bounds).all() and shapely.box(*bounds).intersects(region_area):
        return None
    lon, lat = region_area.representative_point().coords[0]
    x0, y0, x1, y1 = shapely.total_bounds(geoms)
    return (
        f"its features in {crs_name(crs)} span {x0:.6g},{y0:.6g} to {x1:.6g},{y1:.6g}; "
        f"the region is near lon {lon:.4f}, lat {lat:.4f}"
    )
