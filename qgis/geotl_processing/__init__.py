"""geotl Processing provider: geotl's commands in QGIS's Processing Toolbox.

The plugin runs the ``geotl`` executable (never imports geotl or torch), so it works on
whatever Python QGIS ships.
"""


def classFactory(iface):
    """QGIS's entry point for the plugin."""
    from .plugin import GeotlPlugin

    return GeotlPlugin(iface)
