"""``quicklook``: a PNG of each scene with its detections drawn on it.

Beside the PNG, a world file (``.pgw``) and GDAL's ``.png.aux.xml`` (the CRS) place the
picture on the map: QGIS and GDAL open it where the scene lies (title and legend included).
"""

from __future__ import annotations

import contextlib
import html
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
from affine import Affine
from rasterio.windows import Window

from geotl.io.atomic import atomic_path, atomic_write_text
from geotl.io.rasters import (
    is_virtual,
    mask_bands,
    read_valid,
    remote_gdal_env,
    scene_bounds,
)
from geotl.predict.outputs.base import OutputWriter, Prediction
from geotl.predict.outputs.style import class_colour01

__all__ = ["QuicklookWriter", "ScenePicture", "sidecar_paths", "title", "write_quicklook"]


def sidecar_paths(path: Path) -> tuple[Path, Path]:
    """The world file and the GDAL PAM file that georeference the PNG ``path``.

    >>> [p.name for p in sidecar_paths(Path("trees_OSBS.png"))]
    ['trees_OSBS.pgw', 'trees_OSBS.png.aux.xml']
    """
    return path.with_suffix(".pgw"), path.with_name(path.name + ".aux.xml")


def world_file(
    picture: tuple[float, float],
    axes: tuple[float, float, float, float],
    bounds: Any,
    transform: Affine | None = None,
) -> str:
    """The world file of a picture whose axes box shows ``bounds``.

    ``picture``: its (width, height) in pixels; ``axes``: the axes box in display pixels
    (x0, y0 from the bottom left, x1, y1); ``bounds``: (left, bottom, right, top) in the
    scene's CRS. A world file gives the pixel size (and rotation) and the centre of the
    top-left pixel. ``transform``: ``bounds`` are in the units it maps to the CRS (a rotated
    scene's pixel columns and negated rows), not the CRS's.

    >>> print(world_file((120, 110), (10, 5, 110, 105), (0, 0, 1000, 1000)), end="")
    10.0
    0.0
    0.0
    -10.0
    -95.0
    1045.0
    """
    left, bottom, right, top = bounds
    x0, y0, x1, y1 = axes
    sx, sy = (right - left) / (x1 - x0), (top - bottom) / (y1 - y0)
    c = left - x0 * sx  # x of the picture's left edge
    f = top + (picture[1] - y1) * sy  # y of its top edge
    m = Affine(sx, 0.0, c, 0.0, -sy, f)
    if transform is not None:  # columns, negated rows -> the scene's pixels -> the CRS
        m = transform @ Affine.scale(1.0, -1.0) @ m
    cx, cy = m @ (0.5, 0.5)
    lines = [m.a, m.d, m.b, m.e, cx, cy]
    return "".join(f"{float(v)!r}\n" for v in lines)


def _stretch(rgb: np.ndarray, valid: np.ndarray) -> np.ndarray:
    out = np.zeros(rgb.shape, dtype=np.float32)
    for i, band in enumerate(rgb):
        vals = band[valid]
        if vals.size == 0:
            continue
        lo, hi = np.percentile(vals, (2, 98))
        out[i] = np.clip((band - lo) / max(float(hi - lo), 1e-6), 0, 1)
    return out


def title(name: str, frame: gpd.GeoDataFrame, classes: list[str], task: str) -> str:
    """The quicklook's title: the scene and what its polygons are, counted as the task means.

    A detector's boxes are detections and an instance model's polygons objects; a
    segmentation model's polygons are the areas of each class (one lake may be one
    polygon, a field of crops several), so they are counted per class, not as detections.

    >>> frame = gpd.GeoDataFrame({"class": ["water", "forest", "water"]}, geometry=[None] * 3)
    >>> title("s.tif", frame, ["forest", "water"], "segmentation")
    's.tif: 3 areas (1 forest, 2 water)'
    >>> title("s.tif", frame.iloc[:1], ["forest", "water"], "segmentation")
    's.tif: 1 area of water'
    >>> title("s.tif", frame, ["forest", "water"], "instances")
    's.tif: 3 object(s)'
    >>> title("s.tif", frame.iloc[:0], ["water"], "detection")
    's.tif: 0 detection(s)'
    """
    if task == "detection":
        return f"{name}: {len(frame)} detection(s)"
    if task != "segmentation":
        return f"{name}: {len(frame)} object(s)"
    counts = frame["class"].value_counts() if len(frame) else {}
    per_class = [(c, int(counts[c])) for c in classes if c in counts]
    if not per_class:
        return f"{name}: no areas of {', '.join(classes)}"
    if len(per_class) == 1:
        ((cls, n),) = per_class
        return f"{name}: {n} area{'' if n == 1 else 's'} of {cls}"
    listed = ", ".join(f"{n} {c}" for c, n in per_class)
    return f"{name}: {len(frame)} areas ({listed})"


