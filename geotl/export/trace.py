"""Tracing an artefact's PyTorch network to an ONNX graph: the part of export needing torch.

Reading and running graphs (:mod:`geotl.export.onnx`) does not import torch.

The traced module is the network between the graph's input (``raw / 255``, the card's
normalisation folded in) and the task's probabilities; :mod:`geotl.export.onnx` then
writes the metadata.
"""

from __future__ import annotations

import warnings
from typing import Any, cast

import torch

from geotl.errors import GeotlInputError
from geotl.export.onnx import (
    DETECTIONS_NAME,
    INPUT_NAME,
    INPUT_SCALE,
    OPSET,
    OUTPUT_NAME,
    graph_head,
)
from geotl.models.artefact import Artefact

__all__ = ["torch_to_onnx"]


class _Portable(torch.nn.Module):
    """``raw / 255`` -> the card's normalisation -> network -> the task's probabilities.

    ``head``: ``"softmax"`` over background + classes (segmentation); ``"instances"``, that
    softmax over the first ``classes`` channels and a sigmoid over the others (border,
    contact); ``"none"``, the network's own output (a detector's
    :class:`~geotl.models.detector.AnchorRows`).
    """

    def __init__(
        self,
        network: torch.nn.Module,
        mean: list[float],
        std: list[float],
        head: str = "softmax",
        classes: int = 0,
    ) -> None:
        super().__init__()
        self.network = network
        self.head = head
        self.classes = classes
        m = torch.tensor(mean, dtype=torch.float32)[None, :, None, None]
        s = torch.tensor(std, dtype=torch.float32)[None, :, None, None]
        # (x * 255 - mean) / std == x * (255 / std) - mean / std: one Mul and one Sub
        self.scale: torch.Tensor
        self.shift: torch.Tensor
        self.register_buffer("scale", INPUT_SCALE / s)
        self.register_buffer("shift", m / s)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.network(x * self.scale - self.shift)
        if self.head == "softmax":
            return torch.softmax(logits, dim=1)
        if self.head == "instances":
            k = self.classes
            return torch.cat(
                [torch.softmax(logits[:, :k], dim=1), torch.sigmoid(logits[:, k:])], dim=1
            )
        return logits


def torch_to_onnx(artefact: Artefact, tile_px: int) -> Any:
    """Trace the artefact's network (normalisation folded, softmax added) to an ONNX model.

    Returns:
        The ``onnx.ModelProto``, without metadata.
    """
    import io

    import onnx

    card = artefact.card
    stride = card.network.stride_px
    if tile_px % stride:
        raise GeotlInputError(
            f"tile size {tile_px} px is not a multiple of {stride} (the network's stride): "
            f"pass --tile-px {card.network.round_up_px(tile_px)}"
        )
    network, output, batch = artefact.network, OUTPUT_NAME, {0: "batch"}
    # the output's fixed sizes (axis -> size): a probability map is the tile's size
    fixed = {2: tile_px, 3: tile_px}
    if card.task == "detection":
        # every anchor's box and scores; one window per run (as Deepness runs detectors)
        from geotl.models.detector import AnchorRows, GeotlRetinaNet

        network = AnchorRows(cast(GeotlRetinaNet, network), len(card.bands), tile_px)
        output, batch = DETECTIONS_NAME, {}
        # one row per anchor: cx, cy, w, h, conf, p_0..p_K
        fixed = {0: 1, 1: int(network.centre.shape[0]), 2: 5 + 1 + len(card.classes)}
    portable = _Portable(
        network,
        card.normalisation.mean,
        card.normalisation.std,
        head=graph_head(card.task),
        classes=1 + len(card.classes),
    )
    portable = portable.to("cpu").eval()
    example = torch.zeros(1, len(card.bands), tile_px, tile_px)
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            portable,
            (example,),
            buf,  # type: ignore[arg-type]  # file-like objects are accepted
            dynamo=False,  # the TorchScript exporter: no onnxscript dependency
            opset_version=OPSET,
            input_names=[INPUT_NAME],
            output_names=[output],
            dynamic_axes={INPUT_NAME: batch, output: batch} if batch else None,
            do_constant_folding=True,
        )
    model = onnx.load_from_string(buf.getvalue())
    # said in the graph: the exporter leaves a detector's as generated names
    # ("Unsqueezedetections_dim_1"), which onnx, Netron and converters read as its shape
    for axis, dim in enumerate(model.graph.output[0].type.tensor_type.shape.dim):
        if axis in fixed:
            dim.Clear()
            dim.dim_value = fixed[axis]
    return model
