"""Reference layers: what a region expects (permits, an existing map, protected areas).

A rule names a reference layer with ``inside``, ``outside`` or ``unmatched`` (any OGR vector,
relative to the region file). Each layer is read once per monitor, checked (it has a CRS, it
has polygons, it overlaps the region) and kept in EPSG:4326 with one id per feature: its
``id`` field when that is unique, else its position in the file.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from geotl.config import Region
from geotl.errors import LabelError, ReferenceLayerError
from geotl.io.vectors import read_vector
from geotl.monitor.areas import far_from_region

__all__ = ["ReferenceLayer", "load_reference_layers", "read_reference_layer"]

log = logging.getLogger(__name__)

_POLYGONAL = ("Polygon", "MultiPolygon")


@dataclass
class ReferenceLayer:
    """One reference layer: valid polygons in EPSG:4326 with their ids.

    Attributes:
        path: the file.
        key: the region key that names it (for messages), e.g. ``monitor.alerts.rule[0].outside``.
        ids: one id per polygon (str).
        geoms: the polygons (EPSG:4326), valid.
    """

    path: Path
    key: str
    ids: np.ndarray
    geoms: np.ndarray
    _metric: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def in_crs(self, crs: str) -> np.ndarray:
        """The polygons reprojected to ``crs`` (cached: a monitor reuses one per region)."""
        if crs not in self._metric:
            series = gpd.GeoSeries(self.geoms, crs="EPSG:4326").to_crs(crs)
            self._metric[crs] = np.asarray(shapely.make_valid(series.values), dtype=object)
        return self._metric[crs]


def _feature_ids(frame: gpd.GeoDataFrame) -> np.ndarray:
    for column in ("id", "fid", "ID", "FID"):
        if column in frame.columns:
            values = frame[column].astype(str)
            if values.is_unique and not frame[column].isna().any():
                return np.asarray(values.to_numpy(), dtype=object)
    # the feature ids QGIS shows (a GeoPackage's fid counts from 1); a GeoParquet's rows
    return np.asarray([str(i) for i in frame.index], dtype=object)


def read_reference_layer(path: Path, key: str, region_area: BaseGeometry | None) -> ReferenceLayer:
    """Read and check one reference layer.

    Args:
        path: any OGR vector with polygons and a CRS.
        key: the region key naming it (used in messages).
        region_area: the region's area (EPSG:4326); the layer must overlap it. None skips
            the check.

    A layer without features (or whose features are all empty) is kept, empty, with a
    warning; features that are all points or lines are refused.

    Raises:
        ReferenceLayerError: unreadable, without CRS, without polygons among its features,
            or nowhere near the region (usually a wrong CRS).
    """
    try:
        frame = read_vector(
            path,
            key,
            fids=True,
            crs_fix=f"add one to the file, e.g. ogr2ogr -a_srs EPSG:4326 fixed.gpkg {path.name} ({key})",
            allow_empty=True,
        )
    except LabelError as exc:
        raise ReferenceLayerError(exc.message, path) from exc
    geoms = np.asarray(frame.geometry.values, dtype=object)
    ids = _feature_ids(frame)
    present = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
    geoms, ids = geoms[present], ids[present]
    if not len(geoms):
        # a layer with nothing in it yet (no permits issued, an empty export) is a state,
        # not a mistake: ``outside`` it is everything, ``inside`` it nothing, ``unmatched``
        # everything. Said, because a wrong export looks the same.
        log.warning("%s: %s has no polygons: every object is outside it (and unmatched)", path, key)
        empty = np.zeros(0, dtype=object)
        return ReferenceLayer(path=path, key=key, ids=empty, geoms=empty.copy())
    geoms = np.asarray(shapely.make_valid(geoms), dtype=object)
    polygonal = np.array(
        [g.geom_type in _POLYGONAL or g.geom_type == "GeometryCollection" for g in geoms],
        dtype=bool,
    )
    if not polygonal.any():
        raise ReferenceLayerError(
            f"has no polygons: {key} must name areas (permits, a reserve, building outlines)",
            path,
        )
    if not polygonal.all():
        log.warning(
            "%s: ignored %d feature(s) that are not polygons", path, int((~polygonal).sum())
        )
    source_crs = frame.crs
    wgs = gpd.GeoSeries(geoms[polygonal], crs=source_crs).to_crs("EPSG:4326")
    layer = ReferenceLayer(
        path=path,
        key=key,
        ids=ids[polygonal],
        geoms=np.asarray(shapely.make_valid(wgs.values), dtype=object),
    )
    if region_area is not None and not region_area.is_empty:
        far = far_from_region(region_area, layer.geoms, geoms, source_crs)
        if far is not None:
            raise ReferenceLayerError(
                f"does not overlap the region ({far}): fix the file's CRS or point {key} at a "
                "layer of this region",
                path,
            )
    return layer


def load_reference_layers(
    region: Region, region_area: BaseGeometry | None
) -> dict[str, ReferenceLayer]:
    """Every reference layer the region's alert rules name, keyed by the path as written.

    Raises:
        ReferenceLayerError: a layer is unusable (see :func:`read_reference_layer`).
    """
    alerts = region.monitor.alerts if region.monitor is not None else None
    layers: dict[str, ReferenceLayer] = {}
    for i, rule in enumerate(alerts.rule if alerts is not None else []):
        written = rule.reference_path
        if written is None or written in layers:
            continue
        key = f"monitor.alerts.rule[{i}].{rule.reference_key}"
        layers[written] = read_reference_layer(region.resolve(written), key, region_area)
    return layers
