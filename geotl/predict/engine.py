"""Forward-pass engines: the network in PyTorch, or its ONNX export in ONNX Runtime.

Prediction (windows, blending, seams, vectorising, outputs) is the same whichever engine
runs; an engine only turns a batch of normalised windows into foreground probabilities.

* :class:`TorchEngine`: the artefact's network (autocast on CUDA).
* :class:`OrtEngine`: an ONNX graph (:mod:`geotl.export.onnx`: normalisation folded in,
  softmax included) in an ONNX Runtime CPU session, fp32 or int8. A detector's graph gives
  every anchor's box and scores; :meth:`OrtEngine.detections` applies RetinaNet's own
  post-processing (:func:`geotl.models.detector.select_detections`) to them.

:func:`load_model` opens a model folder or an ``.onnx`` file with the engine asked for.
A model folder run with ONNX Runtime is exported once per weights and tile size into
geotl's cache (``$GEOTL_CACHE_DIR/onnx``), so later runs start at once; the cache keeps
at most :data:`ONNX_CACHE_MB` of exports, the most recently used.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

import numpy as np

from geotl.errors import GeotlInputError, ModelArtefactError, error_text
from geotl.export.onnx import (
    EXPORT_FORMAT,
    INPUT_NAME,
    INPUT_SCALE,
    OlderExportError,
    OnnxModel,
    read_onnx,
)
from geotl.models.artefact import Artefact, ModelCard, load_artefact

if TYPE_CHECKING:  # a model folder or .onnx run by ONNX Runtime never imports torch
    import torch

__all__ = [
    "ENGINES",
    "DetectionEngine",
    "Engine",
    "EngineName",
    "OrtEngine",
    "TorchEngine",
    "default_engine",
    "device_probabilities",
    "engine_for",
    "load_model",
]

log = logging.getLogger(__name__)

EngineName = Literal["auto", "torch", "onnxruntime"]
ENGINES: tuple[str, ...] = ("auto", "torch", "onnxruntime")


class Engine(Protocol):
    """Turns normalised windows into foreground probabilities."""

    name: str

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        """``(B, bands, H, W)`` normalised float32 -> ``(B, classes, H, W)`` float32.

        Background is left out: channel ``k`` is the probability of class ``k + 1``.
        """
        ...


# boxes (n, 4) x0 y0 x1 y1 in window pixels, scores (n,), class ids (n,) of one window
WindowBoxes = tuple[np.ndarray, np.ndarray, np.ndarray]


@runtime_checkable
class DetectionEngine(Protocol):
    """Turns normalised windows into each window's boxes (an exported detector)."""

    def detections(self, batch: np.ndarray, nms_iou: float) -> list[WindowBoxes]:
        """``(B, bands, H, W)`` normalised float32 -> per window: boxes, scores, class ids."""
        ...


