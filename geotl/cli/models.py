"""``geotl models list`` and ``geotl models import FILE --as ID``."""

from __future__ import annotations

import json
from pathlib import Path

import click

from geotl.cli.options import json_option, overwrite_option, say
from geotl.models.catalogue import import_weights, list_entries


@click.group("models")
def command() -> None:
    """The base-model catalogue."""


def _size(n: int | None) -> str:
    return "-" if n is None else f"{n / 1e6:.1f}MB"


@command.command("list")
@json_option("JSON instead of a table.")
@click.option("--supported", is_flag=True, help="Only bases usable for segmentation.")
def list_command(as_json: bool, supported: bool) -> None:
    """List every base model: architecture, bands, licence, sha256, offline availability."""
    entries = [e for e in list_entries() if e.supported or not supported]
    if as_json:
        click.echo(
            json.dumps([e.model_dump() | {"supported": e.supported} for e in entries], indent=2)
        )
        return
    header = (
        "id",
        "architecture",
        "bands",
        "pretraining",
        "licence",
        "commercial",
        "sha256",
        "size",
        "offline",
    )
    rows = [
        (
            e.id,
            e.architecture if e.supported else f"{e.architecture} (unsupported)",
            ",".join(e.bands) or "any",
            e.pretraining,
            e.licence,
            "yes" if e.commercial_use else "no",
            (e.sha256 or "-")[:12],
            _size(e.size_bytes),
            "yes" if e.available_offline else "no",
        )
        for e in entries
    ]
    # ids are copied into region files and --base: never cut; long descriptions are
    cut = [None] + [44] * (len(header) - 1)
    widths = [
        min(max(len(str(r[i])) for r in [header, *rows]), cut[i] or 10**6)
        for i in range(len(header))
    ]
    for r in [header, *rows]:
        cells = (str(v)[:c].ljust(w) for v, w, c in zip(r, widths, cut, strict=True))
        click.echo("  ".join(cells).rstrip())


@command.command("import")
@click.argument("file", metavar="FILE", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--as", "entry_id", required=True, help="torchgeo:<WeightsEnum>.<NAME> the file holds."
)
@overwrite_option("Replace other weights already imported for the id.")
def import_command(file: Path, entry_id: str, overwrite: bool) -> None:
    """Verify a downloaded weights file against torchgeo's sha256 and make it available offline."""
    target = import_weights(file, entry_id, overwrite=overwrite)
    say(f"geotl models import: {entry_id} ready offline")
    click.echo(str(target))


@command.command("verify")
@click.argument("model", metavar="MODEL_DIR|MODEL.onnx", type=click.Path(path_type=Path))
def verify_command(model: Path) -> None:
    """Check a model folder's weights (or an exported .onnx) against their recorded sha256.

    A model folder's card is checked against its model id too. Exit 0 and the verified
    file on stdout when intact; exit 2 and one line naming the file and the fix when it
    is truncated, altered, swapped or its card edited.
    """
    if model.suffix.lower() == ".onnx":
        from geotl.export.onnx import read_onnx

        onnx_model = read_onnx(model)
        say(f"geotl models verify: {onnx_model.card.model_id}: ok")
        click.echo(str(model))
        return
    from geotl.models.artefact import read_card, verify_card, verify_weights

    card = read_card(model)
    weights = verify_weights(model, card)
    verify_card(model)
    say(f"geotl models verify: {card.model_id}: ok")
    click.echo(str(weights))
