"""Band adaptation: put a base model's first-layer filters onto a region's bands.

Bands are matched by name (:func:`geotl.bands.band_key`):

- a region band the base knows keeps the base's pretrained first-layer filter;
- a region band the base lacks gets a new filter drawn, per output channel and kernel
  position, from the normal distribution with the mean and standard deviation of the
  pretrained filters across input bands (seeded, so reproducible);
- ``pan`` with no ``pan`` in the base takes the sum of the base's visible filters (red,
  green, blue): a grey input then produces what the base saw for the same grey in colour;
- a near-infrared band the base lacks under that name (``nir``, ``nir08``, ``nir09``: the
  broad and narrow NIR of Sentinel-2 B08 / B8A, Landsat's NIR, WorldView's NIR2) takes the
  filter of the base's nearest NIR band: the same reflectance plateau of vegetation, so a
  Landsat region (``nir08``) keeps the pretrained NIR filter of a Sentinel-2 base (``nir``);
- a base filter that several region bands take (Sentinel-2's B08 and B8A both on a base's
  ``nir``, or ``pan`` beside ``red``/``green``/``blue``) is shared evenly between them, so
  the base's band still weighs what it did: taken whole by each, a vegetation pixel's NIR
  reached the pretrained layers twice as strong as the base ever saw it;
- a base band the region lacks is dropped (its filter removed) with a warning;
- a base band listed twice (multi-date stacks such as torchgeo's FTW U-Nets) contributes
  the sum of its filters, so a single-date input behaves like the same date repeated;
- if no region band matches any base band (a NIR-only or radar sensor on an RGB base),
  every first-layer filter is new, drawn as above, and the rest of the network keeps its
  pretrained weights, with a warning naming both band sets: on SpaceNet's one band taken
  as unmatched, this reached 0.24 test IoU where ``none`` reached 0.05 (BENCHMARKS.md,
  "Bands no base knows").

The region's own band order is kept, so the network's input is exactly the chip's bands.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import cast

import torch

from geotl.bands import band_keys
from geotl.errors import BandMismatchError
from geotl.models.bases.kind import LoadedBase
from geotl.models.network import NetworkSpec, build_network

__all__ = [
    "BandPlan",
    "adapt_first_conv",
    "adapt_weight",
    "build_adapted_network",
    "find_first_conv",
    "plan_bands",
]

log = logging.getLogger(__name__)

_VISIBLE = ("red", "green", "blue")
# a NIR band the base lacks by name: the base's NIR bands to take instead, nearest first
_NIR_STANDINS = {
    "nir": ("nir08", "nir09"),
    "nir08": ("nir", "nir09"),
    "nir09": ("nir08", "nir"),
}


@dataclass(frozen=True)
class BandPlan:
    """How each region band gets its first-layer filter.

    ``sources[i]`` lists the base input channels whose filters are summed for region
    band ``i``; an empty list means a new filter drawn from the pretrained statistics.
    """

    region_bands: tuple[str, ...]
    base_bands: tuple[str, ...]
    sources: tuple[tuple[int, ...], ...]
    dropped: tuple[str, ...]

    @property
    def matched(self) -> tuple[str, ...]:
        """Region bands that keep pretrained filters."""
        return tuple(b for b, s in zip(self.region_bands, self.sources, strict=True) if s)

    @property
    def new(self) -> tuple[str, ...]:
        """Region bands that get new filters."""
        return tuple(b for b, s in zip(self.region_bands, self.sources, strict=True) if not s)

    @property
    def identity(self) -> bool:
        """Whether the plan keeps the first layer unchanged (same bands, same order)."""
        return len(self.region_bands) == len(self.base_bands) and all(
            s == (i,) for i, s in enumerate(self.sources)
        )


def plan_bands(
    region_bands: list[str] | tuple[str, ...], base_bands: list[str] | tuple[str, ...]
) -> BandPlan:
    """Match region bands to base bands by name.

    >>> p = plan_bands(["nir", "red", "green"], ["B04", "B03", "B02"])
    >>> p.sources, p.dropped
    (((), (0,), (1,)), ('blue',))
    >>> plan_bands(["SR_B5", "red"], ["B04", "B08"]).sources  # Landsat NIR on S2's B08
    ((1,), (0,))
    """
    region = tuple(band_keys(region_bands))
    base = tuple(band_keys(base_bands))
    sources: list[tuple[int, ...]] = []
    for band in region:
        idx = tuple(i for i, b in enumerate(base) if b == band)
        if not idx and band == "pan":
            idx = tuple(i for i, b in enumerate(base) if b in _VISIBLE)
        for other in _NIR_STANDINS.get(band, ()) if not idx else ():
            idx = tuple(i for i, b in enumerate(base) if b == other)
            if idx:
                log.info("region band %s takes the base model's %s filter", band, other)
                break
        sources.append(idx)
    if not any(sources):
        log.warning(
            "no band of the region %s matches a band of the base model %s: every first-layer "
            "filter is new, the rest of the network keeps its pretrained weights (check "
            "[imagery] bands; a base trained on these bands transfers better)",
            list(region_bands),
            list(base_bands),
        )
    shared = [
        (base[i], [band for band, src in zip(region, sources, strict=True) if i in src])
        for i in sorted({i for s in sources for i in s})
    ]
    for band, takers in shared:
        if len(takers) > 1:
            log.info(
                "region bands %s share the base model's %s filter (1/%d each)",
                takers,
                band,
                len(takers),
            )
    used = {i for s in sources for i in s}
    dropped = tuple(dict.fromkeys(b for i, b in enumerate(base) if i not in used))
    return BandPlan(region_bands=region, base_bands=base, sources=tuple(sources), dropped=dropped)


def adapt_weight(
    weight: torch.Tensor, plan: BandPlan, generator: torch.Generator | None = None
) -> torch.Tensor:
    """New first-layer weight ``(out, len(region_bands), kh, kw)`` following ``plan``.

    Args:
        weight: the base's first-layer weight ``(out, len(base_bands), kh, kw)``.
        plan: from :func:`plan_bands`.
        generator: random source for new filters (seeded by the caller).
    """
    if weight.shape[1] != len(plan.base_bands):
        raise BandMismatchError(
            f"the base model's first layer takes {weight.shape[1]} bands but declares {len(plan.base_bands)} "
            f"({list(plan.base_bands)}): the catalogue entry is wrong"
        )
    w = weight.detach().float()
    mean = w.mean(dim=1)
    std = w.std(dim=1, unbiased=False) if w.shape[1] > 1 else torch.zeros_like(mean)
    # a base filter several region bands take is shared between them (see the module doc)
    takers = Counter(i for src in plan.sources for i in src)
    channels = []
    for src in plan.sources:
        if src:
            channels.append(torch.stack([w[:, i] / takers[i] for i in src]).sum(dim=0))
        else:
            noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype)
            channels.append(mean + std * noise)
    return torch.stack(channels, dim=1).to(weight.dtype)


def find_first_conv(encoder_state: dict[str, torch.Tensor]) -> str:
    """Key of the first convolution's weight in an encoder state dict (first 4-D tensor)."""
    for key, value in encoder_state.items():
        if value.ndim == 4:
            return key
    raise BandMismatchError("the base model's weights hold no convolution")


