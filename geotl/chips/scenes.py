"""The region's scenes as chipping sees them: scanned, checked, with their labels."""

from __future__ import annotations

import functools
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import shapely
from rasterio.enums import ColorInterp
from rasterio.errors import RasterioError
from rasterio.windows import Window
from shapely.geometry import box
from shapely.geometry.base import BaseGeometry

from geotl.chips.windows import chip_windows
from geotl.config import Region
from geotl.errors import BandMismatchError, ConfigError, LabelError
from geotl.io.nodata import holds_value, mask_fill_value
from geotl.io.rasters import (
    SceneInfo,
    open_raster,
    other_units,
    read_data,
    read_failure,
    read_scene_info,
    scene_band_sample,
    split_subdataset,
)
from geotl.io.vectors import crs_name, shift_longitudes, warn_without_datum_shift
from geotl.models.artefact import Normalisation
from geotl.predict.radiometry import decibel_offset, decibel_units
from geotl.predict.scene import scene_band_names

log = logging.getLogger(__name__)


@dataclass
class ChipScene:
    """A scene to chip: its facts, id, nodata value and chip windows."""

    info: SceneInfo
    scene_id: str
    nodata: float | None
    windows: list[Window]

    @functools.cached_property
    def envelope(self) -> BaseGeometry:
        """The scene's envelope in its CRS, from all four corners (rotated grids too).

        Two opposite corners leave out much of a rotated scene: the labels and areas there
        were dropped (masks of background where fields lay).
        """
        return box(*self.info.bounds)

    @functools.cached_property
    def crs_label(self) -> str:
        """Short name of the scene's CRS (computed once: it is needed for every chip)."""
        return crs_name(self.info.crs)


def scan_scenes(region: Region) -> list[ChipScene]:
    """Open and check every scene of the region (bands, CRS, resolution) and plan its chips."""
    size, stride = region.chips.size_px, region.chips.stride
    n_bands = len(region.imagery.bands)
    if region.chips.stride > region.chips.size_px:
        log.warning(
            "%s: [chips] stride_px = %d is larger than size_px = %d: the %d px between chips "
            "are never trained on, nor their labels",
            region.path.name,
            region.chips.stride,
            region.chips.size_px,
            region.chips.stride - region.chips.size_px,
        )
    scenes: list[ChipScene] = []
    paths = region.scene_paths()
    means: list[tuple[str, Normalisation | None]] = []
    for path in paths:
        info = read_scene_info(path, n_bands)
        if info.count != n_bands:
            alpha = " and an alpha band (the mask: not listed)" if info.alpha_band else ""
            raise BandMismatchError(
                f"has {info.count} data band(s){alpha} but [imagery] bands lists {n_bands} "
                f"({', '.join(region.imagery.bands)}): list one name per data band, in file "
                f"order{_band_count_hint(info, n_bands, len(paths))}",
                path,
            )
        _check_nodata(region, info)
        # the one naming rule prediction follows: a disagreement is refused, not guessed
        scene_band_names(
            info.descriptions,
            info.count,
            list(region.imagery.bands),
            path=path,
            declared_by="[imagery] bands",
        )
        nodata = region.imagery.nodata if region.imagery.nodata is not None else info.nodata
        if nodata is None and info.mask_bands:  # the chips carry the mask as a nodata value
            nodata = mask_fill_value(info.dtype)
        # the band means only matter beside another scene's
        means.append((path.name, _probe(path, info, nodata, sample=len(paths) > 1)))
        windows = chip_windows(info.width, info.height, size, stride)
        scenes.append(ChipScene(info, path.stem, nodata, windows))
    widest = max(min(s.info.width, s.info.height) for s in scenes)
    if not any(s.windows for s in scenes):
        largest = max(scenes, key=lambda s: s.info.width * s.info.height)
        raise ConfigError(
            f"chips.size_px = {size} is larger than every scene (largest: "
            f"{largest.info.path.name}, {largest.info.width}x{largest.info.height} px): "
            f"lower [chips] size_px to {_size_px_within(widest)}",
            region.path,
        )
    guard = region.guard_px
    if guard and 2 * guard >= widest:
        raise ConfigError(
            f"[split] guard_px = {guard}: the ignored bands on both sides of a split boundary "
            f"({2 * guard} px) would cover the widest scene ({widest} px across); use guard_px "
            f"= {max(1, (widest - 1) // 2)} or less",
            region.path,
        )
    _check_units(means)
    _warn_mixed_resolutions(region, scenes)
    for s in scenes:
        if not s.windows:
            log.warning(
                "%s: %dx%d px is smaller than a %d px chip: skipped",
                s.info.path.name,
                s.info.width,
                s.info.height,
                size,
            )
    unique_scene_ids(scenes, region)
    return scenes


