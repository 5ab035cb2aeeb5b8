"""The monitor's alert step: after a pass's outputs are written, evaluate, record, deliver.

:class:`AlertEngine` is what the pass runner calls (``after_passes``). It evaluates every done
pass that has not been evaluated under the current rules (oldest first, so a run killed after
a pass was recorded but before its alerts were catches up on the next run), records new
alerts and sightings of known ones in the state in one transaction per pass, rewrites
``alerts.geojson`` (+ its QGIS style ``alerts.qml``) and delivers open alerts to the webhook.

An object that fires a rule again in a later pass is the same alert (matched by overlap, as
pass-to-pass changes are): its last pass and its area when last seen move on; nothing is
sent twice. Alert ids are deterministic (region, rule, pass and object id), so re-evaluating
a pass never duplicates. A pass done again from a corrected file that no longer supports an
alert it raised withdraws it: kept in the state, out of ``alerts.geojson``, and a receiver
that got it is told once (``status: withdrawn``, its own idempotency key). Should a later
correction bring the object back, it is raised as a new alert (its own id and key).

Persistence counts acquisitions, not files. The passes of one acquisition (tiles with equal
``acquired`` carrying a time of day, as :func:`geotl.predict.tiles.one_acquisition` groups
them for predict and evaluate: two Sentinel-2 tiles across a UTM zone boundary) are one look
in the history a pass is judged against: their footprints unioned, an object both tiles saw
kept once (:func:`geotl.predict.tiles.drop_tile_overlaps`). Taken as two looks, one new
acquisition over two tiles whose predictions of the acquisition before disagreed in the
overlap fired "new, seen 2 of 3" (27 of 28 ``new`` alerts on a two-tile region). Passes
known by their day alone (a date in the file name) or by a file's modification time stay
separate looks: two passes of one day are two acquisitions.

A ``grown`` rule raises an object again when it grew past its area when last raised (see
:meth:`AlertEngine._grown`): a new alert, its id built like any other, linked to the
alert first raised for the object (``grown_from``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely
from shapely import wkt as shapely_wkt
from shapely.geometry import mapping, shape
from shapely.geometry.base import BaseGeometry

from geotl.config import AlertRule, AlertsConfig, Region
from geotl.errors import AlertError, ConfigError
from geotl.io.atomic import atomic_write_text
from geotl.io.geojson import DECIMALS
from geotl.monitor.alerts.delivery import (
    DeliveryPolicy,
    DeliveryReport,
    alert_feature,
    deliver_due,
    webhook_url,
)
from geotl.monitor.alerts.reference import ReferenceLayer, load_reference_layers
from geotl.monitor.alerts.rules import Candidate, PassView, evaluate_rules, object_areas
from geotl.monitor.alerts.style import alerts_qml
from geotl.monitor.changes import metric_crs, overlap_pairs
from geotl.monitor.state import (
    DB_FILE,
    AlertRecord,
    AlertSighting,
    AlertStatus,
    MonitorState,
    PassRecord,
)
from geotl.predict.core import SceneDetections
from geotl.predict.tiles import drop_tile_overlaps, one_acquisition

__all__ = [
    "ALERTS_GEOJSON",
    "ALERTS_QML",
    "AlertEngine",
    "AlertRound",
    "acknowledge_alerts",
    "alert_id",
    "rules_hash",
    "write_alert_outputs",
]

log = logging.getLogger(__name__)

ALERTS_GEOJSON = "alerts.geojson"
ALERTS_QML = "alerts.qml"
#: Statuses that count as open in ``alerts.geojson`` and the report (not yet acknowledged).
OPEN_STATUSES: tuple[AlertStatus, ...] = ("open", "delivered", "failed")


def alert_id(region: str, rule: str, scene: str, object_id: str) -> str:
    """A stable alert id: the same object firing the same rule in the same pass, same id.

    >>> alert_id("naip-nd", "water-new-1", "m_4709963_se_14_1_20120731", "17")
    '57e5fca6623d'
    """
    digest = hashlib.sha256(f"{region}|{rule}|{scene}|{object_id}".encode()).hexdigest()
    return digest[:12]


def rules_hash(config: AlertsConfig) -> str:
    """What the rules' evaluations are marked with: edited rules evaluate every pass again.

    The growth keys are left out of rules without them, so the rules of a region file
    written before ``grown`` rules existed keep their hash (its passes are not evaluated
    again after an upgrade).

    >>> rules_hash(AlertsConfig.model_validate({"rule": [{"class": "water"}]}))
    'c90678780470'
    """
    growth = {"grown_by", "min_growth_m2"}
    plain = {
        i: growth
        for i, r in enumerate(config.rule)
        if r.grown_by is None and r.min_growth_m2 is None
    }
    return hashlib.sha256(
        config.model_dump_json(by_alias=True, exclude={"webhook": True, "rule": plain}).encode()
    ).hexdigest()[:12]


@dataclass
class AlertRound:
    """What one call of :meth:`AlertEngine.after_passes` did."""

    evaluated: int = 0
    new: list[str] = field(default_factory=list)
    delivery: DeliveryReport | None = None


def _in_metric(items: list[BaseGeometry] | list[dict[str, object]], crs: str) -> np.ndarray:
    """Geometries (EPSG:4326, shapely or GeoJSON) in ``crs``, valid: ready to be matched."""
    shapes = [g if isinstance(g, BaseGeometry) else shape(g) for g in items]
    series = gpd.GeoSeries(shapes, crs="EPSG:4326").to_crs(crs)
    return np.asarray(shapely.make_valid(series.values), dtype=object)


def _footprint(rec: PassRecord) -> BaseGeometry:
    return shapely_wkt.loads(rec.footprint_wkt) if rec.footprint_wkt else shapely.Polygon()


def _acquisition_text(rec: PassRecord) -> str | None:
    """The pass's acquisition as :func:`one_acquisition` groups it (None: never grouped).

    The state keeps a time, not whether it was sensed: a pass dated by its day alone was
    stored at midnight UTC, so a time of 00:00:00 is taken as a day (two passes of one day
    stay two looks; a tile really sensed at midnight to the second is then counted per
    tile, as before). A modification time is when the file was written.
    """
    if rec.acquired_from == "mtime":
        return None
    t = rec.acquired
    if (t.hour, t.minute, t.second, t.microsecond) == (0, 0, 0, 0):
        return t.date().isoformat()
    return t.isoformat()


class AlertEngine:
    """A region's alert rules, reference layers and webhook, bound to its open state.

    Args:
        region: the region (its ``[monitor.alerts]`` must be set).
        state: the region's open state (the caller holds the lock).
        region_dir: where the region's outputs are (``alerts.geojson`` goes there).
        region_area: the region's area (EPSG:4326), to check that reference layers overlap it.

    Raises:
        ConfigError: the region has no ``[monitor.alerts]``.
        ReferenceLayerError: a reference layer is unusable.
        AlertError: ``$GEOTL_WEBHOOK`` is not an http(s) URL.
    """

    def __init__(
        self,
        region: Region,
        state: MonitorState,
        region_dir: Path,
        region_area: BaseGeometry | None,
    ) -> None:
        config = region.monitor.alerts if region.monitor is not None else None
        if config is None:
            raise ConfigError("no [monitor.alerts] table: add rules to get alerts", region.path)
        self.region = region
        self.config = config
        self.state = state
        self.dir = Path(region_dir)
        self.references: dict[str, ReferenceLayer] = load_reference_layers(region, region_area)
        self.url = webhook_url(region)
        self.rules_hash = rules_hash(config)
        self.lookback = 3 * max((r.persistence or config.persistence).of for r in config.rule) + 1
        self._views: dict[tuple[str, str, datetime | None], PassView] = {}
        self._looks: dict[tuple[tuple[str, str, datetime | None], ...], list[PassView]] = {}

    # --- evaluation -----------------------------------------------------------------------

    def _read_pass(self, rec: PassRecord) -> gpd.GeoDataFrame:
        if rec.pass_path is None or not (self.dir / rec.pass_path).exists():
            return gpd.GeoDataFrame({"id": [], "class": []}, geometry=[], crs="EPSG:4326")
        frame = gpd.read_file(self.dir / rec.pass_path)
        if frame.crs is None:
            frame = frame.set_crs("EPSG:4326")
        if "id" in frame.columns:
            frame["id"] = frame["id"].astype(str)
        return frame

    def forget_passes(self) -> None:
        """Drop the cached passes (a long-running monitor reads them afresh)."""
        self._views.clear()
        self._looks.clear()

    def pass_view(self, rec: PassRecord) -> PassView:
        """A done pass as the rules see it: read once, cached (with its projections)."""
        key = (rec.key, rec.model_id, rec.finished)
        if key not in self._views:
            if len(self._views) > 4 * self.lookback:
                self._views.pop(next(iter(self._views)))
            self._views[key] = PassView(
                key=rec.key,
                scene=rec.name,
                acquired=rec.acquired,
                footprint=_footprint(rec),
                features=self._read_pass(rec),
            )
        return self._views[key]

    def evaluate_pending(self, model_id: str) -> tuple[int, list[str]]:
        """Evaluate every done pass of ``model_id`` not yet evaluated under these rules.

        Returns:
            (passes evaluated, ids of new alerts).
        """
        done = self.state.done_passes(model_id)
        evaluated = self.state.evaluated_scenes(model_id, self.rules_hash)
        count = 0
        new_ids: list[str] = []
        for i, rec in enumerate(done):
            if rec.key in evaluated:
                continue
            new_ids.extend(self._evaluate(rec, self.history(rec, done[:i])))
            count += 1
        return count, new_ids

    def history(self, rec: PassRecord, earlier: list[PassRecord]) -> list[list[PassRecord]]:
        """The looks before ``rec`` at its ground, newest first: each one acquisition's passes.

        Args:
            rec: the pass evaluated.
            earlier: the done passes listed before it (oldest first, as the state lists them).

        Returns:
            At most :attr:`lookback` looks, each the passes (tiles) of one acquisition
            acquired before ``rec`` whose footprints meet its footprint.
        """
        fp = _footprint(rec)
        if fp.is_empty:
            return []
        passes = [
            r
            for r in reversed(earlier)
            if r.acquired < rec.acquired and _footprint(r).intersects(fp)
        ]
        group = {
            j: g
            for g, tiles in enumerate(one_acquisition([_acquisition_text(r) for r in passes]))
            for j in tiles
        }
        looks: list[list[PassRecord]] = []
        where: dict[int, int] = {}  # group -> its look
        for j, r in enumerate(passes):
            g = group.get(j)
            if g is not None and g in where:
                looks[where[g]].append(r)
                continue
            if len(looks) == self.lookback:
                break  # tiles of one acquisition are listed together: none of the last is left
            if g is not None:
                where[g] = len(looks)
            looks.append([r])
        return looks

    def look_views(self, tiles: list[PassRecord]) -> list[PassView]:
        """The passes of one acquisition as the rules see them: an object both saw, once.

        Of an object two overlapping tiles saw, the one kept is the one whose tile it lies
        deeper in, as predict keeps it (:func:`drop_tile_overlaps`); the others' views lose
        it. Cached like the passes.
        """
        views = [self.pass_view(r) for r in tiles]
        if len(views) < 2 or any("id" not in v.features.columns for v in views):
            return views
        key = tuple((r.key, r.model_id, r.finished) for r in tiles)
        if key not in self._looks:
            if len(self._looks) > 2 * self.lookback:
                self._looks.pop(next(iter(self._looks)))
            when = tiles[0].acquired.isoformat()  # one acquisition: the group drop_ works on
            crs = metric_crs(shapely.union_all([v.footprint for v in views]))
            kept = drop_tile_overlaps(
                [
                    SceneDetections(
                        scene=Path(v.scene),
                        name=v.scene,
                        features=v.features.assign(acquired=when),
                        native=v.features.to_crs(crs),
                        footprint=v.footprint,
                        rgb_indexes=[],
                    )
                    for v in views
                ],
                say=False,
            )
            self._looks[key] = [
                v
                if len(d.features) == len(v.features)
                else PassView(
                    key=v.key,
                    scene=v.scene,
                    acquired=v.acquired,
                    footprint=v.footprint,
                    features=v.features[v.features["id"].isin(d.features["id"])],
                )
                for v, d in zip(views, kept, strict=True)
            ]
        return self._looks[key]

    def _evaluate(self, rec: PassRecord, history: list[list[PassRecord]]) -> list[str]:
        views = [self.pass_view(rec)]
        looks = [0]
        for n, tiles in enumerate(history, start=1):
            tile_views = self.look_views(tiles)
            views.extend(tile_views)
            looks.extend([n] * len(tile_views))
        candidates = evaluate_rules(self.config, views, self.references, looks=looks)
        now = datetime.now(UTC)
        known: dict[str, list[AlertRecord]] = {}
        new: list[AlertRecord] = []
        sightings: list[AlertSighting] = []
        crs = metric_crs(views[0].footprint) if not views[0].footprint.is_empty else None
        by_rule: dict[str, list[Candidate]] = {}
        for cand in candidates:
            by_rule.setdefault(cand.rule, []).append(cand)
        supported: set[str] = set()  # alerts a candidate of this pass matched
        rules = dict(zip(self.config.rule_names(), self.config.rule, strict=True))
        for rule_name, cands in by_rule.items():
            if rules[rule_name].when == "grown":
                # raised by this pass before (evaluated again): supported, not new
                raised = {a.id for a in self.state.alerts(rule=rule_name) if a.withdrawn is None}
                for alert in self._grown(rule_name, rules[rule_name], cands, rec, crs, now):
                    if alert.id in raised:
                        supported.add(alert.id)
                    else:
                        new.append(alert)
                continue
            # a withdrawn alert is no longer the object's: firing again raises a new one
            known[rule_name] = [a for a in self.state.alerts(rule=rule_name) if a.withdrawn is None]
            matched = self._match(
                [c.geometry for c in cands], [a.geometry for a in known[rule_name]], crs
            )
            for cand, hit in zip(cands, matched, strict=True):
                if hit is not None:
                    alert = known[rule_name][hit]
                    supported.add(alert.id)
                    if cand.when != "gone":
                        sightings.append(
                            AlertSighting(alert.id, rec.name, rec.acquired, cand.area_m2)
                        )
                    continue
                new.append(self._record(cand, rec.model_id, rec, now))
        sightings.extend(self._sightings(rec, views[0], crs, {s.alert_id for s in sightings}))
        new = self._reopened(new)
        withdrawn = self._withdrawn(rec, supported | {a.id for a in new})
        inserted = self.state.record_alert_evaluation(
            rec.key,
            rec.model_id,
            self.rules_hash,
            now=now,
            new=new,
            sightings=sightings,
            withdrawn=withdrawn,
        )
        if withdrawn:
            log.warning(
                "pass %s was done again without the object of %d alert(s): withdrawn (%s)",
                rec.name,
                len(withdrawn),
                ", ".join(withdrawn[:5]) + (", ..." if len(withdrawn) > 5 else ""),
            )
        if new:
            log.info(
                "pass %s: %d new alert(s) (%s)",
                rec.name,
                inserted,
                ", ".join(f"{a.id} {a.rule}" for a in new[:5]) + (", ..." if len(new) > 5 else ""),
            )
        return [a.id for a in new]

    def _grown(
        self,
        rule_name: str,
        rule: AlertRule,
        cands: list[Candidate],
        rec: PassRecord,
        crs: str | None,
        now: datetime,
    ) -> list[AlertRecord]:
        """The growth alerts of a ``grown`` rule in this pass.

        An object there now that matches an alert of its class's ``new`` / ``present``
        rules (acknowledged or not; withdrawn ones are no longer the object's) grew when
        its area reached the rule's thresholds over its area when last raised: that
        original alert's, or the latest growth alert's for it. Like any change it must hold
        in ``passes`` of the last ``of`` passes that saw the ground, this one included.
        Only alerts raised by earlier passes count, so a pass evaluated again (a killed run,
        a corrected file) raises the same alert, under the same id, or withdraws it.
        """
        followed = {
            name
            for name, r in zip(self.config.rule_names(), self.config.rule, strict=True)
            if r.class_name == rule.class_name and r.when in ("new", "present")
        }
        earlier = [
            a
            for a in self.state.alerts()
            if a.withdrawn is None and a.fired_acquired < rec.acquired
        ]
        originals = [a for a in earlier if a.rule in followed]
        if not originals or crs is None:
            return []  # never raised: new / present rules speak for these objects
        # an object that took in several raised ponds (a wet year) grew from the oldest
        pairs = overlap_pairs(
            _in_metric([c.geometry for c in cands], crs),
            _in_metric([a.geometry for a in originals], crs),
        )
        matched: dict[int, AlertRecord] = {}
        same = pairs.overlap >= 0.5  # the same object, as in _match
        for i, j in zip(pairs.left[same], pairs.right[same], strict=True):
            a, m = originals[int(j)], matched.get(int(i))
            if m is None or (a.fired_acquired, a.id) < (m.fired_acquired, m.id):
                matched[int(i)] = a
        persistence = rule.persistence or self.config.persistence
        out: list[AlertRecord] = []
        for k, cand in enumerate(cands):
            original = matched.get(k)
            if original is None:
                continue
            chain = [a for a in earlier if a.rule == rule_name and a.grown_from == original.id]
            since = max(chain, key=lambda a: (a.fired_acquired, a.id), default=original).area_m2
            grown = [a is not None and rule.has_grown(a, since) for a in cand.areas_m2]
            if not grown or not grown[0] or sum(grown) < persistence.passes:
                continue
            record = self._record(cand, rec.model_id, rec, now)
            out.append(
                dataclasses.replace(
                    record,
                    grown_from=original.id,
                    grown_from_area_m2=since,
                    seen=sum(grown),
                    looked=len(grown),
                )
            )
        return out

    def _reopened(self, new: list[AlertRecord]) -> list[AlertRecord]:
        """The new alerts, each one that was raised before and withdrawn under a new id.

        A pass corrected back (its object there again) raised the withdrawn alert again
        under its id, so its webhook went out under the idempotency key of the first
        delivery: a receiver that drops a key it has seen dropped it, and one keyed on it
        (a PagerDuty ``dedup_key``, an Opsgenie ``alias``) took it for the incident the
        withdrawal had closed. Each opening is an alert, with its own id and key, as
        PagerDuty opens a new incident for a trigger after a resolve. The id is still
        deterministic (the object id numbered by its opening): a pass evaluated again
        raises the same one.
        """
        withdrawn = {a.id for a in self.state.alerts(("withdrawn",))} if new else set()
        out: list[AlertRecord] = []
        for alert in new:
            opening, reopened = 1, alert
            while reopened.id in withdrawn:
                opening += 1
                reopened = dataclasses.replace(
                    alert,
                    id=alert_id(
                        self.region.name,
                        alert.rule,
                        alert.fired_scene,
                        f"{alert.object_id}#{opening}",
                    ),
                )
            out.append(reopened)
        return out

    def _withdrawn(self, rec: PassRecord, supported: set[str]) -> list[str]:
        """Alerts this pass raised that it no longer supports, now that it was done again.

        Only a pass predicted again after the alert was raised (``[monitor] republished =
        "replace"``, a corrected file) takes an alert back: its detections changed. A pass
        evaluated again for other reasons (rules edited, a late pass before it, a run
        killed before its mark) has the detections that raised it, and edited rules must
        not silently retract what a team was already sent.
        """
        if rec.finished is None:
            return []
        return [
            a.id
            for a in self.state.alerts(("open", "delivered", "failed", "acknowledged"))
            if a.fired_scene == rec.name
            and a.model_id == rec.model_id
            and a.created < rec.finished
            and a.id not in supported
        ]

    def _sightings(
        self,
        rec: PassRecord,
        view: PassView,
        crs: str | None,
        sighted: set[str],
    ) -> list[AlertSighting]:
        """Alerts of new/present rules whose object this pass sees again (last pass moves on).

        Every known alert of such a rule is looked for, also when its rule fired for other
        objects in this pass (``sighted``: the alerts a candidate of this pass matched).
        """
        out: list[AlertSighting] = []
        if crs is None or view.features.empty or "class" not in view.features.columns:
            return out
        for rule_name, rule in zip(self.config.rule_names(), self.config.rule, strict=True):
            if rule.when == "gone":
                continue
            alerts = [
                a
                for a in self.state.alerts(rule=rule_name)
                if a.last_acquired <= rec.acquired and a.id not in sighted and a.withdrawn is None
            ]
            if not alerts:
                continue
            objects = view.features[view.features["class"].astype(str) == rule.class_name]
            matched = self._match(
                [shape(a.geometry) for a in alerts], list(objects.geometry.values), crs
            )
            areas = object_areas(objects)
            out.extend(
                AlertSighting(a.id, rec.name, rec.acquired, float(areas[hit]))
                for a, hit in zip(alerts, matched, strict=True)
                if hit is not None
            )
        return out

    @staticmethod
    def _match(
        geoms: list[BaseGeometry] | list[dict[str, object]],
        others: list[BaseGeometry] | list[dict[str, object]],
        crs: str | None,
        min_overlap: float = 0.5,
    ) -> list[int | None]:
        """For each geometry, the index of the first of ``others`` it matches, else None."""
        if not geoms or not others or crs is None:
            return [None] * len(geoms)
        pairs = overlap_pairs(_in_metric(geoms, crs), _in_metric(others, crs))
        out: list[int | None] = [None] * len(geoms)
        for i, j, ov in zip(pairs.left, pairs.right, pairs.overlap, strict=True):
            if ov >= min_overlap and out[int(i)] is None:
                out[int(i)] = int(j)
        return out

    def _record(
        self, cand: Candidate, model_id: str, rec: PassRecord, now: datetime
    ) -> AlertRecord:
        geom = shapely.set_precision(cand.geometry, 10.0**-DECIMALS)
        return AlertRecord(
            id=alert_id(self.region.name, cand.rule, cand.scene, cand.object_id),
            rule=cand.rule,
            class_name=cand.class_name,
            change=cand.when,
            status="open",
            geometry=dict(mapping(shapely.orient_polygons(geom))),
            object_id=cand.object_id,
            score=cand.score,
            area_m2=cand.area_m2,
            model_id=model_id,
            fired_scene=rec.name,
            fired_acquired=rec.acquired,
            first_scene=cand.first_scene,
            first_acquired=cand.first_acquired,
            last_scene=cand.last_scene or cand.scene,
            last_acquired=cand.last_acquired or cand.acquired,
            reference_layer=cand.reference_layer,
            reference_ids=list(cand.reference_ids),
            seen=cand.seen,
            looked=cand.looked,
            created=now,
            updated=now,
        )

    # --- the runner's hook ------------------------------------------------------------------

    def after_passes(
        self,
        model_id: str,
        *,
        deliver: bool = True,
        wait_s: float = 60.0,
        stop: Callable[[], bool] | None = None,
        sleep: Callable[[float], object] = time.sleep,
    ) -> AlertRound:
        """Evaluate pending passes, rewrite ``alerts.geojson``, deliver open alerts.

        Call after a run's passes are recorded (and on runs without new passes: retries and
        passes left unevaluated by a killed run are due then). ``sleep`` waits for retries
        due within the run: the runner's wakes up at SIGTERM, so a stop does not wait out
        a webhook's backoff.
        """
        evaluated, new = self.evaluate_pending(model_id)
        result = AlertRound(evaluated=evaluated, new=new)
        write_alert_outputs(self.state, self.dir)
        if deliver and self.url is not None:
            policy = DeliveryPolicy.from_config(self.url, self.config, wait_s=wait_s)
            result.delivery = deliver_due(
                self.state, self.region.name, policy, stop=stop, sleep=sleep
            )
            if result.delivery.attempts:
                write_alert_outputs(self.state, self.dir)
        return result


def write_alert_outputs(state: MonitorState, region_dir: Path) -> Path:
    """Write ``alerts.geojson`` (alerts not yet acknowledged) and its style ``alerts.qml``.

    QGIS loads ``alerts.qml`` as the default style of ``alerts.geojson`` (same base name).
    """
    features = []
    for alert in state.alerts(OPEN_STATUSES):
        features.append(alert_feature(alert))
    text = json.dumps(
        {"type": "FeatureCollection", "features": features},
        ensure_ascii=False,
        separators=(",", ":"),
    )
    path = Path(region_dir) / ALERTS_GEOJSON
    atomic_write_text(path, text + "\n")
    atomic_write_text(Path(region_dir) / ALERTS_QML, alerts_qml())
    return path


def acknowledge_alerts(
    region_dir: Path, alert_ids: list[str], region: Region | None = None
) -> list[str]:
    """Acknowledge alerts by id (all or none) and rewrite ``alerts.geojson``.

    Safe while a monitor runs on the region (SQLite serialises the writes).

    Args:
        region_dir: the region's monitor folder.
        alert_ids: the alerts to acknowledge.
        region: the region file given; refused when another file of its name owns the state.

    Returns:
        The ids acknowledged.

    Raises:
        AlertError: the region has no monitor state here, or an id is not one of its alerts.
        ConfigError: another region file of the same name is monitored into this folder.
    """
    db = Path(region_dir) / DB_FILE
    if not db.exists():
        raise AlertError(
            "no monitor state here: pass the --out folder the monitor writes to", region_dir
        )
    # ids as pasted from a report or a mail: "57E5FCA6623D", "57e5fca6623d,"
    alert_ids = [a.strip().strip(",;").strip().lower() for a in alert_ids]
    with MonitorState(db) as state:
        if region is not None:
            state.check_region_file(region.path, region.name)
        unknown = state.acknowledge_alerts(list(dict.fromkeys(alert_ids)), datetime.now(UTC))
        if unknown:
            raise AlertError(
                f"unknown alert id(s) {', '.join(unknown)}: nothing was acknowledged; the ids "
                f"are in {ALERTS_GEOJSON} and the report",
                db,
            )
        write_alert_outputs(state, Path(region_dir))
    return list(dict.fromkeys(alert_ids))
