"""ONNX export of a model artefact, with its card and the Deepness plugin's keys as metadata.

The exported graph maps a batch of tiles to class probabilities::

    image          (batch, bands, tile, tile) float32: the raw digital numbers / 255
    probabilities  (batch, 1 + classes, tile, tile) float32: softmax, class 0 = background

An instance model's graph (``task = "instances"``) adds its two object maps after the
classes, each a sigmoid: ``(batch, 1 + classes + 2, tile, tile)``, the last two channels
the probability of an object's border and of a contact between two objects
(:data:`geotl.predict.objects.instances.INSTANCE_CHANNELS`).

The card's per-band normalisation ``(raw - mean) / std`` is folded into the graph, because
QGIS's Deepness plugin feeds ``raw / 255`` (then an optional standardisation, left at the
identity here): the same file is right for Deepness, for geotl's ONNX Runtime engine and
for any other runtime. Tiles have a fixed size (Deepness reads it from the graph); the batch
is free.

A detector's graph (:class:`~geotl.models.detector.AnchorRows`) takes one tile and returns
every anchor's decoded box and class scores::

    detections     (1, anchors, 5 + classes) float32: cx, cy, w, h, conf, p_0..p_K

the row layout of YOLO v5/v7 that Deepness reads (``model_type`` ``Detector``, ``det_type``,
``det_conf``, ``det_iou_thresh``); geotl selects boxes from the rows as the PyTorch
RetinaNet does (:func:`~geotl.models.detector.select_detections`).

Metadata (``metadata_props``, every value JSON as Deepness reads it): Deepness's
``model_type``, ``class_names``, ``resolution`` (cm/px), ``tiles_size`` (and ``tile_size``,
the name some plugin versions read), ``tiles_overlap`` (%), ``seg_thresh``,
``seg_small_segment``, ``standardization_mean``/``standardization_std``; geotl's
``geotl_card`` (the whole model card: bands, normalisation, licence, base sha256, weights
sha256, quantisation), for an int8 graph ``geotl_int8_float_nodes`` (the nodes kept in
float, by reason), ``geotl_input``, ``geotl_output`` (:func:`output_description`: the
output's shape and channels or columns, which maps are sigmoids, and how geotl makes objects
of it with which of the card's numbers, for whoever runs the file without geotl),
``geotl_graph_sha256``: the sha256 of the
serialised graph (weights included), and ``geotl_card_sha256``: the sha256 of the
``geotl_card`` text. Both are checked on every load, so an altered graph is refused, and so
is a card edited in the metadata (a threshold or class renamed), whose outputs would carry
a model id that is not theirs (a model folder refuses this through its id's card digest,
:func:`geotl.models.artefact.verify_card`; an int8 export's card differs from the folder's,
so the export records its own hash). Exports written before ``geotl_card_sha256`` existed
still load, their card unchecked (said at info level).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from geotl import __version__
from geotl.errors import GeotlInputError, ModelArtefactError, error_text
from geotl.io.atomic import atomic_path, check_output_file, check_writable
from geotl.models.artefact import STAC_FILE, ModelCard, load_artefact, parse_card

if TYPE_CHECKING:
    from geotl.export.quantise import Int8Scheme

__all__ = [
    "DETECTIONS_NAME",
    "EXPORT_FORMAT",
    "INPUT_NAME",
    "INPUT_SCALE",
    "INT8_FLOAT_NODES_KEY",
    "OPSET",
    "OUTPUT_KEY",
    "OUTPUT_NAME",
    "ExportResult",
    "OlderExportError",
    "OnnxModel",
    "export_onnx",
    "graph_sha256",
    "onnx_to_bytes",
    "output_description",
    "read_onnx",
]

log = logging.getLogger(__name__)

INPUT_NAME = "image"
OUTPUT_NAME = "probabilities"
DETECTIONS_NAME = "detections"  # a detector's output: one row per anchor (AnchorRows)
INPUT_SCALE = 255.0  # the graph's input is raw / INPUT_SCALE (Deepness's scaling)
OPSET = 17
_GRAPH_SHA_KEY = "geotl_graph_sha256"
_CARD_KEY = "geotl_card"
_CARD_SHA_KEY = "geotl_card_sha256"  # sha256 of the geotl_card value, exactly as stored
INT8_FLOAT_NODES_KEY = "geotl_int8_float_nodes"  # an int8 graph's nodes kept in float, by reason
OUTPUT_KEY = "geotl_output"  # the output's layout and how geotl makes objects of it
#: what an export holds and how it is checked (graph layout, metadata keys): bump it when an
#: export written before the change must not be reused by geotl's cache of exports
#: (:func:`geotl.predict.engine.load_model`), whose files are named by it. 2: with
#: ``geotl_card_sha256``. Not ``geotl.__version__``, which changes when no release is made.
EXPORT_FORMAT = 2


class OlderExportError(ModelArtefactError):
    """An export of an older geotl, refused where only a current one will do (the cache)."""


def output_channels(card: ModelCard) -> list[str]:
    """The names of the probability channels after background: classes, then any maps."""
    if card.task == "instances":
        from geotl.predict.objects.instances import INSTANCE_CHANNELS

        return [*card.classes, *INSTANCE_CHANNELS]
    return list(card.classes)


def graph_head(task: str) -> str:
    """The probabilities a task's graph ends with (see :class:`_Portable`)."""
    return {"detection": "none", "instances": "instances"}.get(task, "softmax")