def _warn_mixed_resolutions(region: Region, scenes: list[ChipScene]) -> None:
    """Say so when the region's scenes differ in ground resolution beyond prediction's tolerance.

    The model card records one resolution (the chips' median) and prediction refuses imagery
    more than :data:`~geotl.predict.scene.RESOLUTION_TOLERANCE` away from it, so a region of
    5 m and 30 m scenes trained on both and then refused the 30 m ones.
    """
    from geotl.predict.scene import RESOLUTION_TOLERANCE

    chipped = [s for s in scenes if s.windows]
    if len(chipped) < 2:
        return
    fine = min(chipped, key=lambda s: s.info.resolution_m)
    coarse = max(chipped, key=lambda s: s.info.resolution_m)
    if coarse.info.resolution_m <= (1 + RESOLUTION_TOLERANCE) * fine.info.resolution_m:
        _warn_mixed_shapes(region, chipped)
        return
    log.warning(
        "%s: scenes differ in ground resolution (%s %.4g m, %s %.4g m): a chip then covers "
        "different ground in each, the model card records one resolution and predict refuses "
        "(or with --resample, resamples) imagery at another; resample the scenes to one "
        "resolution (gdalwarp -tr) or give each resolution its own region",
        region.path.name,
        fine.info.path.name,
        fine.info.resolution_m,
        coarse.info.path.name,
        coarse.info.resolution_m,
    )


def _warn_mixed_shapes(region: Region, chipped: list[ChipScene]) -> None:
    """Say so when the region's scenes differ in pixel shape at one mean resolution.

    A UTM scene (10 x 10 m) and its degree-grid twin at 51 N (7.7 x 12.3 m) have the same
    mean resolution, yet the model card records one shape (the chips' median) and predict
    refuses (or resamples) scenes of the other: the region's own scenes among them.
    """
    from geotl.io.rasters import describe_grid, utm_epsg_at
    from geotl.predict.scene import model_pixel_size_m, other_pixel_size

    narrow = min(chipped, key=lambda s: s.info.pixel_aspect).info
    wide = max(chipped, key=lambda s: s.info.pixel_aspect).info
    # the shapes compared at one mean resolution: the means were compared already
    res = narrow.resolution_m
    shapes = (
        model_pixel_size_m(res, wide.pixel_aspect),
        model_pixel_size_m(res, narrow.pixel_aspect),
    )
    if other_pixel_size(*shapes) is None:
        return

    def said(info: SceneInfo) -> str:
        x, y = model_pixel_size_m(info.resolution_m, info.pixel_aspect)
        grid = describe_grid(info.crs, info.transform, info.width, info.height)
        return f"{info.path.name} {x:.4g} x {y:.4g} m{f', {grid}' if grid else ''}"

    zone = utm_epsg_at(narrow.crs, narrow.transform, narrow.width, narrow.height)
    log.warning(
        "%s: scenes differ in pixel shape (%s; %s): the model card records one shape and "
        "predict refuses (or with --resample, resamples) scenes of the other; warp the scenes "
        "to one grid (gdalwarp -t_srs %s -tr %.4g %.4g) or give each grid its own region",
        region.path.name,
        said(narrow),
        said(wide),
        f"EPSG:{zone}" if zone else "<the UTM zone>",
        res,
        res,
    )


