"""geotl: adapt pretrained remote-sensing models to new regions, then monitor them."""

__version__ = "0.1.0"

__all__ = ["__version__"]
