"""Region files: the TOML that describes one region, loaded into a typed, validated object.

Paths inside a region file are relative to the file. Unknown keys are errors that name the
file and the key: a typo must never be silently ignored.
"""

from __future__ import annotations

import glob
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializeAsAny,
    ValidationError,
    field_validator,
    model_validator,
)

from geotl.bands import is_known_band
from geotl.errors import ConfigError
from geotl.models.artefact import SEED_THRESHOLD

if TYPE_CHECKING:
    from geotl.monitor.sources.base import SceneSource

__all__ = [
    "BACKGROUND",
    "AlertRule",
    "AlertsConfig",
    "ChipsConfig",
    "ImageryConfig",
    "LabelsConfig",
    "ModelConfig",
    "MonitorConfig",
    "Persistence",
    "PredictConfig",
    "Region",
    "SourceOptions",
    "SplitConfig",
    "check_datetime_regex",
    "load_region",
    "scene_sources",
]

FreezeMode = Literal["none", "backbone", "partial"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ImageryConfig(_Strict):
    """``[imagery]``: the region's scenes and what their bands are."""

    paths: list[str] = Field(min_length=1)
    bands: list[str] = Field(min_length=1)
    nodata: float | None = None
    datetime_regex: str | None = None

    @field_validator("bands")
    @classmethod
    def _known_bands(cls, bands: list[str]) -> list[str]:
        unknown = [b for b in bands if not is_known_band(b)]
        if [b for b in unknown if b.lower() == "alpha"]:
            raise ValueError(
                "an alpha band is the mask of valid pixels, not a data band: leave it out (a "
                "band GDAL does not tag as alpha: gdal_edit.py -colorinterp_N alpha FILE, N "
                "its number)"
            )
        one_digit = [b for b in unknown if re.fullmatch(r"[Bb]\d", b.strip())]
        if one_digit:
            raise ValueError(
                f"band id(s) {one_digit} are ambiguous (Sentinel-2's B8 is nir, Landsat's B8 "
                f"pan): write Sentinel-2 ids with two digits ('B0{one_digit[0].strip()[1]}'), "
                "Landsat's as SR_B4, or the common name (red, nir, ...)"
            )
        ids = {b.strip().upper() for b in bands}
        if {"SR_B5", "SR_B7"} <= ids and "SR_B6" not in ids:
            # Landsat 4-7 (TM / ETM+) have no SR_B6 (band 6 is thermal, ST_B6) and number their
            # bands otherwise: read as OLI ids, their blue took the coastal filter, nir the red's
            raise ValueError(
                "band ids SR_B5 and SR_B7 without SR_B6 look like Landsat 4-7 (TM / ETM+), "
                "whose SR_B1-SR_B5 are blue, green, red, nir08, swir16; geotl reads SR_B ids "
                "as Landsat 8/9 OLI's (SR_B1 coastal ... SR_B5 nir08): write the common names "
                "(Landsat 4-7: blue, green, red, nir08, swir16, swir22)"
            )
        if unknown:
            raise ValueError(
                f"unknown band name(s) {unknown}: use common names (red, green, blue, nir, "
                "swir16, ..., radar vv, vh) or Sentinel-2 / Landsat band ids (B04, SR_B4, ...); a band of "
                f"your own (an index, an elevation model) is written 'custom:{unknown[0]}'"
            )
        return bands

    @field_validator("datetime_regex")
    @classmethod
    def _valid_regex(cls, value: str | None) -> str | None:
        return check_datetime_regex(value)


#: the class_map target that burns a feature as background (0), over the class polygons
BACKGROUND = "background"


class LabelsConfig(_Strict):
    """``[labels]``: the vector labels and how their values map onto classes.

    ``class_map`` maps the values of ``class_field`` onto ``classes``, or onto
    ``"background"``: those features are holes, cut out of the class polygons they overlap
    and labelled background (0), not ignore. A lake drawn as its own feature inside a forest
    polygon (``{ Forest = "forest", Water = "background" }``) stays water, where
    ``unmapped = "skip"`` would only drop it and leave its pixels forest.
    """

    path: str
    layer: str | None = None  # the layer of a file of several (a GeoPackage's)
    class_field: str | None = None
    class_map: dict[str, str] | None = None
    unmapped: Literal["error", "skip"] = "error"
    complete_within: str | None = None
    crs: str | None = None  # overrides a wrong or missing CRS in the label file
    point_box_m: float | None = Field(default=None, gt=0)  # points -> square boxes this wide

    @model_validator(mode="after")
    def _field_for_map(self) -> LabelsConfig:
        # without class_field every feature is classes[0]: a class_map (or unmapped) would
        # be silently ignored, and every land-cover polygon would become the first class
        given = [k for k in ("class_map", "unmapped") if k in self.model_fields_set]
        if self.class_field is None and given:
            raise ValueError(
                f"{' and '.join(given)} {'needs' if len(given) == 1 else 'need'} class_field: "
                "add class_field = the label file's field that holds the values (e.g. "
                'class_field = "label"); without it every feature is the first class'
            )
        return self


class ChipsConfig(_Strict):
    """``[chips]``: chip size, stride and how much nodata a chip may hold."""

    size_px: int = Field(default=256, gt=0)
    stride_px: int | None = Field(default=None, gt=0)
    max_nodata_fraction: float = Field(default=0.5, ge=0.0, le=1.0)

    @property
    def stride(self) -> int:
        """The stride in pixels (defaults to the chip size)."""
        return self.stride_px if self.stride_px is not None else self.size_px


class SplitConfig(_Strict):
    """``[split]``: spatial-block split into train / val / test, kept apart by guard bands."""

    block_size_m: float = Field(default=200.0, gt=0)
    val_fraction: float = Field(default=0.15, ge=0.0, lt=1.0)
    test_fraction: float = Field(default=0.15, ge=0.0, lt=1.0)
    seed: int = 0
    test_within: str | None = None
    val_within: str | None = None
    # ignore pixels between splits (about the network's effective receptive field);
    # default: a quarter chip, at most 32 px (see Region.guard_px)
    guard_px: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _fractions(self) -> SplitConfig:
        if self.val_fraction + self.test_fraction >= 1.0:
            raise ValueError(
                "val_fraction + test_fraction must be below 1 so that training keeps chips"
            )
        return self


class ModelConfig(_Strict):
    """``[model]``: the base model, how it is adapted, and the training recipe."""

    base: str = "pkg:efficientnet-lite0"
    freeze: FreezeMode = "backbone"
    # training length in optimizer steps: it neither collapses on a small region nor
    # explodes on a large one; validation every val_every steps, early stopping after
    # `patience` validations without improvement, never before min_steps
    steps: int = Field(default=500, gt=0)
    # default: 50, or a fifth of the steps when that is less (steps = 40 validates every 8)
    val_every: int | None = Field(default=None, gt=0)
    min_steps: int | None = Field(default=None, ge=0)
    warmup_fraction: float = Field(default=0.1, ge=0.0, lt=1.0)
    # epochs instead of steps: an epoch is a pass over the train chips, but at least
    # samples_per_epoch random windows, so a small region still gets enough updates;
    # validation follows every epoch
    epochs: int | None = Field(default=None, gt=0)
    samples_per_epoch: int = Field(default=400, gt=0)
    window_px: int | None = Field(default=None, gt=0)  # training windows (default: <= 128)
    # off by default: on Sentinel-2 fields and SpaceNet buildings it cost 0.05-0.15 test IoU
    # (BENCHMARKS "Issue 8, third pass"); turn it on when regions differ in resolution
    scale_jitter: float = Field(default=0.0, ge=0.0, lt=1.0)
    max_labels: int | None = Field(default=None, gt=0)
    require_commercial_licence: bool = False
    batch_size: int = Field(default=16, gt=0)
    lr: float = Field(default=1e-3, gt=0)
    # the trainable encoder's rate; default: lr, as the plain script and torchgeo's trainers
    # (every trainable-encoder variant measured in BENCHMARKS "Issue 8" ran at lr; a tenth
    # of it was the default before stop 20, and holds a random encoder back for nothing)
    encoder_lr: float | None = Field(default=None, gt=0)
    loss: Literal["ce", "dice", "focal", "ce+dice"] = "ce+dice"
    # 8, not 5: in 179 benchmark runs' validation histories a stop after 5 validations
    # without improvement would have cut 11 runs before their best validation, after 8
    # only 3 (BENCHMARKS "Issue 8, sixth pass")
    patience: int = Field(default=8, gt=0)
    # after validation has chosen the step, train once more on the train + val chips for
    # that many steps and keep those weights: the val chips' labels are not lost to the
    # model (costs a second, shorter run)
    refit: bool = False
    # the class balance the model's probabilities are calibrated to: "validation" corrects,
    # in the training loss, the shift that a label budget and partial labels cause (pixels
    # of unsampled objects are ignore, their background is not: at 10 of 82 fields the
    # train chips hold 5 % field pixels, the val chips 55 %); "train" leaves it
    class_prior: Literal["validation", "train"] = "validation"
    # fit a per-pixel linear model (the bands and their 3x3 and 7x7 statistics) beside a
    # segmentation network and keep it when it beats the network on validation: with a few
    # labels of spectrally distinct classes a network can fall below a map of nothing but
    # the class, the per-pixel model rarely (BENCHMARKS "Issue 8, seventh pass")
    pixel_model: bool = True

    @model_validator(mode="after")
    def _steps(self) -> ModelConfig:
        if {"steps", "epochs"} <= self.model_fields_set:  # epochs won, steps went unread
            raise ValueError(
                f"steps = {self.steps} and epochs = {self.epochs} both set the training "
                "length: keep one (steps: optimizer steps; epochs: passes over the train chips)"
            )
        if self.epochs is None and self.val_every is not None and self.steps < self.val_every:
            raise ValueError(
                f"steps = {self.steps} is below val_every = {self.val_every}: no validation "
                f"would run; raise steps or set val_every = {max(1, self.steps // 5)}"
            )
        if self.min_steps is not None and self.epochs is None and self.min_steps > self.steps:
            raise ValueError(
                f"min_steps = {self.min_steps} exceeds steps = {self.steps}: lower min_steps"
            )
        if self.window_px is not None and self.window_px % 32:
            raise ValueError(
                f"window_px = {self.window_px} is not a multiple of 32 (the encoder's "
                f"stride): use {max(32, self.window_px // 32 * 32)}"
            )
        return self


class PredictConfig(_Strict):
    """``[predict]``: how probabilities become polygons."""

    min_area_m2: float = Field(default=0.0, ge=0)
    simplify_px: float = Field(default=1.0, ge=0)
    # minimum foreground probability (detection: box score); unless set here, training
    # chooses it on validation and the model card carries it to predict
    threshold: float = Field(default=0.5, gt=0, lt=1)
    # instances: the seed score where the watershed starts an object; unless set here, the
    # card's (0.6; training logs the val chips' object F1 at 0.3-0.8 as a guide)
    seed_threshold: float = Field(default=SEED_THRESHOLD, gt=0, lt=1)
    overlap_px: int | None = Field(default=None, ge=0)
    nms_iou: float = Field(default=0.5, gt=0, le=1)  # detection: boxes overlapping more merge
    flip_tta: bool = False  # average each window over its four flips (steadier, 4x model time)

    @property
    def threshold_set(self) -> float | None:
        """The threshold when the region file sets one, else ``None`` (the card's stands)."""
        threshold: float | None = self.given("threshold")
        return threshold

    def given(self, key: str) -> Any:
        """``key``'s value when the region file sets it, else ``None``.

        Training writes the training region's values into the model card; a region that
        only predicts or monitors with the model (no ``[predict]`` key) keeps the card's
        rather than this table's defaults.
        """
        return getattr(self, key) if key in self.model_fields_set else None


class Persistence(_Strict):
    """``persistence = { passes = K, of = N }``: seen in K of the last N passes that saw the ground."""

    passes: int = Field(default=2, ge=1)
    of: int = Field(default=3, ge=1)

    @model_validator(mode="after")
    def _k_of_n(self) -> Persistence:
        if self.passes > self.of:
            raise ValueError(
                f"persistence passes = {self.passes} is more than of = {self.of}: "
                "an object cannot be seen in more passes than are looked at"
            )
        return self


class AlertRule(_Strict):
    """``[[monitor.alerts.rule]]``: which objects of one class raise an alert.

    At most one of ``inside``, ``outside`` and ``unmatched`` names a reference layer (any OGR
    vector, relative to the region file); without one, every object of the class that passes
    ``when``, ``min_area_m2``, ``min_score`` and persistence alerts.

    ``when = "grown"`` follows the alerts the class's ``new`` / ``present`` rules raised: an
    object of such an alert (acknowledged or not) that grew to ``grown_by`` times and/or by
    ``min_growth_m2`` over its area when last raised raises an alert of its own (a clearing
    raised at 1 ha and acknowledged is raised again at 2 ha, then at 4 ha with ``grown_by =
    2``). Both thresholds hold when both are given.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9-]*$")
    class_name: str = Field(alias="class")
    when: Literal["new", "present", "gone", "grown"] = "new"
    inside: str | None = None
    outside: str | None = None
    unmatched: str | None = None
    min_area_m2: float = Field(default=0.0, ge=0)
    min_score: float = Field(default=0.0, ge=0, le=1)
    overlap: float = Field(default=0.5, gt=0, le=1)
    persistence: Persistence | None = None
    grown_by: float | None = Field(default=None, gt=1)
    min_growth_m2: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _one_reference(self) -> AlertRule:
        given = [k for k in ("inside", "outside", "unmatched") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(
                f"a rule takes one of inside / outside / unmatched, got {' and '.join(given)}: "
                "split it into two rules"
            )
        return self

    @model_validator(mode="after")
    def _growth(self) -> AlertRule:
        growth = self.grown_by is not None or self.min_growth_m2 is not None
        if self.when == "grown" and not growth:
            raise ValueError(
                'a rule with when = "grown" needs grown_by (e.g. 2.0: twice the area when last '
                "raised) and/or min_growth_m2"
            )
        if self.when != "grown" and growth:
            raise ValueError(
                f'grown_by / min_growth_m2 only apply to when = "grown", not "{self.when}": '
                'set when = "grown" in a rule of its own'
            )
        return self

    def has_grown(self, area_m2: float, since_m2: float) -> bool:
        """Whether an object of ``area_m2`` grew enough over ``since_m2`` (its area when raised).

        >>> rule = AlertRule.model_validate({"class": "clearing", "when": "grown", "grown_by": 2})
        >>> rule.has_grown(19_000.0, 10_000.0), rule.has_grown(20_000.0, 10_000.0)
        (False, True)
        """
        if self.grown_by is not None and area_m2 < self.grown_by * since_m2:
            return False
        return self.min_growth_m2 is None or area_m2 - since_m2 >= self.min_growth_m2

    @property
    def reference_key(self) -> Literal["inside", "outside", "unmatched"] | None:
        """Which reference test the rule applies (None: no reference layer)."""
        if self.inside is not None:
            return "inside"
        if self.outside is not None:
            return "outside"
        if self.unmatched is not None:
            return "unmatched"
        return None

    @property
    def reference_path(self) -> str | None:
        """The reference layer as written in the region file."""
        return self.inside or self.outside or self.unmatched


class AlertsConfig(_Strict):
    """``[monitor.alerts]``: which changes matter (rules) and where they go (webhook)."""

    webhook: str | None = None
    persistence: Persistence = Persistence()
    timeout_s: float = Field(default=10.0, gt=0)
    max_attempts: int = Field(default=8, ge=1)
    retry_base_s: float = Field(default=30.0, ge=0)
    rule: list[AlertRule] = Field(min_length=1)

    @field_validator("webhook")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        return None if value is None else check_webhook_url(value)

    @model_validator(mode="after")
    def _rule_names(self) -> AlertsConfig:
        names = self.rule_names()
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"rule names must be unique, got {dupes} twice: rename one")
        raised = {r.class_name for r in self.rule if r.when in ("new", "present")}
        for name, r in zip(names, self.rule, strict=True):
            if r.when == "grown" and r.class_name not in raised:
                raise ValueError(
                    f"rule '{name}' (when = \"grown\") follows the alerts of class "
                    f"'{r.class_name}' that a new or present rule raises, and no rule does: "
                    "add one"
                )
        return self

    def rule_names(self) -> list[str]:
        """Each rule's name: its ``name``, else ``<class>-<when>-<position>``."""
        return [
            r.name or f"{r.class_name}-{r.when}-{i + 1}".lower().replace("_", "-")
            for i, r in enumerate(self.rule)
        ]


def check_webhook_url(url: str) -> str:
    """An http(s) URL with a host, or ValueError saying what to write.

    >>> check_webhook_url("https://example.org/hook")
    'https://example.org/hook'
    """
    parsed = urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ValueError(
            f"webhook '{url}' is not an http(s) URL: write e.g. 'https://example.org/hook'"
        )
    return url


class SourceOptions(_Strict):
    """The ``[monitor]`` keys of one scene source: each source's ``Options`` subclasses this.

    The keys stay flat under ``[monitor]`` in the region file: :class:`MonitorConfig` hands
    every key that is not common to all sources to the options model of the source that
    ``source`` names, so an unknown or missing key fails as anywhere else in the file.
    """


class MonitorConfig(_Strict):
    """``[monitor]``: where new passes come from and which model processes them.

    Attributes:
        aoi: the area the region watches (any OGR vector; default: the imagery's footprint).
        edge_margin_m: the band along each pass's edge left out of the comparison of two
            passes (default: half the model's window overlap; 0: none).
        change_min_area_m2: smaller objects are never reported new or gone (default: twice
            ``[predict] min_area_m2``, else twice the model's).
        options: the source's own keys (``paths``, ``url``, ...), validated by the ``Options``
            model of the registered source that ``source`` names.
    """

    model: str | None = None
    source: str = "folder"
    every: str | None = None
    aoi: str | None = None
    edge_margin_m: float | None = Field(default=None, ge=0)
    change_min_area_m2: float | None = Field(default=None, ge=0)
    alerts: AlertsConfig | None = None
    options: SerializeAsAny[SourceOptions]

    @model_validator(mode="before")
    @classmethod
    def _source_options(cls, data: Any) -> Any:
        if not isinstance(data, dict) or isinstance(data.get("options"), SourceOptions):
            return data
        common = {k: v for k, v in data.items() if k in cls.model_fields and k != "options"}
        name = common.get("source", cls.model_fields["source"].default)
        source = scene_sources().get(name) if isinstance(name, str) else None
        if source is None:
            return common  # the source field names the registered sources
        own = {k: v for k, v in data.items() if k not in common}
        return {**common, "options": source.Options.model_validate(own)}

    @field_validator("source")
    @classmethod
    def _registered_source(cls, name: str) -> str:
        if name not in scene_sources():
            raise ValueError(f"not a scene source: use one of {sorted(scene_sources())}")
        return name


def scene_sources() -> Mapping[str, type[SceneSource]]:
    """The registered scene sources (``geotl.monitor.sources.SOURCES``), by ``source`` name.

    Imported on first use: the sources import this module.
    """
    from geotl.monitor.sources import SOURCES

    return SOURCES


class Region(_Strict):
    """A validated region file with its paths resolved against the file's folder."""

    path: Path
    name: str = Field(pattern=r"^[a-z0-9-]+$")
    task: Literal["segmentation", "instances", "detection"] = "segmentation"
    classes: list[str] = Field(min_length=1)
    imagery: ImageryConfig
    labels: LabelsConfig | None = None
    chips: ChipsConfig = ChipsConfig()
    split: SplitConfig = SplitConfig()
    model: ModelConfig = ModelConfig()
    predict: PredictConfig = PredictConfig()
    monitor: MonitorConfig | None = None

    @field_validator("classes")
    @classmethod
    def _unique_classes(cls, classes: list[str]) -> list[str]:
        if len(set(classes)) != len(classes):
            raise ValueError(f"class names must be unique, got {classes}")
        if BACKGROUND in classes:
            raise ValueError(
                "'background' is implicit: remove it from classes (to label features as "
                'background, map their value to it: [labels] class_map = { Water = "background" })'
            )
        if "ignore" in classes:  # the chips' name for unlabelled pixels (mask value 255)
            raise ValueError("'ignore' names the chips' unlabelled pixels: rename that class")
        if any(not c.strip() for c in classes):
            raise ValueError(f"class names must not be blank, got {classes}")
        return classes

    @model_validator(mode="after")
    def _class_map_targets(self) -> Region:
        if self.labels is not None and self.labels.class_map:
            known = {*self.classes, BACKGROUND}  # background: holes cut from the classes
            unknown = sorted({v for v in self.labels.class_map.values() if v not in known})
            if unknown:
                raise ValueError(
                    f"labels.class_map maps onto unknown class(es) {unknown}; "
                    f'add them to classes = {self.classes}, map them to "background" '
                    "(burnt as background over the classes) or fix the map"
                )
            if set(self.labels.class_map.values()) == {BACKGROUND}:
                raise ValueError(
                    'labels.class_map maps every value to "background": map at least one '
                    f"onto classes = {self.classes}"
                )
        return self

    @model_validator(mode="after")
    def _alert_classes(self) -> Region:
        alerts = self.monitor.alerts if self.monitor is not None else None
        for i, rule in enumerate(alerts.rule if alerts is not None else []):
            if rule.class_name not in self.classes:
                raise ValueError(
                    f"monitor.alerts.rule[{i}] names unknown class '{rule.class_name}': "
                    f"use one of classes = {self.classes}"
                )
        return self

    @property
    def guard_px(self) -> int:
        """Width of the guard bands between splits: ``[split] guard_px`` or its default."""
        if self.split.guard_px is not None:
            return self.split.guard_px
        return min(32, self.chips.size_px // 4)

    @property
    def root(self) -> Path:
        """Folder of the region file; relative paths resolve against it."""
        return self.path.parent

    def resolve(self, relative: str) -> Path:
        """Resolve a path written in the region file."""
        p = Path(relative).expanduser()
        return p if p.is_absolute() else (self.root / p)

    def base_model(self) -> str:
        """``[model] base``, a ``model:`` / ``file:`` path resolved against the region file.

        >>> r = Region.model_validate({"name": "r", "classes": ["a"], "path": "/data/r.toml",
        ...     "imagery": {"paths": ["*.tif"], "bands": ["red"]},
        ...     "model": {"base": "model:../runs/a"}})
        >>> r.base_model()
        'model:/data/../runs/a'
        """
        base = self.model.base
        for prefix in ("model:", "file:"):
            if base.startswith(prefix):
                return prefix + str(self.resolve(base[len(prefix) :]))
        return base

    def scene_paths(self) -> list[Path]:
        """The imagery files, sorted, from the ``[imagery] paths`` globs."""
        return _expand_globs(self, self.imagery.paths, "imagery.paths")

    def input_paths(self) -> list[Path]:
        """Every local file or folder the region reads, absolute.

        The region file, its scenes, labels, area and reference layers, a ``model:`` /
        ``file:`` base, and the folders a monitor's folder source watches.
        """
        base = self.model.base
        written: list[str | None] = list(self.imagery.paths)
        if base.startswith(("model:", "file:")):
            written.append(base.split(":", 1)[1])
        if self.labels is not None:
            written += [self.labels.path, self.labels.complete_within]
        written += [self.split.test_within, self.split.val_within]
        if self.monitor is not None:  # not [monitor] model: a run may replace it on purpose
            written.append(self.monitor.aoi)
            alerts = self.monitor.alerts
            written += [r.reference_path for r in (alerts.rule if alerts is not None else [])]
        found = [self.path]
        for rel in written:
            if rel is None or "://" in rel or rel.startswith("/vsi"):
                continue
            page = _subdataset(self, rel, "imagery.paths") if rel in self.imagery.paths else None
            if page is not None:  # the container file, not GDAL's name for a page of it
                found.append(page[1].resolve())
                continue
            found += [Path(p).resolve() for p in glob.glob(str(self.resolve(rel)), recursive=True)]
        return found + self._watched_folders()

    def _watched_folders(self) -> list[Path]:
        """The folders a monitor's folder source watches, also while they are empty."""
        options = self.monitor.options if self.monitor is not None else None
        folders = []
        for pattern in getattr(options, "paths", None) or []:
            parts = Path(self.resolve(pattern)).parts
            fixed = next((i for i, part in enumerate(parts) if any(c in part for c in "*?[")), None)
            folders.append(Path(*parts[:fixed]).resolve() if fixed else Path(*parts).resolve())
        return folders

    def check_output_dir(self, out: str | Path) -> None:
        """Refuse an output folder that holds any of the region's inputs.

        Replacing it (``--overwrite``) would delete the scenes, labels or the region file.

        Raises:
            ConfigError: ``out`` is, or lies above, one of :meth:`input_paths`.
        """
        folder = Path(out).expanduser().resolve()
        inside = [p for p in self.input_paths() if p == folder or folder in p.parents]
        if inside:
            raise ConfigError(
                f"holds this region's input {inside[0]}: replacing the folder would delete it; "
                "choose an --out folder outside the region's files",
                folder,
            )

    def labels_path(self) -> Path:
        """The label vector file (``[labels] path``)."""
        if self.labels is None:
            raise ConfigError("no [labels] table: add one with path = 'labels.geojson'", self.path)
        return self.resolve(self.labels.path)


def check_datetime_regex(value: str | None) -> str | None:
    r"""``value`` when it is a regex with a capture group around the date, else ValueError.

    >>> check_datetime_regex(r"_(\d{8})")
    '_(\\d{8})'
    """
    if value is None:
        return None
    try:
        compiled = re.compile(value)
    except re.error as exc:
        raise ValueError(f"not a valid regular expression ({exc})") from exc
    if compiled.groups < 1:
        raise ValueError("needs one capture group around the date, e.g. '_(\\d{8})'")
    return value


#: files GDAL (and QGIS) write beside a raster: never scenes of their own, and a glob such as
#: ``imagery/*`` picks them up once a scene has been opened in QGIS or given overviews
SIDECAR_SUFFIXES = (".aux.xml", ".ovr", ".msk", ".tfw", ".tifw", ".tiffw", ".wld")


def _subdataset(region: Region, text: str, key: str) -> tuple[str, Path, str] | None:
    """A subdataset name (``GTIFF_DIR:2:a.tif``, ``netCDF:"f.nc":var``) split round its file.

    GDAL finds a relative file from the working folder, not the region's, and the name is
    no glob (no file is called ``GTIFF_DIR:2:a.tif``): the file part is resolved against
    the region file, used as written (brackets in it are no pattern) and must exist.
    Returns (before, the file resolved, after); None when ``text`` is no subdataset whose
    file part is known.

    Raises:
        ConfigError: the file part does not exist.
    """
    from geotl.io.rasters import is_subdataset, split_subdataset  # rasterio: imported lazily

    parts = split_subdataset(text) if is_subdataset(text) else None
    if parts is None:
        return None
    before, file, after = parts
    resolved = region.resolve(file)
    if not resolved.is_file():
        raise ConfigError(
            f"{key}: '{text}' names file '{file}', which is not found "
            "(paths are relative to the region file)",
            region.path,
        )
    return before, resolved, after


def _expand_globs(region: Region, patterns: list[str], key: str) -> list[Path]:
    found: set[Path] = set()
    for pattern in patterns:
        page = _subdataset(region, pattern, key)
        if page is not None:  # GDAL's name for it, the file part resolved: a GdalPath
            from geotl.io.rasters import scene_path

            found.add(scene_path(f"{page[0]}{page[1]}{page[2]}"))
            continue
        matches = [
            m
            for m in glob.glob(str(region.resolve(pattern)), recursive=True)
            if not m.lower().endswith(SIDECAR_SUFFIXES)
        ]
        if not matches:
            raise ConfigError(
                f"{key}: '{pattern}' matches no file (paths are relative to the region file)",
                region.path,
            )
        found.update(Path(m) for m in matches)
    return sorted(found)


def _format_loc(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts[-1:] = [f"{parts[-1]}[{item}]"] if parts else [f"[{item}]"]
        else:
            parts.append(str(item))
    return ".".join(parts)


def _first_error(exc: ValidationError) -> str:
    errors = exc.errors()
    # a misspelt required key is both unknown and missing: naming the spelling is the fix
    err = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    key = _format_loc(tuple(err["loc"]))
    if err["type"] == "extra_forbidden":
        return f"unknown key '{key}': remove it or fix its spelling"
    if err["type"] == "missing":
        return f"missing required key '{key}'"
    msg = str(err["msg"]).removeprefix("Value error, ")
    got = err.get("input")
    shown = "" if isinstance(got, dict | list) or got is None else f" (got {got!r})"
    where = f"'{key}': " if key else ""
    return f"{where}{msg}{shown}"


def load_region(path: str | Path) -> Region:
    """Read and validate a region file.

    Args:
        path: the region TOML file.

    Returns:
        The validated :class:`Region`; its ``path`` is absolute.

    Raises:
        ConfigError: the file is missing, not TOML, has unknown keys or wrong values,
            or names files that do not exist.
    """
    region_path = Path(path).expanduser().resolve()
    if region_path.is_dir():
        tomls = sorted(p.name for p in region_path.glob("*.toml"))
        hint = f" ({', '.join(tomls[:3])}{' ...' if len(tomls) > 3 else ''})" if tomls else ""
        raise ConfigError(f"is a folder: give the region's .toml file in it{hint}", path)
    if not region_path.is_file():
        raise ConfigError("region file not found: check the path", path)
    try:
        # utf-8-sig: Windows editors (Notepad) start UTF-8 files with a byte-order mark
        text = region_path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text ({exc.reason}): save it as UTF-8", path) from exc
    try:
        raw: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML ({exc})", path) from exc
    if "path" in raw:
        raise ConfigError("unknown key 'path': remove it or fix its spelling", path)
    try:
        region = Region.model_validate({**raw, "path": region_path})
    except ValidationError as exc:
        raise ConfigError(_first_error(exc), path) from None
    region.scene_paths()  # every imagery glob must match
    if region.labels is not None:
        for key, rel in (
            ("labels.path", region.labels.path),
            ("labels.complete_within", region.labels.complete_within),
            ("split.test_within", region.split.test_within),
            ("split.val_within", region.split.val_within),
        ):
            if rel is not None and not region.resolve(rel).exists():
                raise ConfigError(
                    f"{key}: file '{rel}' not found (relative to the region file)", path
                )
    monitor = region.monitor
    if monitor is not None and monitor.aoi is not None and not region.resolve(monitor.aoi).exists():
        raise ConfigError(f"monitor.aoi: file '{monitor.aoi}' not found", path)
    for i, rule in enumerate(monitor.alerts.rule if monitor and monitor.alerts else []):
        ref = rule.reference_path
        if ref is not None and not region.resolve(ref).exists():
            raise ConfigError(
                f"monitor.alerts.rule[{i}].{rule.reference_key}: file '{ref}' not found "
                "(relative to the region file)",
                path,
            )
    return region
