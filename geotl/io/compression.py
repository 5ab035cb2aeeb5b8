"""Whether a scene's pixels went through lossy compression, said once per scene.

A GeoPackage that GDAL writes keeps its tiles as JPEG unless told otherwise (its
``TILE_FORMAT=AUTO``: JPEG for every opaque tile, PNG only where a tile has transparent
pixels), and a GeoTIFF may be ``COMPRESS=JPEG`` or lossy WebP. The blocky 8 x 8 artefacts
and smoothed colours change the pixels a model sees, so the same ground gives other
polygons than the lossless original, with nothing in the output to show it. geotl reads
such scenes (often nothing better exists) and predict says so, once a scene, unless the
model learnt from imagery compressed the same way (its card's ``lossy``); chipping does
not (the training imagery is what the model learns from). Both say when a GeoPackage tile
is one GDAL cannot decode, which it reads as no data without a word.
"""

from __future__ import annotations

import logging
import sqlite3
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "gpkg_tile_formats",
    "lossy_codecs",
    "lossy_compression",
    "not_said",
    "say_compression",
]

log = logging.getLogger(__name__)

#: how many tiles of a GeoPackage are looked at: a mosaic's first rows may all be edge
#: tiles (PNG in GDAL's AUTO mode), yet reading every tile of a large one costs too much
GPKG_TILES_SAMPLED = 256

#: the scenes (path, mtime_ns, size) already looked at in this process: predict
#: opens a scene once per block (Dask), suggest once to describe it and once to predict;
#: a file replaced under the same name is another scene
_said: set[tuple[str, tuple[str, int, int]]] = set()


def not_said(what: str, path: str | Path) -> bool:
    """Whether ``what`` is yet to be said of the scene at ``path`` in this process.

    Records it as said: the caller says it now. A file replaced under the same name is
    another scene (its mtime and size).
    """
    try:
        st = Path(str(path)).stat()
        key = (str(path), st.st_mtime_ns, st.st_size)
    except OSError:  # a GDAL virtual path, a subdataset
        key = (str(path), 0, 0)
    if (what, key) in _said:
        return False
    _said.add((what, key))
    return True