class TorchEngine:
    """The artefact's PyTorch network (float16 autocast on CUDA, channels-last on the CPU).

    On the CPU the network's weights and each batch are put in channels-last memory order
    (NHWC): oneDNN's convolutions (depthwise ones above all) run 1.3-1.4x faster so on this
    machine's cores (BENCHMARKS.md, issue 10) for the same arithmetic, up to rounding
    (probabilities within 1e-6). The probabilities come back in the usual (NCHW) order.
    """

    name = "torch"

    def __init__(
        self,
        network: torch.nn.Module,
        device: torch.device,
        head: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        import torch

        self.network = network
        self.device = device
        self.head = head
        self.channels_last = device.type == "cpu"
        if self.channels_last and not getattr(network, "_geotl_channels_last", False):
            network.to(memory_format=torch.channels_last)  # in place, once per network
            setattr(network, "_geotl_channels_last", True)  # noqa: B010 (a module attribute)

    def tensor_probabilities(self, batch: np.ndarray) -> torch.Tensor:
        """:meth:`probabilities` left on the model's device (no copy back)."""
        import torch

        amp = self.device.type == "cuda"
        with (
            torch.inference_mode(),
            torch.autocast(self.device.type, dtype=torch.float16, enabled=amp),
        ):
            x = torch.from_numpy(batch).to(self.device, non_blocking=True)
            if self.channels_last and x.ndim == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            logits = self.network(x)
            if self.channels_last:
                # back to NCHW before the head: its softmax and slices run twice as fast on
                # contiguous channels' planes (a 4-channel instance head: 4.0 -> 2.1 ms a
                # batch of 8 windows of 256 px), and the blend wants NCHW anyway
                logits = logits.contiguous()
            if self.head is not None:
                probs = self.head(logits)
            else:
                probs = torch.softmax(logits.float(), dim=1)[:, 1:]
        return probs.float().contiguous()

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        """See :meth:`Engine.probabilities`."""
        out: np.ndarray = self.tensor_probabilities(batch).cpu().numpy()
        return out


def device_probabilities(engine: Engine, batch: np.ndarray) -> np.ndarray | torch.Tensor:
    """An engine's probabilities where they were computed: a tensor on an accelerator.

    Blending then happens there too (:mod:`geotl.predict.stream`). Probabilities computed
    on the CPU come as a numpy array (a CPU tensor's own memory, not a copy), so that the
    CPU path never needs torch.
    """
    if isinstance(engine, TorchEngine):
        probs = engine.tensor_probabilities(batch)
        return probs.numpy() if probs.device.type == "cpu" else probs
    return np.ascontiguousarray(engine.probabilities(batch), dtype=np.float32)


def _session(model: OnnxModel, threads: int | None) -> object:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads or (os.cpu_count() or 1)
    opts.inter_op_num_threads = 1
    # no spin-waiting between operators: the threads reading windows ahead and the
    # vectorising processes need those cores (2048 px scene, 2 cores: 5% faster whole
    # scene, the bare forward passes no slower; BENCHMARKS.md, "Instance models on ONNX")
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3  # errors only: ORT's warnings are not the user's business
    try:
        return ort.InferenceSession(model.data, opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own exception types (Fail, InvalidGraph...)
        raise ModelArtefactError(
            f"ONNX Runtime {ort.__version__} cannot load this graph ({error_text(exc)}): upgrade "
            "onnxruntime, or export the model again with this geotl",
            model.path,
        ) from None


class OrtEngine:
    """An exported graph in an ONNX Runtime CPU session.

    The graph takes ``raw / 255`` (see :mod:`geotl.export.onnx`); geotl's windows arrive
    normalised, so they are mapped back with the card's mean and std first.
    """

    name = "onnxruntime"

    def __init__(self, model: OnnxModel, threads: int | None = None) -> None:
        self.model = model
        self.card: ModelCard = model.card
        self.tile_px = model.tile_px
        self.threads = threads
        self._session = _session(model, threads)
        norm = model.card.normalisation
        self._std = np.asarray(norm.std, dtype=np.float32)[None, :, None, None] / INPUT_SCALE
        self._mean = np.asarray(norm.mean, dtype=np.float32)[None, :, None, None] / INPUT_SCALE
        # a detector's lowest candidate score; None: the PyTorch network's ``score_thresh``
        self.score_thresh: float | None = None

    def run(self, scaled: np.ndarray) -> np.ndarray:
        """The graph on ``(B, bands, tile, tile)`` raw / 255 values: all class probabilities."""
        if scaled.shape[-2:] != (self.tile_px, self.tile_px):
            raise GeotlInputError(
                f"this ONNX graph takes {self.tile_px} px tiles, not {scaled.shape[-1]} px: "
                f"predict with --window {self.tile_px}, or export with --tile-px "
                f"{scaled.shape[-1]}",
                self.model.path,
            )
        out: np.ndarray = self._session.run(None, {INPUT_NAME: scaled})[0]  # type: ignore[attr-defined]
        return out

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        """See :meth:`Engine.probabilities`."""
        scaled = (batch * self._std + self._mean).astype(np.float32, copy=False)
        return self.run(scaled)[:, 1:]

    def detections(self, batch: np.ndarray, nms_iou: float) -> list[WindowBoxes]:
        """See :meth:`DetectionEngine.detections` (a detector's graph, one window a run)."""
        if self.card.task != "detection":
            raise GeotlInputError(
                f"this ONNX graph is a {self.card.task} model, not a detector", self.model.path
            )
        # torchvision's detection code (1.2 s to import) only where a detector runs
        import torch

        from geotl.models.detector import SCORE_THRESH, level_anchors, select_detections

        scaled = (batch * self._std + self._mean).astype(np.float32, copy=False)
        levels = level_anchors(self.tile_px)
        thresh = SCORE_THRESH if self.score_thresh is None else self.score_thresh
        out = []
        for window in scaled:
            rows = torch.from_numpy(self.run(window[None])[0])
            boxes, scores, labels = select_detections(rows, levels, self.tile_px, nms_iou, thresh)
            out.append((boxes.numpy(), scores.numpy(), labels.numpy().astype(np.int64)))
        return out


class _ExportingEngine:
    """ONNX Runtime for a model folder: exported on first use per tile size (cached)."""

    name = "onnxruntime"

    def __init__(self, artefact: Artefact, threads: int | None) -> None:
        self.artefact = artefact
        self.threads = threads
        self._engines: dict[int, OrtEngine] = {}
        self._lock = threading.Lock()

    def engine(self, tile_px: int) -> OrtEngine:
        """The engine for ``tile_px`` tiles (exported or read from the cache)."""
        with self._lock:
            if tile_px not in self._engines:
                self._engines[tile_px] = OrtEngine(
                    _cached_export(self.artefact, tile_px), self.threads
                )
            return self._engines[tile_px]

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        """See :meth:`Engine.probabilities`."""
        return self.engine(batch.shape[-1]).probabilities(batch)

    def detections(self, batch: np.ndarray, nms_iou: float) -> list[WindowBoxes]:
        """See :meth:`DetectionEngine.detections`."""
        return self.engine(batch.shape[-1]).detections(batch, nms_iou)


#: the most the ONNX exports of model folders may take in geotl's cache, in MB
#: (``$GEOTL_ONNX_CACHE_MB``): beyond it the exports used longest ago are removed. A model
#: retrained every week adds one export (about 20 MB for EfficientNet-Lite0) a week.
ONNX_CACHE_MB = 2048.0


def _prune_exports(folder: Path, keep: Path) -> None:
    """Remove the least recently used exports in ``folder`` (never ``keep``) over the limit."""
    limit = float(os.environ.get("GEOTL_ONNX_CACHE_MB", ONNX_CACHE_MB)) * 1e6
    sized = []
    for p in folder.glob("*.onnx"):
        try:
            st = p.stat()
        except OSError:  # removed meanwhile by another process
            continue
        sized.append((st.st_mtime, st.st_size, p))
    total = sum(size for _, size, _ in sized)
    for _, size, p in sorted(sized):
        if total <= limit:
            break
        if p == keep:
            continue
        try:
            p.unlink()
        except OSError:
            continue
        total -= size
        log.info("removed the ONNX export %s from the cache (used longest ago)", p.name)


def _cached_export(artefact: Artefact, tile_px: int) -> OnnxModel:
    """The artefact's ONNX export for ``tile_px`` tiles, from geotl's cache or made now.

    Files are named by the weights, the tile size and :data:`EXPORT_FORMAT` (not geotl's
    version, which stays put between releases): an export of another format is never
    reused, and one this geotl would only load with a caveat (an older export without its
    card's hash) is made again silently, as the user never made it.
    """
    from geotl.export.onnx import onnx_to_bytes
    from geotl.io.atomic import atomic_path
    from geotl.io.cache import cache_dir

    card = artefact.card
    sha = card.weights_sha256 or card.model_id
    path = cache_dir() / "onnx" / f"{sha[:32]}-{tile_px}px-format{EXPORT_FORMAT}.onnx"
    if path.is_file():
        try:
            model = read_onnx(path, current=True)
            with contextlib.suppress(OSError):  # used now: the last to be pruned
                os.utime(path)
            return model
        except OlderExportError as exc:
            log.debug("cached ONNX export %s: %s; exporting again", path, exc.message)
        except ModelArtefactError as exc:  # damaged, or of a newer geotl (a downgrade)
            log.warning(
                "cached ONNX export %s cannot be used (%s): exporting again", path, exc.message
            )
    log.info("exporting %s to ONNX (%d px tiles) for ONNX Runtime", card.model_id, tile_px)
    from geotl.export.trace import torch_to_onnx  # torch: only on a cache miss

    model = torch_to_onnx(artefact, tile_px)
    data, _ = onnx_to_bytes(model, card, tile_px)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
        _prune_exports(path.parent, keep=path)
        return read_onnx(path)
    except OSError:  # a read-only cache: keep the export in memory
        tmp_path = Path(artefact.path) / "model.onnx"
        return OnnxModel(path=tmp_path, data=data, card=card, tile_px=tile_px, metadata={})


def default_engine(device: str) -> str:
    """The engine ``auto`` means for a model folder: ONNX Runtime on CPU, else PyTorch.

    On CPU ONNX Runtime predicted whole scenes 1.5-2x faster than PyTorch eager for every
    task, with the same objects (BENCHMARKS.md, "ONNX Runtime"); it runs on CPU only.
    """
    return "onnxruntime" if device == "cpu" else "torch"


def engine_for(
    artefact: Artefact, head: Callable[[torch.Tensor], torch.Tensor] | None = None
) -> Engine:
    """The engine an artefact runs with (its own, else its PyTorch network).

    ``head`` turns the torch network's logits into the probabilities prediction blends
    (the task's :meth:`geotl.predict.objects.ObjectExtractor.probabilities`; default:
    softmax, background dropped).
    """
    engine: Engine | None = artefact.engine
    return engine if engine is not None else TorchEngine(artefact.network, artefact.device, head)


def _ort_network(engine: OrtEngine) -> torch.nn.Module:
    from geotl.predict.ort_network import OrtNetwork

    return OrtNetwork(engine)


def load_model(
    path: str | Path,
    engine: str = "torch",
    device: str = "cpu",
    threads: int | None = None,
) -> Artefact:
    """Open a model folder or an exported ``.onnx`` file with the engine asked for.

    Args:
        path: a geotl model folder, or a ``.onnx`` written by ``geotl export``.
        engine: ``torch``, ``onnxruntime`` or ``auto`` (an ``.onnx`` file: ONNX Runtime;
            a folder: :func:`default_engine`).
        device: ``cpu`` or ``cuda`` (ONNX Runtime runs on CPU here).
        threads: ONNX Runtime's intra-op threads (default: every core).

    Raises:
        ModelArtefactError: missing, damaged or altered files; an ONNX file without geotl
            metadata, or one this ONNX Runtime cannot run.
        GeotlInputError: an engine that cannot run this model on this device.
    """
    path = Path(path)
    if engine not in ENGINES:
        raise GeotlInputError(f"unknown engine '{engine}': use one of {', '.join(ENGINES)}")
    is_onnx = path.suffix.lower() == ".onnx"
    if engine == "auto":
        engine = "onnxruntime" if is_onnx else default_engine(device)
    if engine == "onnxruntime" and device != "cpu":
        raise GeotlInputError(
            f"the onnxruntime engine runs on CPU here: use --engine torch with --device {device}"
        )
    if is_onnx:
        if engine != "onnxruntime":
            raise GeotlInputError(
                "an .onnx file runs with --engine onnxruntime (or pass the model folder)", path
            )
        ort_engine = OrtEngine(read_onnx(path), threads)
        return Artefact(
            card=ort_engine.card,
            network=None,
            path=path,
            device="cpu",
            engine=ort_engine,
            build=partial(_ort_network, ort_engine),  # for code written for a torch network
        )
    # ONNX Runtime builds the PyTorch network only to export it (once per tile size)
    artefact = load_artefact(path, device, lazy=engine == "onnxruntime")
    if engine == "onnxruntime":
        artefact.engine = _ExportingEngine(artefact, threads)
    return artefact
