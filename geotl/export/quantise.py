"""Int8 quantisation of an exported graph with ONNX Runtime's static (calibrated) quantiser.

Activations are calibrated on the region's own training chips (MinMax ranges), weights are
quantised per output channel (QDQ format: int8 weights, uint8 activations, which ONNX
Runtime fuses into integer kernels on CPU). What stays in float, always: the input scaling,
the output head (softmax, and an instance model's sigmoid maps), and the graph's shape
arithmetic (the nodes that compute "same" padding sizes from the tile's shape in
EfficientNet's strided convolutions: quantised, those sizes
were rounded to 8-bit steps, the padding moved by pixels, and NEON SJER lost 0.031 IoU); a
detector also keeps its box decoding and scores in float (only its convolutions are
quantised). :class:`Int8Scheme` holds the quantiser's other settings (the benchmark
``scripts/bench_int8.py`` compares them). A compute layer the quantiser leaves in float
against the scheme makes the export fail with a message naming it: a half-quantised graph
would be slow and still lossy. The nodes kept in float are returned (the export records
them in the ONNX metadata).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from geotl.errors import GeotlInputError, error_text
from geotl.export.onnx import INPUT_NAME, INPUT_SCALE
from geotl.io.scratch import scratch_dir

if TYPE_CHECKING:
    from geotl.chips.index import ChipIndex

__all__ = [
    "DEFAULT_SCHEME",
    "Calibration",
    "Int8Result",
    "Int8Scheme",
    "calibration_from_chips",
    "quantise_int8",
    "region_calibration",
    "warn_calibration_resolution",
]

log = logging.getLogger(__name__)

# operators that carry the network's arithmetic: each must end up between int8 Q/DQ pairs
_COMPUTE_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")
# a detector's float nodes besides the others: only its convolutions are quantised
_DETECTOR_FLOAT = "detector: not convolutions"
# calibration name -> ONNX Runtime's CalibrationMethod member (also the card's wording)
_CALIBRATIONS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}


@dataclass(frozen=True)
class Int8Scheme:
    """The settings geotl gives ONNX Runtime's static quantiser.

    Attributes:
        per_channel: one weight scale per output channel (else one per tensor).
        reduce_range: 7-bit weights (for CPUs without VNNI, where 8-bit products can
            saturate).
        activation_symmetric: int8 activations centred on 0 (else uint8 with a zero point).
        calibration: ``"minmax"``, ``"entropy"`` or ``"percentile"`` ranges.
        moving_average: MinMax ranges averaged over calibration batches (``CalibMovingAverage``).
        float_depthwise: keep the depthwise (grouped) convolutions in float.
        float_stem_head: keep the first and the last convolution in float.
        float_shape_arithmetic: keep the shape arithmetic (padding sizes) in float. False
            reproduces geotl's earlier int8 export, for the benchmark only.
    """

    per_channel: bool = True
    reduce_range: bool = False
    activation_symmetric: bool = False
    calibration: str = "minmax"
    moving_average: bool = False
    float_depthwise: bool = False
    float_stem_head: bool = False
    float_shape_arithmetic: bool = True

    def describe(self) -> str:
        """One line for the card, e.g. ``per-channel int8 weights, uint8 activations, MinMax``."""
        weights = "per-channel" if self.per_channel else "per-tensor"
        bits = " (7-bit range)" if self.reduce_range else ""
        acts = "int8 symmetric" if self.activation_symmetric else "uint8"
        method = _CALIBRATIONS[self.calibration]
        if self.moving_average:
            method += " (moving average)"
        return f"{weights} int8 weights{bits}, {acts} activations, {method} calibration"


DEFAULT_SCHEME = Int8Scheme()


@dataclass(frozen=True)
class Int8Result:
    """A quantised graph and what the card and the metadata record about it.

    Attributes:
        model: the quantised ``onnx.ModelProto``.
        note: one line for the card's ``quantisation``.
        float_nodes: node names kept in float, by reason (``"input scaling and output head"``,
            ``"shape arithmetic"``, ``"compute layers"``, ``"pixel features"``; a detector
            also ``"detector: not convolutions"``: group normalisation, pyramid sums and
            upsampling, box decoding, scores).
    """

    model: Any
    note: str
    float_nodes: dict[str, list[str]]


@dataclass(frozen=True)
class Calibration:
    """Calibration tiles in the graph's input scale (raw / 255) and where they came from.

    Attributes:
        tiles: ``(N, bands, tile, tile)`` float32.
        source: e.g. ``"48 training chips of demo-osbs"``.
    """

    tiles: np.ndarray
    source: str


def calibration_from_chips(
    images: np.ndarray,
    valid: np.ndarray,
    mean: list[float],
    tile_px: int,
    source: str,
    max_tiles: int = 16,
    seed: int = 0,
) -> Calibration:
    """Tiles of the graph's size, mosaicked from training chips (in raw units).

    Chips smaller than the tile are laid side by side in a random order, larger ones are
    cropped: calibration only needs the activations' ranges on real imagery. Pixels without
    data take the band mean (as in training).

    Args:
        images: ``(N, bands, h, w)`` chips in raw units.
        valid: ``(N, h, w)`` pixel has data.
        mean: per-band mean (raw units).
        tile_px: the graph's tile size.
        source: description recorded in the card.
        max_tiles: at most this many tiles.
        seed: chip order.
    """
    n, c, h, w = images.shape
    if n == 0:
        raise GeotlInputError(f"no training chips to calibrate int8 on ({source})")
    fill = np.asarray(mean, dtype=np.float32)[:, None, None]
    chips = np.where(valid[:, None], images, fill).astype(np.float32)
    order = np.random.default_rng(seed).permutation(n)
    per_row, per_col = max(1, tile_px // w), max(1, tile_px // h)
    per_tile = per_row * per_col
    n_tiles = min(max_tiles, max(1, -(-n // per_tile)))
    tiles = np.empty((n_tiles, c, tile_px, tile_px), dtype=np.float32)
    k = 0
    for t in range(n_tiles):
        canvas = np.broadcast_to(fill, (c, tile_px, tile_px)).copy()
        for i in range(per_col):
            for j in range(per_row):
                chip = chips[order[k % n]][:, :tile_px, :tile_px]
                k += 1
                r0, c0 = i * h, j * w
                rh, cw = min(chip.shape[1], tile_px - r0), min(chip.shape[2], tile_px - c0)
                canvas[:, r0 : r0 + rh, c0 : c0 + cw] = chip[:, :rh, :cw]
        tiles[t] = canvas / INPUT_SCALE
    used = min(n, k)
    return Calibration(tiles=tiles, source=f"{used} training chips of {source}")


class _Reader:
    """ONNX Runtime's CalibrationDataReader over the calibration tiles, one per batch."""

    def __init__(self, tiles: np.ndarray) -> None:
        self._it: Iterator[dict[str, np.ndarray]] = iter(
            {INPUT_NAME: tiles[i : i + 1]} for i in range(len(tiles))
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)

    def rewind(self) -> None:  # pragma: no cover - not used by MinMax calibration
        pass


