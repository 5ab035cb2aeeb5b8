"""What ``geotl suggest`` writes: areas (GeoPackage, QGIS style), contact sheet, appends.

The areas go to a GeoPackage with a QGIS style, a PNG contact sheet and optionally a
``complete_within`` file. The three outputs are written under temporary names and renamed together at the end, so
an interrupted run leaves none of them half-written.
"""

from __future__ import annotations

import contextlib
import logging
import math
import shutil
from glob import escape as glob_escape
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
from pyproj import CRS

from geotl.errors import LabelError, error_text
from geotl.io.atomic import atomic_path, atomic_write_text
from geotl.predict.outputs.gpkg import GPKG_OPTIONS, write_gpkg
from geotl.predict.outputs.quicklook import ScenePicture, _stretch

__all__ = [
    "AREAS_LAYER",
    "TITLE_CHARS",
    "append_areas",
    "areas_qml",
    "short_name",
    "write_areas",
    "write_contact_sheet",
]

log = logging.getLogger(__name__)

AREAS_LAYER = "areas"
_OUTLINE = (255, 0, 255)  # magenta: visible on vegetation, soil, water and snow
TITLE_CHARS = 40  # a thumbnail title's width (2.4 in at 7 pt), in characters


def areas_qml() -> str:
    """A QGIS style for the suggested areas: outlines only, labelled with their rank.

    >>> 'fieldName="rank"' in areas_qml() and 'value="no"' in areas_qml()
    True
    """
    r, g, b = _OUTLINE
    return f"""<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>
<qgis version="3.22.0" styleCategories="Symbology|Labeling" labelsEnabled="1">
  <renderer-v2 type="singleSymbol" forceraster="0" symbollevels="0" enableorderby="0">
    <symbols>
      <symbol type="fill" name="0" alpha="1" clip_to_extent="1" force_rhr="0">
        <layer class="SimpleFill" enabled="1" locked="0" pass="0">
          <Option type="Map">
            <Option name="color" type="QString" value="{r},{g},{b},0"/>
            <Option name="outline_color" type="QString" value="{r},{g},{b},255"/>
            <Option name="outline_style" type="QString" value="solid"/>
            <Option name="outline_width" type="QString" value="0.8"/>
            <Option name="outline_width_unit" type="QString" value="MM"/>
            <Option name="style" type="QString" value="no"/>
          </Option>
        </layer>
      </symbol>
    </symbols>
  </renderer-v2>
  <labeling type="simple">
    <settings calloutType="simple">
      <text-style fieldName="rank" isExpression="0" fontSize="12" fontSizeUnit="Point" textColor="{r},{g},{b},255" textOpacity="1" namedStyle="Bold" fontFamily="Sans Serif" fontWeight="75">
        <text-buffer bufferDraw="1" bufferSize="1" bufferSizeUnits="MM" bufferColor="255,255,255,255" bufferOpacity="0.9"/>
      </text-style>
      <placement placement="1" quadOffset="0" priority="5" dist="0" distUnits="MM"/>
      <rendering scaleVisibility="0" obstacle="0" fontLimitPixelSize="0" displayAll="1"/>
    </settings>
  </labeling>
</qgis>
"""


def short_name(name: str, max_chars: int = TITLE_CHARS) -> str:
    """``name`` cut in the middle to ``max_chars``, so thumbnail titles do not run together.

    Sentinel-2 and Landsat file names run to 60 characters and more, which at the contact
    sheet's font is twice a thumbnail's width: the titles of neighbours overprinted each
    other. Both ends are kept, two thirds from the start (product and first date, which
    tell passes apart) and the rest from the end (the variant); the full name is in the
    GeoPackage's ``scene`` field.

    >>> short_name("BEFL-TEST-s2_2023-05-01_2023-07-01_B08-B04-B03_min_byte.tif")
    'BEFL-TEST-s2_2023-05-01_2...min_byte.tif'
    >>> short_name("plot.tif")
    'plot.tif'
    """
    if len(name) <= max_chars:
        return name
    keep = max_chars - 3
    end = keep // 3
    return f"{name[: keep - end]}...{name[len(name) - end :]}"


