"""The README's region-file reference must stay a valid region (keys and types)."""

import re
import tomllib
from pathlib import Path

from geotl.config import Region

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_region_reference_validates() -> None:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Region file", 1)[1]
    block = re.search(r"```toml\n(.*?)```", section, re.S)
    assert block is not None
    raw = tomllib.loads(block.group(1))
    region = Region.model_validate({**raw, "path": README})
    assert region.name == "harvard-forest"
    assert region.monitor is not None and region.monitor.source == "folder"
