"""STAC items with the Machine Learning Model extension (``mlm:``) for geotl models.

Built with ``stac-model`` (the extension's pydantic models, which validate every field)
and pystac. One item per model file: ``MODEL_DIR/model.stac.json`` for the safetensors
artefact (written with it), ``OUT.stac.json`` beside an ONNX export. The weights asset
carries its size and sha256 (``file:checksum``, a multihash), so a catalogue can check a
download; the inputs say which bands and which scaling the file expects, and the output
describes the tensor the network gives: one classification class per channel, the
background and the model's classes, then an instance model's border and contact maps
(``geotl.export.onnx.output_channels``), so the channel count is the graph's. A detector
has no class maps: its ONNX graph gives every anchor's box and class scores, its PyTorch
network each window's selected boxes, scores and classes, and the item says which.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from geotl.io.atomic import atomic_write_text
from geotl.models.artefact import ModelCard

if TYPE_CHECKING:
    from stac_model.output import MLMClassification

__all__ = ["model_item", "write_model_item"]

Kind = Literal["safetensors", "onnx"]
_TASKS = {
    "segmentation": "semantic-segmentation",
    "instances": "instance-segmentation",
    "detection": "object-detection",
}


def _multihash_sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return "1220" + hashlib.file_digest(fh, "sha256").hexdigest()


def _channel_classes(card: ModelCard) -> list[MLMClassification]:
    """One classification class per output channel: background, classes, then any maps.

    An instance model's border and contact channels are named so and described as what
    they are (an object map each, not a class), as in the ONNX graph's ``class_names``.
    """
    from stac_model.output import MLMClassification

    from geotl.export.onnx import output_channels

    maps = {
        "border": "object border: the pixels on an object's outline (a map, not a class)",
        "contact": "object contact: the pixels where two objects touch (a map, not a class)",
    }
    names = ["background", *output_channels(card)]
    return [
        MLMClassification(
            value=i, name=name, description=maps.get(name, name) if i > len(card.classes) else None
        )
        for i, name in enumerate(names)
    ]


def model_item(
    card: ModelCard,
    model_file: Path,
    kind: Kind,
    tile_px: int | None = None,
    href: str | None = None,
) -> dict[str, object]:
    """The STAC item (as a dict) describing ``model_file`` (safetensors or ONNX).

    Args:
        card: the model card.
        model_file: the weights file (``model.safetensors``) or the exported ``.onnx``.
        kind: which of the two.
        tile_px: an ONNX graph's fixed tile size (``None``: any multiple of the stride).
        href: the model asset's file name (default: ``model_file``'s; another when
            ``model_file`` is still under a temporary name).
    """
    import pystac
    import torch
    from stac_model.input import InputStructure, ModelInput
    from stac_model.output import MLMClassification, ModelOutput, ModelResult
    from stac_model.schema import MLModelExtension, MLModelProperties

    from geotl import __version__

    bands, n = list(card.bands), len(card.bands)
    side: int = tile_px if tile_px is not None else -1
    if kind == "onnx":
        import onnxruntime

        # the graph takes raw / 255: card normalisation folded in
        scaling: list[dict[str, object]] = [{"type": "scale", "value": 255.0}] * n
        framework, version = "ONNX Runtime", onnxruntime.__version__
        media = "application/octet-stream; application=onnx"
        outputs = "class probabilities (softmax)" + (
            ", then border and contact probabilities (sigmoid)" if card.task == "instances" else ""
        )
    else:
        scaling = [
            {"type": "z-score", "mean": m, "stddev": s}
            for m, s in zip(card.normalisation.mean, card.normalisation.std, strict=True)
        ]
        framework, version = "pytorch", torch.__version__.split("+")[0]
        media = "application/octet-stream; application=safetensors"
        outputs = "class logits" + (
            ", then border and contact logits" if card.task == "instances" else ""
        )
    task = _TASKS.get(card.task, "segmentation")
    classes = ["background", *card.classes]
    channels = _channel_classes(card)
    batch: int = -1
    result = ModelResult(
        shape=[-1, len(channels), side, side],
        dim_order=["batch", "channel", "height", "width"],
        data_type="float32",
    )
    if card.task == "detection":
        channels = [MLMClassification(value=i, name=c) for i, c in enumerate(classes)]
        if kind == "onnx":
            # one window a run; every anchor's cx, cy, w, h, conf and class scores
            outputs = "anchor boxes and class scores (cx, cy, w, h, conf, p_0..p_K)"
            batch = 1
            result = ModelResult(
                shape=[1, -1, 5 + len(classes)],
                dim_order=["batch", "anchor", "channel"],
                data_type="float32",
            )
        else:  # the PyTorch RetinaNet has no class maps: per window, its selected boxes
            outputs = (
                "detected boxes per window: x0, y0, x1, y1 (window pixels), score, class "
                "(RetinaNet's selection: per-level best candidates, class-wise suppression)"
            )
            result = ModelResult(
                shape=[-1, -1, 6],
                dim_order=["batch", "detection", "channel"],
                data_type="float32",
            )
    props = MLModelProperties(
        name=card.model_id,
        architecture=card.network.description,
        tasks={task},  # type: ignore[arg-type]
        framework=framework,
        framework_version=version,
        accelerator="amd64" if kind == "onnx" else None,
        accelerator_constrained=False,
        file_size=model_file.stat().st_size,
        pretrained=card.base.id != "none",
        pretrained_source=f"{card.base.id} ({card.base.pretraining or 'n/a'}; licence "
        f"{card.base.licence})",
        input=[
            ModelInput(
                name=f"{', '.join(bands)} at {card.resolution_m:g} m",
                bands=bands,
                input=InputStructure(
                    shape=[batch, n, side, side],
                    dim_order=["batch", "bands", "height", "width"],
                    data_type="float32",
                ),
                value_scaling=scaling,  # type: ignore[arg-type]
            )
        ],
        output=[
            ModelOutput(
                name=outputs,
                tasks={task},  # type: ignore[arg-type]
                classes=channels,
                result=result,
            )
        ],
    )
    created = datetime.fromisoformat(card.created) if card.created else datetime.now(UTC)
    item = pystac.Item(
        id=card.model_id + ("-onnx" if kind == "onnx" else ""),
        geometry=None,
        bbox=None,
        datetime=created,
        properties={
            "description": f"geotl {card.task} model of {', '.join(card.classes)} "
            f"({', '.join(r.name for r in card.regions) or card.name}), {kind}",
            "geotl:version": __version__,
            "geotl:weights_sha256": card.weights_sha256,
            "geotl:base": card.base.model_dump(),
            "geotl:quantisation": card.quantisation,
            "geotl:resolution_m": card.resolution_m,
        },
    )
    item.add_asset(
        "model",
        pystac.Asset(
            href=href or model_file.name,
            media_type=media,
            roles=["mlm:model", "mlm:weights", "data"],
            extra_fields={
                "mlm:artifact_type": kind,
                "file:size": model_file.stat().st_size,
                "file:checksum": _multihash_sha256(model_file),
            },
        ),
    )
    if kind == "safetensors":
        item.add_asset(
            "card",
            pystac.Asset(href="model.json", media_type="application/json", roles=["metadata"]),
        )
    ext = MLModelExtension.ext(item, add_if_missing=True)
    ext.apply(props.model_dump(by_alias=True, exclude_unset=True, exclude_defaults=True))
    item.stac_extensions.append(
        "https://stac-extensions.github.io/file/v2.1.0/schema.json",
    )
    out: dict[str, object] = item.to_dict(include_self_link=False)
    return out


def write_model_item(
    path: Path,
    card: ModelCard,
    model_file: Path,
    kind: Kind,
    tile_px: int | None = None,
    href: str | None = None,
) -> Path:
    """Write :func:`model_item` as JSON to ``path`` (atomically)."""
    item = model_item(card, model_file, kind, tile_px, href)
    atomic_write_text(path, json.dumps(item, indent=2) + "\n")
    return path
