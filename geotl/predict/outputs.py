"""Outputs beside the GeoJSON: GeoPackage (native CRS) with its QGIS style, QML, quicklook PNG.

Every file is written atomically (temporary name, then rename).
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from xml.sax.saxutils import quoteattr

import geopandas as gpd
import numpy as np

from geotl.io.atomic import atomic_path, atomic_write_text

__all__ = ["CLASS_COLOURS", "qml_style", "write_gpkg", "write_qml", "write_quicklook"]

log = logging.getLogger(__name__)

# ColorBrewer Dark2: distinct, readable on imagery.
CLASS_COLOURS: tuple[tuple[int, int, int], ...] = (
    (27, 158, 119),
    (217, 95, 2),
    (117, 112, 179),
    (231, 41, 138),
    (102, 166, 30),
    (230, 171, 2),
    (166, 118, 29),
    (102, 102, 102),
)


def _colour(i: int) -> tuple[int, int, int]:
    return CLASS_COLOURS[i % len(CLASS_COLOURS)]


def _rgb01(i: int) -> tuple[float, float, float]:
    r, g, b = _colour(i)
    return (r / 255, g / 255, b / 255)


def qml_style(classes: list[str]) -> str:
    """A QGIS layer style: fill coloured by ``class``, label showing ``score``.

    >>> 'attr="class"' in qml_style(["tree"]) and 'format_number' in qml_style(["tree"])
    True
    """
    categories = []
    symbols = []
    for i, name in enumerate(classes):
        r, g, b = _colour(i)
        categories.append(
            f'      <category symbol="{i}" value={quoteattr(name)} label={quoteattr(name)} render="true"/>'
        )
        symbols.append(
            f"""      <symbol type="fill" name="{i}" alpha="1" clip_to_extent="1" force_rhr="0">
        <layer class="SimpleFill" enabled="1" locked="0" pass="0">
          <Option type="Map">
            <Option name="color" type="QString" value="{r},{g},{b},70"/>
            <Option name="outline_color" type="QString" value="{r},{g},{b},255"/>
            <Option name="outline_style" type="QString" value="solid"/>
            <Option name="outline_width" type="QString" value="0.5"/>
            <Option name="outline_width_unit" type="QString" value="MM"/>
            <Option name="style" type="QString" value="solid"/>
          </Option>
        </layer>
      </symbol>"""
        )
    label_expr = quoteattr('"class" || \' \' || format_number("score", 2)')
    return f"""<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>
<qgis version="3.22.0" styleCategories="Symbology|Labeling" labelsEnabled="1">
  <renderer-v2 type="categorizedSymbol" attr="class" forceraster="0" symbollevels="0" enableorderby="0">
    <categories>
{chr(10).join(categories)}
    </categories>
    <symbols>
{chr(10).join(symbols)}
    </symbols>
  </renderer-v2>
  <labeling type="simple">
    <settings calloutType="simple">
      <text-style fieldName={label_expr} isExpression="1" fontSize="8" fontSizeUnit="Point" textColor="0,0,0,255" textOpacity="1" namedStyle="Regular" fontFamily="Sans Serif">
        <text-buffer bufferDraw="1" bufferSize="0.7" bufferSizeUnits="MM" bufferColor="255,255,255,255" bufferOpacity="0.8"/>
      </text-style>
      <placement placement="1" priority="5" dist="0" distUnits="MM"/>
      <rendering scaleVisibility="0" obstacle="1" fontLimitPixelSize="0" displayAll="0"/>
    </settings>
  </labeling>