def adapt_first_conv(
    encoder_state: dict[str, torch.Tensor],
    region_bands: list[str],
    base_bands: list[str],
    seed: int = 0,
    key: str | None = None,
) -> tuple[dict[str, torch.Tensor], BandPlan]:
    """Return a copy of ``encoder_state`` whose first conv takes the region's bands.

    Logs a warning naming dropped base bands and an info line naming new ones.
    """
    plan = plan_bands(region_bands, base_bands)
    if plan.dropped and plan.matched:  # (with no match, plan_bands has said so)
        log.warning(
            "base model bands %s are not in the region: their first-layer filters are dropped",
            list(plan.dropped),
        )
    if plan.new:
        log.info(
            "region bands %s are new to the base model: filters drawn from pretrained statistics",
            list(plan.new),
        )
    key = key or find_first_conv(encoder_state)
    gen = torch.Generator().manual_seed(seed)
    state = dict(encoder_state)
    state[key] = adapt_weight(encoder_state[key], plan, gen)
    return state, plan


def build_adapted_network(
    base: LoadedBase,
    region_bands: list[str],
    classes: list[str],
    seed: int = 0,
    encoder: str | None = None,
) -> tuple[torch.nn.Module, NetworkSpec, BandPlan | None]:
    """A U-Net for ``classes`` on the region's bands, initialised from ``base``.

    - pretrained bases: the encoder gets the base's weights, first conv band-adapted;
    - ``model:`` bases: encoder and decoder reused; output channels mapped by class name
      (background first), classes new to the base get fresh output channels;
    - ``none``: everything random (``encoder`` picks the architecture).

    Raises:
        BandMismatchError: the bands cannot be mapped.
        BaseModelError: the weights do not fit the encoder they claim.
    """
    from geotl.errors import BaseModelError

    if base.card is not None and base.card.network.arch != "unet":
        raise BaseModelError(
            f"base {base.entry.id} is a {base.card.task} model ({base.card.network.arch}): a U-Net "
            "cannot reuse it; use a segmentation model, a pretrained backbone "
            "(pkg:efficientnet-lite0) or none"
        )
    torch.manual_seed(seed)
    enc_name = base.entry.encoder or encoder or "tu-tf_efficientnet_lite0"
    if base.entry.id == "none" and encoder:
        enc_name = encoder
    spec = NetworkSpec(
        encoder=enc_name, in_channels=len(region_bands), num_classes=len(classes) + 1
    )
    net = build_network(spec)
    encoder_module = cast(torch.nn.Module, net.encoder)
    if base.entry.id == "none":
        return net, spec, None
    state = base.encoder_state
    base_bands = list(base.entry.bands)
    # the first convolution in module (= forward) order; state dict key order is not reliable
    key = (
        next(n for n, m in encoder_module.named_modules() if isinstance(m, torch.nn.Conv2d))
        + ".weight"
    )
    # file: weights are put into the encoder the user names (default: Lite0's)
    fix = (
        ": name the architecture they were trained with, --encoder NAME (a "
        "segmentation_models_pytorch encoder: resnet34, efficientnet-b0, tu-convnext_tiny...)"
        if base.entry.id.startswith("file:")
        else ""
    )
    if enc_name.startswith("tu-"):
        state = timm_keys_to_smp(state, encoder_module.state_dict().keys())
    if key not in state:
        raise BaseModelError(
            f"weights of {base.entry.id} have no '{key}' for encoder {enc_name}{fix}"
        )
    if not base_bands:  # file: weights declare no bands; positional if the count fits
        if state[key].shape[1] != len(region_bands):
            raise BandMismatchError(
                f"the weights take {state[key].shape[1]} bands, the region has {len(region_bands)} "
                f"({region_bands}) and the file names none: export weights for these bands"
            )
        base_bands = list(region_bands)
    state, plan = adapt_first_conv(state, region_bands, base_bands, seed=seed, key=key)
    if misfit := _misfit(encoder_module.state_dict(), state):
        raise BaseModelError(
            f"weights of {base.entry.id} do not fit encoder {enc_name}: {misfit}{fix}"
        )
    # nn.Module.load_state_dict: some smp encoders override it and return nothing
    torch.nn.Module.load_state_dict(encoder_module, state, strict=False)
    if base.full_state is not None and base.classes is not None:
        _reuse_decoder(net, base.full_state, base.classes, classes)
    return net, spec, plan


