"""A scene's band descriptions, and those of a stack of single-band files (a VRT).

Landsat Collection 2 and Sentinel-2 ship one file per band (``..._SR_B4.TIF``,
``..._B04_10m.jp2``), and the way to one scene is ``gdalbuildvrt -separate``, which writes
no band descriptions: such a VRT would name none of its bands, so prediction could only
assume the model's order (with a warning) and chipping could not tell a stack built in
another order than ``[imagery] bands``. A stack whose sources each name their band, by
their own band description or by the band id that ends their file name, names its bands
the same way; prediction then matches them to the model by name and chipping refuses an
order that disagrees with the region's.
"""

from __future__ import annotations

import logging
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import rasterio
from rasterio.errors import RasterioError

from geotl.bands import is_known_band

__all__ = ["band_descriptions", "name_band", "split_band_file"]

log = logging.getLogger(__name__)

# sources read over the network are not opened just for their names (a request each)
_REMOTE = ("/vsicurl", "/vsis3", "/vsigs", "/vsiaz", "/vsiadls", "/vsioss", "/vsiswift", "/vsihdfs")
_RESOLUTION = re.compile(r"_\d+m$", re.IGNORECASE)  # Sentinel-2 SAFE: ..._B04_10m.jp2
#: Landsat 4-7 (TM, ETM+) product names, whose band numbers are not OLI's
_TM_ETM = re.compile(r"L[TEM]0[1-7]_", re.IGNORECASE)


def name_band(file_name: str) -> str | None:
    """The band a single-band file's name ends with, when geotl knows it, else None.

    >>> name_band("LC09_L2SP_016035_20230501_20230503_02_T1_SR_B4.TIF")
    'SR_B4'
    >>> name_band("T31UFS_20230101T105441_B8A_20m.jp2"), name_band("red.tif")
    ('B8A', 'red')
    >>> name_band("LC08_L1TP_016035_20230415_20230417_02_T1_B4.TIF") is None  # one digit: no name
    True
    >>> name_band("LE07_L2SP_016035_20020501_20200916_02_T1_SR_B4.TIF") is None  # ETM+: nir
    True
    """
    split = split_band_file(file_name)
    return split[1] if split else None


def split_band_file(file_name: str) -> tuple[str, str] | None:
    """A band file's name as (the scene's part, the band), when it ends with a band geotl knows.

    The files of one scene delivered band by band share the first part (Landsat Collection 2,
    Sentinel-2 SAFE granules); :func:`name_band` is the second.

    >>> split_band_file("LC08_L2SP_016035_20230415_20230417_02_T1_SR_B2.TIF")
    ('LC08_L2SP_016035_20230415_20230417_02_T1', 'SR_B2')
    >>> split_band_file("T31UFS_20230101T105441_B8A_20m.jp2")
    ('T31UFS_20230101T105441', 'B8A')
    >>> split_band_file("naip_20150601.tif") is None
    True
    """
    if _TM_ETM.match(Path(file_name).name):
        return None  # SR_B ids are read as OLI's: Landsat 4-7's SR_B4 is near infrared
    stem = _RESOLUTION.sub("", Path(file_name).name.split(".")[0])
    tokens = re.split(r"[_\-.]", stem)
    for size in (2, 1):
        if len(tokens) > size and is_known_band(name := "_".join(tokens[-size:])):
            return stem[: len(stem) - len(name)].rstrip("_-."), name
        if len(tokens) == size and is_known_band(name := "_".join(tokens)):
            return "", name
    return None


def band_descriptions(ds: Any) -> tuple[str | None, ...]:
    """Every band's description (1..count), from the sources of a stack that has none.

    A VRT band without a description, made of one source band, takes that band's
    description, else the band id its file name ends with (:func:`name_band`). Used only
    when every band of the VRT gets a known name this way: a partly named stack keeps
    GDAL's descriptions, and naming is left to ``--bands`` or ``[imagery] bands``.
    """
    own = tuple(ds.descriptions)
    if getattr(ds, "driver", None) != "VRT" or all(own):
        return own
    root = _vrt_root(str(ds.name))
    if root is None:
        return own
    base = Path(str(ds.name)).parent
    named: dict[int, str | None] = {}
    for band in root.iter("VRTRasterBand"):
        sources = [el for el in band if el.tag.endswith("Source")]
        if len(sources) != 1:
            continue
        named[int(band.get("band", "0"))] = _source_name(sources[0], base)
    names = tuple(own[i - 1] or named.get(i) for i in range(1, ds.count + 1))
    if not all(n and is_known_band(n) for n in names):
        return own
    log.debug("%s: band names from its sources: %s", ds.name, list(names))
    return names


def _vrt_root(name: str) -> ET.Element | None:
    try:
        text = name if name.lstrip().startswith("<") else Path(name).read_text(encoding="utf-8")
        return ET.fromstring(text)
    except (OSError, ET.ParseError, UnicodeDecodeError):
        return None


def _source_name(source: ET.Element, base: Path) -> str | None:
    """The band name one VRT source gives: its band's description, else its file name's."""
    file_el = source.find("SourceFilename")
    if file_el is None or not file_el.text:
        return None
    text = file_el.text.strip()
    if text.startswith(_REMOTE):
        # a STAC item's assets (geotl's own VRT): named by [monitor] assets, checked
        # against the item's eo:bands (geotl.monitor.sources.stac), not by URL
        return None
    path = base / text if file_el.get("relativeToVRT") == "1" else Path(text)
    index_text = source.findtext("SourceBand") or ""
    index = int(index_text) if index_text.isdigit() else 1
    try:
        with rasterio.open(path) as src:
            described = src.descriptions[index - 1] if index <= src.count else None
            single = src.count == 1
    except (RasterioError, OSError):
        return None
    if described and is_known_band(described):
        return str(described)
    # a file's name names its band only when it holds that one band
    return name_band(text) if single else None
