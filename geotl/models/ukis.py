"""ukis-csmask's ONNX cloud-mask U-Nets as torch weights.

``ukis-csmask`` ships segmentation-models-pytorch U-Nets (EfficientNet-B4 encoder)
exported to ONNX. The exporter kept the torch parameter names as ONNX initializer names
(``model.encoder._conv_stem.weight``...), so the conversion is a name-for-name copy of the
initializers into ``smp.Unet("efficientnet-b4")``; batch norms were not folded. The tests
check the converted network against onnxruntime on random input.

The converted state is cached as safetensors in geotl's cache folder, next to a small JSON
with the sha256 of both the source ONNX and the converted file.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from geotl.errors import BaseModelError, error_text

__all__ = ["build_torch_unet", "converted_state", "onnx_bands", "onnx_path", "onnx_state"]

log = logging.getLogger(__name__)

_PREFIX = "model."


def onnx_path(variant: str, level: str = "l2a") -> Path | None:
    """The package's ONNX file for ``variant`` ("6b" or "4b"), or None if not installed."""
    try:
        import ukis_csmask
    except ImportError:
        return None
    path = Path(ukis_csmask.__file__).parent / f"model_{variant}_{level}.onnx"
    return path if path.is_file() else None


def _meta(variant: str, level: str = "l2a") -> dict[str, object]:
    path = onnx_path(variant, level)
    if path is None:
        raise BaseModelError("ukis-csmask is not installed: pip install ukis-csmask")
    meta: dict[str, object] = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    return meta


def onnx_bands(variant: str, level: str = "l2a") -> list[str]:
    """Band names of the model's input, in order (from the JSON beside the ONNX file)."""
    data = _meta(variant, level)["data"]
    assert isinstance(data, dict)
    return [str(b) for b in data["dataset_statistics"]["band_names"]]


def onnx_state(variant: str, level: str = "l2a") -> dict[str, torch.Tensor]:
    """Initializers of the ONNX U-Net as a torch state dict (smp ``Unet`` key names)."""
    import onnx
    from onnx import numpy_helper

    path = onnx_path(variant, level)
    if path is None:
        raise BaseModelError("ukis-csmask is not installed: pip install ukis-csmask")
    model = onnx.load(str(path))
    state: dict[str, torch.Tensor] = {}
    for init in model.graph.initializer:
        if init.name.startswith(_PREFIX):
            state[init.name[len(_PREFIX) :]] = torch.from_numpy(numpy_helper.to_array(init).copy())
    if not any(k.startswith("encoder.") for k in state):
        raise BaseModelError("no encoder weights found in the ONNX graph", path)
    return state


def build_torch_unet(variant: str, level: str = "l2a") -> torch.nn.Module:
    """The whole ukis-csmask U-Net in torch, with the ONNX weights loaded (eval mode)."""
    import segmentation_models_pytorch as smp

    meta = _meta(variant, level)
    data = meta["data"]
    assert isinstance(data, dict)
    net = smp.Unet(
        "efficientnet-b4",
        encoder_weights=None,
        in_channels=int(data["in_channels"]),
        classes=int(data["classes"]),
    )
    state = onnx_state(variant, level)
    missing, unexpected = net.load_state_dict(state, strict=False)
    # The ONNX graph omits the classifier head's conv/bn, which smp's encoder never uses.
    missing = [
        k
        for k in missing
        if not k.endswith("num_batches_tracked")
        and "_conv_head" not in k
        and "encoder._bn1" not in k
    ]
    if missing or unexpected:
        raise BaseModelError(
            f"ONNX weights do not fit smp Unet(efficientnet-b4): missing {missing[:3]}, unexpected {unexpected[:3]}"
        )
    net.eval()
    module: torch.nn.Module = net
    return module


def converted_state(variant: str, level: str = "l2a") -> dict[str, torch.Tensor]:
    """The converted U-Net state, from geotl's cache (converted once, then reused).

    A cache that cannot be written (a read-only home or share) costs a conversion per run,
    not the run: the state is then converted in memory, with a warning.
    """
    from safetensors.torch import load_file, save_file

    from geotl.io.atomic import atomic_path, atomic_write_text
    from geotl.models.bases.kind import cache_dir, sha256_file

    source = onnx_path(variant, level)
    if source is None:
        raise BaseModelError("ukis-csmask is not installed: pip install ukis-csmask")
    source_sha = sha256_file(source)
    folder = cache_dir() / "ukis-csmask"
    target = folder / f"model_{variant}_{level}-{source_sha[:12]}.safetensors"
    record = target.with_suffix(".json")
    if target.is_file() and record.is_file():
        try:
            info = json.loads(record.read_text(encoding="utf-8"))
        except (OSError, ValueError):  # a record cut short: its conversion is not trusted
            info = {}
        if isinstance(info, dict) and info.get("sha256") == sha256_file(target):
            return load_file(str(target))
        log.warning("cached conversion %s fails its sha256: converting again", target)
    net = build_torch_unet(variant, level)
    state = {k: v.detach().contiguous() for k, v in net.state_dict().items()}
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(target) as tmp:
            save_file(
                state, str(tmp), metadata={"source": source.name, "source_sha256": source_sha}
            )
        atomic_write_text(
            record,
            json.dumps(
                {
                    "source": str(source),
                    "source_sha256": source_sha,
                    "sha256": sha256_file(target),
                },
                indent=2,
            )
            + "\n",
        )
    except OSError as exc:
        log.warning(
            "cannot keep the conversion of %s in %s (%s): converted for this run only; set "
            "GEOTL_CACHE_DIR to a writable folder",
            source.name,
            folder,
            exc.strerror or error_text(exc),
        )
        return state
    log.info("converted %s to %s", source.name, target)
    return state


def onnx_float32_graph(variant: str, level: str = "l2a") -> bytes:
    """The ONNX U-Net with its float16 weights and casts turned into float32 (serialised).

    ukis-csmask's graphs were converted to float16 (weights and arithmetic, float32 only at
    the input and output), so onnxruntime's output on them differs from any float32
    network by float16 rounding (~1e-2). This float32 twin of the same graph lets a test
    compare the torch conversion to onnxruntime at float32 tolerance.
    """
    import numpy as np
    import onnx
    from onnx import TensorProto, numpy_helper

    path = onnx_path(variant, level)
    if path is None:
        raise BaseModelError("ukis-csmask is not installed: pip install ukis-csmask")
    model = onnx.load(str(path))
    graph = model.graph
    for i, init in enumerate(graph.initializer):
        if init.data_type == TensorProto.FLOAT16:
            arr = numpy_helper.to_array(init).astype(np.float32)
            graph.initializer[i].CopyFrom(numpy_helper.from_array(arr, init.name))
    for node in graph.node:
        for attr in node.attribute:
            if node.op_type == "Cast" and attr.name == "to" and attr.i == TensorProto.FLOAT16:
                attr.i = TensorProto.FLOAT
            if attr.name == "value" and attr.t.data_type == TensorProto.FLOAT16:
                arr = numpy_helper.to_array(attr.t).astype(np.float32)
                attr.t.CopyFrom(numpy_helper.from_array(arr))
    for info in list(graph.value_info) + list(graph.input) + list(graph.output):
        if info.type.tensor_type.elem_type == TensorProto.FLOAT16:
            info.type.tensor_type.elem_type = TensorProto.FLOAT
    return bytes(model.SerializeToString())
