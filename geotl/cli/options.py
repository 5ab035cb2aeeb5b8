"""Options shared by several commands, defined once (rasterio's ``rio/options.py`` pattern).

Each factory returns a click decorator; the per-command ``help`` says what the option
means for that command, while name, type and default are the same everywhere.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

__all__ = [
    "DEVICES",
    "chips_dir_option",
    "cluster_option",
    "device_option",
    "json_option",
    "model_dir_option",
    "out_dir_option",
    "overwrite_option",
    "resample_option",
    "seed_option",
]

F = TypeVar("F", bound=Callable[..., Any])

#: Torch devices the commands accept (cuda adds mixed precision in training).
DEVICES = ("cpu", "cuda")


def device_option(help: str | None = None, *, here: bool = True) -> Callable[[F], F]:
    """``--device cpu|cuda`` (default cpu).

    ``here``: the device is this machine's, so ``cuda`` without a CUDA device is refused
    before any work (exit 2); else (work on a cluster's workers) where the model loads.
    """

    def check(ctx: click.Context, param: click.Parameter, value: str) -> str:
        if here and value != "cpu":
            from geotl.models.artefact import require_device

            require_device(value)
        return value

    return click.option(
        "--device",
        type=click.Choice(DEVICES),
        default="cpu",
        show_default=True,
        help=help,
        callback=check,
    )


def cluster_option(help: str) -> Callable[[F], F]:
    """``--cluster local:N | tcp://HOST:PORT`` (Dask distributed; default: this process)."""
    return click.option("--cluster", metavar="local:N|tcp://HOST:PORT", help=help)


def overwrite_option(help: str) -> Callable[[F], F]:
    """``--overwrite``: replace existing outputs (never replaced without it)."""
    return click.option("--overwrite", is_flag=True, help=help)


def out_dir_option(help: str = "Output folder.", *, file_okay: bool = True) -> Callable[[F], F]:
    """``--out DIR`` (required), passed as ``out_dir``."""
    return click.option(
        "--out",
        "out_dir",
        required=True,
        type=click.Path(path_type=Path, file_okay=file_okay),
        help=help,
    )


def seed_option(help: str | None = None) -> Callable[[F], F]:
    """``--seed N`` (default 0)."""
    return click.option("--seed", type=int, default=0, show_default=True, help=help)


def json_option(help: str) -> Callable[[F], F]:
    """``--json``: machine-readable output, passed as ``as_json``."""
    return click.option("--json", "as_json", is_flag=True, help=help)


def chips_dir_option(help: str) -> Callable[[F], F]:
    """``--chips DIR``: a region's chips folder (``geotl chip``'s output), as ``chips_dir``."""
    return click.option(
        "--chips", "chips_dir", type=click.Path(path_type=Path, file_okay=False), help=help
    )


def model_dir_option(help: str, *, required: bool = False, onnx: bool = False) -> Callable[[F], F]:
    """``--model DIR``: a model artefact folder (``geotl train``'s output), as ``model_dir``.

    ``onnx``: an exported ``.onnx`` file (``geotl export``) is taken too.
    """
    return click.option(
        "--model",
        "model_dir",
        required=required,
        type=click.Path(path_type=Path, file_okay=onnx),
        help=help,
    )


def resample_option() -> Callable[[F], F]:
    """``--resample``: scenes at another ground resolution are resampled to the model's."""
    return click.option(
        "--resample",
        is_flag=True,
        help="Resample scenes at another ground resolution to the model's on the fly.",
    )


def say(text: str, *, warn: bool = False) -> None:
    """A command's closing summary line, on stderr; ``-q`` leaves it out unless ``warn``.

    ``-q`` means warnings and errors only (a cron job's mail stays empty when all went well);
    the paths a command prints on stdout are its output and stay.
    """
    if warn or logging.getLogger("geotl").isEnabledFor(logging.INFO):
        click.echo(text, err=True)
