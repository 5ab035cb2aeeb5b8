"""Helpers of the monitor tests: region files and passes arriving in a folder."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

NAIP_BANDS = ["red", "green", "blue", "nir"]
PERU_BANDS = ["swir16", "nir", "red", "green"]


def write_region(
    folder: Path,
    name: str,
    imagery: list[Path],
    bands: list[str],
    classes: list[str],
    monitor: str,
    *,
    datetime_regex: str | None = None,
    min_area_m2: float | None = 0.0,
) -> Path:
    """Write a region TOML into ``folder`` and return its path (``min_area_m2=None``: no
    ``[predict]`` table)."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = [
        f"name = {json.dumps(name)}",
        f"classes = {json.dumps(classes)}",
        "",
        "[imagery]",
        f"paths = {json.dumps([str(p) for p in imagery])}",
        f"bands = {json.dumps(bands)}",
    ]
    if datetime_regex:
        lines.append(f"datetime_regex = '{datetime_regex}'")
    if min_area_m2 is not None:
        lines += ["", "[predict]", f"min_area_m2 = {min_area_m2}"]
    lines += ["", "[monitor]", monitor, ""]
    text = "\n".join(lines)
    path = folder / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return path


NAIP_REGEX = r"_(\d{8})\.tif$"
PERU_REGEX = r"^(\d{4})\.tif$"


def peru_folder_region(
    folder: Path, scenes: list[Path], *, min_area_m2: float | None = 20000.0
) -> Path:
    """The Peru clearing region watching ``folder/incoming`` (passes named by their year)."""
    return write_region(
        folder,
        "peru",
        scenes,
        PERU_BANDS,
        ["clearing"],
        'source = "folder"\npaths = ["incoming/*.tif"]',
        datetime_regex=PERU_REGEX,
        min_area_m2=min_area_m2,
    )


def deliver(region_file: Path, scenes: list[Path]) -> None:
    """Make passes arrive in the region's ``incoming/`` folder (symlinks to the real data)."""
    incoming = region_file.parent / "incoming"
    incoming.mkdir(exist_ok=True)
    for scene in scenes:
        target = incoming / scene.name
        if not target.exists():
            os.symlink(scene, target)


def copy_in(region_file: Path, scene: Path, name: str | None = None) -> Path:
    incoming = region_file.parent / "incoming"
    incoming.mkdir(exist_ok=True)
    target = incoming / (name or scene.name)
    shutil.copyfile(scene, target)
    return target
