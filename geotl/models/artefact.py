"""Model artefacts: ``model.safetensors`` + ``model.json`` (the model card).

The card says everything needed to use the model correctly: classes, bands and their
normalisation, chip size and ground resolution, the base model (id, licence, sha256), the
label budget and counts, the regions it was trained on, the seed and the metrics.
No pickle anywhere: weights are safetensors, the card is JSON.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from geotl import __version__
from geotl.errors import GeotlInputError, ModelArtefactError, error_text
from geotl.io.atomic import atomic_path, atomic_write_text
from geotl.models.network import NetworkSpec, build_network

if TYPE_CHECKING:
    import torch

    from geotl.predict.engine import Engine

__all__ = [
    "CARD_FILE",
    "CARD_FORMAT",
    "STAC_FILE",
    "WEIGHTS_FILE",
    "Artefact",
    "BaseModelRef",
    "DeviceRecord",
    "ModelCard",
    "Normalisation",
    "RegionRecord",
    "card_digest",
    "load_artefact",
    "on_cpu",
    "parse_card",
    "read_card",
    "require_device",
    "verify_weights",
    "weights_sha256",
    "write_artefact",
]

CARD_FILE = "model.json"
WEIGHTS_FILE = "model.safetensors"
STAC_FILE = "model.stac.json"  # STAC item with the ML Model extension (geotl.export.stac)
CARD_FORMAT = 1  # bump when a card can no longer be read by older code
SEED_THRESHOLD = 0.6
"""An instance model's watershed seed threshold where its card records none: cards written
before training chose one on validation keep predicting as they did (0.6 was chosen on the
demo plot: BENCHMARKS.md, issue 9 section)."""


def on_cpu(device: str | torch.device) -> bool:
    """Whether ``device`` (``"cpu"``, ``"cuda:0"``, a ``torch.device``...) is the CPU."""
    return str(device).split(":")[0] == "cpu"


class _Card(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BaseModelRef(_Card):
    """The base model an artefact was adapted from."""

    id: str
    architecture: str
    licence: str
    commercial_use: bool
    sha256: str | None = None
    pretraining: str = ""


class Normalisation(_Card):
    """Per-band input normalisation in the file's raw units: ``(raw - mean) / std``."""

    mean: list[float]
    std: list[float]


class RegionRecord(_Card):
    """One training region and how many labels it contributed."""

    name: str
    path: str
    labels_available: int
    labels_used: int
    chips_train: int
    split_sha: str | None = None  # ChipIndex.split_sha of the chips trained on (evaluate checks)


class DeviceRecord(_Card):
    """Where a model was trained: the accelerator, how many of it and how they were joined."""

    accelerator: str  # "cpu" | "cuda"
    devices: int  # per node
    num_nodes: int = 1
    strategy: str = "single"  # "single" (one process) or the Lightning strategy, e.g. "ddp"
    batch_per_device: int  # chips per device in each step (the global batch / processes)


class ModelCard(_Card):
    """The model card (``model.json``)."""

    card_format: int = CARD_FORMAT
    geotl_version: str = __version__
    # filled by write_artefact: "<name>-<card digest, 8 hex>-<sha256 of weights, 12 hex>"
    model_id: str = ""
    weights_sha256: str = ""  # filled by write_artefact; every load checks the weights against it
    quantisation: str = "none"  # how an exported graph was quantised (e.g. int8 static)
    name: str
    task: str = "segmentation"
    classes: list[str]
    bands: list[str]
    normalisation: Normalisation
    chip_size_px: int
    resolution_m: float  # mean of a chip pixel's two ground sides (median over the chips)
    # east-west / north-south ground size of the chips' pixels (median): 1 on a projected
    # grid, cos(latitude) on a square-degree one; predict resamples scenes of another shape.
    # None in cards written before it was recorded: not known, so predict keeps comparing
    # the mean resolution only (a model trained on a degree grid must not be refused the
    # very scenes it was trained on)
    pixel_aspect: float | None = Field(default=None, gt=0)
    # the lossy codecs the training scenes' pixels went through (sorted; [] none: lossless),
    # so predict warns of a lossy scene only where the model did not learn from such
    # artefacts; None: not known (a card written before it was recorded, or scenes that
    # could not be opened when it was written): every lossy scene is warned of
    lossy: list[str] | None = None
    network: NetworkSpec
    base: BaseModelRef
    freeze: str
    label_budget: int | None = None
    regions: list[RegionRecord] = Field(default_factory=list)
    seed: int = 0
    epochs: int | None = None  # the epochs asked for; None when training ran by steps
    steps: int | None = None  # optimizer steps trained (metrics: the schedule's); None: older cards
    threshold: float = 0.5  # detection: the minimum box score
    nms_iou: float = 0.5  # detection: boxes of one class overlapping more are one object
    # instances: the seed score where the watershed starts an object (the training region's)
    seed_threshold: float = Field(default=SEED_THRESHOLD, gt=0, lt=1)
    min_area_m2: float = 0.0  # the training region's [predict] defaults
    simplify_px: float = 1.0
    metrics: dict[str, Any] = Field(default_factory=dict)
    trained_on: DeviceRecord | None = None  # None in cards written before it was recorded
    created: str = ""

    @property
    def kept(self) -> str:
        """What training kept: "network", "pixel model" or "base weights" (none trained better)."""
        if (self.metrics.get("pixel_model") or {}).get("kept"):
            return "pixel model"
        if self.metrics.get("kept_base"):
            return "base weights"
        return "network"


