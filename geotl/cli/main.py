"""The ``geotl`` command group and its error handling.

Every command lives in its own module and only parses options, calls one library function
and reports. :class:`GeotlError` becomes a one-line message on stderr and its exit code
(2 for input errors, 1 for runtime failures); ``-v`` adds the traceback.
"""

from __future__ import annotations

import logging
import sys
import traceback
from typing import Any

import click

from geotl import __version__
from geotl.errors import GeotlError

__all__ = ["cli", "main"]

log = logging.getLogger("geotl")


class _GeotlGroup(click.Group):
    """A group that turns GeotlError into a one-line message and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except GeotlError as exc:
            if ctx.find_root().meta.get("geotl.verbose"):
                traceback.print_exc(file=sys.stderr)
            click.echo(f"geotl: error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("geotl: interrupted", err=True)
            ctx.exit(130)


def _configure_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("geotl")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    for noisy in ("lightning", "lightning.pytorch", "pytorch_lightning", "rasterio", "fiona"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@click.group(cls=_GeotlGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="geotl")
@click.option("-v", "--verbose", count=True, help="More logging; -v also shows tracebacks.")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors on stderr.")
@click.pass_context
def cli(ctx: click.Context, verbose: int, quiet: bool) -> None:
    """Adapt pretrained remote-sensing models to a region, then watch it pass by pass."""
    ctx.meta["geotl.verbose"] = verbose > 0
    _configure_logging(verbose, quiet)


def _register() -> None:
    from geotl.cli import chip, evaluate, models, monitor, predict, run, train

    for module in (chip, train, evaluate, predict, run, monitor, models):
        cli.add_command(module.command)


_register()


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="geotl")