def write_contact_sheet(
    path: Path,
    areas: gpd.GeoDataFrame,
    scenes: dict[str, ScenePicture],
    detections: dict[str, gpd.GeoDataFrame],
    thumb_px: int = 192,
) -> Path:
    """A PNG with one thumbnail per area (rank order), predicted outlines drawn on it.

    Args:
        path: the PNG.
        areas: the suggested areas (``rank``, ``score``, ``scene``, ``expected_objects``),
            in one CRS (the one most of them share: a scene in another UTM zone has its
            squares reprojected, and each thumbnail is read back in its scene's CRS).
        scenes: scene name -> its file, the bands to show and its pixels with data (as
            prediction read them: the rest is drawn transparent).
        detections: scene name -> the model's polygons in the scene's CRS.
        thumb_px: thumbnail size.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import rasterio
    from rasterio.windows import from_bounds

    n = len(areas)
    cols = min(5, max(n, 1))
    rows = max(1, math.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 2.4, rows * 2.6), dpi=100, squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for ax, row in zip(axes.ravel(), areas.itertuples(index=False), strict=False):
        picture = scenes[row.scene]
        with rasterio.open(picture.path) as ds:
            square = _in_scene_crs(row.geometry, areas.crs, ds.crs)
            geographic = ds.crs is not None and ds.crs.is_geographic
            # a square reprojected from another zone is a little rotated: its box may pass
            # the scene's edge, which a window must not
            left, bottom, right, top = _clip_bounds(square.bounds, ds.bounds)
            win = from_bounds(left, bottom, right, top, ds.transform)
            data, valid = picture.read(ds, win, (thumb_px, thumb_px))
        img = _stretch(data, valid)
        img = np.repeat(img, 3, axis=0) if img.shape[0] == 1 else img[:3]
        ax.imshow(np.moveaxis(img, 0, -1), extent=(left, right, bottom, top))
        det = detections.get(row.scene)
        if det is not None and len(det):
            near = det[det.intersects(square)]
            if len(near):
                # an outline crossing the square's edge clips to a line and the point where it
                # leaves: only lines are drawn, not a yellow dot on the edge of every thumbnail
                lines = near.boundary.clip(square, keep_geom_type=True)
                lines = lines[~lines.is_empty]
                if len(lines):
                    lines.plot(ax=ax, color="yellow", linewidth=0.8)
        ax.set_xlim(left, right)
        ax.set_ylim(bottom, top)
        if geographic:  # a degree of longitude is shorter on the ground: show the square
            ax.set_aspect(1 / math.cos(math.radians((bottom + top) / 2)))
        ax.set_title(
            f"#{row.rank} {row.score:.3f} ~{row.expected_objects}\n{short_name(row.scene)}",
            fontsize=7,
        )
    fig.suptitle("rank, score (uncertainty), ~expected objects; yellow: model", fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def _in_scene_crs(geometry: Any, crs: Any, scene_crs: Any) -> Any:
    """``geometry`` (in ``crs``) in the scene's CRS; as it is when either is unknown."""
    if crs is None or scene_crs is None or CRS.from_user_input(crs) == scene_crs:
        return geometry
    return gpd.GeoSeries([geometry], crs=crs).to_crs(scene_crs).iloc[0]


def _clip_bounds(
    bounds: tuple[float, float, float, float], limits: Any
) -> tuple[float, float, float, float]:
    """``bounds`` (left, bottom, right, top) cut to ``limits`` (a scene's bounds).

    >>> _clip_bounds((-5.0, 0.0, 10.0, 12.0), (0.0, 0.0, 8.0, 10.0))
    (0.0, 0.0, 8.0, 10.0)
    """
    left, bottom, right, top = bounds
    return (
        max(left, limits[0]),
        max(bottom, limits[1]),
        min(right, limits[2]),
        min(top, limits[3]),
    )