class Artefact:
    """A loaded model: its card, its network (eval mode) and where it came from.

    ``engine`` runs prediction's forward passes when set (ONNX Runtime, see
    :func:`geotl.predict.engine.load_model`); ``None`` means the PyTorch network. The
    network may be built on first use (``build``): ONNX Runtime with a cached export
    never needs it, and then torch is never imported (`geotl predict` on the demo plot: 3.4
    s instead of 7.0 s, a peak of 603 MB instead of 1.23 GB; BENCHMARKS.md, issue 10).
    """

    def __init__(
        self,
        card: ModelCard,
        network: torch.nn.Module | None,
        path: Path,
        device: str | torch.device,
        engine: Engine | None = None,
        *,
        build: Callable[[], torch.nn.Module] | None = None,
    ) -> None:
        if network is None and build is None:
            raise ValueError("an artefact needs its network or a way to build it")
        self.card = card
        self.path = path
        self.device_name = str(device)
        self.engine = engine
        self._network = network
        self._build = build

    @property
    def device(self) -> torch.device:
        """The PyTorch device of the network (imports torch)."""
        import torch

        return torch.device(self.device_name)

    @property
    def on_cpu(self) -> bool:
        """Whether the forward passes run on the CPU (ONNX Runtime always does)."""
        return self.engine is not None or on_cpu(self.device_name)

    @property
    def network(self) -> torch.nn.Module:
        """The PyTorch network, built and loaded with the weights on first use."""
        if self._network is None:
            assert self._build is not None
            self._network = self._build()
        return self._network

    @network.setter
    def network(self, network: torch.nn.Module) -> None:
        self._network = network

    @property
    def model_id(self) -> str:
        """Stable id of the artefact (name + card digest + weights hash)."""
        return self.card.model_id

    def normalise(self, raw: np.ndarray) -> np.ndarray:
        """Normalise a ``(..., C, H, W)`` raw array with the card's per-band mean/std.

        A new float32 array, computed in place (one allocation: a window's temporaries
        cost ten times the arithmetic), equal to the bit to ``(raw - mean) / std`` in
        float32.
        """
        mean = np.asarray(self.card.normalisation.mean, dtype=np.float32)[:, None, None]
        std = np.asarray(self.card.normalisation.std, dtype=np.float32)[:, None, None]
        out = raw.astype(np.float32)  # a copy, always
        np.subtract(out, mean, out=out)
        np.divide(out, std, out=out)
        return out


