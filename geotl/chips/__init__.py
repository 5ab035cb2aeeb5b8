"""Chips: grid windows, label rasterisation, spatial split and the chip index."""

from geotl.chips.index import ChipIndex, read_chip_index, write_chip_index
from geotl.chips.pipeline import ChipSummary, chip_region

__all__ = ["ChipIndex", "ChipSummary", "chip_region", "read_chip_index", "write_chip_index"]
