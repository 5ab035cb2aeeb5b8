"""Fast chip GeoTIFFs: GDAL encodes a scene's georeferencing once, Python writes each chip.

Creating a GeoTIFF through rasterio/GDAL costs 2-4 ms per file (dataset set-up, CRS to
GeoKeys, IFD) - more than reading the chip. All chips of one scene share their CRS, dtype,
band count, nodata and band names; only the pixels and the origin differ. So GDAL writes one
tiny *template* GeoTIFF per scene, and every chip is written as a plain little-endian TIFF
that copies the template's tags verbatim (GeoKeys, GDAL nodata, band descriptions, sample
format, photometric) and adds its own size, geotransform and strips. The files are ordinary
baseline GeoTIFFs (one strip per band, band-interleaved) that GDAL, QGIS and rasterio read
exactly like the ones GDAL writes; ``tests/chips/test_tiff.py`` checks that round trip.

Compression: ``deflate`` (zlib, no predictor) or ``none``. Deterministic: the same chip gives
the same bytes.
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from affine import Affine
from rasterio.io import MemoryFile

__all__ = ["ChipTiffWriter", "Compression"]

Compression = Literal["none", "deflate"]

# TIFF field types
_SHORT, _LONG, _DOUBLE = 3, 4, 12
_TYPE_SIZE = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 16: 8}

# tags
_IMAGE_WIDTH, _IMAGE_LENGTH, _COMPRESSION = 256, 257, 259
_STRIP_OFFSETS, _ROWS_PER_STRIP, _STRIP_BYTE_COUNTS = 273, 278, 279
_PLANAR_CONFIG = 284
_PIXEL_SCALE, _TIEPOINT, _TRANSFORMATION = 33550, 33922, 34264
# copied from the GDAL template as they are
_COPIED = {
    258,  # BitsPerSample
    262,  # PhotometricInterpretation
    277,  # SamplesPerPixel
    338,  # ExtraSamples
    339,  # SampleFormat
    34735,  # GeoKeyDirectory
    34736,  # GeoDoubleParams
    34737,  # GeoAsciiParams
    42112,  # GDAL_METADATA (band descriptions)
    42113,  # GDAL_NODATA
}
_COMPRESSION_CODE = {"none": 1, "deflate": 8}
_O_BINARY = getattr(os, "O_BINARY", 0)  # Windows


@dataclass(frozen=True)
class _Tag:
    tag: int
    type: int
    count: int
    payload: bytes


def _read_template_tags(data: bytes) -> dict[int, _Tag]:
    """The first IFD of a little-endian classic TIFF (what GDAL writes for a tiny file)."""
    if data[:4] != b"II*\x00":
        raise ValueError("template is not a little-endian classic TIFF")
    (ifd,) = struct.unpack_from("<I", data, 4)
    (n,) = struct.unpack_from("<H", data, ifd)
    tags: dict[int, _Tag] = {}
    for i in range(n):
        tag, typ, count, raw = struct.unpack_from("<HHI4s", data, ifd + 2 + 12 * i)
        size = _TYPE_SIZE[typ] * count
        if size <= 4:
            payload = raw[:size]
        else:
            (offset,) = struct.unpack("<I", raw)
            payload = data[offset : offset + size]
        tags[tag] = _Tag(tag, typ, count, payload)
    return tags


def _longs(tag: int, values: list[int]) -> _Tag:
    return _Tag(tag, _LONG, len(values), struct.pack(f"<{len(values)}I", *values))


def _doubles(tag: int, values: list[float]) -> _Tag:
    return _Tag(tag, _DOUBLE, len(values), struct.pack(f"<{len(values)}d", *values))


def _geo_tags(transform: Affine) -> list[_Tag]:
    """Pixel scale + tiepoint for north-up grids, else a model transformation (as GDAL)."""
    a, b, c, d, e, f = transform.a, transform.b, transform.c, transform.d, transform.e, transform.f
    if b == 0.0 and d == 0.0 and e < 0.0:
        return [
            _doubles(_PIXEL_SCALE, [a, -e, 0.0]),
            _doubles(_TIEPOINT, [0.0, 0.0, 0.0, c, f, 0.0]),
        ]
    matrix = [a, b, 0.0, c, d, e, 0.0, f, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]
    return [_doubles(_TRANSFORMATION, matrix)]


class ChipTiffWriter:
    """Writes the chips of one scene (same dtype, bands, CRS, nodata) as GeoTIFFs.

    Args:
        dtype: the pixel type (numpy name, e.g. ``"uint8"``).
        count: bands per chip.
        crs: the scene's CRS (anything rasterio accepts).
        nodata: the nodata value written into the files, or None.
        descriptions: band names, or None.
        compress: ``"deflate"`` or ``"none"``.
        level: zlib level for ``deflate``.
        strategy: zlib strategy for ``deflate`` (``zlib.Z_RLE`` suits masks: faster and
            smaller than the default on long runs of one value).
    """

    def __init__(
        self,
        dtype: str,
        count: int,
        crs: Any,
        nodata: float | None,
        descriptions: tuple[str, ...] | None = None,
        compress: Compression = "none",
        level: int = 1,
        strategy: int = zlib.Z_DEFAULT_STRATEGY,
    ) -> None:
        self.dtype = np.dtype(dtype).newbyteorder("<")
        self.count = count
        self.compress = compress
        self.level = level
        self.strategy = strategy
        with MemoryFile() as mem:
            with mem.open(
                driver="GTiff", width=1, height=1, count=count, dtype=dtype, crs=crs,
                transform=Affine(2.0, 0.0, 0.0, 0.0, -2.0, 0.0), nodata=nodata,
                interleave="band", BIGTIFF="NO",
            ) as dst:  # fmt: skip
                if descriptions is not None:
                    dst.descriptions = descriptions
            template = mem.read()
        tags = _read_template_tags(template)
        self._copied = [t for tag, t in tags.items() if tag in _COPIED]
        self._layouts: dict[tuple[int, int, tuple[int, ...]], _Layout] = {}

    def encode(
        self, data: npt.NDArray[Any], transform: Affine
    ) -> tuple[bytes, list[bytes | memoryview]]:
        """A chip as (header, strips): the file is the header followed by the strips.

        Args:
            data: ``(count, height, width)`` or, for one band, ``(height, width)``.
            transform: the chip's affine transform.
        """
        if data.ndim == 2:
            data = data[np.newaxis]
        count, height, width = data.shape
        if count != self.count:
            raise ValueError(f"expected {self.count} band(s), got {count}")
        pixels = np.ascontiguousarray(data, dtype=self.dtype)
        strips: list[bytes | memoryview]
        if self.compress == "deflate":
            strips = [self._deflate(band) for band in pixels]
        else:
            strips = [memoryview(band).cast("B") for band in pixels]
        sizes = [len(s) if isinstance(s, bytes) else s.nbytes for s in strips]
        geo = _geo_tags(transform)
        layout = self._layout(height, width, tuple(t.tag for t in geo))
        header = bytearray(layout.header)
        offsets, pos = [], len(header)
        for size in sizes:
            offsets.append(pos)
            pos += size
        struct.pack_into(f"<{count}I", header, layout.positions[_STRIP_OFFSETS], *offsets)
        struct.pack_into(f"<{count}I", header, layout.positions[_STRIP_BYTE_COUNTS], *sizes)
        for t in geo:
            header[layout.positions[t.tag] : layout.positions[t.tag] + len(t.payload)] = t.payload
        return bytes(header), strips

    def _deflate(self, band: npt.NDArray[Any]) -> bytes:
        z = zlib.compressobj(self.level, zlib.DEFLATED, 15, 8, self.strategy)
        return z.compress(memoryview(band)) + z.flush()

    def _layout(self, height: int, width: int, geo: tuple[int, ...]) -> _Layout:
        """The header of a chip of this size, with placeholders (cached: patched per chip)."""
        key = (height, width, geo)
        layout = self._layouts.get(key)
        if layout is None:
            placeholder = [0] * self.count
            tags = [
                *self._copied,
                _longs(_IMAGE_WIDTH, [width]),
                _longs(_IMAGE_LENGTH, [height]),
                _Tag(_COMPRESSION, _SHORT, 1, struct.pack("<H", _COMPRESSION_CODE[self.compress])),
                _longs(_ROWS_PER_STRIP, [height]),
                _longs(_STRIP_BYTE_COUNTS, placeholder),
                _longs(_STRIP_OFFSETS, placeholder),
                _Tag(_PLANAR_CONFIG, _SHORT, 1, struct.pack("<H", 2)),
                *(_doubles(tag, [0.0] * (16 if tag == _TRANSFORMATION else 3 if tag == _PIXEL_SCALE else 6)) for tag in geo),
            ]  # fmt: skip
            header, positions = _header(tags)
            layout = self._layouts[key] = _Layout(header, positions)
        return layout

    def write(self, path: str | Path, data: npt.NDArray[Any], transform: Affine) -> None:
        """Write one chip to ``path`` (created or truncated)."""
        header, strips = self.encode(data, transform)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _O_BINARY, 0o666)
        try:
            _write_all(fd, [header, *strips])
        finally:
            os.close(fd)


@dataclass(frozen=True)
class _Layout:
    header: bytes
    positions: dict[int, int]  # tag -> byte offset of its value in ``header``


def _nbytes(chunk: bytes | memoryview) -> int:
    return chunk.nbytes if isinstance(chunk, memoryview) else len(chunk)


def _write_all(fd: int, chunks: list[bytes | memoryview]) -> None:
    """Write every chunk, in order, with as few system calls as the platform allows."""
    while chunks:
        # os.writev is POSIX-only; elsewhere one chunk per call
        done = os.writev(fd, chunks) if hasattr(os, "writev") else os.write(fd, chunks[0])
        while chunks and done >= _nbytes(chunks[0]):  # a short write resumes mid-chunk
            done -= _nbytes(chunks.pop(0))
        if chunks and done:
            chunks[0] = memoryview(chunks[0])[done:]


def _header(tags: list[_Tag]) -> tuple[bytes, dict[int, int]]:
    """TIFF header + one IFD (entries sorted by tag) + the values that do not fit inline.

    Returns the bytes and, per tag, the byte offset of its value.
    """
    tags = sorted(tags, key=lambda t: t.tag)
    ifd_size = 2 + 12 * len(tags) + 4
    extra = bytearray()
    entries = bytearray(struct.pack("<H", len(tags)))
    positions: dict[int, int] = {}
    for t in tags:
        if len(t.payload) <= 4:
            positions[t.tag] = 8 + len(entries) + 8
            value = t.payload.ljust(4, b"\x00")
        else:
            positions[t.tag] = 8 + ifd_size + len(extra)
            value = struct.pack("<I", positions[t.tag])
            extra += t.payload
            if len(extra) & 1:  # values start on a word boundary
                extra += b"\x00"
        entries += struct.pack("<HHI", t.tag, t.type, t.count) + value
    entries += struct.pack("<I", 0)
    return b"II*\x00" + struct.pack("<I", 8) + bytes(entries) + bytes(extra), positions