@dataclass(frozen=True)
class ExportResult:
    """What ``export_onnx`` wrote.

    Attributes:
        path: the ``.onnx`` file.
        card: the card embedded in it.
        tile_px: its fixed tile size.
        size_bytes: file size.
        export_s: seconds spent exporting (and quantising).
        sha256: sha256 of the file.
        graph_sha256: sha256 of its graph, recorded in its metadata.
        stac: the STAC item (ML Model extension) written beside it.
    """

    path: Path
    card: ModelCard
    tile_px: int
    size_bytes: int
    export_s: float
    sha256: str
    graph_sha256: str
    stac: Path


@dataclass(frozen=True)
class OnnxModel:
    """A verified ONNX export: its serialised bytes, embedded card and metadata."""

    path: Path
    data: bytes
    card: ModelCard
    tile_px: int
    metadata: dict[str, str]


def default_tile_px(card: ModelCard) -> int:
    """The tile size predict uses by default: max(256, chip size), a multiple of the stride."""
    return card.network.round_up_px(max(256, card.chip_size_px))


def graph_sha256(model: Any) -> str:
    """Sha256 of an ONNX model's serialised graph (nodes and weights, not the metadata)."""
    return hashlib.sha256(model.graph.SerializeToString(deterministic=True)).hexdigest()


def _deepness_metadata(card: ModelCard, tile_px: int) -> dict[str, Any]:
    n = len(card.bands)
    px_m2 = card.resolution_m**2
    common = {
        "class_names": {str(i): c for i, c in enumerate(["background", *output_channels(card)])},
        "resolution": round(card.resolution_m * 100.0, 6),
        "tiles_size": tile_px,
        "tile_size": tile_px,
        "tiles_overlap": 25,
        "standardization_mean": [0.0] * n,
        "standardization_std": [1.0] * n,
    }
    if card.task == "detection":
        return common | {
            "model_type": "Detector",
            "det_type": "YOLO_v5_v7_DEFAULT",  # rows cx, cy, w, h, conf, class scores
            "det_conf": card.threshold,
            "det_iou_thresh": card.nms_iou,
        }
    return common | {
        "model_type": "Segmentor",
        "seg_thresh": card.threshold,
        "seg_small_segment": int(card.min_area_m2 / px_m2) if px_m2 > 0 else 0,
    }


