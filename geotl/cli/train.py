"""``geotl train``."""

from __future__ import annotations

import click

from geotl.errors import GeotlRuntimeError


@click.command("train")
def command() -> None:
    """Not built yet."""
    raise GeotlRuntimeError("geotl train is not built yet")
