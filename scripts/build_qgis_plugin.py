"""Build the QGIS plugin zip that *Plugins > Install from ZIP* accepts (``make qgis-plugin``).

The zip holds ``geotl_processing/`` (the folder QGIS installs) and a ``build.json`` that
records this repository, so the plugin finds ``.venv/bin/geotl`` when geotl is not on PATH.
Only the standard library: it runs on any Python 3.
"""

from __future__ import annotations

import argparse
import json
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PLUGIN = REPO / "qgis" / "geotl_processing"
REQUIRED = ("__init__.py", "metadata.txt", "icon.svg", "LICENSE")


def build(out: Path) -> Path:
    """Write the plugin zip to ``out`` (atomically) and return it."""
    missing = [name for name in REQUIRED if not (PLUGIN / name).is_file()]
    if missing:
        raise SystemExit(f"{PLUGIN}: missing {', '.join(missing)}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".tmp-{out.name}")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(PLUGIN.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                zf.write(path, f"{PLUGIN.name}/{path.relative_to(PLUGIN).as_posix()}")
        zf.writestr(f"{PLUGIN.name}/build.json", json.dumps({"repository": str(REPO)}) + "\n")
    tmp.replace(out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "dist" / "geotl_processing.zip")
    print(build(parser.parse_args().out))


if __name__ == "__main__":
    main()
