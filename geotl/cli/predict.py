"""``geotl predict``."""

from __future__ import annotations

import click

from geotl.errors import GeotlRuntimeError


@click.command("predict")
def command() -> None:
    """Not built yet."""
    raise GeotlRuntimeError("geotl predict is not built yet")