def write_areas(
    gpkg: Path,
    areas: gpd.GeoDataFrame,
    scenes: dict[str, ScenePicture],
    detections: dict[str, gpd.GeoDataFrame],
) -> tuple[Path, Path, Path]:
    """Write ``AREAS.gpkg`` (styled), ``AREAS.qml`` and ``AREAS.png``, renamed together.

    Returns:
        The GeoPackage, the style and the contact sheet.
    """
    qml, png = gpkg.with_suffix(".qml"), gpkg.with_suffix(".png")
    with contextlib.ExitStack() as stack:
        tmp_gpkg = stack.enter_context(atomic_path(gpkg))
        tmp_qml = stack.enter_context(atomic_path(qml))
        tmp_png = stack.enter_context(atomic_path(png))
        style = areas_qml()
        write_gpkg(tmp_gpkg, {AREAS_LAYER: areas}, [], style=style)
        atomic_write_text(tmp_qml, style)
        write_contact_sheet(tmp_png, areas, scenes, detections)
    return gpkg, qml, png


def _append_shapefile(path: Path, add: gpd.GeoDataFrame) -> None:
    """Append to a Shapefile: its files copied under a temporary name, appended, renamed.

    A Shapefile is several files (``.shp``, ``.shx``, ``.dbf``, ...): the copy holds them
    all, so OGR finds its index, and each replaces its original only once all are written.
    """
    import os
    import tempfile

    parts = [p for p in path.parent.glob(f"{glob_escape(path.stem)}.*") if p.stem == path.stem]
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".tmp-{path.name}.", dir=path.parent))
    try:
        for part in parts:
            shutil.copy2(part, tmp_dir / part.name)
        multi = str(pyogrio.read_info(path)["geometry_type"]).startswith("Multi")
        try:
            add[["geometry"]].to_file(
                tmp_dir / path.name, mode="a", engine="pyogrio", promote_to_multi=multi
            )
        except Exception as exc:  # any OGR failure: one line, the files untouched
            raise LabelError(
                f"cannot append the areas ({error_text(exc)}): use a GeoPackage for --append-to",
                path,
            ) from exc
        for part in parts:
            os.replace(tmp_dir / part.name, part)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def append_areas(path: Path, areas: gpd.GeoDataFrame) -> int:
    """Append the areas to a ``complete_within`` file (created when missing), atomically.

    The areas are reprojected to the file's CRS and appended to its first data layer
    (other layers and styles are kept). Returns the number of areas appended.

    Raises:
        LabelError: the file exists but cannot be read or appended to.
    """
    from geotl.io.vectors import read_vector

    geoms = gpd.GeoDataFrame(
        {"rank": areas["rank"].to_numpy(), "source": "geotl suggest"},
        geometry=areas.geometry.values,
        crs=areas.crs,
    )
    if path.exists() and path.suffix.lower() == ".shp":
        _append_shapefile(path, geoms.to_crs(read_vector(path, "--append-to").crs))
        return len(geoms)
    with atomic_path(path) as tmp:
        if not path.exists():
            geoms.to_file(
                tmp,
                layer=AREAS_LAYER,
                engine="pyogrio",
                promote_to_multi=True,
                dataset_options=GPKG_OPTIONS,
            )
            return len(geoms)
        existing = read_vector(path, "--append-to")
        # the file's own schema decides: our columns only where it has them (a file that an
        # earlier --append-to created keeps its rank and source on every row)
        keep = [c for c in ("rank", "source") if c in existing.columns]
        add = geoms.to_crs(existing.crs)[[*keep, "geometry"]]
        if path.suffix.lower() == ".parquet":  # GeoParquet: GDAL may not write it
            both = pd.concat([existing, add], ignore_index=True)
            gpd.GeoDataFrame(both, geometry="geometry", crs=existing.crs).to_parquet(tmp)
            return len(geoms)
        try:
            layers = [str(name) for name, _ in pyogrio.list_layers(path)]
            layer = next((n for n in layers if n != "layer_styles"), layers[0])
            multi = str(pyogrio.read_info(path, layer=layer)["geometry_type"]).startswith("Multi")
            shutil.copy2(path, tmp)
            add.to_file(tmp, layer=layer, mode="a", engine="pyogrio", promote_to_multi=multi)
        except Exception as exc:  # any OGR failure: one line, the file untouched
            raise LabelError(
                f"cannot append the areas ({error_text(exc)}): use a GeoPackage for --append-to",
                path,
            ) from exc
    return len(geoms)
