"""Which geotl this is: its release, and a digest of the code it runs.

The release (``__version__``) changes only when a release is cut; a team that installs
geotl from a checkout runs many builds under one release. A coordinator and its cluster
workers must run the same code (a worker with last month's vectoriser would write other
polygons into the same output file), so the cluster compares the digest of the package's
Python sources as well: the same commit gives the same digest, whether installed from a
wheel or editable, on any machine.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

__all__ = ["code_digest"]

_PACKAGE = Path(__file__).resolve().parent


@lru_cache(maxsize=1)
def code_digest() -> str:
    """sha256 (first 12 hex digits) of the package's ``.py`` files, paths and contents.

    About 10 ms, once per process.
    """
    h = hashlib.sha256()
    for path in sorted(_PACKAGE.rglob("*.py")):
        rel = path.relative_to(_PACKAGE).as_posix()
        if "__pycache__" in rel:
            continue
        h.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:12]
