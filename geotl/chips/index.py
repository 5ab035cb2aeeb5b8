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
