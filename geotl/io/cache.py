"""Geotl's cache folder: imported weights, model downloads and ONNX exports."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir"]


def cache_dir() -> Path:
    """Geotl's cache folder (``$GEOTL_CACHE_DIR``, else ``$XDG_CACHE_HOME/geotl``)."""
    env = os.environ.get("GEOTL_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "geotl"