def read_card(model_dir: str | Path) -> ModelCard:
    """Read and validate ``MODEL_DIR/model.json``.

    Raises:
        ModelArtefactError: the folder or card is missing, unreadable, or from an
            incompatible geotl.
    """
    model_dir = Path(model_dir)
    card_path = model_dir / CARD_FILE
    if model_dir.is_file():
        raise ModelArtefactError(
            "is a file, not a model folder: pass the folder geotl train wrote (or a .onnx file "
            "geotl export wrote); the model comes first, then the scenes",
            model_dir,
        )
    if not model_dir.is_dir():
        raise ModelArtefactError(
            "model folder not found: pass a folder written by geotl train", model_dir
        )
    if not card_path.is_file():
        inner = model_dir / "model"
        hint = (
            f": pass {inner} (geotl run keeps its model there)"
            if (inner / CARD_FILE).is_file()
            else ""
        )
        raise ModelArtefactError(
            f"missing {CARD_FILE}: this is not a geotl model folder{hint}", model_dir
        )
    try:
        raw = json.loads(card_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelArtefactError(
            f"unreadable model card ({exc}); retrain or restore it", card_path
        ) from exc
    return parse_card(raw, card_path)


#: what to do with a card a newer geotl wrote (this geotl cannot tell what it would change)
_NEWER = "use the geotl that wrote it (or a later one), or retrain with this one"
_NEWER_EXPORT = (
    "use the geotl that exported it (or a later one), or export its model folder again "
    "with this one"
)


def parse_card(raw: object, source: str | Path) -> ModelCard:
    """Validate a model card's JSON (``model.json``, or the card an ONNX export embeds).

    A card of a newer geotl (a higher ``card_format``, or entries this geotl does not know)
    is refused as such, not as an invalid card to retrain: its model is fine, this geotl is
    older. Entries this geotl does not know are never dropped: each may change what the
    model predicts (another band order, a threshold), so reading the rest would be wrong
    silently. Cards of earlier geotl versions read their missing entries as the defaults
    that keep them predicting as they did.

    Args:
        raw: the card as parsed JSON.
        source: the file it came from, named in errors.

    Raises:
        ModelArtefactError: another card format, an unknown entry or an invalid value.
    """
    # an export is made again from its model folder; a folder's card, by training again
    export = Path(source).suffix.lower() == ".onnx"
    redo = (
        "export it again from its model folder with this geotl (geotl export), or retrain"
        if export
        else "retrain with this geotl"
    )
    newer = _NEWER_EXPORT if export else _NEWER
    fmt = raw.get("card_format") if isinstance(raw, dict) else None
    if isinstance(fmt, int) and fmt > CARD_FORMAT:
        raise ModelArtefactError(
            f"model card format {fmt} is newer than this geotl reads (format {CARD_FORMAT}): "
            + newer,
            source,
        )
    if fmt != CARD_FORMAT:
        wrote = raw.get("geotl_version") if isinstance(raw, dict) else None
        by = f" (written by geotl {wrote})" if wrote else ""
        raise ModelArtefactError(
            f"model card format {fmt!r}{by} is not supported by this geotl (format "
            f"{CARD_FORMAT}): {redo}",
            source,
        )
    try:
        return ModelCard.model_validate(raw)
    except ValidationError as exc:
        errors = exc.errors()
        unknown = [
            ".".join(str(p) for p in e["loc"]) for e in errors if e["type"] == "extra_forbidden"
        ]
        if unknown:
            raise ModelArtefactError(
                f"model card has entries this geotl does not know ({', '.join(unknown)}), "
                "written by a newer geotl: " + newer,
                source,
            ) from None
        key = ".".join(str(p) for p in errors[0]["loc"])
        raise ModelArtefactError(
            f"invalid model card at '{key}': {errors[0]['msg']}; {redo}", source
        ) from None


def write_artefact(model_dir: str | Path, network: torch.nn.Module, card: ModelCard) -> ModelCard:
    """Write weights, card and STAC item into ``model_dir`` (created if needed), atomically.

    Returns:
        The card as written, with ``model_id`` and ``created`` filled in.
    """
    from datetime import UTC, datetime

    from safetensors.torch import save_file

    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in network.state_dict().items()}
    weights_path = model_dir / WEIGHTS_FILE
    with atomic_path(weights_path) as tmp:
        save_file(state, str(tmp), metadata={"geotl_version": __version__})
    digest = weights_sha256(weights_path)
    card = card.model_copy(
        update={
            "model_id": f"{card.name}-{card_digest(card)[:8]}-{digest[:12]}",
            "weights_sha256": digest,
            "created": card.created or datetime.now(UTC).isoformat(timespec="seconds"),
        }
    )
    atomic_write_text(model_dir / CARD_FILE, card.model_dump_json(indent=2) + "\n")
    from geotl.export.stac import write_model_item

    write_model_item(model_dir / STAC_FILE, card, weights_path, "safetensors")
    return card


#: card entries that do not change what a deployed model does (when, how fast, how it scored;
#: ``lossy``: which scenes predict warns of, and None where the chips' scenes were not at hand)
_NOT_IN_ID = {
    "model_id",
    "weights_sha256",
    "created",
    "geotl_version",
    "metrics",
    "trained_on",
    "lossy",
}


