"""``geotl models``."""

from __future__ import annotations

import click

from geotl.errors import GeotlRuntimeError


@click.command("models")
def command() -> None:
    """Not built yet."""
    raise GeotlRuntimeError("geotl models is not built yet")
