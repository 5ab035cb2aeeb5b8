"""The chips an evaluation runs on: found or cut, and a split of them loaded."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from geotl.config import Region
from geotl.errors import GeotlInputError

if TYPE_CHECKING:
    from geotl.train.data import ChipData

__all__ = ["find_chips", "load_split"]

log = logging.getLogger(__name__)


def find_chips(model_dir: Path, region: Region, chips_dir: Path | None, tmp: Path) -> Path:
    """The region's chips: given, else the model's ``chips/``, else cut into ``tmp``."""
    from geotl.chips import chip_region, read_chip_index
    from geotl.train import resolve_chips_dir

    if chips_dir is not None:
        return resolve_chips_dir(region, chips_dir, chips_dir, False)
    for cand in (model_dir / "chips", model_dir / "chips" / region.name):
        if (cand / "chipset.json").is_file() and read_chip_index(cand).meta.get(
            "region"
        ) == region.name:
            return cand
    log.info(
        "chipping %s for evaluation (the split is a pure function of the region file)", region.name
    )
    chip_region(region, tmp / "chips")
    return tmp / "chips"


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