def output_description(card: ModelCard, tile_px: int) -> dict[str, Any]:
    """What the graph's output means and how geotl turns it into objects (``geotl_output``).

    Deepness knows its own keys; anybody else running the file (plain ONNX Runtime, another
    tool) would otherwise have to read geotl's source to learn the channel layout, which
    maps are sigmoids, that a detector's rows still need RetinaNet's selection, and which of
    the card's numbers (threshold, seed threshold, suppression IoU) to apply.
    """
    channels = ["background", *output_channels(card)]
    pixels = (
        "a pixel belongs to its most probable class (channels 1..K) when that probability "
        f"reaches threshold; objects are the 4-connected regions of one class, those under "
        f"min_area_m2 ({card.resolution_m:g} m pixels) dropped"
    )
    if card.task == "detection":
        from geotl.models.detector import (
            DETECTIONS_PER_WINDOW,
            SCORE_THRESH,
            TOPK_CANDIDATES,
            level_anchors,
        )

        levels = level_anchors(tile_px)
        return {
            "name": DETECTIONS_NAME,
            "shape": [1, sum(levels), 5 + len(channels)],
            "columns": ["cx", "cy", "w", "h", "conf", *(f"p_{c}" for c in channels)],
            "meaning": "one row per anchor of one tile: box centre and size in tile pixels "
            "(x right, y down from the tile's top-left corner), conf = the best class's "
            "score, p_k = the sigmoid score of class k (p_background is an unused logit)",
            "objects": "RetinaNet's selection, per pyramid level (rows in level order, "
            f"anchors per level {levels}): scores above {SCORE_THRESH:g}, the best "
            f"{TOPK_CANDIDATES} (anchor, class) pairs; boxes clipped to the tile; class-wise "
            f"non-maximum suppression at nms_iou; the best {DETECTIONS_PER_WINDOW}; then the "
            "boxes whose score reaches threshold, those under min_area_m2 dropped",
            "threshold": card.threshold,
            "nms_iou": card.nms_iou,
            "min_area_m2": card.min_area_m2,
        }
    out: dict[str, Any] = {
        "name": OUTPUT_NAME,
        "shape": ["batch", len(channels), tile_px, tile_px],
        "channels": channels,
        "meaning": "softmax over background and the classes",
        "objects": pixels,
        "threshold": card.threshold,
        "min_area_m2": card.min_area_m2,
    }
    if card.task == "instances":
        k = 1 + len(card.classes)
        out["meaning"] += (
            f"; channels {k}.. are sigmoid maps (not classes): {', '.join(channels[k:])}"
        )
        out["objects"] = (
            f"{pixels}; each region is split by a watershed from seeds, the connected "
            "pixels where P(class) x (1 - P(border)) x (1 - P(contact)) reaches "
            "seed_threshold, grown downhill in that score"
        )
        out["seed_threshold"] = card.seed_threshold
    return out


def _set_metadata(
    model: Any, card: ModelCard, tile_px: int, extra: dict[str, Any] | None = None
) -> str:
    """Write the metadata props (replacing any, ``extra`` added); return the graph sha256."""
    model.producer_name = "geotl"
    model.producer_version = __version__
    model.doc_string = (
        f"geotl model {card.model_id} ({card.task}: {', '.join(card.classes)}); input: raw "
        f"{', '.join(card.bands)} / {INPUT_SCALE:g}, normalisation folded into the graph; "
        f"output: see the metadata key {OUTPUT_KEY}"
    )
    digest = graph_sha256(model)
    card_text = json.dumps(card.model_dump(mode="json"))
    props: dict[str, Any] = (
        _deepness_metadata(card, tile_px)
        | {
            "geotl_input": f"raw digital numbers / {INPUT_SCALE:g}; bands {card.bands}",
            OUTPUT_KEY: output_description(card, tile_px),
            "geotl_version": __version__,
            _GRAPH_SHA_KEY: digest,
        }
        | (extra or {})
    )
    del model.metadata_props[:]
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key = key
        entry.value = json.dumps(value)
    # the card's text is stored as hashed: re-serialising it could change the bytes
    for key, text in ((_CARD_KEY, card_text), (_CARD_SHA_KEY, json.dumps(_sha256_text(card_text)))):
        entry = model.metadata_props.add()
        entry.key = key
        entry.value = text
    return digest


def _sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def onnx_to_bytes(
    model: Any, card: ModelCard, tile_px: int, extra: dict[str, Any] | None = None
) -> tuple[bytes, str]:
    """Serialise ``model`` with geotl's and Deepness's metadata; return bytes and graph sha256.

    ``extra`` adds metadata props (e.g. ``geotl_int8_float_nodes``).
    """
    digest = _set_metadata(model, card, tile_px, extra)
    return model.SerializeToString(), digest