def _float_compute_nodes(model: Any, kept: set[str]) -> list[str]:
    """Compute nodes whose weights are not fed by a DequantizeLinear, other than ``kept``."""
    producers = {o: n for n in model.graph.node for o in n.output}
    left = []
    for node in model.graph.node:
        if node.op_type not in _COMPUTE_OPS or len(node.input) < 2 or node.name in kept:
            continue
        src = producers.get(node.input[1])
        if src is None or src.op_type != "DequantizeLinear":
            left.append(f"{node.name or node.op_type} ({node.op_type})")
    return left


# the ops of the probabilities at the end of the graph (softmax, an instance model's
# sigmoid maps and how they are cut and joined)
_HEAD_OPS = frozenset({"Softmax", "Sigmoid", "Slice", "Split", "Concat"})


def _head_nodes(model: Any) -> list[str]:
    """The nodes between the network's logits and the graph's output (:data:`_HEAD_OPS`)."""
    producers = {o: n for n in model.graph.node for o in n.output}
    todo = [o.name for o in model.graph.output]
    found: dict[str, None] = {}
    while todo:
        node = producers.get(todo.pop())
        if node is None or node.op_type not in _HEAD_OPS or node.name in found:
            continue
        found[node.name] = None
        todo.extend(node.input)
    return list(found)


def _float_nodes(model: Any) -> list[str]:
    """Nodes kept in float: the input scaling (Mul, Sub on the input) and the output head."""
    scaling = [n for n in model.graph.node if INPUT_NAME in n.input]
    scaled = {o for n in scaling for o in n.output}
    scaling += [n for n in model.graph.node if scaled & set(n.input) and n.op_type == "Sub"]
    return [n.name for n in scaling] + _head_nodes(model)


def _shape_nodes(model: Any) -> list[str]:
    """Nodes that compute on tensor shapes only (padding sizes), never on pixel values.

    A node is pixel data if one of its inputs descends from the graph's input other than
    through a ``Shape``; every other node (fed by shapes and constants only) is shape
    arithmetic.
    """
    data = {i.name for i in model.graph.input}
    shape = []
    for node in model.graph.node:  # topologically sorted, as ONNX requires
        if node.op_type != "Shape" and any(i in data for i in node.input):
            data.update(node.output)
        elif node.op_type != "Constant":
            shape.append(node.name)
    return shape


