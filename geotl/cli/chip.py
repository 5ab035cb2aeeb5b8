"""``geotl chip``."""

from __future__ import annotations

import click

from geotl.errors import GeotlRuntimeError


@click.command("chip")
def command() -> None:
    """Not built yet."""
    raise GeotlRuntimeError("geotl chip is not built yet")
