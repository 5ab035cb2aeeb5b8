"""``quicklook``: a PNG of each scene with its detections drawn on it."""

from __future__ import annotations

import contextlib
from pathlib import Path

import geopandas as gpd
import numpy as np

from geotl.io.atomic import atomic_path
from geotl.io.nodata import valid_mask
from geotl.io.rasters import is_virtual, read_data, remote_gdal_env
from geotl.predict.outputs.base import OutputWriter, Prediction
from geotl.predict.outputs.style import class_colour01

__all__ = ["QuicklookWriter", "write_quicklook"]


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
    name: str | None = None,
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
        data = read_data(ds, rgb_indexes, out_shape=(len(rgb_indexes), out_h, out_w)).astype(
            np.float32
        )
        masks = ds.read_masks(rgb_indexes, out_shape=(len(rgb_indexes), out_h, out_w))
        left, bottom, right, top = ds.bounds
        crs = ds.crs
        valid = valid_mask(data, ds.nodata, masks)
        # drawn north-up, whichever way the file stores its rows and columns
        flip = tuple(ax for ax, d in ((1, ds.transform.e > 0), (2, ds.transform.a < 0)) if d)
        data, valid = np.flip(data, flip), np.flip(valid, tuple(a - 1 for a in flip))
    img = _stretch(data, valid)
    img = np.repeat(img, 3, axis=0) if img.shape[0] == 1 else img[:3]
    rgba = np.concatenate([np.moveaxis(img, 0, -1), valid[..., None].astype(np.float32)], axis=-1)
    zoom = max(1.0, 800 / max(out_w, out_h))  # small scenes are drawn larger, pixels crisp
    fig, ax = plt.subplots(figsize=(out_w * zoom / 100 + 0.5, out_h * zoom / 100 + 0.5), dpi=100)
    ax.imshow(rgba, extent=(left, right, bottom, top), interpolation="nearest")
    if len(frame) and crs is not None:
        native = frame.to_crs(crs) if frame.crs is not None and not frame.crs.equals(crs) else frame
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
    ax.set_title(f"{name or scene_path.name}: {len(frame)} detection(s)", fontsize=9)
    ax.set_axis_off()
    ax.set_xlim(left, right)
    ax.set_ylim(bottom, top)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


class QuicklookWriter(OutputWriter):
    """One PNG per scene, polygons outlined in their class colour."""

    format = "quicklook"
    per_scene = True

    def write(self, path: Path, prediction: Prediction) -> Path:
        """Draw the one scene of ``prediction``."""
        (det,) = prediction.scenes
        return write_quicklook(
            path, det.scene, det.native, det.rgb_indexes, prediction.classes, name=det.name
        )
