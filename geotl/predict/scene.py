"""Fit a scene to a model card: band mapping by name, ground resolution.

A scene's acquisition date is read by :func:`geotl.io.dates.read_acquired`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from geotl.bands import band_keys, canonical_band, is_known_band
from geotl.errors import BandMismatchError, ResolutionError

if TYPE_CHECKING:
    from affine import Affine
    from rasterio.crs import CRS

    from geotl.models.artefact import ModelCard

__all__ = [
    "PixelFit",
    "check_model_bands",
    "check_resolution",
    "check_scene_pixels",
    "crs_units",
    "declared_bands",
    "described_bands",
    "map_bands",
    "model_pixel_size_m",
    "other_pixel_size",
    "pixel_sides",
    "scene_band_names",
    "shape_fix",
    "warp_fix",
]

log = logging.getLogger(__name__)

RESOLUTION_TOLERANCE = 0.1  # relative difference accepted without resampling
MAX_RESAMPLE = 8  # the largest ratio of ground resolutions that --resample bridges


def described_bands(descriptions: tuple[str | None, ...], count: int) -> list[str] | None:
    """A file's band names from its band descriptions, canonical; None unless all are known.

    >>> described_bands(("Red", "Green", "Blue"), 3)
    ['red', 'green', 'blue']
    >>> described_bands(("B4", "B3"), 2) is None, described_bands((None, None), 2) is None
    (True, True)
    """
    if len(descriptions) == count and all(d and is_known_band(d) for d in descriptions):
        return [canonical_band(str(d)) for d in descriptions]
    return None


def declared_bands(declared: list[str] | tuple[str, ...], what: str, path: str | Path) -> list[str]:
    """Canonical names of bands a user listed.

    Raises:
        BandMismatchError: a name is not in the band vocabulary (:mod:`geotl.bands`).
    """
    unknown = [b for b in declared if not is_known_band(b)]
    if unknown:
        raise BandMismatchError(
            f"{what} names unknown band(s) {unknown}: use common names (red, green, blue, nir, "
            "swir16..., radar vv, vh), sensor ids (B04, SR_B5) or custom:NAME for a band of your own",
            path,
        )
    return [canonical_band(b) for b in declared]


def scene_band_names(
    descriptions: tuple[str | None, ...],
    count: int,
    declared: list[str] | None = None,
    *,
    path: str | Path = "",
    declared_by: str = "--bands",
) -> list[str] | None:
    """The scene's band names, canonical, or None when unknown: one rule for every command.

    A file whose band descriptions are all known band names names its own bands. Names the
    user declared (``--bands``, or the region's ``[imagery] bands``) name a file without
    them; where both name the bands and disagree, an explicit ``--bands`` (``declared_by``)
    takes the declared names with a warning, a region's are refused: one of them is
    wrong, and guessing would feed the model the wrong bands silently. A declared list of
    another length than the file's bands gives way to complete descriptions (a monitored
    pass with more or fewer bands than the imagery).

    Raises:
        BandMismatchError: a declared name is unknown, or declared names and descriptions
            disagree (declared by a region, not ``--bands``).

    >>> scene_band_names(("Red", "Green", "Blue"), 3)
    ['red', 'green', 'blue']
    >>> scene_band_names((None, None), 2) is None
    True
    >>> scene_band_names(("nir", "red", "green", "blue"), 4, ["red", "green", "blue"])
    ['nir', 'red', 'green', 'blue']
    """
    described = described_bands(descriptions, count)
    if declared:
        names = declared_bands(declared, declared_by, path)
        if described is None or described == names:
            return names
        if len(names) != count:
            log.info(
                "%s: %d band(s) named by %s, %d described in the file: using the file's %s",
                path,
                len(names),
                declared_by,
                count,
                described,
            )
            return described
        said = f"its band descriptions say {described}, {declared_by} says {names}"
        if declared_by == "--bands":
            log.warning("%s: %s: using %s", path, said, declared_by)
            return names
        raise BandMismatchError(
            f"{said}: fix the one that is wrong (gdal_edit.py -setdesc, or the region file)",
            path,
        )
    if described is None and any(descriptions):
        unknown = [d for d in descriptions if not (d and is_known_band(d))]
        log.warning(
            "%s: band descriptions %s include names geotl does not know (%s): name the bands "
            "with --bands (or [imagery] bands) in file order",
            path,
            list(descriptions),
            ", ".join(repr(u) for u in unknown),
        )
    return described


def check_model_bands(
    model_bands: list[str], available: list[str], path: str | Path | None, *, what: str, fix: str
) -> None:
    """The one check that imagery has every band a model needs (by :func:`~geotl.bands.band_key`).

    Used by prediction (:func:`map_bands`), evaluation (a region's chips) and monitoring
    (the monitored scenes).

    Args:
        model_bands: the model card's bands.
        available: the bands at hand, in any order.
        path: the file the message names (scene, region file).
        what: whose bands, for the message (e.g. ``"scene"``).
        fix: how to fix it, for the message.

    Raises:
        BandMismatchError: a model band is missing; the message names both band sets.

    >>> check_model_bands(["red"], ["B04", "B03"], "s.tif", what="scene", fix="-")
    >>> check_model_bands(["red", "nir"], ["red"], "s.tif", what="scene", fix="use other imagery")
    Traceback (most recent call last):
    geotl.errors.BandMismatchError: s.tif: scene bands ['red'] lack ['nir'] that the model needs (model bands ['red', 'nir']): use other imagery
    """
    have = set(band_keys(available))
    wanted = band_keys(model_bands)
    missing = [b for b in wanted if b not in have]
    if missing:
        raise BandMismatchError(
            f"{what} bands {list(available)} lack {missing} that the model needs (model bands "
            f"{model_bands}): {fix}",
            path,
        )


#: How a file of one band, given where the model needs several, becomes a scene: Landsat
#: Collection 2 and Sentinel-2 ship one file per band
STACK_BANDS = (
    "bands in separate files (Landsat's ..._SR_B4.TIF, Sentinel-2's ..._B04.jp2) are one "
    "scene once stacked: gdalbuildvrt -separate SCENE.vrt BAND.tif ... (one VRT per pass; "
    "its bands are named by their files), then predict SCENE.vrt"
)


def map_bands(
    scene_bands: list[str] | None,
    count: int,
    model_bands: list[str],
    path: str | Path,
    *,
    say: bool = True,
) -> list[int]:
    """1-based scene band indexes, in the model's band order.

    Names are compared by :func:`geotl.bands.band_key` (``B04`` = ``red``). Without names, a
    scene with as many bands as the model is assumed to be in the model's order; with two
    bands or more that is warned (``say``: once per scene), naming ``--bands``: bands in
    another order give wrong polygons and nothing else shows it.

    Raises:
        BandMismatchError: a model band is missing, or the scene's bands are unknown and
            their number differs; the message names both band sets.

    >>> map_bands(["blue", "green", "red", "nir"], 4, ["red", "green", "blue"], "s.tif")
    [3, 2, 1]
    >>> map_bands(None, 3, ["red", "green", "blue"], "s.tif")
    [1, 2, 3]
    """
    wanted = band_keys(model_bands)
    if scene_bands is None:
        if count == len(wanted):
            if say:
                log.log(
                    logging.WARNING if count > 1 else logging.INFO,
                    "%s: the file does not name its bands (no band descriptions geotl knows): "
                    "read as the model's %s in that order; if its order differs, name them with --bands "
                    "(file order), else the polygons are wrong",
                    path,
                    model_bands,
                )
            return list(range(1, count + 1))
        fix = "name them with --bands (file order) or set band descriptions"
        raise BandMismatchError(
            f"the scene has {count} unnamed band(s) but the model needs {model_bands}: "
            f"{STACK_BANDS if count == 1 < len(wanted) else fix}",
            path,
        )
    if len(scene_bands) != count:
        raise BandMismatchError(
            f"{len(scene_bands)} band name(s) {scene_bands} given for a {count}-band scene: "
            "list every band in file order",
            path,
        )
    fix = (
        "use imagery with those bands or a model trained on these; if the names are "
        "wrong (Landsat 4-7's SR_B1..SR_B7 are not Landsat 8/9's), name the bands in file "
        "order with --bands"
    )
    check_model_bands(
        model_bands,
        scene_bands,
        path,
        what="scene",
        fix=STACK_BANDS if count == 1 < len(wanted) else fix,
    )
    have = band_keys(scene_bands)
    return [have.index(b) + 1 for b in wanted]


def model_pixel_size_m(resolution_m: float, pixel_aspect: float = 1.0) -> tuple[float, float]:
    """The ground size (east-west, north-south) in metres of the pixels a model was trained on.

    A card records the mean of the two sides (``resolution_m``, as
    :func:`~geotl.io.rasters.ground_resolution_m` measures it) and their ratio
    (``pixel_aspect``): both sides follow from them.

    >>> model_pixel_size_m(10.0)
    (10.0, 10.0)
    >>> [round(v, 2) for v in model_pixel_size_m(10.0, 0.625)]  # a degree grid at 51 N
    [7.69, 12.31]
    """
    y = 2 * resolution_m / (1 + pixel_aspect)
    return pixel_aspect * y, y


def pixel_sides(xy: tuple[float, float]) -> str:
    """A pixel's ground sides for a message: one figure when square within the tolerance.

    >>> pixel_sides((10.0, 10.4)), pixel_sides((7.738, 12.27))
    ('10 m', '7.738 x 12.27 m')
    """
    return f"{xy[0]:.4g} m" if _same(xy[0], xy[1]) else f"{xy[0]:.4g} x {xy[1]:.4g} m"


def other_pixel_size(
    model_xy: tuple[float, float], chips_xy: tuple[float, float] | None
) -> tuple[float, float] | None:
    """The chips' pixel sides when either is not the model's, else None.

    Each side (east-west, north-south) is compared on its own, as :func:`check_resolution`
    compares a scene's: a degree grid at 51 N has 7.7 x 12.3 m pixels, a mean of 10 m, yet
    a model of 10 x 10 m pixels sees its ground squeezed. Within
    :data:`RESOLUTION_TOLERANCE` is the model's.

    >>> other_pixel_size((10.0, 10.0), (7.7, 12.3))
    (7.7, 12.3)
    >>> other_pixel_size((10.0, 10.0), (10.4, 9.8)) is None
    True
    """
    if chips_xy is None or not all(model_xy):
        return None
    if all(_same(c, m) for c, m in zip(chips_xy, model_xy, strict=True)):
        return None
    return chips_xy


def _same(value: float, reference: float) -> bool:
    return abs(value - reference) <= RESOLUTION_TOLERANCE * reference


def shape_fix(
    model_xy: tuple[float, float], utm_epsg: int | None, scenes: str = "the scene to its"
) -> str:
    """What to do with imagery whose pixels are not the model's shape, for a message.

    A model of square pixels: warp to the UTM zone at its resolution; a model of another
    shape (trained on a degree grid): no warp gives its pixels, so a model of these.

    >>> shape_fix((10.0, 10.0), 32631)
    'warp the scene to its UTM zone at 10 m (gdalwarp -t_srs EPSG:32631 -tr 10 10)'
    >>> shape_fix((7.7, 12.3), None)
    'use a model trained on pixels of this shape'
    """
    mx, my = model_xy
    if not _same(mx, my):
        return "use a model trained on pixels of this shape"
    zone = f"EPSG:{utm_epsg}" if utm_epsg is not None else "<its UTM zone>"
    return f"warp {scenes} UTM zone at {mx:.4g} m (gdalwarp -t_srs {zone} -tr {mx:.4g} {my:.4g})"


def warp_fix(
    scene_xy: tuple[float, float],
    model_xy: tuple[float, float],
    crs_xy: tuple[float, float] | None,
    crs_units: str,
    scenes: str = "the scene to it",
) -> str:
    """The ``gdalwarp -tr`` (in the scene's CRS units) that gives the model's pixel size.

    The model's size in metres typed as ``-tr`` on a grid in feet (a state plane) gives
    pixels a third of it: the figures are the scene's own units, named when not metres.
    ``scenes`` is what is resampled to what, for the message.

    >>> warp_fix((20.0, 20.0), (10.0, 10.0), (20.0, 20.0), "metre")
    'resample the scene to it (gdalwarp -tr 10 10 -r bilinear FILE OUT.tif)'
    >>> warp_fix((0.2, 0.2), (0.1, 0.1), (0.6562, 0.6562), "US survey foot", "the scenes to 0.1 m")
    "resample the scenes to 0.1 m (gdalwarp -tr 0.3281 0.3281 -r bilinear FILE OUT.tif; in its CRS's unit, the US survey foot)"
    >>> warp_fix((0.1, 0.1), (0.3, 0.3), None, "metre")
    "use imagery at the model's resolution"
    """
    if crs_xy is None:
        return "use imagery at the model's resolution"
    tr_x, tr_y = (c * m / s for c, m, s in zip(crs_xy, model_xy, scene_xy, strict=True))
    # averaging is what a coarser grid's pixel is; a finer one is interpolated
    how = "average" if model_xy[0] > scene_xy[0] else "bilinear"
    units = "" if crs_units in ("metre", "meter", "m") else f"; in its CRS's unit, the {crs_units}"
    tr = f"-tr {tr_x:.4g} {tr_y:.4g} -r {how}"
    return f"resample {scenes} (gdalwarp {tr} FILE OUT.tif{units})"


def check_resolution(
    scene_xy: tuple[float, float],
    model_xy: tuple[float, float],
    resample: bool,
    path: str | Path,
    *,
    grid: str = "",
    utm_epsg: int | None = None,
    crs_xy: tuple[float, float] | None = None,
    crs_units: str = "metre",
) -> tuple[float, float] | None:
    """How to resample the scene's pixels to the model's ground size and shape, if at all.

    Each side of a pixel (east-west, north-south; :func:`~geotl.io.rasters.ground_pixel_size_m`)
    is compared on its own: a degree grid is narrower east-west than north-south by the
    cosine of the latitude, so one mean resolution can match the model's while the model
    would see the ground squeezed (or a model trained on a degree grid would see UTM
    imagery stretched). Such pixels are resampled on each axis apart.

    Args:
        scene_xy: the scene's pixel sides in metres on the ground.
        model_xy: the model's (:func:`model_pixel_size_m`).
        resample: whether the user allowed resampling (``--resample``).
        path: the scene, for the message.
        grid: what the scene's grid is, for the message (e.g. "a degree grid at 51 N").
        utm_epsg: the UTM zone at the scene, for the fix the message suggests.
        crs_xy: the scene's pixel sides in its CRS's units (``crs_units``), for the
            ``gdalwarp -tr`` the message suggests: a state-plane scene is in feet, where
            the model's "0.1 m" typed as ``-tr 0.1`` gives 3 cm pixels.
        crs_units: the unit of ``crs_xy`` (GDAL's name: ``metre``, ``US survey foot``).

    Returns:
        None when both sides are within :data:`RESOLUTION_TOLERANCE` of the model's; else
        the factors (x, y) that scale the scene's pixel sides to the model's.

    Raises:
        ResolutionError: a side differs by more than 10 % and ``resample`` is false, or
            by more than :data:`MAX_RESAMPLE` times.

    >>> check_resolution((0.1, 0.1), (0.1, 0.1), False, "s.tif") is None
    True
    >>> check_resolution((0.3, 0.3), (0.1, 0.1), True, "s.tif")
    (0.33333333333333337, 0.33333333333333337)
    >>> check_resolution((0.2, 0.2), (0.1, 0.1), False, "s.tif", crs_xy=(0.6562, 0.6562), crs_units="US survey foot")
    Traceback (most recent call last):
    ...
    geotl.errors.ResolutionError: s.tif: ground resolution 0.2 m differs from the model's 0.1 m: pass --resample to resample on the fly, or resample the scene to it (gdalwarp -tr 0.3281 0.3281 -r bilinear FILE OUT.tif; in its CRS's unit, the US survey foot)
    >>> check_resolution((7.7, 12.3), (10.0, 10.0), False, "s.tif", grid="a degree grid at 51 N", utm_epsg=32631)
    Traceback (most recent call last):
    ...
    geotl.errors.ResolutionError: s.tif: pixels are 7.7 x 12.3 m on the ground (a degree grid at 51 N), the model's 10 m: it would see the ground squeezed or stretched; pass --resample to resample each axis on the fly, or warp the scene to its UTM zone at 10 m (gdalwarp -t_srs EPSG:32631 -tr 10 10)
    >>> check_resolution((30.0, 30.0), (0.5, 0.5), True, "s.tif")
    Traceback (most recent call last):
    ...
    geotl.errors.ResolutionError: s.tif: ground resolution 30 m is 60x the model's 0.5 m (at most 8x is resampled: its objects would be far from the sizes the model learnt); use a model trained near 30 m
    """
    (sx, sy), (mx, my) = scene_xy, model_xy
    if _same(sx, mx) and _same(sy, my):
        return None
    scene_m, model_m = (sx + sy) / 2, (mx + my) / 2
    same_shape = _same(sx / sy, mx / my)
    if not resample:
        if same_shape:
            raise ResolutionError(
                f"ground resolution {scene_m:.4g} m differs from the model's {model_m:.4g} m: "
                "pass --resample to resample on the fly, or "
                + warp_fix(scene_xy, model_xy, crs_xy, crs_units),
                path,
            )
        where = f" ({grid})" if grid else ""
        other = shape_fix(model_xy, utm_epsg)
        raise ResolutionError(
            f"pixels are {pixel_sides(scene_xy)} on the ground{where}, the model's "
            f"{pixel_sides(model_xy)}: it would see the ground squeezed or stretched; pass "
            f"--resample to resample each axis on the fly, or {other}",
            path,
        )
    factor = max(sx / mx, mx / sx, sy / my, my / sy)
    if factor > MAX_RESAMPLE:
        raise ResolutionError(
            f"ground resolution {pixel_sides(scene_xy)} is {factor:.0f}x the model's "
            f"{pixel_sides(model_xy)} (at most {MAX_RESAMPLE}x is resampled: its objects would be "
            f"far from the sizes the model learnt); use a model trained near {scene_m:.4g} m",
            path,
        )
    return mx / sx, my / sy


def crs_units(crs: CRS) -> str:
    """The unit of a CRS's grid, as GDAL names it, for a ``gdalwarp -tr`` (:func:`warp_fix`).

    >>> from rasterio.crs import CRS
    >>> crs_units(CRS.from_epsg(2264)), crs_units(CRS.from_epsg(4326))
    ('US survey foot', 'degree')
    """
    return str(crs.linear_units) if crs.is_projected else "degree"


class PixelFit(NamedTuple):
    """A scene's pixels against a model's: both sides in metres, and the resampling."""

    scene_xy: tuple[float, float]
    model_xy: tuple[float, float]
    factors: tuple[float, float] | None  # None: read as it is (:func:`check_resolution`)


def check_scene_pixels(
    crs: CRS,
    transform: Affine,
    width: int,
    height: int,
    card: ModelCard,
    resample: bool,
    path: str | Path,
    *,
    name: str | None = None,
    say: bool = True,
) -> PixelFit:
    """Whether a scene's pixels fit the model's ground size and shape, and how to resample.

    What ``geotl predict`` checks of each scene before reading it, in one place so that
    ``geotl suggest`` checks its scenes the same way before chipping the region and
    predicting (minutes), not after. A card from before geotl recorded the pixels' shape is
    given the scene's (said when not square, if ``say``).

    Args:
        crs: the scene's CRS (a dataset's or a :class:`~geotl.io.rasters.SceneInfo`'s).
        transform: its grid's transform.
        width: its columns.
        height: its rows.
        card: the model card (``resolution_m``, ``pixel_aspect``).
        resample: whether the user allowed resampling (``--resample``).
        path: the scene, for the message.
        name: what messages call the scene (default: its file name).
        say: log the older card's warning (once per scene, not once per block).

    Raises:
        ResolutionError: see :func:`check_resolution`.
    """
    from geotl.io.rasters import describe_grid, ground_pixel_size_m, pixel_size_crs, utm_epsg_at

    scene_xy = ground_pixel_size_m(crs, transform, width, height)
    grid = describe_grid(crs, transform, width, height)
    aspect = card.pixel_aspect
    if aspect is None:  # an older card: the chips' pixel shape is unknown, assume the scene's
        aspect = scene_xy[0] / scene_xy[1]
        if abs(aspect - 1) > RESOLUTION_TOLERANCE and say:
            log.warning(
                "%s: pixels are %.4g x %.4g m on the ground%s; the model card does not "
                "record the shape of the pixels it was trained on (written before geotl "
                "recorded it), so it is not checked: retrain to have it checked and "
                "resampled",
                name or Path(path).name,
                *scene_xy,
                f" ({grid})" if grid else "",
            )
    model_xy = model_pixel_size_m(card.resolution_m, aspect)
    factors = check_resolution(
        scene_xy,
        model_xy,
        resample,
        path,
        grid=grid,
        utm_epsg=utm_epsg_at(crs, transform, width, height),
        crs_xy=pixel_size_crs(transform),
        crs_units=crs_units(crs),
    )
    return PixelFit(scene_xy, model_xy, factors)