def _band_count_hint(info: SceneInfo, n_bands: int, n_paths: int) -> str:
    """What likely explains a scene with another number of bands than the region lists."""
    if info.count == 1 and n_bands > 1 and n_paths > 1:
        return (
            "; bands in separate files are one scene once stacked: gdalbuildvrt -separate "
            "scene.vrt BAND1.tif BAND2.tif ... (one VRT per scene, in the order of [imagery] "
            "bands), and [imagery] paths = the VRTs"
        )
    if info.count == n_bands + 1 and info.alpha_band is None:
        with open_raster(info.path) as ds:
            interp = ds.colorinterp
        alpha = [i for i in info.band_indexes if interp[i - 1] == ColorInterp.alpha]
        if alpha:
            a = alpha[-1]
            keep = " ".join(f"-b {i}" for i in info.band_indexes if i != a)
            return (
                f"; band {a} is tagged alpha, but GDAL masks with an alpha band only in files "
                f"of 2 or 4 bands, so here it reads as data: make it the file's mask "
                f"(gdal_translate {keep} -mask {a} IN.tif OUT.tif)"
            )
    return ""


def _check_nodata(region: Region, info: SceneInfo) -> None:
    """Refuse an ``[imagery] nodata`` that no pixel of the scene's type can hold.

    Raises:
        ConfigError: e.g. ``nodata = -9999`` for an 8-bit scene (it would mark nothing).
    """
    nodata = region.imagery.nodata
    dtype = np.dtype(info.dtype)
    if nodata is None or holds_value(dtype, nodata):
        return
    span = f"{np.iinfo(dtype).min}..{np.iinfo(dtype).max}"
    raise ConfigError(
        f"[imagery] nodata = {nodata:g} cannot occur in {info.path.name} ({dtype}, "
        f"whole numbers {span}): set the value the scenes mark missing pixels with, or "
        "remove it to use each file's own nodata",
        region.path,
    )


def _check_units(samples: list[tuple[str, Normalisation | None]]) -> None:
    """Say which scenes look to be in other units than the first (16- beside 8-bit...).

    ``samples``: each scene's file name and band means and stds (None: not sampled, or no
    data). One normalisation will serve every chip, so such a scene is said, with its
    factor; not refused, as a snow-covered scene beside a dark forest can differ as much in
    visible bands. Radar: linear power beside dB, or a pass shifted in dB
    (:mod:`geotl.predict.radiometry`'s rules; a flooded pass is not one).
    """
    sampled = [(name, m) for name, m in samples if m is not None]
    for name, m in sampled[1:]:
        first, reference = sampled[0]
        if said := other_units(m.mean, reference.mean):
            log.warning(
                "%s: its %s (%s's): other units? Rescale the scenes to one (e.g. "
                "gdal_translate -scale) before chipping",
                name,
                said,
                first,
            )
        elif said := decibel_units(m, reference, f"{first}'s"):
            log.warning("%s: its %s before chipping", name, said)
        elif (shift := decibel_offset(m, reference)) is not None:
            log.warning(
                "%s: its bands in dB read about %.3g dB %s than %s's, alike in every band "
                "with the spread kept: a calibration other than theirs? Chip scenes of one "
                "processing (sigma0 in dB), or subtract the shift first",
                name,
                abs(shift),
                "higher" if shift > 0 else "lower",
                first,
            )


def _probe(path: Path, info: SceneInfo, nodata: float | None, sample: bool) -> Normalisation | None:
    """Read the first and last pixel: catches most truncated files before any work.

    With ``sample``, also the band means and stds of nine small windows
    (:func:`scene_band_sample`), in the same opening of the file.
    """
    with open_raster(path) as ds:
        try:
            read_data(ds, info.band_indexes, window=Window(0, 0, 1, 1))
            read_data(ds, info.band_indexes, window=Window(info.width - 1, info.height - 1, 1, 1))
            if not sample:
                return None
            got = scene_band_sample(ds, info.band_indexes, info.mask_bands, nodata)
            return Normalisation(mean=got.mean, std=got.std) if got else None
        except RasterioError as exc:
            raise read_failure(exc, path) from exc