def card_digest(card: ModelCard) -> str:
    """Hex sha256 of what the card says the model is, beside its weights.

    The same weights can be different models: a per-pixel model fitted alike beside two
    bases, or one network carded with another threshold, minimum area or classes. The model
    id carries this digest as well as the weights', so such artefacts never share an id
    (monitor keys its passes by it), while the same run repeated gets the same id.
    """
    kept = card.model_dump(mode="json", exclude=_NOT_IN_ID)
    text = json.dumps(kept, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def weights_sha256(path: str | Path) -> str:
    """Hex sha256 of a weights file, read in blocks."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def verify_weights(model_dir: str | Path, card: ModelCard | None = None) -> Path:
    """Check that ``MODEL_DIR/model.safetensors`` is the file the card was written with.

    The card records the weights' sha256 (cards written before it was recorded are checked
    against the 12 hex digits in their ``model_id``). A truncated, altered or swapped file
    is refused before anything reads it.

    Args:
        model_dir: the model folder.
        card: its card, when already read.

    Returns:
        The verified weights file.

    Raises:
        ModelArtefactError: the card or weights are missing, or the hashes differ.
    """
    model_dir = Path(model_dir)
    card = card if card is not None else read_card(model_dir)
    weights_path = model_dir / WEIGHTS_FILE
    if not weights_path.is_file():
        raise ModelArtefactError(f"missing {WEIGHTS_FILE}: copy the whole model folder", model_dir)
    digest = weights_sha256(weights_path)
    expected = card.weights_sha256 or card.model_id.rpartition("-")[2]
    if len(expected) < 12 or not digest.startswith(expected):
        raise ModelArtefactError(
            f"sha256 {digest[:12]}... does not match the model card's {expected[:12]}... "
            f"(a truncated, altered or swapped copy): copy the model folder again from its "
            "source, or retrain",
            weights_path,
        )
    return weights_path


def verify_card(model_dir: str | Path) -> None:
    """Check that ``model.json`` still says what it said when the model id was made.

    The id's middle part is :func:`card_digest` of the card as written. It is recomputed
    from the file's own entries, not from the card as this geotl reads it: a newer geotl
    fills in entries an older card lacks, which would change the digest of an untouched
    card. An id without that part (written before it existed) is not checked.

    Raises:
        ModelArtefactError: the card was edited after the model was written (a class
            renamed, a threshold changed): its outputs would carry an id that is not theirs.
    """
    card_path = Path(model_dir) / CARD_FILE
    raw = json.loads(card_path.read_text(encoding="utf-8"))
    rest, _, _ = str(raw.get("model_id", "")).rpartition("-")
    recorded = rest.rpartition("-")[2]
    if len(recorded) != 8 or any(c not in "0123456789abcdef" for c in recorded):
        return
    kept = {k: v for k, v in raw.items() if k not in _NOT_IN_ID}
    text = json.dumps(kept, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    if not digest.startswith(recorded):
        raise ModelArtefactError(
            f"changed since the model was written (its entries hash to {digest[:8]}, the "
            f"model id {raw['model_id']} says {recorded}): outputs would carry an id that "
            "is not theirs; restore it from the model's source, set [predict] options in "
            "the region file instead, or retrain",
            card_path,
        )


def require_device(device: str | torch.device) -> None:
    """Refuse a device torch cannot use here, before any work.

    Raises:
        GeotlInputError: ``cuda`` (or ``cuda:N``) where torch sees no CUDA device, or a
            device torch does not know.
    """
    if str(device) == "cpu":
        return  # (without importing torch: ONNX Runtime prediction never does)
    import torch

    try:
        kind = torch.device(device).type
    except RuntimeError as exc:
        raise GeotlInputError(f"--device {device!r}: use cpu or cuda") from exc
    if kind == "cuda" and not torch.cuda.is_available():
        raise GeotlInputError("--device cuda but no CUDA device is available: use --device cpu")


def load_artefact(
    model_dir: str | Path, device: str | torch.device = "cpu", *, lazy: bool = False
) -> Artefact:
    """Load an artefact for inference, after verifying its weights against the card.

    With ``lazy`` the network is built and its weights loaded on first use of
    :attr:`Artefact.network` (the sha256 check still happens now).

    Raises:
        GeotlInputError: a device torch cannot use here (:func:`require_device`).
        ModelArtefactError: a file is missing, the weights' sha256 differs from the
            card's, or the weights do not fit the card.
    """
    require_device(device)
    model_dir = Path(model_dir)
    card = read_card(model_dir)
    weights_path = verify_weights(model_dir, card)
    build = partial(_load_network, card, weights_path, str(device))
    return Artefact(
        card=card, network=None if lazy else build(), path=model_dir, device=device, build=build
    )


def _load_network(card: ModelCard, weights_path: Path, device: str) -> torch.nn.Module:
    from safetensors.torch import load_file

    network = build_network(card.network)
    try:
        state = load_file(str(weights_path))
        network.load_state_dict(state, strict=True)
    except (RuntimeError, OSError) as exc:
        raise ModelArtefactError(
            f"weights do not fit the card ({error_text(exc)}); retrain", weights_path
        ) from exc
    network.to(device).eval()
    return network
