"""The ``geotl`` command group and its error handling.

Every command lives in its own module and only parses options, calls one library function
and reports. :class:`GeotlError` becomes a one-line message on stderr and its exit code
(2 for input errors, 1 for runtime failures); ``-v`` adds the traceback.
"""

from __future__ import annotations

import importlib
import logging
import os
import signal
import sys
import time
import traceback
import warnings
from types import FrameType
from typing import Any

import click
from click.exceptions import NoArgsIsHelpError

from geotl import __version__
from geotl.errors import ERROR_PREFIX, GeotlError
from geotl.io.gdal_messages import gdal_messages_logged
from geotl.progress import ProgressFormat, set_progress_format

__all__ = ["cli", "main"]

log = logging.getLogger("geotl")


class _GeotlGroup(click.Group):
    """A group that turns GeotlError into a one-line message and an exit code."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in _COMMANDS:
            return None
        module = importlib.import_module(_COMMANDS[cmd_name][0])
        command: click.Command = module.command
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, short_help) for name, (_, short_help) in _COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # `geotl chip REGION -v` as well as `geotl -v chip REGION`: the logging options
        # are the group's, wherever on the line they are typed (before a `--`)
        end = args.index("--") if "--" in args else len(args)
        hoisted = [a for a in args[:end] if a in _LOGGING_FLAGS]
        rest = [a for a in args[:end] if a not in _LOGGING_FLAGS]
        try:
            return super().parse_args(ctx, hoisted + rest + args[end:])
        except click.UsageError as exc:
            _usage_error(ctx, exc)
            raise  # help asked for by giving nothing: click shows it

    def invoke(self, ctx: click.Context) -> Any:
        try:
            # every command: GDAL's messages as geotl's log lines, never bare on stderr
            with gdal_messages_logged():
                return super().invoke(ctx)
        except click.UsageError as exc:  # a command's options or arguments
            _usage_error(ctx, exc)
            raise
        except GeotlError as exc:
            if ctx.find_root().meta.get("geotl.verbose"):
                traceback.print_exc(file=sys.stderr)
            click.echo(f"{ERROR_PREFIX}{exc}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt as exc:
            if ctx.find_root().meta.get("geotl.verbose"):
                traceback.print_exc(file=sys.stderr)
            terminated = isinstance(exc, Terminated)
            click.echo(f"geotl: {'terminated' if terminated else 'interrupted'}", err=True)
            ctx.exit(128 + (signal.SIGTERM if terminated else signal.SIGINT))


def _usage_error(ctx: click.Context, exc: click.UsageError) -> None:
    """A mistyped command line as one line, exit code 2, like geotl's other input errors.

    Click prints its usage text, a hint and the error on four lines; a program (the QGIS
    plugin, a scheduler's mail) shows only the last, a person the first. ``geotl`` alone
    (help asked for) is left to click.
    """
    if isinstance(exc, NoArgsIsHelpError):
        return
    failed = exc.ctx if exc.ctx is not None else ctx
    path = failed.command_path
    if failed.command.hidden and failed.parent is not None:  # a group's default (monitor run)
        arguments = [p for p in failed.command.collect_usage_pieces(failed) if p != "[OPTIONS]"]
        path = " ".join([failed.parent.command_path, *arguments])
    click.echo(f"{ERROR_PREFIX}{exc.format_message()} ({path} --help says more)", err=True)
    ctx.exit(exc.exit_code)


#: the group's options that any command line may carry after the command's name
_LOGGING_FLAGS = frozenset({"-v", "-vv", "-vvv", "--verbose", "-q", "--quiet"})


class Terminated(KeyboardInterrupt):
    """SIGTERM, unwinding as Ctrl+C does.

    ``kill``, ``systemctl stop``, a batch system's time limit: every temporary file and
    folder is removed on the way out, and the exit code is 143.
    """


def _formatter(stamped: bool) -> logging.Formatter:
    """``LEVEL logger: message``, after an ISO 8601 UTC time when ``stamped``.

    >>> record = logging.makeLogRecord({"levelname": "INFO", "name": "geotl.x", "msg": "hi",
    ...     "created": 0.0})
    >>> _formatter(True).format(record), _formatter(False).format(record)
    ('1970-01-01T00:00:00Z INFO geotl.x: hi', 'INFO geotl.x: hi')
    """
    if not stamped:
        return logging.Formatter("%(levelname)s %(name)s: %(message)s")
    formatter = logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%Y-%m-%dT%H:%M:%SZ"
    )
    formatter.converter = time.gmtime
    return formatter


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise Terminated(signal.Signals(signum).name)


def _configure_logging(verbose: int, quiet: bool, stamped: bool = False) -> None:
    """Send the geotl loggers to stderr; ``stamped``: each line starts with its UTC time."""
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_formatter(stamped))
    root = logging.getLogger("geotl")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    # Lightning resets its package logger to INFO when imported, so quieten the loggers it
    # reports device banners and tips through; geotl logs its own progress per epoch.
    for noisy in (
        "lightning.pytorch.utilities.rank_zero",
        "lightning.fabric.utilities.rank_zero",
        "lightning.pytorch.accelerators.cuda",
        "pytorch_lightning.utilities.rank_zero",
        "rasterio",
        "fiona",
    ):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose > 1 else logging.WARNING)
    # GDAL's messages that rasterio routes to logging (inside a rasterio.Env) print like
    # geotl's own lines, stamped, instead of bare through Python's last-resort handler
    for library in ("rasterio", "fiona"):
        logging.getLogger(library).handlers[:] = [handler]
        logging.getLogger(library).propagate = False
    warnings.filterwarnings("ignore", message=r".*LeafSpec.*", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=r".*LeafSpec.*", category=FutureWarning)
    # rasterio's NodataShadowWarning: geotl's rule is that the nodata value wins over an
    # alpha band (README), so the warning, with its source lines, is noise to a user
    warnings.filterwarnings("ignore", message=r".*nodata attribute is shadowing the alpha band")
    # rasterio's NotGeoreferencedWarning (two lines with its source) came before geotl's
    # own one-line error for the same file (geotl.io.rasters.check_georeferenced)
    warnings.filterwarnings("ignore", message=r"Dataset has no geotransform, gcps, or rpcs")


@click.group(cls=_GeotlGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="geotl")
@click.option("-v", "--verbose", count=True, help="More logging; -v also shows tracebacks.")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors on stderr.")
@click.option(
    "--progress",
    "progress_format",
    type=click.Choice(["bar", "json"]),
    default="bar",
    envvar="GEOTL_PROGRESS",
    show_default=True,
    help="Progress as bars, or as JSON lines on stderr for programs (the QGIS plugin).",
)
@click.pass_context
def cli(ctx: click.Context, verbose: int, quiet: bool, progress_format: ProgressFormat) -> None:
    """Adapt pretrained remote-sensing models to a region, then watch it pass by pass."""
    ctx.meta["geotl.verbose"] = verbose > 0
    # a log file (cron, systemd, a redirect) needs the time of each line; a terminal and
    # the QGIS plugin (JSON progress, lines read by their level) do not
    _configure_logging(
        verbose,
        quiet,
        stamped=progress_format == "bar"
        and not _is_terminal(sys.stderr)
        and not _is_journal(sys.stderr),
    )
    set_progress_format(progress_format)


def _is_journal(stream: Any) -> bool:
    """Whether ``stream`` is the systemd journal, which stamps each line itself.

    systemd sets ``JOURNAL_STREAM`` to the device and inode of the journal's socket; a
    service that sends stderr to a file instead keeps geotl's own time stamps.
    """
    value = os.environ.get("JOURNAL_STREAM", "")
    try:
        dev, ino = (int(v) for v in value.split(":"))
        st = os.fstat(stream.fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == (dev, ino)


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


# Commands are imported only when used, so `geotl --help`, `geotl monitor status` and input
# errors answer without paying for torch: name -> (module, one-line help).
_COMMANDS: dict[str, tuple[str, str]] = {
    "chip": ("geotl.cli.chip", "Cut a region's scenes and labels into training chips."),
    "train": ("geotl.cli.train", "Adapt a base model to one or more regions."),
    "evaluate": ("geotl.cli.evaluate", "Score a model on a region's test split."),
    "predict": ("geotl.cli.predict", "Turn scenes into detection polygons (GeoJSON)."),
    "run": ("geotl.cli.run", "Chip, train, evaluate and predict a region in one go."),
    "monitor": ("geotl.cli.monitor", "Process each new pass of a region once; report changes."),
    "models": ("geotl.cli.models", "List base models, import weights, verify model files."),
    "export": ("geotl.cli.export", "Export a model to ONNX (+ int8, Deepness and STAC metadata)."),
    "suggest": ("geotl.cli.suggest", "Suggest areas to label next, where the model is unsure."),
}


def main() -> None:
    """Console-script entry point (SIGTERM raises :class:`Terminated`)."""
    signal.signal(signal.SIGTERM, _terminate)
    cli(prog_name="geotl")