def _feature_nodes(model: Any, skip: set[str]) -> list[str]:
    """Pixel-data nodes before the first compute layer, other than ``skip``.

    They derive features from the few input bands (a per-pixel model's local means and
    spreads; a network's stem padding): cheap in float, and lossy in 8-bit steps. A spread
    computed as the mean square less the squared mean cancels in uint8: a per-pixel water
    model of Landsat's six bands (landsat-olinda) agreed with fp32 on 98.2 % of a tile's
    pixels with them quantised (0.90 IoU of the scene's water polygons), 99.2 % with them
    in float (0.94).
    """
    data = {i.name for i in model.graph.input}
    after_compute: set[str] = set()
    found = []
    for node in model.graph.node:  # topologically sorted, as ONNX requires
        if node.op_type == "Shape" or not any(i in data for i in node.input):
            continue
        data.update(node.output)
        if node.op_type in _COMPUTE_OPS or any(i in after_compute for i in node.input):
            after_compute.update(node.output)
        elif node.name not in skip:
            found.append(node.name)
    return found


def _float_compute_layers(model: Any, scheme: Int8Scheme) -> list[str]:
    """The convolutions ``scheme`` keeps in float (depthwise; first and last)."""
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    keep: list[str] = []
    if scheme.float_stem_head and convs:
        keep += [convs[0].name, convs[-1].name]
    if scheme.float_depthwise:
        keep += [
            n.name
            for n in convs
            if any(a.name == "group" and a.i > 1 for a in n.attribute) and n.name not in keep
        ]
    return keep


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """ONNX Runtime's quantiser logs advice on the root logger: keep stderr geotl's own."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def quantise_int8(
    model: Any,
    calibration: Calibration | np.ndarray,
    task: str = "segmentation",
    scheme: Int8Scheme = DEFAULT_SCHEME,
) -> Int8Result:
    """Statically quantise ``model`` to int8, calibrated on ``calibration``.

    A detector's graph (``task="detection"``) has only its convolutions quantised: the box
    decoding, the scores and the heads' group normalisation stay in float (box corners in
    uint8 steps would move by pixels).

    Returns:
        The quantised graph, a one-line note for the card and the nodes kept in float.

    Raises:
        GeotlInputError: the quantiser fails or leaves compute layers in float (named).
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if scheme.calibration not in _CALIBRATIONS:
        raise GeotlInputError(
            f"int8: unknown calibration {scheme.calibration!r} (one of {', '.join(_CALIBRATIONS)})"
        )
    if isinstance(calibration, np.ndarray):
        calibration = Calibration(tiles=calibration, source=f"{len(calibration)} tiles")
    method = CalibrationMethod[_CALIBRATIONS[scheme.calibration]]
    with scratch_dir("int8") as tmp, _quiet_root_logger():
        pre, out = tmp / "pre.onnx", tmp / "int8.onnx"
        try:
            # shape inference and graph optimisation first, as ONNX Runtime recommends
            quant_pre_process(model, pre, skip_symbolic_shape=True)
            model = onnx.load(str(pre))
            float_nodes = {
                "input scaling and output head": _float_nodes(model),
                "shape arithmetic": _shape_nodes(model) if scheme.float_shape_arithmetic else [],
                "compute layers": _float_compute_layers(model, scheme),
            }
            float_nodes["pixel features"] = _feature_nodes(
                model, {n for names in float_nodes.values() for n in names}
            )
            quantize_static(
                model,
                out,
                _Reader(calibration.tiles),
                quant_format=QuantFormat.QDQ,
                per_channel=scheme.per_channel,
                reduce_range=scheme.reduce_range,
                activation_type=(
                    QuantType.QInt8 if scheme.activation_symmetric else QuantType.QUInt8
                ),
                weight_type=QuantType.QInt8,
                nodes_to_exclude=[n for names in float_nodes.values() for n in names],
                op_types_to_quantize=["Conv"] if task == "detection" else None,
                calibrate_method=method,
                extra_options={
                    "ActivationSymmetric": scheme.activation_symmetric,
                    "WeightSymmetric": True,
                    "CalibMovingAverage": scheme.moving_average,
                },
            )
        except Exception as exc:  # the quantiser raises bare Exceptions on unsupported graphs
            what = "the detector's convolutions" if task == "detection" else "the graph"
            raise GeotlInputError(
                f"int8: {what} could not be quantised ({type(exc).__name__}: "
                f"{error_text(exc, 160)}): export fp32 (drop --int8)"
            ) from exc
        quantised = onnx.load(str(out))
    if task == "detection":
        # listed as the others are, so that the metadata names every node left in float
        # (a detector's group normalisation, pyramid sums and upsampling, box decoding)
        listed = {n for names in float_nodes.values() for n in names}
        float_nodes[_DETECTOR_FLOAT] = [
            n.name
            for n in model.graph.node
            if n.op_type not in ("Conv", "Constant") and n.name not in listed
        ]
    kept = float_nodes["compute layers"]
    left = _float_compute_nodes(quantised, set(kept))
    if left:
        raise GeotlInputError(
            f"int8: {len(left)} layer(s) could not be quantised ({', '.join(left[:5])}"
            f"{', ...' if len(left) > 5 else ''}): export fp32 (drop --int8)"
        )
    kept_note = f"{len(kept)} convolution(s): {', '.join(kept)}" if kept else "no convolution"
    note = (
        f"int8 static (ONNX Runtime QDQ, {scheme.describe()} on {calibration.source}; "
        f"float: input scaling, output head, "
        f"{len(float_nodes['shape arithmetic'])} shape-arithmetic nodes, "
        f"{len(float_nodes['pixel features'])} pixel-feature nodes, {kept_note}"
        + (
            f", {len(float_nodes[_DETECTOR_FLOAT])} nodes besides the convolutions"
            if task == "detection"
            else ""
        )
        + ")"
    )
    log.info("quantised to int8: %s", note)
    return Int8Result(model=quantised, note=note, float_nodes=float_nodes)