def export_onnx(
    model_dir: str | Path,
    out: str | Path,
    *,
    int8: bool = False,
    tile_px: int | None = None,
    calibration: Any = None,
    region_path: str | Path | None = None,
    chips_dir: str | Path | None = None,
    overwrite: bool = False,
    scheme: Int8Scheme | None = None,
) -> ExportResult:
    """Export ``MODEL_DIR`` to a portable ONNX file (optionally int8) and its STAC item.

    The STAC item (ML Model extension) is written beside it as ``OUT.stac.json``.

    Args:
        model_dir: a geotl model folder (weights verified against the card).
        out: the ``.onnx`` file to write (atomically).
        int8: quantise to int8 (static, calibrated: see
            :func:`geotl.export.quantise.quantise_int8`).
        tile_px: fixed tile size of the graph (default: predict's window, max(256, chip size)).
        calibration: a :class:`geotl.export.quantise.Calibration` (or its tiles) for
            ``int8``; default: the training chips of ``region_path`` (default: the region
            recorded in the card), from ``chips_dir`` or found beside the model.
        region_path: the region file to calibrate on.
        chips_dir: that region's chips folder.
        overwrite: replace an existing ``out``.
        scheme: the quantiser's settings for ``int8``, a
            :class:`geotl.export.quantise.Int8Scheme` (default: ``DEFAULT_SCHEME``).

    Returns:
        What was written.

    Raises:
        GeotlInputError: ``out`` does not end in ``.onnx``, exists without ``overwrite``,
            lies in a folder that cannot be written, or its STAC item would replace the
            model folder's own; ``model_dir`` is an ``.onnx`` file; a bad tile size, a model
            the quantiser cannot handle, a calibration region without the model's bands,
            ``region_path`` or ``chips_dir`` without ``int8``.
        ModelArtefactError: the model folder is incomplete or its weights were altered.
    """
    from geotl.export.stac import write_model_item

    out = Path(out)
    if out.suffix.lower() != ".onnx":
        # predict, monitor and Deepness know an exported model by its suffix
        raise GeotlInputError(
            f"an ONNX export must end in .onnx (geotl predict takes it by that name): "
            f"pass --onnx {out.with_suffix('.onnx')}",
            out,
        )
    if not int8 and (region_path is not None or chips_dir is not None):
        # calibration is for int8 only: silently writing fp32 would hide a forgotten --int8
        what = "--calibrate" if region_path is not None else "--chips"
        raise GeotlInputError(
            f"{what} calibrates --int8, which was not given: add --int8 for an int8 export, "
            f"or drop {what} for fp32",
            region_path if region_path is not None else chips_dir,
        )
    stac = out.with_suffix(".stac.json")
    if Path(model_dir).suffix.lower() == ".onnx" and Path(model_dir).is_file():
        raise GeotlInputError(
            "is already an ONNX export: geotl export takes the model folder geotl train "
            "wrote (for int8, export that folder with --int8)",
            model_dir,
        )
    if stac.resolve() == (Path(model_dir) / STAC_FILE).resolve():
        # the model folder's own STAC item describes its safetensors weights
        raise GeotlInputError(
            f"its STAC item would replace the model folder's own {STAC_FILE}: name the export "
            f"otherwise, e.g. --onnx {out.with_name(out.stem + '-export.onnx')}",
            out,
        )
    check_output_file(out, overwrite)
    check_output_file(stac, overwrite)
    check_writable([out])
    t0 = time.perf_counter()
    artefact = load_artefact(model_dir)
    card = artefact.card
    tile = tile_px or default_tile_px(card)
    from geotl.export.trace import torch_to_onnx  # torch: only to export

    model = torch_to_onnx(artefact, tile)
    extra: dict[str, Any] | None = None
    if int8:
        from geotl.export.quantise import DEFAULT_SCHEME, quantise_int8, region_calibration

        scheme = scheme or DEFAULT_SCHEME
        if calibration is None:
            calibration = region_calibration(
                Path(model_dir),
                tile,
                Path(region_path) if region_path else None,
                Path(chips_dir) if chips_dir else None,
            )
        q = quantise_int8(model, calibration, card.task, scheme)
        model, extra = q.model, {INT8_FLOAT_NODES_KEY: q.float_nodes}
        card = card.model_copy(update={"model_id": f"{card.model_id}-int8", "quantisation": q.note})
    data, digest = onnx_to_bytes(model, card, tile, extra)
    # the pair or nothing: the item is written (from the graph under its temporary name)
    # before the graph takes its name, so a failure leaves neither file behind
    with atomic_path(out) as tmp:
        tmp.write_bytes(data)
        write_model_item(stac, card, tmp, "onnx", tile, href=out.name)
    result = ExportResult(
        path=out,
        card=card,
        tile_px=tile,
        size_bytes=len(data),
        export_s=time.perf_counter() - t0,
        sha256=hashlib.sha256(data).hexdigest(),
        graph_sha256=digest,
        stac=stac,
    )
    log.info(
        "exported %s -> %s (%s, %d px tiles, %.1f MB) in %.1f s",
        card.model_id,
        out,
        "int8" if int8 else "fp32",
        tile,
        len(data) / 1e6,
        result.export_s,
    )
    return result