def unique_scene_ids(scenes: list[ChipScene], region: Region) -> None:
    """Refuse two scenes whose file names (chip id prefixes) are the same.

    Scenes of one name are told apart by their folder, or, pages or variables of one file
    (``GTIFF_DIR:2:a.tif``, ``netCDF:"f.nc":vv``), by the page or variable.
    """
    stems = [s.scene_id for s in scenes]
    if len(set(stems)) == len(stems):
        return
    for s in scenes:
        if stems.count(s.scene_id) > 1:
            parts = split_subdataset(str(s.info.path))
            if parts is not None:
                which = re.sub(r"[^0-9A-Za-z]+", "_", parts[0] + parts[2]).strip("_")
                s.scene_id = f"{s.info.path.stem}_{which}"
            else:
                s.scene_id = f"{s.info.path.parent.name}_{s.info.path.stem}"
    ids = [s.scene_id for s in scenes]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise ConfigError(
            f"several scenes share the name {dup[0]!r}: give scenes unique file names",
            region.path,
        )


def _size_px_within(px: int) -> int:
    """The chip size to suggest for scenes ``px`` wide: a multiple of 32, at least 32.

    >>> _size_px_within(212), _size_px_within(20)
    (192, 32)
    """
    return max(32, px // 32 * 32)


def _lonlat_on_a_scene(labels: gpd.GeoDataFrame, scenes: list[ChipScene]) -> bool:
    """Whether labels declared in a projected CRS are longitude/latitude over a scene.

    A layer exported in degrees but tagged with the project's UTM zone (a ``set_crs``
    where ``to_crs`` was meant) then sits a few metres from that zone's origin: the
    scene CRSs tried before miss it, since no scene is in degrees.
    """
    if labels.crs is None or labels.crs.is_geographic:
        return False
    x0, y0, x1, y1 = labels.total_bounds
    if not (-180 <= x0 <= x1 <= 180 and -90 <= y0 <= y1 <= 90):
        return False
    lonlat = labels.geometry.set_crs("EPSG:4326", allow_override=True)
    return any(lonlat.to_crs(s.info.crs).intersects(s.envelope).any() for s in scenes if s.windows)


def _web_mercator_on_a_scene(labels: gpd.GeoDataFrame, scenes: list[ChipScene]) -> bool:
    """Whether labels declared in another CRS are Web Mercator metres over a scene.

    The commonest CRS of web and old GeoJSON exports: a file whose ``crs`` member names a
    code GDAL does not know is read as EPSG:4326 while its numbers are millions of metres.
    """
    if labels.crs is None or labels.crs.to_epsg() == 3857:
        return False
    merc = labels.geometry.set_crs("EPSG:3857", allow_override=True)
    with np.errstate(invalid="ignore"):
        return any(
            merc.to_crs(s.info.crs).intersects(s.envelope).any() for s in scenes if s.windows
        )


def labels_per_scene(
    region: Region, labels: gpd.GeoDataFrame, scenes: list[ChipScene]
) -> dict[str, gpd.GeoDataFrame]:
    """Labels reprojected to each scene's CRS, keeping those that touch the scene."""
    path = region.labels_path()
    out: dict[str, gpd.GeoDataFrame] = {}
    hit = np.zeros(len(labels), dtype=bool)
    on_skipped = np.zeros(len(labels), dtype=bool)  # on a scene smaller than a chip
    checked: set[str] = set()  # one look per scene CRS: PROJ's look-up takes 0.1 s
    for s in scenes:
        if labels.crs != s.info.crs and s.crs_label not in checked:
            checked.add(s.crs_label)
            warn_without_datum_shift(labels.crs, s.info.crs, path, s.info.bounds)
        native = labels if labels.crs == s.info.crs else labels.to_crs(s.info.crs)
        if s.info.crs.is_geographic:  # a scene counting longitudes past 180: labels too
            native = shift_longitudes(native, shapely.centroid(s.envelope).x)
        geoms = native.geometry.values
        with np.errstate(invalid="ignore"):
            finite = np.isfinite(shapely.bounds(geoms)).all(axis=1)
        inside = finite & shapely.intersects(geoms, s.envelope)
        if not s.windows:
            on_skipped |= inside
            continue
        hit |= inside
        sub = native[inside].copy()
        sub["geometry"] = shapely.make_valid(sub.geometry.values)
        out[s.scene_id] = sub
    small = min((min(s.info.width, s.info.height) for s in scenes if not s.windows), default=0)
    fit = _size_px_within(small)
    if not hit.any() and on_skipped.any():
        raise LabelError(
            "the labels lie only on scenes smaller than a chip (skipped): lower [chips] "
            f"size_px to {fit}",
            path,
        )
    if not hit.any():
        declared = crs_name(labels.crs)
        for s in scenes:
            as_scene = labels.geometry.set_crs(s.info.crs, allow_override=True)
            if as_scene.intersects(s.envelope).any():
                name = crs_name(s.info.crs)
                raise LabelError(
                    f"declared {declared} but coordinates look like {name} (the CRS of "
                    f"{s.info.path.name}): set [labels] crs = '{name}' in the region file",
                    path,
                )
        if _web_mercator_on_a_scene(labels, scenes):
            raise LabelError(
                f"declared {declared} but coordinates look like Web Mercator metres "
                "(EPSG:3857; an old GeoJSON 'crs' member GDAL could not read falls back to "
                "EPSG:4326): set [labels] crs = 'EPSG:3857' in the region file",
                path,
            )
        if _lonlat_on_a_scene(labels, scenes):
            raise LabelError(
                f"declared {declared} but coordinates look like longitude/latitude "
                "(EPSG:4326): set [labels] crs = 'EPSG:4326' in the region file",
                path,
            )
        raise LabelError(
            f"no label overlaps any scene (labels in {declared}, bounds "
            f"{_fmt_bounds(labels.total_bounds)}): check [labels] path and [imagery] paths",
            path,
        )
    outside = int((~hit & ~on_skipped).sum())
    if outside:
        log.warning("%s: %d of %d polygon(s) lie outside every scene", path, outside, len(labels))
    if lost := int((~hit & on_skipped).sum()):
        # not "outside": the user has imagery for them, and one setting brings them back
        log.warning(
            "%s: %d of %d polygon(s) lie only on scenes smaller than a chip (skipped): "
            "lower [chips] size_px to %d to train on them",
            path,
            lost,
            len(labels),
            fit,
        )
    bare = [s.info.path.name for s in scenes if s.windows and not len(out[s.scene_id])]
    if bare and region.labels is not None and region.labels.complete_within is None:
        # every pixel of such a scene becomes background: right for a scene without
        # objects, wrong for one nobody labelled (its objects teach "background")
        log.warning(
            "labels: %d of %d scene(s) hold no label (%s%s): all their chips are background; "
            "if they are unlabelled rather than empty, leave them out of [imagery] paths or "
            "set [labels] complete_within",
            len(bare),
            sum(1 for s in scenes if s.windows),
            ", ".join(bare[:3]),
            ", ..." if len(bare) > 3 else "",
        )
    return out


def warn_label_overlaps(region: Region, labels: gpd.GeoDataFrame) -> tuple[int, int]:
    """Say where label polygons overlap in ways that change the masks or the counts.

    Polygons of different classes that overlap: the shared pixels take the class listed
    later (a detection region's boxes may overlap: not said). Copies (the same class and
    shape, 99 % shared): each counts as an object (label budget, object scores). Overlaps
    under 1 % of the smaller polygon (slivers along shared edges) do not count.

    Returns:
        (overlapping pairs of different classes, copies).
    """
    geoms = np.asarray(labels.geometry.values, dtype=object)
    classes = labels["class"].to_numpy()
    ids = labels["label_id"].to_numpy() + 1  # as a person counts features in the file
    name = region.labels_path().name
    left, right = shapely.STRtree(geoms).query(geoms, predicate="intersects")
    left, right = left[left < right], right[left < right]
    if not len(left):
        return 0, 0
    try:
        shared = shapely.area(shapely.intersection(geoms[left], geoms[right]))
    except shapely.errors.GEOSException:  # a warning is not worth failing the chips for
        return 0, 0
    a_left, a_right = shapely.area(geoms[left]), shapely.area(geoms[right])
    same = classes[left] == classes[right]
    mixed = ~same & (shared > 0.01 * np.minimum(a_left, a_right))
    if region.task == "detection":
        mixed[:] = False
    copies = same & (shared >= 0.99 * np.maximum(a_left, a_right))
    _warn_swallowed(region, name, labels, (left[mixed], right[mixed]), shared[mixed])
    if mixed.any():
        i, j = int(left[mixed][0]), int(right[mixed][0])
        log.warning(
            "%s: %d pair(s) of label polygons of different classes overlap (e.g. features "
            "%d %r and %d %r, counted from 1 in file order): their shared pixels take the "
            "class listed later in classes; fix the labels if that is not meant",
            name,
            int(mixed.sum()),
            ids[i],
            classes[i],
            ids[j],
            classes[j],
        )
    if copies.any():
        i, j = int(left[copies][0]), int(right[copies][0])
        log.warning(
            "%s: %d label polygon(s) repeat another of the same class (e.g. features %d and "
            "%d, counted from 1 in file order): each copy counts as an object (label budget, "
            "object scores); remove the copies",
            name,
            int(copies.sum()),
            ids[i],
            ids[j],
        )
    return int(mixed.sum()), int(copies.sum())


def _warn_swallowed(
    region: Region,
    name: str,
    labels: gpd.GeoDataFrame,
    pairs: tuple[np.ndarray, np.ndarray],
    shared: np.ndarray,
) -> int:
    """Say which polygons lie inside one of a class listed later, so vanish from the masks.

    The later class wins shared pixels: a clearing drawn inside a forest polygon (no hole
    cut) is all forest when ``classes = ["clearing", "forest"]``; its class may get no
    pixel at all while its objects still count. Worth a warning of its own, naming the
    two fixes, beside the general one about overlaps.

    Args:
        region: the region (the order of its ``classes`` decides).
        name: the label file's name, for the message.
        labels: the labels (``label_id``, ``class``, ``geometry``).
        pairs: the two labels of each overlapping pair of different classes.
        shared: the area each pair shares.

    Returns:
        How many polygons vanish.
    """
    left, right = pairs
    if not len(left):
        return 0
    rank = {c: i for i, c in enumerate(region.classes)}
    classes = labels["class"].to_numpy()
    lose_left = np.array(
        [rank[a] < rank[b] for a, b in zip(classes[left], classes[right], strict=True)]
    )
    loser = np.where(lose_left, left, right)
    winner = np.where(lose_left, right, left)
    inside = shared >= 0.99 * shapely.area(np.asarray(labels.geometry.values)[loser])
    gone = np.unique(loser[inside])
    if not len(gone):
        return 0
    k = int(np.flatnonzero(inside)[0])
    lost, won = classes[loser[k]], classes[winner[k]]
    ids = labels["label_id"].to_numpy() + 1  # as a person counts features in the file
    log.warning(
        "%s: %d label polygon(s) lie inside a polygon of a class listed later in classes and "
        "get none of their pixels (e.g. feature %d %r inside feature %d %r): list %r after "
        "%r in classes, or cut them out of the polygons around them (QGIS Vector > "
        "Geoprocessing Tools > Difference)",
        name,
        len(gone),
        ids[loser[k]],
        lost,
        ids[winner[k]],
        won,
        lost,
        won,
    )
    return len(gone)


def _fmt_bounds(bounds: Any) -> str:
    return "(" + ", ".join(f"{v:.6g}" for v in bounds) + ")"


def areas_in(areas: gpd.GeoSeries | None, scene: ChipScene) -> list[BaseGeometry] | None:
    """The areas that touch the scene, in the scene's CRS (None: no areas given)."""
    if areas is None:
        return None
    native = areas if areas.crs == scene.info.crs else areas.to_crs(scene.info.crs)
    sbox = scene.envelope
    return [g for g in native.values if g is not None and g.intersects(sbox)]


# Blocks narrower than a few chips are all boundary: every chip touches another block, and
def block_size(scene: ChipScene, block_size_m: float) -> float:
    """Block size in the units of the scene's CRS."""
    crs = scene.info.crs
    if crs.is_geographic:
        t = scene.info.transform
        px_deg = (math.hypot(t.a, t.d) + math.hypot(t.b, t.e)) / 2
        return block_size_m / scene.info.resolution_m * px_deg
    factor = crs.linear_units_factor[1] if crs.is_projected else 1.0
    return block_size_m / factor
