"""The chip index: ``chips.parquet`` (GeoParquet, one row per chip) + ``chipset.json``.

Footprints are stored in EPSG:4326. Paths in the ``image`` / ``mask`` columns are relative
to the chips folder.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np

from geotl.errors import GeotlInputError

__all__ = ["INDEX_NAME", "META_NAME", "ChipIndex", "read_chip_index", "write_chip_index"]

INDEX_NAME = "chips.parquet"
META_NAME = "chipset.json"


@dataclass(frozen=True)
class ChipIndex:
    """A chips folder: its index rows and its metadata."""

    path: Path
    frame: gpd.GeoDataFrame
    meta: dict[str, Any]

    def split(self, name: str) -> gpd.GeoDataFrame:
        """Rows of one split (``train``, ``val`` or ``test``)."""
        return self.frame[self.frame["split"] == name]

    def split_sha(self) -> str:
        """A fingerprint of which ground went to which split (16 hex digits).

        Each chip's scene file name, window and split, whatever folder the scenes are in:
        the same region file and seed give the same fingerprint, another split another.
        """
        rows = sorted(
            f"{Path(str(r.scene)).name}|{r.row_off}|{r.col_off}|{r.height}|{r.width}|{r.split}"
            for r in self.frame[
                ["scene", "row_off", "col_off", "height", "width", "split"]
            ].itertuples(index=False)
        )
        return hashlib.sha256("\n".join(rows).encode()).hexdigest()[:16]

    def pixel_aspects(self, rows: gpd.GeoDataFrame | None = None) -> np.ndarray:
        """East-west / north-south ground size of each chip's pixels (``rows``: default all).

        Chips are cut on their scene's grid as it is, so chips of a square-degree scene have
        pixels narrower east-west than north-south (cos(latitude)). The shape is a scene's:
        the chipset's record of its scenes gives it, and for chips written before it was
        recorded one chip image per scene is measured.
        """
        frame = self.frame if rows is None else rows
        recorded = {
            str(s["path"]): float(s["pixel_aspect"])
            for s in self.meta.get("scenes", [])
            if s.get("pixel_aspect")
        }
        out = np.ones(len(frame), dtype=np.float64)
        scenes = frame["scene"].astype(str).to_numpy()
        for scene in dict.fromkeys(scenes.tolist()):
            aspect = recorded.get(scene)
            if aspect is None:
                import rasterio

                from geotl.io.rasters import ground_pixel_size_m

                image = frame["image"].to_numpy()[scenes == scene][0]
                with rasterio.open(self.path / str(image)) as ds:
                    x, y = ground_pixel_size_m(ds.crs, ds.transform, ds.width, ds.height)
                aspect = x / y
            out[scenes == scene] = aspect
        return out

    def pixel_aspect(self, rows: gpd.GeoDataFrame | None = None) -> float:
        """The median of :meth:`pixel_aspects` over ``rows`` (4 decimals; 1 without rows).

        What a model card records of its training chips (``pixel_aspect``).
        """
        frame = self.frame if rows is None else rows
        if not len(frame):
            return 1.0
        return round(float(np.median(self.pixel_aspects(frame))), 4)

    def pixel_size_m(self, rows: gpd.GeoDataFrame | None = None) -> tuple[float, float] | None:
        """The chips' pixel sides (east-west, north-south) in metres: medians over ``rows``.

        The mean side and the shape are the medians a model card records of its training
        chips (``resolution_m``, ``pixel_aspect``), so the two compare side by side with
        :func:`~geotl.predict.scene.model_pixel_size_m` of a card. None without rows.
        """
        from geotl.predict.scene import model_pixel_size_m

        frame = self.frame if rows is None else rows
        if not len(frame):
            return None
        return model_pixel_size_m(float(np.median(frame["resolution_m"])), self.pixel_aspect(frame))

    def utm_epsg(self, rows: gpd.GeoDataFrame | None = None) -> int | None:
        """The UTM zone (EPSG code) at the first chip of ``rows``, for a warp to suggest."""
        import rasterio

        from geotl.io.rasters import utm_epsg_at

        frame = self.frame if rows is None else rows
        if not len(frame):
            return None
        with rasterio.open(self.path / str(frame["image"].iloc[0])) as ds:
            return utm_epsg_at(ds.crs, ds.transform, ds.width, ds.height)

    def image_path(self, chip_id: str) -> Path:
        """Absolute path of a chip's image GeoTIFF."""
        row = self.frame.loc[self.frame["chip_id"] == chip_id].iloc[0]
        return self.path / str(row["image"])

    def mask_path(self, chip_id: str) -> Path:
        """Absolute path of a chip's mask GeoTIFF."""
        row = self.frame.loc[self.frame["chip_id"] == chip_id].iloc[0]
        return self.path / str(row["mask"])


def write_chip_index(folder: Path, frame: gpd.GeoDataFrame, meta: dict[str, Any]) -> None:
    """Write ``chips.parquet`` and ``chipset.json`` into ``folder`` (deterministic bytes)."""
    frame.to_parquet(folder / INDEX_NAME, index=False, compression="zstd")
    text = json.dumps(meta, indent=2, ensure_ascii=False) + "\n"
    (folder / META_NAME).write_text(text, encoding="utf-8")


def read_chip_index(chips_dir: str | Path) -> ChipIndex:
    """Open a chips folder written by ``geotl chip``.

    Raises:
        GeotlInputError: the folder has no ``chips.parquet`` / ``chipset.json``.
    """
    folder = Path(chips_dir)
    index, meta_path = folder / INDEX_NAME, folder / META_NAME
    if not index.is_file() or not meta_path.is_file():
        raise GeotlInputError(
            f"not a chips folder (no {INDEX_NAME} / {META_NAME}): run 'geotl chip REGION.toml "
            "--out DIR' first",
            folder,
        )
    try:
        frame = gpd.read_parquet(index)
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise GeotlInputError(
            f"chip index is unreadable ({str(exc)[:120]}): rerun geotl chip with --overwrite",
            folder,
        ) from exc
    return ChipIndex(path=folder, frame=frame, meta=meta)
