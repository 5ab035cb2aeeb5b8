"""Vector reads: label polygons and area polygons from any OGR format.

Labels come back as a GeoDataFrame with the columns ``label_id`` (the feature's position in
the file, stable across runs; part ``j`` >= 1 of a multi-part feature at position ``i`` is
``j * n_features + i``, whatever else is read), ``class`` (a name from the region's
``classes``) and ``geometry`` (valid polygons; invalid ones repaired with ``make_valid``).
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import shapely
from pyproj import CRS
from pyproj.exceptions import CRSError, ProjError
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from shapely.geometry.base import BaseGeometry

from geotl.config import BACKGROUND, Region
from geotl.errors import ConfigError, LabelError, error_text

__all__ = [
    "chip_areas",
    "content_sha256",
    "crs_name",
    "label_key",
    "read_areas",
    "read_labels",
    "read_vector",
    "shift_longitudes",
    "warn_without_datum_shift",
]

log = logging.getLogger(__name__)

_POLYGONAL = ("Polygon", "MultiPolygon")


def crs_name(crs: Any) -> str:
    """A short, user-writable name of a CRS: ``EPSG:32618`` when it has one, else PROJ text.

    >>> crs_name("EPSG:4326")
    'EPSG:4326'
    """
    c = CRS.from_user_input(crs)
    epsg = c.to_epsg(min_confidence=90)
    if epsg is not None:
        return f"EPSG:{epsg}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "may lose information": fine for a hint
        return str(c.to_proj4() or c.to_wkt()).replace(" +type=crs", "")


def read_vector(
    path: Path,
    what: str,
    crs_override: str | None = None,
    *,
    crs_fix: str | None = None,
    fids: bool = False,
    layer: str | None = None,
    layer_fix: str | None = None,
    allow_empty: bool = False,
    within: Sequence[tuple[Any, BaseGeometry]] | None = None,
) -> gpd.GeoDataFrame:
    """Read the data layer of a vector file with pyogrio: ``layer``, else its only one.

    A file of several data layers (a GeoPackage of buildings and roads) is never read by
    guessing which: without ``layer`` it is refused, naming its layers.

    Args:
        path: any OGR vector (GeoJSON, GeoPackage, Shapefile, GeoParquet).
        what: the region key that names the file, used in error messages.
        crs_override: a CRS that replaces the file's own (``[labels] crs``).
        crs_fix: how to fix a missing CRS (default: add one or set ``[labels] crs``).
        fids: index the frame by the features' OGR ids (what QGIS shows as a feature's id).
        layer: the layer to read.
        layer_fix: how to name a layer, for the message (default: keep one in the file).
        allow_empty: a layer without features is returned (labels must have some; a
            reference layer of permits may have none yet).
        within: (CRS, polygon) areas: only the geometries of features that touch them are
            read (:func:`_read_within`); the others keep their row and attributes, with no
            geometry, and ``frame.attrs["outside"]`` marks them.

    Raises:
        LabelError: unreadable, empty, without a CRS, several layers and none named, or
            no layer of that name.
    """
    try:
        if path.suffix.lower() == ".parquet":
            frame = gpd.read_parquet(path)
        else:
            listed = pyogrio.list_layers(path)
            layers = [str(name) for name, _ in listed]
            # QGIS's styles and attribute tables (a code list beside the polygons) hold none
            data_layers = [
                str(n) for n, kind in listed if kind is not None and n != "layer_styles"
            ] or layers
            chosen = _data_layer(path, what, data_layers, layer, layer_fix)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                part = None
                if within and not fids:
                    part = _read_within(path, chosen, within, crs_override)
                # on_invalid="fix": a ring some tools leave unclosed (first vertex not
                # repeated) is closed, as OGR and QGIS read it, instead of failing the file
                frame = (
                    part
                    if part is not None
                    else gpd.read_file(
                        path, layer=chosen, engine="pyogrio", fid_as_index=fids, on_invalid="fix"
                    )
                )
    except LabelError:
        raise
    except Exception as exc:  # any OGR / parquet failure: report it as one line
        raise LabelError(
            f"cannot be read as a vector file ({error_text(exc)}): fix {what} or the file", path
        ) from exc
    if len(frame) == 0 and not allow_empty:
        raise LabelError(f"has no features: point {what} at a file with polygons", path)
    if crs_override is not None:
        try:
            frame = frame.set_crs(CRS.from_user_input(crs_override), allow_override=True)
        except CRSError as exc:
            raise ConfigError(
                f"labels.crs '{crs_override}' is not a CRS: use e.g. 'EPSG:32618'", path
            ) from exc
    elif frame.crs is None:
        fix = crs_fix or f"add one to the file or set [labels] crs = 'EPSG:...' ({what})"
        raise LabelError(f"has no CRS: {fix}", path)
    return frame


#: formats whose spatial index (or compact records) make a spatial filter cheaper than a
#: whole read; files of fewer features are read whole (the filter's set-up costs more)
_INDEXED = (".gpkg", ".fgb", ".shp")
_WITHIN_MIN_BYTES = 4_000_000  # some 10 000 polygons


def _read_within(
    path: Path, layer: str, within: Sequence[tuple[Any, BaseGeometry]], crs_override: str | None
) -> gpd.GeoDataFrame | None:
    """Every feature's attributes, but geometries only where they touch ``within``.

    A national layer (100 000 land-cover polygons) over two scenes: decoding, repairing
    and reprojecting every geometry costs seconds and hundreds of MB for nothing. The
    attributes of all features are still read (cheap), so class values are checked and
    ids stay file positions exactly as in a whole read; the geometries come through OGR's
    spatial filter (a GeoPackage's or FlatGeobuf's index). None (read the whole file)
    for small files and formats without an index, where the areas cannot be put into the
    file's CRS safely (longitude/latitude near the antimeridian or a pole), where feature
    ids do not give positions, or where no geometry touches the areas (a file whose
    declared CRS is wrong: the whole read diagnoses it).
    """
    if path.suffix.lower() not in _INDEXED or path.stat().st_size < _WITHIN_MIN_BYTES:
        return None  # GeoJSON, KML: read in full anyway, twice would cost more
    info = pyogrio.read_info(path, layer=layer)
    crs = crs_override or info.get("crs")
    if not crs:
        return None
    target = CRS.from_user_input(crs)
    shapes = []
    for area_crs, area in within:
        one = gpd.GeoSeries([area], crs=area_crs)
        step = max(area.bounds[2] - area.bounds[0], area.bounds[3] - area.bounds[1]) / 32
        with np.errstate(invalid="ignore"):
            shapes.append(one.segmentize(step).to_crs(target).iloc[0])  # curved edges
    mask = shapely.union_all(shapes)
    x0, y0, x1, y1 = mask.bounds
    if not mask.is_valid or not np.isfinite([x0, y0, x1, y1]).all():
        return None
    if target.is_geographic and not (-179.0 < x0 < x1 < 179.0 and -89.0 < y0 < y1 < 89.0):
        return None
    mask = mask.buffer(0.01 * max(x1 - x0, y1 - y0))  # edges drawn again: a margin
    attributes = pyogrio.read_dataframe(path, layer=layer, read_geometry=False, fid_as_index=True)
    if not attributes.index.is_unique:
        return None
    part = pyogrio.read_dataframe(
        path, layer=layer, columns=[], mask=mask, fid_as_index=True, on_invalid="fix"
    )
    rows = attributes.index.get_indexer(part.index)
    if not len(part) or (rows < 0).any():
        return None
    geoms = np.full(len(attributes), None, dtype=object)
    geoms[rows] = np.asarray(part.geometry.values, dtype=object)
    outside = np.ones(len(attributes), dtype=bool)
    outside[rows] = False
    frame = gpd.GeoDataFrame(attributes.reset_index(drop=True), geometry=list(geoms), crs=part.crs)
    frame.attrs["outside"] = outside
    log.debug("%s: read the geometries of %d of %d features", path.name, len(part), len(frame))
    return frame


def _polygonal(geoms: gpd.GeoSeries) -> tuple[np.ndarray, int, int]:
    """Keep polygonal parts; repair invalid ones. Returns (geoms, n_repaired, n_dropped).

    ``geoms`` is left as read: callers still look at the file's geometries (a zero-area
    sliver is a polygon there, not the line make_valid turns it into).
    """
    values = np.array(geoms.values, dtype=object)  # a copy: asarray shares the frame's array
    present = ~(shapely.is_missing(values) | shapely.is_empty(values))
    invalid = present & ~shapely.is_valid(values)
    if invalid.any():
        values[invalid] = shapely.make_valid(values[invalid])
    out = np.empty(len(values), dtype=object)
    dropped = 0
    for i, geom in enumerate(values):
        if not present[i]:
            dropped += 1
            continue
        if geom.geom_type in _POLYGONAL:
            out[i] = geom
            continue
        parts = [g for g in shapely.get_parts(geom) if g.geom_type in _POLYGONAL and not g.is_empty]
        if parts:
            out[i] = shapely.union_all(parts)
        else:
            dropped += 1
    return out, int(invalid.sum()), dropped


def _wrong_way_round(frame: gpd.GeoDataFrame, repaired: np.ndarray) -> np.ndarray:
    """Per feature: in a geographic CRS, a part spans over 180 degrees of longitude, no pole.

    An object across the antimeridian written in longitudes -180..180 without being cut
    at 180 (ogr2ogr -t_srs EPSG:4326 without -wrapdateline, or with a vertex that lies on
    180) joins 179.9 to -179.9 the long way round: a valid polygon (or, self-crossing,
    one that make_valid repairs) over most of the world's longitudes, which burns every
    scene at its latitudes as the class. Parts cut at 180 (RFC 7946) each span little; a
    cap round a pole rightly spans all longitudes and reaches latitude 90, so is kept.
    Both the file's geometry and the repaired one are checked: the repair may split a
    self-crossing ring into strips that each still span half the world.

    >>> from shapely.geometry import MultiPolygon, box
    >>> frame = gpd.GeoDataFrame(geometry=[
    ...     box(-179.9, -76, 179.9, -75),  # joined the long way round
    ...     MultiPolygon([box(179.9, -76, 180, -75), box(-180, -76, -179.9, -75)]),  # cut
    ...     box(-180, -90, 180, -88),  # a cap round the south pole
    ... ], crs="EPSG:4326")
    >>> _wrong_way_round(frame, np.asarray(frame.geometry.values, dtype=object)).tolist()
    [True, False, False]
    """
    flagged = np.zeros(len(frame), dtype=bool)
    if frame.crs is None or not frame.crs.is_geographic:
        return flagged
    for geoms in (np.asarray(frame.geometry.values, dtype=object), repaired):
        parts, feature = shapely.get_parts(geoms, return_index=True)
        bounds = shapely.bounds(parts)
        wide = (bounds[:, 2] - bounds[:, 0] > 180.0) & (
            (bounds[:, 1] > -90.0 + 1e-9) & (bounds[:, 3] < 90.0 - 1e-9)
        )
        flagged[feature[wide]] = True
    flagged &= np.array([g is not None for g in repaired], dtype=bool)  # dropped already
    return flagged


def _classes(region: Region, frame: gpd.GeoDataFrame, path: Path) -> np.ndarray:
    """Class name per feature (None where unmapped and ``unmapped = 'skip'``)."""
    assert region.labels is not None
    cfg = region.labels
    if cfg.class_field is None:
        return np.array([region.classes[0]] * len(frame), dtype=object)
    if cfg.class_field not in frame.columns:
        fields = ", ".join(str(c) for c in frame.columns if c != "geometry") or "none"
        raise LabelError(
            f"has no field '{cfg.class_field}' (fields: {fields}): fix [labels] class_field",
            path,
        )
    mapping = cfg.class_map if cfg.class_map else {c: c for c in region.classes}
    values = list(frame[cfg.class_field])
    raw = [_value_text(v) for v in values]
    # a whole-number code read as float (an integer field with a null in it) is 1, not 1.0;
    # a class_map written with "1.0" still maps it
    mapped = np.array(
        [mapping.get(t, mapping.get(str(v))) for t, v in zip(raw, values, strict=True)],
        dtype=object,
    )
    _map_loosely(mapping, raw, mapped, path)
    unmapped = Counter(v for v, m in zip(raw, mapped, strict=True) if m is None)
    if unmapped:
        # an empty value is a feature without a class (null in the file): say so
        listed = ", ".join(
            f"{v!r} ({n})" if v else f"no value ({n})" for v, n in sorted(unmapped.items())
        )
        if cfg.unmapped == "error" and set(unmapped) == {""}:
            raise LabelError(
                f"{unmapped['']} feature(s) have no value in field '{cfg.class_field}': give "
                'them a class in the file or set [labels] unmapped = "skip" to leave them out',
                path,
            )
        if cfg.unmapped == "error":
            raise LabelError(
                f"field '{cfg.class_field}' has values that class_map does not map: {listed}; "
                'add them to [labels] class_map or set [labels] unmapped = "skip"',
                path,
            )
        _warn_once(
            f"{path}: skipped {sum(unmapped.values())} feature(s) with unmapped values: {listed}"
        )
    return mapped


def _loose(text: str) -> str:
    """A class value as people mean it: case and surrounding spaces do not count.

    >>> _loose(" Forest  "), _loose("FOREST")
    ('forest', 'forest')
    """
    return text.strip().casefold()


def _map_loosely(mapping: dict[str, str], raw: list[str], mapped: np.ndarray, path: Path) -> None:
    """Map, in place, the values no key matches exactly by a key equal up to case and spaces.

    Hand-typed attribute tables hold "Forest ", "forest" and "FOREST" for one class (a
    trailing space is invisible in QGIS's table); refusing them makes the user list every
    variant in ``class_map``. A value whose loose form fits keys of different classes
    ("Water" -> water, "water" -> wetland) stays unmapped: only an exact key decides it.
    """
    targets: dict[str, set[str]] = {}
    for key, cls in mapping.items():
        targets.setdefault(_loose(key), set()).add(cls)
    loosely: Counter[tuple[str, str]] = Counter()
    for i in np.flatnonzero(np.array([m is None for m in mapped], dtype=bool)).tolist():
        found = targets.get(_loose(raw[i]), set()) if raw[i] else set()
        if len(found) == 1:
            mapped[i] = next(iter(found))
            loosely[(raw[i], mapped[i])] += 1
    if loosely:
        listed = ", ".join(f"{v!r} -> {c} ({n})" for (v, c), n in sorted(loosely.items()))
        _warn_once(
            f"{path}: matched class value(s) to [labels] class_map ignoring case and "
            f"surrounding spaces: {listed}"
        )


_SAID: set[str] = set()


def _warn_once(message: str) -> None:
    """Log a warning about the label file once per process (one command).

    A command reads the labels several times (chipping, the label budget, each point of
    a label curve): the same warning 18 times hides the others.
    """
    if message not in _SAID:
        _SAID.add(message)
        log.warning("%s", message)


def _value_text(value: Any) -> str:
    """A class field's value as the text ``class_map`` keys are matched with.

    >>> _value_text(3.0), _value_text(2.5), _value_text(None), _value_text("Tree")
    ('3', '2.5', '', 'Tree')
    """
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _data_layer(
    path: Path, what: str, layers: list[str], layer: str | None, layer_fix: str | None
) -> str:
    """The layer to read: ``layer`` (which must exist), else the file's only data layer."""
    listed = ", ".join(repr(n) for n in layers)
    if layer is not None:
        if layer not in layers:
            fix = layer_fix or f"fix {what}"  # the key that names the layer, not the file
            raise LabelError(f"has no layer {layer!r} (layers: {listed}): {fix}", path)
        return layer
    if len(layers) > 1:
        fix = layer_fix or f"keep only the one {what} means in the file (ogr2ogr OUT FILE LAYER)"
        raise LabelError(f"has {len(layers)} layers ({listed}): {fix}", path)
    return layers[0]


def read_labels(
    region: Region,
    crs: Any = None,
    near_lon: float | None = None,
    *,
    within: Sequence[tuple[Any, BaseGeometry]] | None = None,
) -> gpd.GeoDataFrame:
    """Read a region's label polygons, mapped onto its classes and repaired.

    Args:
        region: the region (its ``[labels]`` table says file, class field and map).
        crs: reproject to this CRS when given (anything pyproj understands).
        near_lon: in a geographic CRS, move the labels by whole turns to lie within 180
            degrees of this longitude (:func:`shift_longitudes`): for imagery on the
            antimeridian (``label_key`` gives it for a window).
        within: (CRS, polygon) areas, e.g. the scenes' footprints: labels that touch none
            are left out without reading their geometry (a national layer over a few
            scenes). Ids, class checks and counts are those of a whole read.

    Returns:
        GeoDataFrame with columns ``label_id`` (int, the feature's position in the file;
        one row per separate part of a multi-part feature, see :func:`_one_object_per_part`),
        ``class`` (str) and ``geometry`` (valid polygons; in longitude/latitude none that
        goes round the world the wrong way, :func:`_wrong_way_round`), in the file's CRS
        (or the ``[labels] crs`` override) unless ``crs`` is given.

    Raises:
        LabelError: unreadable or empty file, no CRS, missing class field, unmapped values
            (with ``unmapped = "error"``), or no polygons.
    """
    path = region.labels_path()
    assert region.labels is not None
    frame = read_vector(
        path,
        "[labels] path",
        region.labels.crs,
        layer=region.labels.layer,
        layer_fix='name the one to read with [labels] layer = "NAME"',
        within=within,
    )
    outside = frame.attrs.get("outside", np.zeros(len(frame), dtype=bool))
    frame = _points_as_boxes(region, frame, path)
    classes = _classes(region, frame, path)
    # before the repair: a polygon that make_valid cut into parts is still one object
    multipart = frame.geometry.geom_type.isin(["MultiPolygon", "GeometryCollection"]).to_numpy()
    geoms, n_repaired, n_dropped = _polygonal(frame.geometry)
    n_dropped -= int(outside.sum())  # not read, not dropped
    around = _wrong_way_round(frame, geoms)
    geoms[around] = None
    n_around = int(around.sum())
    if n_around:
        _warn_once(
            f"{path}: ignored {n_around} label(s) that span more than 180 degrees of longitude "
            "without reaching a pole: each marks every longitude at its latitudes as its class "
            "(an object across the antimeridian joined the long way round, as ogr2ogr -t_srs "
            "EPSG:4326 writes it without -wrapdateline or with a vertex on 180): cut them at "
            "180 as RFC 7946 says (ogr2ogr -t_srs EPSG:4326 -wrapdateline from the projected "
            "file) or give the labels in a projected CRS"
        )
    keep = np.array([g is not None for g in geoms]) & np.array([c is not None for c in classes])
    holes = keep & (classes == BACKGROUND)
    keep &= ~holes
    polygons = keep.copy()  # before a hole covers one whole
    if holes.any():
        _cut_holes(geoms, keep, holes, path)
    if n_repaired:
        log.info(
            "labels: repaired %d invalid geometr%s with make_valid",
            n_repaired,
            "y" if n_repaired == 1 else "ies",
        )
    kinds = frame.geometry.geom_type.fillna("")
    n_points = int(kinds.isin(["Point", "MultiPoint"]).sum())
    points_fix = (
        f"; {n_points} of them are points: set [labels] point_box_m = <object width in metres> "
        "to label each as a square"
        if n_points
        else ""
    )
    n_lines = int(kinds.str.contains("LineString").sum())
    if n_lines:  # a road or river centre line has no width to burn into a mask
        points_fix += (
            f"; {n_lines} of them are lines: label areas with polygons (buffer the lines by "
            "half their width, e.g. QGIS Vector > Geoprocessing Tools > Buffer)"
        )
    if n_dropped:
        log.warning(
            "labels: ignored %d feature(s) that are empty or not polygons%s", n_dropped, points_fix
        )
    if not keep.any():
        raise LabelError(
            "has no usable polygons (all empty, not polygons, unmapped or round the world): "
            "check [labels] path" + points_fix,
            path,
        )
    named = classes.copy()
    named[classes == BACKGROUND] = None  # holes are not a class
    _refuse_classes_without_areas(named, polygons | outside, kinds.to_numpy(), path)
    out = gpd.GeoDataFrame(
        {
            "label_id": np.flatnonzero(keep).astype("int64"),
            "class": pd.array(classes[keep], dtype=object),
        },
        geometry=gpd.GeoSeries(list(geoms[keep]), crs=frame.crs),
        crs=frame.crs,
    )
    out = _one_object_per_part(out, multipart[keep], len(frame), path)
    out.attrs["n_repaired"] = n_repaired
    out.attrs["n_dropped"] = n_dropped + n_around  # chipset.json: labels_ignored
    out.attrs["n_unmapped"] = int(sum(c is None for c in classes))
    out.attrs["n_holes"] = int(holes.sum())
    out.attrs["n_round_the_world"] = n_around
    if crs is not None:
        out = out.to_crs(crs)
    if near_lon is not None:
        out = shift_longitudes(out, near_lon)
    return out.reset_index(drop=True)


def warn_without_datum_shift(
    src: Any, dst: Any, path: Path, bounds: tuple[float, float, float, float]
) -> bool:
    """Warn when labels change datum by a coarse transformation because a grid is missing.

    PROJ moves NAD27 to NAD83 with the NADCON grid (0.15 m); offline and without the grid
    it silently takes the best it has, a Helmert good to 10-14 m (or a "ballpark" that
    ignores the datum change): the labels then sit that far off the imagery, half a
    Landsat pixel but twenty NAIP pixels. Only losses above 2 m between datums on
    different ellipsoids are reported (NAD83, its HARN realisation and WGS 84 lie within
    a metre or two).

    Args:
        src: the labels' CRS.
        dst: the scene's CRS.
        path: the label file, for the message.
        bounds: the scene's bounds in ``dst`` (where the transformation is looked at).

    Returns:
        Whether a warning was given (once per file and pair of CRSs).
    """
    from pyproj.transformer import AreaOfInterest, Transformer, TransformerGroup

    a, b = CRS.from_user_input(src), CRS.from_user_input(dst)
    if a == b or a.ellipsoid is None or b.ellipsoid is None:
        return False
    if abs(a.ellipsoid.semi_major_metre - b.ellipsoid.semi_major_metre) < 1.0:
        return False  # WGS 84 / GRS 80 (NAD83, ETRS89, HARN): datums a metre or two apart
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Best transformation is not available": said below
        try:
            # the operation geopandas' to_crs uses at the scene's centre
            centre = ((bounds[0] + bounds[2]) / 2, (bounds[1] + bounds[3]) / 2)
            x, y = Transformer.from_crs(b, a, always_xy=True).transform(*centre)
            forward = Transformer.from_crs(a, b, always_xy=True)
            forward.transform(x, y)
            used = forward.get_last_used_operation()
            lon, lat = Transformer.from_crs(b, b.geodetic_crs, always_xy=True).transform(*centre)
            here = AreaOfInterest(lon, lat, lon, lat)  # not the grids of other countries
            group = TransformerGroup(a, b, always_xy=True, area_of_interest=here)
        except (ProjError, ValueError):  # no operation here at all: to_crs will say so
            return False
    missing = group.unavailable_operations
    accuracy = used.accuracy if used is not None else -1.0
    better = [op for op in missing if op.accuracy < 2.0 and op.grids]  # -1: not known
    if not better or 0 <= accuracy <= 2.0:
        return False
    grid = next(iter(better[0].grids)).short_name
    how = f"accurate to {accuracy:g} m" if accuracy >= 0 else "of unknown accuracy"
    _warn_once(
        f"{path}: labels in {crs_name(a)} are moved into the scene's {crs_name(b)} by a "
        f"transformation {how}, as PROJ lacks the grid {grid} of a better one: they may "
        "sit that far off the imagery; install the "
        f"grid (projsync --file {grid}, or PROJ_NETWORK=ON) or give the labels in the "
        "scene's datum"
    )
    return True


def _cut_holes(geoms: np.ndarray, keep: np.ndarray, holes: np.ndarray, path: Path) -> None:
    """Cut the features mapped to background out of the kept labels, in place.

    A lake drawn as its own feature over a forest polygon (``class_map = { Water =
    "background" }``): burnt as background on top of the classes, so its pixels are
    labelled background (0), not forest and not ignore. Cutting it from the geometries,
    rather than burning it last, gives every stage the same labels: the chips' masks,
    the objects evaluate matches and the areas suggest counts. A label the holes cover
    whole is left out (``keep`` cleared).

    Args:
        geoms: repaired polygons per feature (None: not one); kept ones are replaced.
        keep: per feature, whether it is a class label.
        holes: per feature, whether it is a background polygon.
        path: the label file, for the log line.
    """
    cutters = geoms[holes]
    rows = np.flatnonzero(keep)
    hit, by = shapely.STRtree(cutters).query(geoms[rows], predicate="intersects")
    for k in np.unique(hit).tolist():
        i = int(rows[k])
        left = shapely.difference(geoms[i], shapely.union_all(cutters[by[hit == k]]))
        parts = [g for g in shapely.get_parts(left) if g.geom_type in _POLYGONAL and g.area > 0]
        if parts:
            geoms[i] = parts[0] if len(parts) == 1 else shapely.multipolygons(parts)
        else:
            geoms[i], keep[i] = None, False
    log.info(
        "%s: %d feature(s) mapped to background cut out of %d label(s) (%d left no area)",
        path.name,
        int(holes.sum()),
        len(np.unique(hit)),
        int((~keep[rows]).sum()),
    )


def _refuse_classes_without_areas(
    classes: np.ndarray, keep: np.ndarray, kinds: np.ndarray, path: Path
) -> None:
    """Refuse a class whose every feature is a line or a point: it would get no pixel.

    Roads or streams drawn as centre lines beside polygon classes are dropped one by one
    with a warning; when that empties a class, training goes on with a class it never
    sees (0 pixels in every split), which a warning in a long log does not stop.

    Args:
        classes: class per feature (None: unmapped, skipped).
        keep: per feature, whether it is (or, not read, may be) a polygon label.
        kinds: per feature, its geometry type in the file ("" for none).
        path: the label file, for the message.

    Raises:
        LabelError: names the class, what its features are and the fix.
    """
    named = np.array([c is not None for c in classes], dtype=bool)
    lost = sorted({str(c) for c in classes[named & ~keep]} - {str(c) for c in classes[keep]})
    for cls in lost:
        mine = kinds[named & (classes == cls)]
        if any("LineString" in k for k in mine):
            raise LabelError(
                f"every feature of class '{cls}' is a line or not a polygon ({len(mine)}): a "
                "mask needs areas; buffer the lines by half their width (QGIS Vector > "
                "Geoprocessing Tools > Buffer) or leave the class out of classes",
                path,
            )
        if any("Point" in k for k in mine):
            raise LabelError(
                f"every feature of class '{cls}' is a point or not a polygon ({len(mine)}): "
                "set [labels] point_box_m = <object width in metres> to label each as a "
                "square, or leave the class out of classes",
                path,
            )


def chip_areas(chips: gpd.GeoDataFrame) -> list[tuple[Any, BaseGeometry]] | None:
    """The areas chips cover, for ``read_labels(region, within=...)``: one box per scene.

    Stages after ``geotl chip`` (train's label budget and dropped objects, instance
    targets, evaluate's objects) need only the labels over their chips; a national layer
    read whole costs seconds and hundreds of MB in each. Each scene's chips' footprints
    (the index's EPSG:4326) give one box, which :func:`_read_within` puts, densified, into
    the labels' CRS. None (read the whole file) where footprints are not boxes one can
    trust in longitude/latitude: across the antimeridian or near a pole.

    Args:
        chips: rows of a chip index (``scene`` and footprint columns).
    """
    if chips.empty or chips.crs is None or "scene" not in chips.columns:
        return None
    areas: list[tuple[Any, BaseGeometry]] = []
    bounds = shapely.bounds(np.asarray(chips.geometry.values, dtype=object))
    scenes = chips["scene"].astype(str).to_numpy()
    for scene in dict.fromkeys(scenes.tolist()):
        x0, y0 = bounds[scenes == scene, :2].min(axis=0)
        x1, y1 = bounds[scenes == scene, 2:].max(axis=0)
        if not np.isfinite([x0, y0, x1, y1]).all():
            return None
        if chips.crs.is_geographic and not (x1 - x0 < 180.0 and -89.0 < y0 <= y1 < 89.0):
            return None
        areas.append((chips.crs, shapely.box(x0, y0, x1, y1)))
    return areas


def label_key(crs: Any, bounds: tuple[float, float, float, float]) -> tuple[str, float | None]:
    """Which labels a window in ``crs`` needs: the CRS, and in a geographic CRS a longitude.

    The longitude is the multiple of 90 degrees nearest the window's centre; labels moved
    within 180 degrees of it (``read_labels(region, crs, near_lon)``) lie where the window
    does, whether its file counts longitudes -180..180 or 0..360. Callers that keep labels
    per CRS keep them per key.

    >>> label_key("EPSG:4326", (179.98, -17.1, 180.02, -17.0))
    ('EPSG:4326', 180.0)
    >>> label_key("EPSG:32617", (0.0, 0.0, 10.0, 10.0))
    ('EPSG:32617', None)
    """
    c = CRS.from_user_input(crs)
    if not c.is_geographic:
        return str(crs), None
    return str(crs), 90.0 * round((bounds[0] + bounds[2]) / 2 / 90.0)


def shift_longitudes(labels: gpd.GeoDataFrame, centre_lon: float) -> gpd.GeoDataFrame:
    """Labels in a geographic CRS moved by whole turns to lie within 180 degrees of a longitude.

    A scene across the antimeridian may count longitudes past 180 (GDAL's warp to
    EPSG:4326 writes 179.9..180.1), while labels follow RFC 7946 (-180..180, an object on
    the line cut into two parts at 180 and -180): as read, the labels west of the line
    miss the scene and their pixels become background. Each part is moved on its own and
    the parts of an object joined again. Other CRSs are returned as they are.

    >>> from shapely.geometry import MultiPolygon, box
    >>> halves = MultiPolygon([box(179.9, 0, 180, 1), box(-180, 0, -179.9, 1)])
    >>> frame = gpd.GeoDataFrame(geometry=[halves, box(-179.5, 0, -179.4, 1)], crs="EPSG:4326")
    >>> [tuple(round(v, 1) for v in g.bounds) for g in shift_longitudes(frame, 180.0).geometry]
    [(179.9, 0.0, 180.1, 1.0), (180.5, 0.0, 180.6, 1.0)]
    """
    if labels.crs is None or not labels.crs.is_geographic or labels.empty:
        return labels
    geoms = np.asarray(labels.geometry.values, dtype=object).copy()
    bounds = shapely.bounds(geoms)
    lo, hi = centre_lon - 180.0, centre_lon + 180.0
    outside = np.flatnonzero((bounds[:, 0] < lo) | (bounds[:, 2] > hi))
    if not len(outside):
        return labels
    for i in outside:
        parts = shapely.get_parts(geoms[i])
        centre = shapely.bounds(parts)[:, [0, 2]].mean(axis=1)
        turns = np.round((centre_lon - centre) / 360.0)
        if not turns.any():
            continue  # a part out of the range but nearer where it is than a turn away
        moved = [
            shapely.transform(part, lambda xy, dx=360.0 * t: xy + np.array([dx, 0.0]))
            if t
            else part
            for part, t in zip(parts, turns, strict=True)
        ]
        geoms[i] = shapely.union_all(moved)  # the halves of an object meet again
    out = labels.copy()
    out["geometry"] = gpd.GeoSeries(geoms, index=labels.index, crs=labels.crs)
    return out


def _one_object_per_part(
    labels: gpd.GeoDataFrame, multipart: np.ndarray, n_features: int, path: Path
) -> gpd.GeoDataFrame:
    """Split the file's multi-part polygons into one label per part.

    ArcGIS's Dissolve and QGIS's "Collect geometries" write many separate objects (lakes,
    crowns, buildings) as one MultiPolygon feature. Read as one object, a detection region
    gets a single box around all of them (larger than any chip: ignored everywhere), an
    instances region one instance for disjoint shapes, and the label budget and object
    counts see one object. The halves of an object cut at the antimeridian (RFC 7946
    GeoJSON, geotl's own output reused as labels) stay one object.
    A polygon that only became multi-part when repaired (a bow-tie drawn as one object)
    stays one. Object ``j`` >= 1 of the feature at position ``i`` gets the id
    ``j * n_features + i``: after the file's last feature, so a file without multi-part
    features keeps its ids (feature positions), and from the feature alone, so a read of
    the scenes' part of the file (``within``) gives each object the id a whole read does.

    Args:
        labels: the kept labels (``label_id``, ``class``, ``geometry``).
        multipart: per row, whether the file's geometry was multi-part (a MultiPolygon, or a
            collection: KML's MultiGeometry of polygons and points).
        n_features: the number of features in the file (the first id free for parts).
        path: the label file, for the log line.
    """
    geographic = labels.crs is not None and labels.crs.is_geographic
    objects: list[list[Any]] = [
        _connected_parts(g, geographic) if split else [g]
        for g, split in zip(labels.geometry.values, multipart, strict=True)
    ]
    counts = np.array([len(o) for o in objects], dtype=np.int64)
    labels.attrs["n_split"] = int((counts > 1).sum())
    if (counts < 2).all():
        return labels
    rows = np.repeat(np.arange(len(labels)), counts)
    first = np.r_[True, rows[1:] != rows[:-1]]
    ids = labels["label_id"].to_numpy()[rows].copy()
    starts = np.flatnonzero(first)
    part = np.arange(len(rows)) - np.repeat(starts, counts)  # j: the object's place in its feature
    ids += part * n_features
    log.info(
        "%s: %d multi-part feature(s) read as %d separate objects (one per part)",
        path.name,
        int((counts > 1).sum()),
        int(counts[counts > 1].sum()),
    )
    out = gpd.GeoDataFrame(
        {
            "label_id": ids.astype("int64"),
            "class": pd.array(labels["class"].to_numpy()[rows], dtype=object),
        },
        geometry=gpd.GeoSeries([g for o in objects for g in o], crs=labels.crs),
        crs=labels.crs,
    )
    out.attrs["n_split"] = labels.attrs["n_split"]
    return out


def _connected_parts(geom: Any, geographic: bool) -> list[Any]:
    """The objects of a multi-part polygon: one per part, but one across the antimeridian.

    In a projected CRS, parts that touch at a corner stay apart, as the single polygons
    they came from did (a valid MultiPolygon's parts share no edge; those that did were
    merged by the repair). In a geographic CRS, longitude/latitude cut objects: one on the
    antimeridian into a part that reaches 180 and one that reaches -180 (joined where they
    meet there), one round a pole into parts that touch at a point (joined).

    >>> from shapely.geometry import MultiPolygon, box
    >>> [g.geom_type for g in _connected_parts(MultiPolygon([box(0, 0, 1, 1), box(1, 1, 2, 2)]), False)]
    ['Polygon', 'Polygon']
    >>> len(_connected_parts(MultiPolygon([box(179, 0, 180, 1), box(-180, 0, -179, 1)]), True))
    1
    >>> len(_connected_parts(MultiPolygon([box(0, 0, 1, 1), box(1, 1, 2, 2)]), True))
    1
    """
    parts = shapely.get_parts(geom)
    if len(parts) < 2:
        return list(parts)
    pairs: list[tuple[int, int]] = []
    if geographic:
        # longitude/latitude cut an object round a pole into parts that touch at a point
        left, right = shapely.STRtree(parts).query(parts, predicate="intersects")
        pairs += [(int(a), int(b)) for a, b in zip(left, right, strict=True) if a < b]
        east = np.flatnonzero(shapely.bounds(parts)[:, 2] >= 180.0 - 1e-9)
        west = np.flatnonzero(shapely.bounds(parts)[:, 0] <= -180.0 + 1e-9)
        if len(east) and len(west):
            moved = shapely.transform(parts[west], lambda xy: xy + np.array([360.0, 0.0]))
            for w, part in zip(west.tolist(), moved, strict=True):
                pairs += [(int(e), w) for e in east if shapely.intersects(parts[e], part)]
    if not pairs:
        return list(parts)
    a, b = np.array(pairs, dtype=np.int64).T
    graph = coo_matrix((np.ones(len(a)), (a, b)), shape=(len(parts), len(parts)))
    _, component = connected_components(graph, directed=False)
    members: dict[int, list[int]] = {}
    for i, c in enumerate(component.tolist()):
        members.setdefault(c, []).append(i)
    return [
        parts[m[0]] if len(m) == 1 else shapely.multipolygons(parts[m]) for m in members.values()
    ]


def _points_as_boxes(region: Region, frame: gpd.GeoDataFrame, path: Path) -> gpd.GeoDataFrame:
    """Points -> square boxes of ``[labels] point_box_m``; points or lines refused for detection.

    The squares are drawn in metres (in the local UTM zone when the file's CRS is
    geographic), centred on the points.

    Raises:
        LabelError: a detection region's labels hold points without ``point_box_m``, or lines.
    """
    assert region.labels is not None
    kinds = frame.geometry.geom_type.fillna("")
    points = kinds.isin(["Point", "MultiPoint"]).to_numpy()
    lines = kinds.str.contains("LineString").to_numpy()
    size = region.labels.point_box_m
    if region.task == "detection" and lines.any():
        raise LabelError(
            f"{int(lines.sum())} label(s) are lines: detection needs one polygon (box) per "
            "object; draw boxes around the objects",
            path,
        )
    if not points.any():
        return frame
    if size is None:
        if region.task != "detection":
            return frame  # dropped as non-polygons, with a warning
        raise LabelError(
            f"{int(points.sum())} label(s) are points: detection needs a box per object; set "
            "[labels] point_box_m = <box width in metres> to draw a square box around each point",
            path,
        )
    sub = frame.loc[points, ["geometry"]]
    metric = sub.to_crs(sub.estimate_utm_crs()) if frame.crs.is_geographic else sub
    factor = 1.0 if frame.crs.is_geographic else frame.crs.axis_info[0].unit_conversion_factor
    squares = metric.geometry.buffer(size / 2 / factor, cap_style="square")
    if frame.crs.is_geographic:
        squares = squares.to_crs(frame.crs)
    out = frame.copy()
    out.loc[points, "geometry"] = squares.to_numpy()
    log.info("labels: %d point(s) drawn as %g m boxes ([labels] point_box_m)", points.sum(), size)
    return out


def read_areas(path: Path, what: str) -> gpd.GeoSeries:
    """Read area polygons (``complete_within``, ``test_within``...) as valid polygons.

    Raises:
        LabelError: unreadable, empty, without CRS, or without polygons.
    """
    frame = read_vector(path, what)
    geoms, _, _ = _polygonal(frame.geometry)
    kept = [g for g in geoms if g is not None]
    if not kept:
        raise LabelError(f"has no polygons: {what} must name polygon areas", path)
    return gpd.GeoSeries(kept, crs=frame.crs)


def content_sha256(path: Path) -> str:
    """sha256 of what a vector file holds: its data layers' CRS, fields, geometries, values.

    Not of its bytes: a GeoPackage keeps the time of its last write, a Shapefile's ``.dbf``
    the day, so the same features written again (exported anew from QGIS, a script that
    rewrites its area file) give other bytes but the same digest. QGIS styles
    (``layer_styles``), tables without geometry and layer names (a Shapefile's is its file
    name) are not counted; feature order and every value are. A file OGR cannot read is digested by its
    bytes (what reads it later reports the fault).

    Args:
        path: any OGR vector file, or GeoParquet.
    """
    digest = hashlib.sha256()

    def add(*parts: Any) -> None:
        for part in parts:
            data = part if isinstance(part, bytes) else repr(part).encode()
            digest.update(len(data).to_bytes(8, "little") + data)

    try:
        if path.suffix.lower() == ".parquet":
            frame = gpd.read_parquet(path)
            values = frame.drop(columns=frame.geometry.name)
            add(str(frame.crs), list(values.columns), values.to_numpy().tolist())
            add(*(g or b"" for g in frame.geometry.to_wkb()))
            return digest.hexdigest()
        layers = sorted(
            str(name)
            for name, kind in pyogrio.list_layers(path)
            if kind is not None and name != "layer_styles"
        )
        for layer in layers:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                meta, _, geoms, fields = pyogrio.raw.read(
                    path, layer=layer, datetime_as_string=True
                )
            add(meta.get("crs"), list(meta.get("fields", [])), meta.get("geometry_type"))
            add(*(g or b"" for g in geoms), *(np.asarray(f).tolist() for f in fields))
    except Exception:  # unreadable here: the reader that needs it says what is wrong
        digest = hashlib.sha256(path.read_bytes())
    return digest.hexdigest()
