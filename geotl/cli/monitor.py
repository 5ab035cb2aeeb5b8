"""``geotl monitor``."""

from __future__ import annotations

import click

from geotl.errors import GeotlRuntimeError


@click.command("monitor")
def command() -> None:
    """Not built yet."""
    raise GeotlRuntimeError("geotl monitor is not built yet")
