"""``geotl evaluate``."""

from __future__ import annotations

import click

from geotl.errors import GeotlRuntimeError


@click.command("evaluate")
def command() -> None:
    """Not built yet."""
    raise GeotlRuntimeError("geotl evaluate is not built yet")
