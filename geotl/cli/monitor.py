"""``geotl monitor``: run the pass loop of a region, print its status, report, acknowledge.

``geotl monitor REGION.toml --model MODEL_DIR --out DIR [--once | --every 6h]``,
``geotl monitor status REGION.toml --out DIR``,
``geotl monitor report REGION.toml --out DIR [--report-dir HTML_DIR]`` and
``geotl monitor ack REGION.toml --out DIR ALERT_ID...``.

``monitor`` is a group whose default command is the run itself, so both the plain form
(region file first) and the ``status`` subcommand work.
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import click

from geotl.cli.main import Terminated
from geotl.cli.options import (
    cluster_option,
    device_option,
    json_option,
    model_dir_option,
    out_dir_option,
    overwrite_option,
    resample_option,
)
from geotl.config import load_region
from geotl.monitor import (
    MonitorOptions,
    format_status,
    monitor_status,
    parse_every,
    region_dir,
    run_monitor,
    watch_region,
)

__all__ = ["command"]

log = logging.getLogger("geotl.monitor")

_DEFAULT = "run"


class _DefaultGroup(click.Group):
    """A group that runs ``run`` when the first argument is not a subcommand."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = [_DEFAULT, *args]
        return super().parse_args(ctx, args)

    def format_usage(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        path = ctx.command_path
        formatter.write(
            f"Usage: {path} REGION.toml --out DIR [--model MODEL_DIR] [--once | --every 6h] [--reprocess]\n"
            f"       {path} status REGION.toml --out DIR [--json]\n"
            f"       {path} report REGION.toml --out DIR [--report-dir HTML_DIR]\n"
            f"       {path} ack REGION.toml --out DIR ALERT_ID...\n"
        )


@contextlib.contextmanager
def _graceful_stop(stop: threading.Event) -> Iterator[list[int]]:
    """SIGTERM / SIGINT: the first finishes the current scene and stops; the second abandons it.

    Yields the signals received: the command then exits as the first one's would (143, 130).
    """
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        name = signal.Signals(signum).name
        if len(received) == 1:
            log.warning(
                "%s: finishing the current scene, then stopping (send again to abandon it)", name
            )
            stop.set()
        elif signum == signal.SIGTERM:
            raise Terminated(name)
        else:
            raise KeyboardInterrupt(name)

    previous: dict[signal.Signals, Any] = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous[sig] = signal.signal(sig, handler)
    try:
        yield received
    finally:
        for sig_restore, old in previous.items():
            signal.signal(sig_restore, old)


@click.group("monitor", cls=_DefaultGroup, invoke_without_command=False)
def command() -> None:
    """Watch a region: process every new pass once, report what changed.

    The plain form processes every new pass of REGION.toml: --model MODEL_DIR (default:
    [monitor] model), --out DIR, --once (default; for cron / systemd timers) or --every
    INTERVAL (30m, 6h, 1d; SIGTERM stops after the current scene, exit 143), --reprocess (redo scenes
    with a new model), --retry-failed, --device, --cluster (Dask workers). Exit codes: 0 ok,
    1 a scene failed (it is retried with backoff) or an alert could not be delivered, 2 bad
    input or another monitor holds the region's lock. All options: geotl monitor
    REGION.toml --help.

    `status` prints what was processed, what failed and when the next run is due;
    `report` writes a static page (map of open alerts, timeline, table); `ack` acknowledges
    alerts by id.
    """


class _RunCommand(click.Command):
    """The hidden default ``run``: its usage shows the plain form users type.

    ``geotl monitor REGION.toml --help`` reaches this command through the default-command
    rewrite; without this its usage would read ``geotl monitor run ...``, a name the README
    and ``geotl monitor --help`` never mention.
    """

    def format_usage(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        path = ctx.parent.command_path if ctx.parent is not None else ctx.command_path
        formatter.write_usage(path, "REGION.toml --out DIR [OPTIONS]")


@command.command(_DEFAULT, cls=_RunCommand, hidden=True)
@click.argument(
    "region_file", metavar="REGION.toml", type=click.Path(dir_okay=False, path_type=Path)
)
@model_dir_option(
    "Model artefact folder or exported .onnx file (default: [monitor] model of the region).",
    onnx=True,
)
@out_dir_option()
@click.option(
    "--once", is_flag=True, help="One run, then exit (for cron and systemd timers; the default)."
)
@click.option(
    "--every",
    metavar="INTERVAL",
    help="Run, sleep INTERVAL (30m, 6h, 1d), run again, until SIGTERM.",
)
@click.option(
    "--reprocess", is_flag=True, help="Redo scenes processed by another model with this model."
)
@click.option(
    "--retry-failed",
    is_flag=True,
    help="Retry failed scenes now instead of after their backoff, and send alerts whose "
    "delivery failed again.",
)
@device_option()
@resample_option()
@cluster_option(
    "Predict new passes on Dask workers (local:N or tcp://HOST:PORT); the state, the lock "
    "and every output stay with this process."
)
def run_command(
    region_file: Path,
    model_dir: Path | None,
    out_dir: Path,
    once: bool,
    every: str | None,
    reprocess: bool,
    retry_failed: bool,
    device: str,
    resample: bool,
    cluster: str | None,
) -> None:
    """Process every new pass of REGION.toml once (--once, the default) or every INTERVAL."""
    if once and every:
        raise click.UsageError("--once and --every exclude each other: pick one")
    every_s: float | None = None
    if every:
        try:
            every_s = parse_every(every)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--every") from None
    region = load_region(region_file)
    options = MonitorOptions(
        out_dir=out_dir,
        model_dir=model_dir,
        reprocess=reprocess,
        retry_failed=retry_failed,
        device=device,
        cluster=cluster,
        resample=resample,
    )
    stop = threading.Event()
    with _graceful_stop(stop) as received:
        if every_s is None:
            summary = run_monitor(region, options, stop=stop)
        else:
            summary = watch_region(region, options, every_s, stop=stop)
    log.info(
        "%s: %d new scene(s), %d processed, %d failed%s",
        region.name,
        summary.found,
        len(summary.processed),
        len(summary.failed),
        " (stopped early)" if summary.stopped and every_s is None else "",
    )
    if summary.undelivered:
        log.error(
            "%d alert(s) could not be delivered: fix the webhook or the receiver, then run "
            "with --retry-failed to send them again",
            len(summary.undelivered),
        )
    if summary.unanswered:
        # all open alerts, not only those tried: a hanging webhook costs each attempt the
        # request timeout, so most wait untried for the next run
        log.error(
            "%d alert(s) not delivered yet (%d tried in this run): the webhook did not answer "
            "or asked to retry; later runs send them again (geotl monitor status says when): "
            "check the webhook",
            max(summary.open_alerts, len(summary.unanswered)),
            len(summary.unanswered),
        )
    if received:  # stopped by a signal, after finishing cleanly: say so as its exit code
        raise click.exceptions.Exit(128 + received[0])
    if summary.exit_code:
        raise click.exceptions.Exit(summary.exit_code)


@command.command("status")
@click.argument(
    "region_file", metavar="REGION.toml", type=click.Path(dir_okay=False, path_type=Path)
)
@out_dir_option()
@json_option("Print JSON instead of text.")
def status_command(region_file: Path, out_dir: Path, as_json: bool) -> None:
    """Print what was processed, what failed and when the next run is due."""
    region = load_region(region_file)
    status = monitor_status(region, out_dir)
    if as_json:
        click.echo(json.dumps(status.to_dict(), indent=2))
    else:
        click.echo(format_status(status), nl=False)


@command.command("report")
@click.argument(
    "region_file", metavar="REGION.toml", type=click.Path(dir_okay=False, path_type=Path)
)
@out_dir_option("The monitor's output folder.")
@click.option(
    "--report-dir",
    type=click.Path(path_type=Path),  # a file there is refused in one line by write_report
    help="Where to write the page (default: DIR/<region>/report).",
)
@overwrite_option("Replace a --report-dir that is not an earlier report.")
def report_command(
    region_file: Path, out_dir: Path, report_dir: Path | None, overwrite: bool
) -> None:
    """Write a static, offline page: open alerts on a map, counts per pass, alert table."""
    from geotl.monitor.alerts.report import write_report

    region = load_region(region_file)
    rdir = region_dir(region, out_dir)
    summary = write_report(region, rdir, report_dir or rdir / "report", overwrite=overwrite)
    click.echo(str(summary.path))


@command.command("ack")
@click.argument(
    "region_file", metavar="REGION.toml", type=click.Path(dir_okay=False, path_type=Path)
)
@click.argument("alert_ids", metavar="ALERT_ID...", nargs=-1, required=True)
@out_dir_option("The monitor's output folder.")
def ack_command(region_file: Path, alert_ids: tuple[str, ...], out_dir: Path) -> None:
    """Acknowledge alerts: they leave alerts.geojson and are never sent again."""
    from geotl.monitor.alerts.engine import acknowledge_alerts

    region = load_region(region_file)
    done = acknowledge_alerts(region_dir(region, out_dir), list(alert_ids), region)
    for alert_id in done:
        click.echo(alert_id)