def read_onnx(path: str | Path, *, current: bool = False) -> OnnxModel:
    """Read and verify a geotl ONNX export: graph sha256 and embedded card.

    ``current``: refuse an export of an older geotl (no ``geotl_card_sha256``) instead of
    loading it unverified; geotl's own cache of exports asks this, so an export it made
    before an upgrade is made again (:func:`geotl.predict.engine.load_model`).

    Raises:
        ModelArtefactError: not an ONNX file, truncated, altered (graph sha256 differs from
            the recorded one), without geotl metadata, or its card of a newer geotl.
        OlderExportError: ``current`` and an export of an older geotl.
    """
    import onnx
    from google.protobuf.message import DecodeError

    path = Path(path)
    if not path.is_file():
        raise ModelArtefactError("ONNX file not found", path)
    data = path.read_bytes()
    try:
        model = onnx.load_from_string(data)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise ModelArtefactError(
            f"not a readable ONNX file ({error_text(exc, 80)}): a truncated copy? "
            "export it again with geotl export",
            path,
        ) from None
    if not len(model.graph.node):
        raise ModelArtefactError(
            "not an ONNX model (empty graph): a truncated copy? export it again", path
        )
    meta = {p.key: p.value for p in model.metadata_props}
    if _CARD_KEY not in meta or _GRAPH_SHA_KEY not in meta:
        raise ModelArtefactError(
            "ONNX file without geotl metadata (no model card): export it with geotl export, "
            "or predict with a geotl model folder",
            path,
        )
    recorded = json.loads(meta[_GRAPH_SHA_KEY])
    actual = graph_sha256(model)
    if actual != recorded:
        raise ModelArtefactError(
            f"graph sha256 {actual[:12]}... does not match the recorded {recorded[:12]}... "
            "(an altered copy): export it again from the model folder",
            path,
        )
    _verify_card_text(path, meta, current)
    try:
        raw = json.loads(meta[_CARD_KEY])
    except ValueError as exc:
        raise ModelArtefactError(
            f"unreadable geotl card in the ONNX metadata ({error_text(exc)}): "
            "export it again with this geotl",
            path,
        ) from None
    # a card of a newer geotl is said to be newer (not "invalid: export it again")
    card = parse_card(raw, path)
    shape = model.graph.input[0].type.tensor_type.shape.dim
    tile = int(shape[-1].dim_value) if len(shape) == 4 else 0
    if tile <= 0:
        raise ModelArtefactError(
            "the graph's tile size is not fixed: export it again with geotl export", path
        )
    return OnnxModel(
        path=path,
        data=data,
        card=card,
        tile_px=tile,
        metadata={k: v for k, v in meta.items() if k != _CARD_KEY},
    )


def _verify_card_text(path: Path, meta: dict[str, str], current: bool = False) -> None:
    """Refuse an embedded card that differs from the one the export recorded the hash of.

    The graph hash does not cover the metadata, so without this an edited ``geotl_card``
    (threshold, classes, minimum area) would be read as the model's own and its outputs
    labelled with the model id. Exports from before the hash was recorded are let through.

    Raises:
        ModelArtefactError: the card's sha256 differs from ``geotl_card_sha256``.
        OlderExportError: ``current`` and no ``geotl_card_sha256``.
    """
    if _CARD_SHA_KEY not in meta:
        if current:
            raise OlderExportError(f"records no {_CARD_SHA_KEY}: exported by an older geotl", path)
        log.info(
            "%s records no %s (exported by an older geotl): its model card is not verified; "
            "export it again to have it checked",
            path,
            _CARD_SHA_KEY,
        )
        return
    try:
        recorded = str(json.loads(meta[_CARD_SHA_KEY]))
    except ValueError:
        recorded = meta[_CARD_SHA_KEY]  # edited into no JSON: compared as is, so refused
    actual = _sha256_text(meta[_CARD_KEY])
    if actual != recorded:
        raise ModelArtefactError(
            f"its model card ({_CARD_KEY} in the ONNX metadata) was changed after export "
            f"(sha256 {actual[:12]}..., recorded {recorded[:12]}...): outputs would carry a "
            "model id that is not theirs; export it again from the model folder, and set "
            "[predict] options in the region file instead of editing the card",
            path,
        )