</qgis>
"""


def write_qml(path: Path, classes: list[str]) -> Path:
    """Write the QGIS style file (``.qml``) for detections of ``classes``."""
    atomic_write_text(path, qml_style(classes))
    return path


def write_gpkg(path: Path, layers: dict[str, gpd.GeoDataFrame], classes: list[str]) -> Path:
    """Write detection layers (each in its own CRS) to a GeoPackage, styled for QGIS.

    The style is stored as each layer's default (``layer_styles`` table), which QGIS loads.

    Args:
        path: the ``.gpkg`` file.
        layers: layer name -> frame (native CRS).
        classes: the model's classes (for the style).
    """
    qml = qml_style(classes)
    with atomic_path(path) as tmp:
        for name, frame in layers.items():
            frame.to_file(
                tmp,
                layer=name,
                driver="GPKG",
                engine="pyogrio",
                promote_to_multi=True,
                geometry_type="MultiPolygon",
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
                "INSERT OR IGNORE INTO gpkg_contents (table_name, data_type, identifier) "
                "VALUES ('layer_styles', 'attributes', 'layer_styles')"
            )
            for name in layers:
                db.execute(
                    "INSERT INTO layer_styles (f_table_catalog, f_table_schema, f_table_name, "
                    "f_geometry_column, styleName, styleQML, styleSLD, useAsDefault, description) "
                    "VALUES ('', '', ?, 'geom', 'geotl', ?, '', 1, 'geotl detections')",
                    (name, qml),
                )
        db.close()
    return path


def _stretch(rgb: np.ndarray, valid: np.ndarray) -> np.ndarray:
    out = np.zeros(rgb.shape, dtype=np.float32)
    for i, band in enumerate(rgb):
        vals = band[valid]
        if vals.size == 0:
            continue
        lo, hi = np.percentile(vals, (2, 98))
        out[i] = np.clip((band - lo) / max(float(hi - lo), 1e-6), 0, 1)
    return out


def write_quicklook(
    path: Path,
    scene_path: Path,
    frame: gpd.GeoDataFrame,
    rgb_indexes: list[int],
    classes: list[str],
    max_px: int = 1024,
) -> Path:
    """Write a PNG of the scene (downsampled to ``max_px``) with the polygons drawn on it.

    Args:
        path: the PNG.
        scene_path: the scene GeoTIFF.
        frame: detections in the scene's CRS.
        rgb_indexes: 1-based bands to show as red, green, blue (one band: grey).
        classes: the model's classes (colours).
        max_px: longest side of the picture.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import rasterio
    from matplotlib.patches import Patch

    with rasterio.open(scene_path) as ds:
        scale = max(ds.width, ds.height) / max_px
        out_h = max(1, round(ds.height / max(scale, 1.0)))
        out_w = max(1, round(ds.width / max(scale, 1.0)))
        data = ds.read(rgb_indexes, out_shape=(len(rgb_indexes), out_h, out_w)).astype(np.float32)
        masks = ds.read_masks(rgb_indexes, out_shape=(len(rgb_indexes), out_h, out_w))
        left, bottom, right, top = ds.bounds
        crs = ds.crs
    valid = (masks > 0).any(axis=0) & np.isfinite(data).all(axis=0)
    img = _stretch(data, valid)
    img = np.repeat(img, 3, axis=0) if img.shape[0] == 1 else img[:3]
    rgba = np.concatenate([np.moveaxis(img, 0, -1), valid[..., None].astype(np.float32)], axis=-1)
    zoom = max(1.0, 800 / max(out_w, out_h))  # small scenes are drawn larger, pixels crisp
    fig, ax = plt.subplots(figsize=(out_w * zoom / 100 + 0.5, out_h * zoom / 100 + 0.5), dpi=100)
    ax.imshow(rgba, extent=(left, right, bottom, top), interpolation="nearest")
    if len(frame) and crs is not None:
        native = frame.to_crs(crs) if frame.crs is not None and not frame.crs.equals(crs) else frame
        for i, name in enumerate(classes):
            sub = native[native["class"] == name]
            if len(sub):
                colour = _rgb01(i)
                sub.boundary.plot(ax=ax, color=colour, linewidth=1.0)
        handles = [
            Patch(edgecolor=_rgb01(i), facecolor="none", label=n) for i, n in enumerate(classes)
        ]
        ax.legend(handles=handles, loc="lower right", fontsize=7)
    ax.set_title(f"{scene_path.name}: {len(frame)} detection(s)", fontsize=9)
    ax.set_axis_off()
    ax.set_xlim(left, right)
    ax.set_ylim(bottom, top)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path