def timm_keys_to_smp(state: dict[str, torch.Tensor], own: Iterable[str]) -> dict[str, torch.Tensor]:
    """A plain timm model's state dict under the names of smp's ``tu-`` encoder of it.

    smp wraps timm's ``features_only`` network as ``model``, which flattens the first
    level of a sequential stem or stage list (``stem.0`` becomes ``stem_0``); a state dict
    saved from ``timm.create_model(name)`` (what people have) would otherwise match no key.
    Keys already in smp's names, and those no encoder key takes (a classifier head), are
    kept as they are.

    >>> own = ["model.stem_0.weight", "model.stages_1.blocks.0.gamma", "model.conv_stem.weight"]
    >>> sorted(timm_keys_to_smp({"stem.0.weight": 1, "stages.1.blocks.0.gamma": 2,
    ...     "conv_stem.weight": 3, "head.fc.weight": 4}, own))  # doctest: +NORMALIZE_WHITESPACE
    ['head.fc.weight', 'model.conv_stem.weight', 'model.stages_1.blocks.0.gamma',
     'model.stem_0.weight']
    """
    out = dict(state)
    for key in own:
        if key in out or not key.startswith("model."):
            continue
        first, _, rest = key.removeprefix("model.").partition(".")
        plain = ".".join(filter(None, (re.sub(r"_(\d+)$", r".\1", first), rest)))
        if plain in out:
            out[key] = out.pop(plain)
    return out


def _misfit(own: dict[str, torch.Tensor], state: dict[str, torch.Tensor]) -> str:
    """Why ``state`` cannot fill an encoder whose tensors are ``own``, in words ("" if it can).

    A tensor of another shape is named with both shapes (the commonest sign of another
    depth or width: resnet18 weights for resnet50); tensors the encoder lacks in the file,
    and the file's tensors no encoder layer takes, by count and first name.
    """
    wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    if not wrong and not missing:
        return ""
    unexpected = [k for k in state if k not in own]
    said = []
    if wrong:
        k = wrong[0]
        said.append(
            f"{len(wrong)} tensors of another shape (first: {k} is "
            f"{tuple(state[k].shape)} in the file, {tuple(own[k].shape)} in the encoder)"
        )
    if missing:
        said.append(f"{len(missing)} missing tensors (first: {missing[0]})")
    if unexpected:
        said.append(f"{len(unexpected)} the encoder does not take (first: {unexpected[0]})")
    return ", ".join(said)


def _reuse_decoder(
    net: torch.nn.Module, full: dict[str, torch.Tensor], old: list[str], new: list[str]
) -> None:
    """Copy decoder weights and map the segmentation head's channels by class name."""
    own = net.state_dict()
    decoder = {
        k: v
        for k, v in full.items()
        if k.startswith("decoder.") and k in own and own[k].shape == v.shape
    }
    net.load_state_dict({**own, **decoder}, strict=True)
    old_names = ["background", *old]
    new_names = ["background", *new]
    head = [k for k in own if k.startswith("segmentation_head.")]
    with torch.no_grad():
        params = dict(net.named_parameters())
        for key in head:
            if key not in full or key not in params:
                continue
            target = params[key]
            for j, name in enumerate(new_names):
                if name in old_names:
                    target[j] = full[key][old_names.index(name)]
    kept = [c for c in new if c in old]
    fresh = [c for c in new if c not in old]
    log.info("reused decoder of the base model; classes kept %s, new %s", kept, fresh)
