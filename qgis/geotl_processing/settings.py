"""The provider's one setting: where the geotl executable is."""

from __future__ import annotations

from .cli import default_executable

GEOTL_EXECUTABLE = "GEOTL_EXECUTABLE"


def executable() -> str:
    """The ``geotl executable`` setting (its default when the provider is not loaded)."""
    try:
        from processing.core.ProcessingConfig import ProcessingConfig

        value = ProcessingConfig.getSetting(GEOTL_EXECUTABLE)
    except ImportError:
        value = None
    return value or default_executable()