@dataclass(frozen=True)
class ScenePicture:
    """A scene to draw: its file, the bands shown, and how its pixels with data are told.

    Attributes:
        path: the scene file.
        rgb_indexes: 1-based bands to show as red, green, blue (one band: grey).
        mask_bands: the bands whose GDAL masks say which pixels hold data, as prediction
            read them (:class:`~geotl.predict.SceneDetections`; None: those of the shown
            bands, :func:`~geotl.io.rasters.mask_bands`).
        nodata: the nodata value prediction read with (a region's ``[imagery] nodata``;
            None: the file's). A picture shows the pixels prediction saw as data, the rest
            transparent.
    """

    path: Path
    rgb_indexes: list[int]
    mask_bands: tuple[int, ...] | None = None
    nodata: float | None = None

    def read(
        self, ds: Any, window: Window, out_shape: tuple[int, int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """The shown bands of ``window`` at ``out_shape`` as float32, and its pixels with data."""
        masked = mask_bands(ds, self.rgb_indexes) if self.mask_bands is None else self.mask_bands
        data, valid = read_valid(ds, self.rgb_indexes, masked, window, self.nodata, out_shape)
        return data.astype(np.float32), valid


def write_quicklook(
    path: Path,
    scene_path: Path,
    frame: gpd.GeoDataFrame,
    rgb_indexes: list[int],
    classes: list[str],
    max_px: int = 1024,
    name: str | None = None,
    sidecars: tuple[Path, Path] | None = None,
    task: str = "detection",
    masked: tuple[int, ...] | None = None,
    nodata: float | None = None,
) -> Path:
    """Write a PNG of the scene (downsampled to ``max_px``) with the polygons drawn on it.

    Args:
        path: the PNG.
        scene_path: the scene GeoTIFF.
        frame: detections in the scene's CRS.
        rgb_indexes: 1-based bands to show as red, green, blue (one band: grey).
        classes: the model's classes (colours).
        max_px: longest side of the picture.
        name: the scene's name in the title (default: its file name).
        sidecars: where to write the world file and the ``.aux.xml`` (the CRS) that place
            the picture on the map (default: :func:`sidecar_paths` of ``path``).
        task: the model's task, which says what the title counts (:func:`title`).
        masked: the bands whose GDAL masks say which pixels hold data, as prediction read
            them (:class:`~geotl.predict.SceneDetections`' ``mask_bands``; default: those of
            ``rgb_indexes``), and
        nodata: its nodata value (default: the file's): the rest is drawn transparent.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import rasterio
    from matplotlib.patches import Patch

    remote = remote_gdal_env() if is_virtual(scene_path) else contextlib.nullcontext()
    with remote, rasterio.open(scene_path) as ds:
        scale = max(ds.width, ds.height) / max_px
        out_h = max(1, round(ds.height / max(scale, 1.0)))
        out_w = max(1, round(ds.width / max(scale, 1.0)))
        picture = ScenePicture(scene_path, rgb_indexes, masked, nodata)
        data, valid = picture.read(ds, Window(0, 0, ds.width, ds.height), (out_h, out_w))
        # not rasterio's bounds: a south-up grid's give bottom > top (polygons drawn mirrored)
        bounds = scene_bounds(ds.transform, ds.width, ds.height)
        crs = ds.crs
        transform = ds.transform
        scene_shape = (ds.height, ds.width)
        # a rotated grid is drawn as stored, in its own pixels (its world file rotates it)
        rotated = transform.b != 0 or transform.d != 0
        if not rotated:  # drawn north-up, whichever way the file stores rows and columns
            flip = tuple(ax for ax, d in ((1, transform.e > 0), (2, transform.a < 0)) if d)
            data, valid = np.flip(data, flip), np.flip(valid, tuple(a - 1 for a in flip))
    img = _stretch(data, valid)
    img = np.repeat(img, 3, axis=0) if img.shape[0] == 1 else img[:3]
    rgba = np.concatenate([np.moveaxis(img, 0, -1), valid[..., None].astype(np.float32)], axis=-1)
    zoom = max(1.0, 800 / max(out_w, out_h))  # small scenes are drawn larger, pixels crisp
    fig, ax = plt.subplots(figsize=(out_w * zoom / 100 + 0.5, out_h * zoom / 100 + 0.5), dpi=100)
    # the axes' units: the CRS, or a rotated scene's pixels (left, bottom, right, top)
    shown = (0.0, float(scene_shape[0]), float(scene_shape[1]), 0.0) if rotated else bounds
    ax.imshow(rgba, extent=(shown[0], shown[2], shown[1], shown[3]), interpolation="nearest")
    if len(frame) and crs is not None:
        native = frame.to_crs(crs) if frame.crs is not None and not frame.crs.equals(crs) else frame
        if rotated:
            inv = ~transform
            native = native.set_geometry(
                native.geometry.affine_transform([inv.a, inv.b, inv.d, inv.e, inv.c, inv.f])
            )
        for i, class_name in enumerate(classes):  # not `name`: the title's scene name
            sub = native[native["class"] == class_name]
            if len(sub):
                colour = class_colour01(i)
                sub.boundary.plot(ax=ax, color=colour, linewidth=1.0)
        handles = [
            Patch(edgecolor=class_colour01(i), facecolor="none", label=n)
            for i, n in enumerate(classes)
        ]
        ax.legend(handles=handles, loc="lower right", fontsize=7)
    ax.set_title(title(name or scene_path.name, frame, classes, task), fontsize=9)
    ax.set_axis_off()
    ax.set_xlim(shown[0], shown[2])
    ax.set_ylim(shown[1], shown[3])
    with warnings.catch_warnings():
        # a scene a few pixels wide leaves no room for margins: drawn without, not warned
        # (matplotlib's warning printed its source line on every such quicklook)
        warnings.simplefilter("ignore", UserWarning)
        fig.tight_layout()
    fig.canvas.draw()  # the axes' final box: where the scene lies in the picture
    box = ax.get_window_extent()
    world = world_file(
        (fig.bbox.width, fig.bbox.height),
        (box.x0, box.y0, box.x1, box.y1),
        (shown[0], -shown[1], shown[2], shown[3]) if rotated else shown,
        transform if rotated else None,
    )
    pgw, aux = sidecars or sidecar_paths(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    atomic_write_text(pgw, world)
    if crs is not None:
        wkt = html.escape(crs.to_wkt())
        srs = f'  <SRS dataAxisToSRSAxisMapping="1,2">{wkt}</SRS>\n'
        atomic_write_text(aux, f"<PAMDataset>\n{srs}</PAMDataset>\n")
    return path


class QuicklookWriter(OutputWriter):
    """One PNG per scene, polygons outlined in their class colour."""

    format = "quicklook"
    per_scene = True

    def write(
        self, path: Path, prediction: Prediction, sidecars: tuple[Path, Path] | None = None
    ) -> Path:
        """Draw the one scene of ``prediction`` (``sidecars``: see :func:`write_quicklook`)."""
        (det,) = prediction.scenes
        return write_quicklook(
            path,
            det.scene,
            det.native,
            det.rgb_indexes,
            prediction.classes,
            name=det.name,
            sidecars=sidecars,
            task=prediction.task,
            masked=det.mask_bands,
            nodata=det.nodata,
        )
