"""Chips: grid windows, label rasterisation, spatial split and the chip index."""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from geotl.chips.index import ChipIndex, read_chip_index, write_chip_index
    from geotl.chips.pipeline import ChipSummary, chip_region

__all__ = ["ChipIndex", "ChipSummary", "chip_region", "read_chip_index", "write_chip_index"]

_FROM = {"ChipIndex": "index", "read_chip_index": "index", "write_chip_index": "index"}


def __getattr__(name: str) -> Any:
    # imported on first use: prediction needs geotl.chips.labels alone, not geopandas
    if name in __all__:
        import importlib

        return getattr(importlib.import_module(f"geotl.chips.{_FROM.get(name, 'pipeline')}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
