"""``gpkg``: detections in each scene's own CRS, in a GeoPackage styled for QGIS."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pyarrow as pa

from geotl.io.atomic import atomic_path
from geotl.predict.outputs.base import OutputWriter, Prediction, scene_file_part
from geotl.predict.outputs.style import qml_style

__all__ = ["GPKG_OPTIONS", "GpkgWriter", "typed_dates", "write_gpkg"]


#: GeoPackage 1.2, which every QGIS reads without a word (pyogrio's GDAL writes 1.4 by
#: default; GDAL 3.6, under QGIS 3.22 on Debian 12, warns it "may only be partially supported")
GPKG_OPTIONS = {"VERSION": "1.2"}


def write_gpkg(
    path: Path, layers: dict[str, gpd.GeoDataFrame], classes: list[str], style: str | None = None
) -> Path:
    """Write detection layers (each in its own CRS) to a GeoPackage, styled for QGIS.

    The style is stored as each layer's default (``layer_styles`` table), which QGIS loads.
    The file's time stamps are :data:`STAMP`, not the clock's: the same detections give the
    same bytes (a run with ``--cluster`` and one without, two runs to compare).

    Args:
        path: the ``.gpkg`` file.
        layers: layer name -> frame (native CRS).
        classes: the model's classes (for the style).
        style: another QGIS style (QML text) than the detections' (``geotl suggest``).
    """
    qml = style if style is not None else qml_style(classes)
    with atomic_path(path) as tmp, _gdal_option("OGR_CURRENT_DATE", STAMP):
        for i, (name, frame) in enumerate(layers.items()):
            frame.to_file(
                tmp,
                layer=name,
                driver="GPKG",
                engine="pyogrio",
                use_arrow=True,  # a date column (pyarrow date32) is written as a GPKG DATE
                promote_to_multi=True,
                geometry_type="MultiPolygon",
                dataset_options=GPKG_OPTIONS if i == 0 else None,
            )
        with sqlite3.connect(tmp) as db:
            db.execute(
                """CREATE TABLE IF NOT EXISTS layer_styles (
                id INTEGER PRIMARY KEY AUTOINCREMENT, f_table_catalog TEXT(256),
                f_table_schema TEXT(256), f_table_name TEXT(256), f_geometry_column TEXT(256),
                styleName TEXT(30), styleQML TEXT, styleSLD TEXT, useAsDefault BOOLEAN,
                description TEXT, owner TEXT(30), ui TEXT(30),
                update_time DATETIME DEFAULT CURRENT_TIMESTAMP)"""
            )
            db.execute(
                "INSERT OR IGNORE INTO gpkg_contents (table_name, data_type, identifier, "
                "last_change) VALUES ('layer_styles', 'attributes', 'layer_styles', ?)",
                (STAMP,),
            )
            for name in layers:
                db.execute(
                    "INSERT INTO layer_styles (f_table_catalog, f_table_schema, f_table_name, "
                    "f_geometry_column, styleName, styleQML, styleSLD, useAsDefault, description, "
                    "update_time) VALUES ('', '', ?, 'geom', 'geotl', ?, '', 1, 'geotl detections', ?)",
                    (name, qml, STAMP),
                )
        db.close()
    return path


STAMP = "2000-01-01T00:00:00.000Z"
"""The GeoPackage's ``last_change`` and style ``update_time``: fixed, for reproducible files."""


@contextlib.contextmanager
def _gdal_option(key: str, value: str) -> Iterator[None]:
    import pyogrio

    before = pyogrio.get_gdal_config_option(key)
    pyogrio.set_gdal_config_options({key: value})
    try:
        yield
    finally:
        pyogrio.set_gdal_config_options({key: before})


def typed_dates(frame: gpd.GeoDataFrame, column: str = "acquired") -> gpd.GeoDataFrame:
    """``frame`` with its ISO 8601 ``column`` as dates, typed as QGIS reads the GeoJSON's.

    GDAL reads the GeoJSON's ``acquired`` strings as a Date field (a DateTime one when a
    value holds a time), while the GeoPackage kept them as text: the same field filtered
    by date in one file and compared as text in the other, and only the GeoJSON in QGIS's
    temporal controller. Dates become a date column (a GPKG ``DATE``), values with a time
    a timestamp one (``DATETIME``); a column of nulls, or one that does not parse, is kept.

    >>> f = gpd.GeoDataFrame({"acquired": ["2020-06-15", None]}, geometry=[None, None])
    >>> str(typed_dates(f)["acquired"].dtype)
    'date32[day][pyarrow]'
    >>> f = gpd.GeoDataFrame({"acquired": ["2020-06-15", "2020-06-16T10:20:30"]}, geometry=[None, None])
    >>> typed_dates(f)["acquired"].dtype.kind  # numpy's datetime64
    'M'
    """
    if column not in frame.columns:
        return frame
    values = frame[column]
    known = values.dropna()
    if known.empty or not all(isinstance(v, str) for v in known):
        return frame
    try:
        when = pd.to_datetime(values, format="ISO8601")
    except (ValueError, TypeError):  # mixed time zones, or not a date: left as text
        return frame
    typed = frame.copy()
    if all(len(v) == 10 for v in known):  # YYYY-MM-DD: a day, no time to invent
        typed[column] = when.dt.date.astype(pd.ArrowDtype(pa.date32()))
    else:
        typed[column] = when
    return typed


class GpkgWriter(OutputWriter):
    """One ``detections`` layer when all scenes share a CRS, else one layer per scene."""

    format = "gpkg"

    def write(self, path: Path, prediction: Prediction) -> Path:
        """Write the scenes' native-CRS detections."""
        done = prediction.scenes
        crss = {d.native.crs.to_wkt() if d.native.crs else "" for d in done}
        if len(crss) == 1:
            natives = [d.native for d in done]
            layer = pd.concat(natives, ignore_index=True) if len(natives) > 1 else natives[0]
            layers = {
                "detections": gpd.GeoDataFrame(layer, geometry="geometry", crs=done[0].native.crs)
            }
        else:
            layers = {f"detections_{scene_file_part(d.name)}": d.native for d in done}
        layers = {name: typed_dates(frame) for name, frame in layers.items()}
        return write_gpkg(path, layers, prediction.classes)
