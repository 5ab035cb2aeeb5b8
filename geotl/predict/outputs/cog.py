"""``probabilities``: the blended class probabilities as a Cloud-Optimised GeoTIFF.

Unlike the other formats this one is not written from the detections: the stream writes
the probabilities window by window into a temporary GeoTIFF while it predicts, and
:func:`write_cog` turns that file into a COG (rio-cogeo, deflate, 512 px tiles).
"""

from __future__ import annotations

from pathlib import Path

from geotl.io.atomic import atomic_path

__all__ = ["write_cog"]


def write_cog(src: Path, dst: Path) -> None:
    """Copy the GeoTIFF ``src`` to ``dst`` as a COG (atomically)."""
    from rio_cogeo.cogeo import cog_translate
    from rio_cogeo.profiles import cog_profiles

    profile = cog_profiles.get("deflate")
    profile.update(blockxsize=512, blockysize=512)
    with atomic_path(dst) as tmp:
        cog_translate(
            str(src), str(tmp), profile, quiet=True, use_cog_driver=False, in_memory=False
        )
