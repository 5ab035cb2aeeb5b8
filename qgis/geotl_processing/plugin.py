"""The plugin object QGIS loads: it registers the geotl Processing provider."""

from __future__ import annotations

from typing import Any, Optional

from qgis.core import QgsApplication

from .provider import GeotlProvider


class GeotlPlugin:
    """Adds the geotl provider to Processing while the plugin is enabled."""

    def __init__(self, iface: Any = None) -> None:
        self.iface = iface
        self.provider: Optional[GeotlProvider] = None

    def initProcessing(self) -> None:
        """Register the provider (also called by QGIS when running headless)."""
        if self.provider is None:
            self.provider = GeotlProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self) -> None:
        self.initProcessing()

    def unload(self) -> None:
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
