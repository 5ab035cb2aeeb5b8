"""The chips an evaluation runs on: found or cut, and a split of them loaded."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from geotl.config import Region
from geotl.errors import GeotlInputError

if TYPE_CHECKING:
    import pandas as pd

    from geotl.train.data import ChipData

__all__ = ["find_chips", "load_split", "owned_pixels", "warn_other_resolution"]

log = logging.getLogger(__name__)


def find_chips(model_dir: Path, region: Region, chips_dir: Path | None, tmp: Path) -> Path:
    """The region's chips: given, else the model's ``chips/``, else cut into ``tmp``."""
    from geotl.chips import chip_region, read_chip_index
    from geotl.chips.assemble import stale_reason
    from geotl.train import resolve_chips_dir

    if chips_dir is not None:
        return resolve_chips_dir(region, chips_dir, chips_dir, False)
    for cand in (model_dir / "chips", model_dir / "chips" / region.name):
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


def warn_other_resolution(card: Any, region: Region, cdir: Path, split: str) -> None:
    """Say so when the chips scored are at another ground resolution than the model's.

    The network then sees its objects at another scale than it learnt them, which predict
    refuses (or, with ``--resample``, resamples away); evaluate scores the chips as they
    are, so the scores are not those predict would give. A warning, not a refusal: a model
    trained on regions of several resolutions records the first region's.
    """
    from geotl.chips import read_chip_index
    from geotl.predict.scene import RESOLUTION_TOLERANCE

    rows = read_chip_index(cdir).split(split)
    if not len(rows) or not card.resolution_m:
        return
    chips_m = float(np.median(rows["resolution_m"]))
    if abs(chips_m - card.resolution_m) > RESOLUTION_TOLERANCE * card.resolution_m:
        log.warning(
            "%s: the %s chips are at %.4g m, the model at %.4g m: it is scored at a scale it "
            "did not learn, and predict would refuse this imagery without --resample; resample "
            "the scenes to %.4g m (gdalwarp -tr), or adapt the model to this region (geotl "
            "train REGION --base model:MODEL_DIR)",
            region.path,
            split,
            chips_m,
            card.resolution_m,
            card.resolution_m,
        )


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
    return data


def owned_pixels(rows: pd.DataFrame) -> list[np.ndarray]:
    """Per chip, the pixels no earlier chip of ``rows`` in the same scene holds.

    A scene's last row and column of chips are shifted back to end at its edge, so they
    overlap their neighbours (by up to most of a chip). Scoring every chip whole would
    count the overlapped ground, its pixels and its objects, two or four times and let the
    bootstrap treat the copies as independent samples; each pixel is scored once, in the
    first chip (in ``rows``' order) that holds it.

    Args:
        rows: chip index rows (``scene``, ``row_off``, ``col_off``, ``height``, ``width``).

    Returns:
        One boolean ``(height, width)`` array per row, True where the chip owns the pixel.

    >>> import pandas as pd
    >>> rows = pd.DataFrame({"scene": ["a", "a", "b"], "row_off": [0, 0, 0],
    ...     "col_off": [0, 2, 0], "height": [4, 4, 4], "width": [4, 4, 4]})
    >>> [int(m.sum()) for m in owned_pixels(rows)]
    [16, 8, 16]
    """
    scene = rows["scene"].astype(str).to_numpy()
    r0 = rows["row_off"].to_numpy(dtype=np.int64)
    c0 = rows["col_off"].to_numpy(dtype=np.int64)
    r1 = r0 + rows["height"].to_numpy(dtype=np.int64)
    c1 = c0 + rows["width"].to_numpy(dtype=np.int64)
    out: list[np.ndarray] = []
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
        out.append(mask)
    return out
