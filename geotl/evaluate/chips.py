"""The chips an evaluation runs on: found or cut, and a split of them loaded."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from geotl.config import Region
from geotl.errors import GeotlInputError

if TYPE_CHECKING:
    import pandas as pd

    from geotl.chips.index import ChipIndex
    from geotl.train.data import ChipData

__all__ = [
    "ScoredClasses",
    "check_test_split",
    "chip_grid_units",
    "find_chips",
    "load_split",
    "other_pixel_sides",
    "owned_pixels",
    "scored_classes",
    "warn_other_resolution",
    "warn_other_units",
]

log = logging.getLogger(__name__)


def find_chips(model_dir: Path, region: Region, chips_dir: Path | None, tmp: Path) -> Path:
    """The region's chips: given, else the model's ``chips/``, else cut into ``tmp``.

    The model's chips are those ``geotl train`` keeps in ``MODEL_DIR/chips`` and those
    ``geotl run`` keeps beside ``DIR/model`` in ``DIR/chips``: found there, a large region
    is not chipped again (minutes) to score the model the run just made.
    """
    from geotl.chips import chip_region, read_chip_index
    from geotl.chips.assemble import stale_reason
    from geotl.train import resolve_chips_dir

    if chips_dir is not None:
        return resolve_chips_dir(region, chips_dir, chips_dir, False)
    beside = model_dir.resolve().parent / "chips"
    for cand in (model_dir / "chips", model_dir / "chips" / region.name, beside):
        if not (cand / "chipset.json").is_file():
            continue
        meta = read_chip_index(cand).meta
        if meta.get("region") != region.name:
            continue
        if (why := stale_reason(region, meta)) is None:
            return cand
        # the masks (or split) of those chips follow the old files: fresh chips instead;
        # check_same_split then refuses a split that is not the one the model trained on
        log.warning("the chips in %s are not used: %s; chipping %s again", cand, why, region.name)
        break
    log.info(
        "chipping %s for evaluation (the split is a pure function of the region file)", region.name
    )
    chip_region(region, tmp / "chips")
    return tmp / "chips"


def check_test_split(region: Region) -> None:
    """Refuse a region whose split can hold no test chip, before chipping or training.

    Raises:
        GeotlInputError: ``[split] test_fraction = 0`` and no ``test_within``.
    """
    if region.split.test_fraction == 0 and not region.split.test_within:
        raise GeotlInputError(
            "[split] test_fraction = 0 and no test_within: the region has no test chips to "
            "score; set test_fraction (e.g. 0.15) or test_within, the areas to evaluate on",
            region.path,
        )


def check_same_split(card: Any, region: Region, cdir: Path) -> None:
    """A region the model was trained on is scored on the split it was trained with.

    An edited ``[split]`` (another seed, fraction or ``test_within``), or chips cut with
    other settings, would put training ground in the test chips and inflate the scores.

    Raises:
        GeotlInputError: the chips' split is not the one the card records for the region.
    """
    from geotl.chips import read_chip_index

    trained = {r.name: r.split_sha for r in card.regions if r.split_sha}
    if region.name not in trained:
        return  # another region (transfer), or a card from before the record
    now = read_chip_index(cdir).split_sha()
    if now != trained[region.name]:
        raise GeotlInputError(
            f"the split of region '{region.name}' is not the one the model was trained on "
            f"(split {now}, trained on {trained[region.name]}): its test chips may hold "
            "training ground; evaluate with the region file (and chips) the model was trained "
            "with, or train again",
            region.path,
        )


def other_pixel_sides(
    card: Any, index: ChipIndex, rows: Any
) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """The model's and the chips' pixel sides (metres) when they differ, else None.

    Each side is compared on its own (:func:`~geotl.predict.scene.other_pixel_size`), as
    predict compares a scene's: a degree grid at 51 N has a 10 m mean but 7.7 x 12.3 m
    pixels. A card from before geotl recorded the pixels' shape (``pixel_aspect`` None) is
    given the chips' shape, so only the mean is compared. Shared by evaluate's warning
    and export's calibration check, so both say the same of the same chips.
    """
    from geotl.predict.scene import model_pixel_size_m, other_pixel_size

    chips_xy = index.pixel_size_m(rows)
    if chips_xy is None or not card.resolution_m:
        return None
    aspect = card.pixel_aspect if card.pixel_aspect is not None else chips_xy[0] / chips_xy[1]
    model_xy = model_pixel_size_m(card.resolution_m, aspect)
    if other_pixel_size(model_xy, chips_xy) is None:
        return None
    return model_xy, chips_xy


def warn_other_resolution(card: Any, region: Region, cdir: Path, split: str) -> None:
    """Say so when the chips scored have pixels of another ground size or shape than the model's.

    The network then sees its objects at another scale, or squeezed on one axis (a model of
    UTM pixels scored on a degree grid, or the reverse), which predict refuses (or, with
    ``--resample``, resamples away); evaluate scores the chips as they are, so the scores
    are not those predict would give. A warning, not a refusal: a model trained on regions
    of several resolutions records the first region's.
    """
    from geotl.chips import read_chip_index
    from geotl.predict.scene import RESOLUTION_TOLERANCE, pixel_sides, shape_fix, warp_fix

    index = read_chip_index(cdir)
    rows = index.split(split)
    sides = other_pixel_sides(card, index, rows)
    if sides is None:
        return
    model_xy, chips_xy = sides
    chips_aspect = chips_xy[0] / chips_xy[1]
    aspect = model_xy[0] / model_xy[1]
    trained = [r.name for r in card.regions]
    if region.name in trained:
        # one of its own training regions: the model learnt these pixels, but its card records
        # the first region's, which predict holds every scene to
        log.warning(
            "%s: the %s chips' pixels are %s on the ground, the model card's %s (%s's, the "
            "first region it was trained on): predict would refuse this region's imagery "
            "without --resample; train on regions of one pixel size and shape (gdalwarp the "
            "scenes to one grid), or this region first",
            region.path,
            split,
            pixel_sides(chips_xy),
            pixel_sides(model_xy),
            trained[0],
        )
        return
    if abs(chips_aspect - aspect) <= RESOLUTION_TOLERANCE * aspect:
        seen = "at a scale it did not learn"
        # -tr in the scenes' own units (the chips are cut on their grid): 0.1 typed on a
        # grid in US survey feet gives 3 cm pixels
        crs_xy, crs_units = chip_grid_units(index, rows)
        fix = warp_fix(
            chips_xy, model_xy, crs_xy, crs_units, f"the scenes to {pixel_sides(model_xy)}"
        )
    else:
        seen = "squeezed or stretched on one axis, a shape it did not learn"
        fix = shape_fix(model_xy, index.utm_epsg(rows), "the scenes to their")
    log.warning(
        "%s: the %s chips' pixels are %s on the ground, the model's %s: it is scored on "
        "ground %s, and predict would refuse this imagery without --resample; %s, or adapt "
        "the model to this region (geotl train REGION --base model:MODEL_DIR)",
        region.path,
        split,
        pixel_sides(chips_xy),
        pixel_sides(model_xy),
        seen,
        fix,
    )


def chip_grid_units(index: ChipIndex, rows: Any) -> tuple[tuple[float, float] | None, str]:
    """The chips' pixel sides in their CRS's units, and the unit (the first chip's grid).

    Chips are cut on their scene's grid as it is, so these are the scenes' own: what a
    ``gdalwarp -tr`` of the scenes is typed in.
    """
    import rasterio

    from geotl.io.rasters import pixel_size_crs
    from geotl.predict.scene import crs_units

    if not len(rows):
        return None, "metre"
    with rasterio.open(index.path / str(rows["image"].iloc[0])) as ds:
        return pixel_size_crs(ds.transform), crs_units(ds.crs)


def load_split(card: Any, region: Region, cdir: Path, split: str) -> ChipData:
    """The ``split`` chips of ``cdir`` in memory, bands and classes in the model's order.

    Raises:
        GeotlInputError: no chips in the split.
    """
    from geotl.train import load_region_chips

    region_for_classes = region.model_copy(update={"classes": list(card.classes)})
    data = load_region_chips(region_for_classes, cdir, split, list(card.bands))
    if not len(data):
        raise GeotlInputError(
            f"no {split} chips in {cdir}: lower block_size_m or raise test_fraction", region.path
        )
    if split == "test":  # a region's imagery in other units than the model's (not val in training)
        warn_other_units(card, data, region)
    return data


def warn_other_units(card: Any, data: ChipData, region: Region) -> str | None:
    """Say when the chips' values look to be in other units than the model's training chips.

    The rule predict applies to a scene (:mod:`geotl.predict.radiometry`), on every valid
    pixel of the chips: a model scored on 0-1 reflectance it saw as reflectance x 10000, or
    on Sentinel-2 passes 1000 higher, scores near zero and nothing else says why.
    """
    from geotl.predict.radiometry import warn_other_radiometry
    from geotl.train.data import band_sums

    sums = band_sums(data)
    if not sums.count:
        return None
    return warn_other_radiometry(
        (sums.normalisation(), sums.count),
        card.normalisation,
        card.bands,
        region.path,
        doing="scoring them as they are",
        whose="the test chips'",
    )


@dataclass(frozen=True)
class ScoredClasses:
    """The model's classes that a region's labels can score, and where the others go.

    A region may label fewer classes than the model predicts (a tree-and-snag model on a
    region where only trees were drawn). Its labels say nothing about the others, so they
    have no score there, and their predictions count as what :func:`load_split`'s truth
    calls them: background, "none of the region's classes". Where the region labels a tree,
    a snag predicted there is a tree missed (as predict's output would show it: no tree);
    on the region's background it is right for every scored class and no evidence either
    way about snags.
    """

    names: list[str]  # the scored classes, in the model's order
    lut: np.ndarray  # model class index (0: background) -> scored class index (0: the others)
    not_in_region: list[str]  # the model's classes the region does not label

    def report(self) -> dict[str, Any]:
        """The metrics JSON's record of the classes left out (nothing when none was)."""
        if not self.not_in_region:
            return {}
        return {
            "classes_not_in_region": self.not_in_region,
            "classes_not_in_region_note": (
                f"not scored: the region labels only {', '.join(self.names)}, so its labels "
                "say nothing about these; their predictions count as background (a miss where "
                "the region labels one of its classes)"
            ),
        }


def scored_classes(card: Any, region: Region) -> ScoredClasses:
    """The model's classes ``region`` labels; warns once when it labels fewer.

    The caller refuses a region with a class the model lacks, so the region's classes are
    a subset of the card's; the order is the card's, so a region of the same classes is
    scored exactly as before.

    >>> from types import SimpleNamespace as NS
    >>> s = scored_classes(NS(classes=["tree", "snag"]), NS(classes=["tree"], path="r.toml"))
    >>> s.names, s.lut.tolist(), s.not_in_region
    (['tree'], [0, 1, 0], ['snag'])
    """
    names = [c for c in card.classes if c in region.classes]
    others = [c for c in card.classes if c not in region.classes]
    lut = np.zeros(len(card.classes) + 1, dtype=np.int64)
    for k, name in enumerate(card.classes, start=1):
        lut[k] = names.index(name) + 1 if name in names else 0
    if others:
        log.warning(
            "%s: the region does not label the model's class(es) %s: they are not scored, and "
            "their predictions count as background (a miss where the region labels %s)",
            region.path,
            ", ".join(others),
            ", ".join(names),
        )
    return ScoredClasses(names=names, lut=lut, not_in_region=others)


def owned_pixels(
    rows: pd.DataFrame, masks: np.ndarray | None = None, datetime_regex: str | None = None
) -> list[np.ndarray]:
    """Per chip, the pixels whose ground no earlier chip of ``rows`` holds.

    A scene's last row and column of chips are shifted back to end at its edge, so they
    overlap their neighbours (by up to most of a chip). Scoring every chip whole would
    count the overlapped ground, its pixels and its objects, two or four times and let the
    bootstrap treat the copies as independent samples; each pixel is scored once, in the
    first chip (in ``rows``' order) that holds it.

    Tiles of one acquisition hold the same ground twice as well: adjacent Sentinel-2 tiles
    share 10 km, and across a UTM zone boundary the two tiles are even in different CRSs.
    When ``rows`` carries the chips' footprints (a chip index: ``geometry`` and
    ``scene_crs``), a pixel whose centre lies on ground an earlier chip of another tile of
    its acquisition scored is left out too. Tiles are of one acquisition when their
    acquisition times are equal and carry a time of day (:func:`~geotl.predict.tiles.
    one_acquisition`, as predict keeps their objects once): passes of other dates over the
    same ground are other imagery, each scored. With ``masks`` (the chips' label masks)
    "scored" means labelled there (not :data:`~geotl.chips.labels.IGNORE`), so ground one
    tile lacks (its nodata collar) is scored in the other; without, the earlier chip's whole
    footprint counts.

    Args:
        rows: chip index rows (``scene``, ``row_off``, ``col_off``, ``height``, ``width``,
            and optionally ``geometry`` + ``scene_crs``).
        masks: optional ``(N, H, W)`` label masks of the same chips.
        datetime_regex: the region's ``[imagery] datetime_regex`` (the scenes' times).

    Returns:
        One boolean ``(height, width)`` array per row, True where the chip owns the pixel.

    >>> import pandas as pd
    >>> rows = pd.DataFrame({"scene": ["a", "a", "b"], "row_off": [0, 0, 0],
    ...     "col_off": [0, 2, 0], "height": [4, 4, 4], "width": [4, 4, 4]})
    >>> [int(m.sum()) for m in owned_pixels(rows)]
    [16, 8, 16]
    """
    from geotl.chips.labels import IGNORE

    scene = rows["scene"].astype(str).to_numpy()
    r0 = rows["row_off"].to_numpy(dtype=np.int64)
    c0 = rows["col_off"].to_numpy(dtype=np.int64)
    r1 = r0 + rows["height"].to_numpy(dtype=np.int64)
    c1 = c0 + rows["width"].to_numpy(dtype=np.int64)
    across = _OtherScenes.of(rows, datetime_regex)
    out: list[np.ndarray] = []
    held: list[np.ndarray] = []  # per chip, the owned pixels it scores: another scene's skip them
    for i in range(len(rows)):
        mask = np.ones((int(r1[i] - r0[i]), int(c1[i] - c0[i])), dtype=bool)
        earlier = np.flatnonzero(
            (scene[:i] == scene[i])
            & (r0[:i] < r1[i])
            & (r1[:i] > r0[i])
            & (c0[:i] < c1[i])
            & (c1[:i] > c0[i])
        )
        for j in earlier.tolist():
            mask[
                max(r0[j], r0[i]) - r0[i] : min(r1[j], r1[i]) - r0[i],
                max(c0[j], c0[i]) - c0[i] : min(c1[j], c1[i]) - c0[i],
            ] = False
        if across is not None:
            across.leave_out(i, mask, held)
            held.append(mask if masks is None else mask & (masks[i] != IGNORE))
        out.append(mask)
    return out


@dataclass
class _OtherScenes:
    """The chips' grids in their own CRSs, to find ground tiles of one acquisition share."""

    files: np.ndarray  # per chip, its scene
    acquisitions: np.ndarray  # per chip, its acquisition (-1 - scene: shared with no other)
    footprints: np.ndarray  # shapely geometries in ``crs``
    tree: Any  # shapely.STRtree of ``footprints``
    crs: Any
    scene_crs: list[Any]
    shapes: list[tuple[int, int]]
    _bounds: dict[int, tuple[float, float, float, float]] = field(default_factory=dict)
    _transformers: dict[tuple[str, str], Any] = field(default_factory=dict)

    @classmethod
    def of(cls, rows: pd.DataFrame, datetime_regex: str | None) -> _OtherScenes | None:
        """None when ``rows`` hold no two tiles of one acquisition or carry no footprints."""
        import geopandas as gpd
        import shapely
        from pyproj import CRS

        from geotl.io.dates import acquired_text, read_acquired
        from geotl.predict.tiles import one_acquisition

        if not isinstance(rows, gpd.GeoDataFrame) or "scene_crs" not in rows or rows.crs is None:
            return None
        names = list(dict.fromkeys(rows["scene"].astype(str)))
        if len(names) < 2:
            return None
        times = [acquired_text(read_acquired(n, None, datetime_regex)) for n in names]
        group = {names[i]: k for k, g in enumerate(one_acquisition(times)) for i in g}
        if not group:
            return None
        files = rows["scene"].astype(str).to_numpy()
        acquisitions = np.array([group.get(n, -1 - names.index(n)) for n in files])
        by_label: dict[str, Any] = {}
        crs = [by_label.setdefault(c, CRS.from_user_input(c)) for c in rows["scene_crs"]]
        shapes = list(
            zip(
                rows["height"].to_numpy(dtype=np.int64).tolist(),
                rows["width"].to_numpy(dtype=np.int64).tolist(),
                strict=True,
            )
        )
        footprints = np.asarray(rows.geometry.values)
        tree = shapely.STRtree(footprints)
        return cls(files, acquisitions, footprints, tree, rows.crs, crs, shapes)

    def leave_out(self, i: int, mask: np.ndarray, held: list[np.ndarray]) -> None:
        """Clear chip ``i``'s pixels whose centres fall on earlier chips' ``held`` pixels.

        Only chips of the acquisition's other tiles are looked at (``held[j]``: chip j's
        pixels that count as its ground); a chip's own scene is handled by row and column.
        """
        near = self.tree.query(self.footprints[i], predicate="intersects").tolist()
        others = [
            j
            for j in sorted(near)
            if j < i
            and self.acquisitions[j] == self.acquisitions[i]
            and self.files[j] != self.files[i]
            and held[j].any()
        ]
        if not others:
            return
        h, w = self.shapes[i]
        left, bottom, right, top = self._native_bounds(i)
        cols, rws = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
        x = left + cols * (right - left) / w
        y = top - rws * (top - bottom) / h
        for j in others:
            hj, wj = self.shapes[j]
            lj, bj, rj, tj = self._native_bounds(j)
            xj, yj = self._transformer(i, j).transform(x, y)
            cj = np.floor((np.asarray(xj) - lj) / (rj - lj) * wj).astype(np.int64)
            rj_ = np.floor((tj - np.asarray(yj)) / (tj - bj) * hj).astype(np.int64)
            inside = (cj >= 0) & (cj < wj) & (rj_ >= 0) & (rj_ < hj)
            on = np.zeros_like(inside)
            on[inside] = held[j][rj_[inside], cj[inside]]
            mask[on] = False

    def _native_bounds(self, i: int) -> tuple[float, float, float, float]:
        """Chip ``i``'s box in its scene's CRS (its footprint's corners are exact vertices)."""
        if i not in self._bounds:
            import geopandas as gpd

            g = gpd.GeoSeries([self.footprints[i]], crs=self.crs).to_crs(self.scene_crs[i])
            b = g.total_bounds
            self._bounds[i] = (float(b[0]), float(b[1]), float(b[2]), float(b[3]))
        return self._bounds[i]

    def _transformer(self, i: int, j: int) -> Any:
        from pyproj import Transformer

        key = (self.scene_crs[i].to_wkt(), self.scene_crs[j].to_wkt())
        if key not in self._transformers:
            self._transformers[key] = Transformer.from_crs(
                self.scene_crs[i], self.scene_crs[j], always_xy=True
            )
        return self._transformers[key]