def warn_calibration_resolution(card: Any, index: ChipIndex, rows: Any, region_path: Path) -> None:
    """Say so when the calibration chips have pixels of another ground size or shape than the model's.

    The activations' ranges are then those of imagery the model never predicts (predict
    refuses it without ``--resample``): the card recorded a training region that is not
    here, and the region at hand was passed instead. Both sides of a pixel are compared,
    as evaluate compares them (:func:`~geotl.evaluate.chips.other_pixel_sides`): the same
    fields in UTM and on a degree grid share a mean but not a shape. A warning, not a
    refusal: the bands fit, and a model trained on regions of several resolutions records
    the first region's.
    """
    from geotl.evaluate.chips import chip_grid_units, other_pixel_sides
    from geotl.predict.scene import pixel_sides, warp_fix

    sides = other_pixel_sides(card, index, rows)
    if sides is None:
        return
    model_xy, chips_xy = sides
    crs_xy, units = chip_grid_units(index, rows)  # -tr in the scenes' units (feet too)
    log.warning(
        "%s: its training chips' pixels are %s on the ground, the model's %s: int8 is "
        "calibrated on imagery unlike the scenes it will predict; pass --calibrate a region "
        "of %s pixels (the model's training region, or %s)",
        region_path,
        pixel_sides(chips_xy),
        pixel_sides(model_xy),
        pixel_sides(model_xy),
        warp_fix(chips_xy, model_xy, crs_xy, units, "a region's scenes to them"),
    )


def region_calibration(
    model_dir: Path,
    tile_px: int,
    region_path: Path | None = None,
    chips_dir: Path | None = None,
    max_tiles: int = 16,
) -> Calibration:
    """Calibration tiles from the training chips of the model's (first) training region.

    The region file is the one recorded in the card unless ``region_path`` is given; its
    chips are found beside the model (``MODEL_DIR/chips``, ``MODEL_DIR/../chips``, as
    ``geotl train``/``geotl run`` lay them out), given as ``chips_dir``, or cut afresh (the
    split is a pure function of the region file).

    Raises:
        GeotlInputError: no region to calibrate on, or a region without training chips.
    """
    from geotl.chips import read_chip_index
    from geotl.config import load_region
    from geotl.evaluate import find_chips
    from geotl.models.artefact import read_card
    from geotl.predict.scene import check_model_bands
    from geotl.train import load_region_chips

    card = read_card(model_dir)
    if region_path is None:
        recorded = [Path(r.path) for r in card.regions if r.path]
        region_path = next((p for p in recorded if p.is_file()), None)
        if region_path is None:
            raise GeotlInputError(
                "int8 calibration needs the training region's chips, and the region file "
                f"recorded in the card ({', '.join(map(str, recorded)) or 'none'}) is not "
                "here: pass --calibrate REGION.toml",
                model_dir,
            )
    region = load_region(region_path)
    # before cutting its chips, and named by the file to change
    check_model_bands(
        list(card.bands),
        list(region.imagery.bands),
        region_path,
        what="the calibration region's",
        fix="pass --calibrate a region of the model's bands",
    )
    # chips beside the model are found (or, cut for another region file of that name,
    # passed over) by find_chips; only --chips is held to fit
    with scratch_dir("calib") as tmp:
        cdir = find_chips(model_dir, region, chips_dir, tmp)
        index = read_chip_index(cdir)
        warn_calibration_resolution(card, index, index.split("train"), region_path)
        data = load_region_chips(region, cdir, "train", list(card.bands))
    return calibration_from_chips(
        data.images,
        data.valid,
        card.normalisation.mean,
        tile_px,
        region.name,
        max_tiles=max_tiles,
    )
