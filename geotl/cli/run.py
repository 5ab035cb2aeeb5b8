"""``geotl run``."""

from __future__ import annotations

import click

from geotl.errors import GeotlRuntimeError


@click.command("run")
def command() -> None:
    """Not built yet."""
    raise GeotlRuntimeError("geotl run is not built yet")