def _tile_format(head: bytes) -> str | None:
    """The image format of a GeoPackage tile from its first bytes (None: other).

    >>> _tile_format(bytes.fromhex("ffd8ffe0")), _tile_format(bytes.fromhex("89504e470d0a1a0a"))
    ('JPEG', 'PNG')
    >>> _tile_format(b"RIFF0000WEBPVP8L"), _tile_format(b"RIFF0000WEBPVP8 ")
    ('WEBP lossless', 'WEBP')
    """
    if head[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP lossless" if head[12:16] == b"VP8L" else "WEBP"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"  # a gridded coverage's tiles (16-bit, float): lossless
    return None


def gpkg_tile_formats(path: Path, table: str | None = None) -> Counter[str]:
    """How many of a GeoPackage's full-resolution tiles (a sample) are in each image format.

    A tile in none that GDAL reads in a GeoPackage counts as ``"unknown"``.

    ``table``: the tile table (``GPKG:FILE:TABLE``), else every tile table in the file.
    An unreadable file gives an empty count: GDAL, which opened it, has the last word.
    """
    found: Counter[str] = Counter()
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error:
        return found
    try:
        tables = (
            [table]
            if table
            else [
                row[0]
                for row in db.execute(
                    "SELECT table_name FROM gpkg_contents "
                    "WHERE data_type IN ('tiles', '2d-gridded-coverage')"
                )
            ]
        )
        for name in tables:
            quoted = '"' + name.replace('"', '""') + '"'
            rows = db.execute(
                f"SELECT substr(tile_data, 1, 16) FROM {quoted} "
                f"WHERE zoom_level = (SELECT MAX(zoom_level) FROM {quoted}) LIMIT ?",
                (GPKG_TILES_SAMPLED,),
            )
            found.update(_tile_format(bytes(head or b"")) or "unknown" for (head,) in rows)
    except sqlite3.Error:
        return found
    finally:
        db.close()
    return found


def _gpkg_tiles(ds: Any) -> Counter[str]:
    """:func:`gpkg_tile_formats` of an open GeoPackage raster (empty: not a local one)."""
    from geotl.io.rasters import is_virtual

    if ds.driver != "GPKG":
        return Counter()
    name, table = str(ds.name), None
    if name.startswith("GPKG:"):  # GPKG:FILE:TABLE, one of the file's tile tables
        name, table = name[len("GPKG:") :].rsplit(":", 1)
    if is_virtual(name) or not Path(name).is_file():
        return Counter()
    return gpkg_tile_formats(Path(name), table)


def lossy_codecs(ds: Any, tiles: Counter[str] | None = None) -> list[str]:
    """The lossy codecs an open raster's pixels went through, sorted; ``[]`` when none.

    ``"JPEG"``, ``"WEBP"``, ``"LERC"`` (with a MAX_Z_ERROR), or GDAL's name of another lossy
    compression. What a model card records of its training scenes (``lossy``), so that
    predict says a scene's compression only where it differs from theirs.

    GDAL says it for WebP (``COMPRESSION_REVERSIBILITY``) but not for JPEG in a GeoTIFF, nor
    for a GeoPackage's tiles, which hold their own format each: those are read from the file
    (``tiles``: :func:`gpkg_tile_formats`, when read already).
    """
    if ds.driver == "GPKG":
        tiles = _gpkg_tiles(ds) if tiles is None else tiles
        return sorted(set(tiles) & {"JPEG", "WEBP"})
    structure = ds.tags(ns="IMAGE_STRUCTURE")
    compression = str(structure.get("COMPRESSION", "")).upper()
    reversibility = str(structure.get("COMPRESSION_REVERSIBILITY", "")).upper()
    if reversibility.startswith("LOSSLESS"):
        return []
    if "JPEG" in compression:
        return ["JPEG"]
    if reversibility == "LOSSY":
        return [compression or str(ds.driver).upper()]
    if compression == "LERC" and structure.get("MAX_Z_ERROR", "0") not in ("0", "0.0", ""):
        return ["LERC"]
    return []


def lossy_compression(ds: Any, tiles: Counter[str] | None = None) -> str | None:
    """How an open raster's pixels were lossy-compressed, in words; None when they were not.

    :func:`lossy_codecs`, said.
    """
    codecs = lossy_codecs(ds, tiles)
    if not codecs:
        return None
    if ds.driver == "GPKG":
        return f"{' and '.join(codecs)} tiles in a GeoPackage"
    kind = "GeoTIFF" if ds.driver in ("GTiff", "COG") else f"{ds.driver} file"
    if codecs == ["JPEG"]:
        return f"a JPEG-compressed {kind}" if kind == "GeoTIFF" else "a JPEG file"
    if codecs == ["LERC"]:
        max_z_error = ds.tags(ns="IMAGE_STRUCTURE").get("MAX_Z_ERROR")
        return f"a LERC-compressed {kind} with MAX_Z_ERROR={max_z_error}"
    return f"a lossy {codecs[0]}-compressed {kind}"


def say_compression(
    ds: Any, path: str | Path, lossy: bool = True, trained: Sequence[str] | None = None
) -> None:
    """Warn, once per scene in this process, of pixels its compression changed or lost.

    A GeoPackage tile in a format GDAL cannot decode is read as transparent, no data,
    without a word from GDAL: its ground then gives no chips and no polygons. With
    ``lossy`` (predict: not chipping, where the imagery is what the model learns from),
    lossy compression too (:func:`lossy_compression`), which changes the pixels.

    ``trained``: the lossy codecs of the model's training scenes (its card's ``lossy``;
    None: not recorded, a card written before it was). A model that learnt from JPEG
    imagery has seen its artefacts: a scene compressed by those codecs only is not warned
    of, one by another (or any, after lossless training) is.
    """
    say_tiles = not_said("tiles", path)
    say_lossy = lossy and not_said("lossy", path)
    if not (say_tiles or say_lossy):
        return
    name = Path(str(path)).name
    tiles = _gpkg_tiles(ds)  # read once for both
    if say_tiles and tiles["unknown"]:
        log.warning(
            "%s: %d of the %d tiles looked at are in no image format GDAL reads (JPEG, PNG, "
            "WebP, TIFF): they read as no data, so their ground gives no chips or polygons; "
            "export the GeoPackage again from its source (gdal_translate -of GPKG)",
            name,
            tiles["unknown"],
            sum(tiles.values()),
        )
    if not say_lossy:
        return
    codecs = lossy_codecs(ds, tiles)
    if not codecs:
        return
    if trained is not None and set(codecs) <= set(trained):
        log.info(
            "%s: its pixels are lossy-compressed (%s), as the model's training imagery was",
            name,
            lossy_compression(ds, tiles),
        )
        return
    learnt = (
        "lossless training imagery"
        if not trained
        else f"the training imagery ({' and '.join(trained)}-compressed)"
    )
    log.warning(
        "%s: its pixels are lossy-compressed (%s): the artefacts change what the model sees, "
        "so its results may differ from those on %s; use a lossless copy if there is one "
        "(GeoTIFF COMPRESS=DEFLATE or LZW, GeoPackage TILE_FORMAT=PNG)",
        name,
        lossy_compression(ds, tiles),
        learnt,
    )
