"""Re-published passes: one acquisition is one pass, however often it is published.

Catalogues publish a scene again. Earth Search and the Copernicus Data Space publish a
reprocessed Sentinel-2 scene under a new item id (processing baseline N0400 -> N0500,
``..._0_L2A`` -> ``..._1_L2A``) with the same acquisition time and footprint; the Planetary
Computer updates an item in place (same id, a new ``updated`` and new asset hrefs); a folder
gets the same acquisition re-delivered, reprocessed, under another file name. Taken as a new
pass, it would be predicted again, compared with its own acquisition as "the previous pass",
and counted twice by alert persistence (``passes = 2, of = 3`` reached by one sighting).

A found scene re-publishes a done pass when it is

* that pass's STAC item again with another fingerprint (updated in place), or
* acquired within :data:`SAME_ACQUISITION` of the pass with footprints that overlap by
  :data:`SAME_GROUND` (intersection over union): the neighbouring tiles of one datatake share
  its acquisition time, not its ground.

A folder file replaced in place is not one: it is the pass's own file, corrected, and is
redone as before. A byte copy is caught earlier (``Monitor._without_copies``). A file dated
by its modification time is never one: that is when it was written, not when the ground was
seen; nor one dated by its day alone (a date in its name), which two passes of one day
share (Sentinel-1A in the morning, 1B in the evening over the same ground).

``[monitor] republished`` says what happens then:

* ``"skip"`` (default): recorded (``geotl monitor status`` lists it beside the pass it
  re-publishes, and a warning names both) and not predicted. The pass already stands for
  the acquisition, and re-predicting every reprocessing campaign of a catalogue would cost
  the run's time for the same ground;
* ``"replace"``: the pass is predicted again from the re-publication (a new baseline that an
  operator trusts more). The pass keeps its name, so its files are overwritten (atomically,
  each) and its alert ids stay: alerts already raised do not fire again, and the rules see the
  pass once. The superseded item is remembered, so finding it again changes nothing.

Two versions found in one search (a first run over a period the catalogue reprocessed) keep
the newest (the item's ``updated``, else the later id; a file's modification time); the
others are recorded as its re-publications.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

from rasterio.errors import RasterioError
from shapely import wkt as shapely_wkt
from shapely.geometry.base import BaseGeometry

from geotl.monitor.changes import scene_footprint
from geotl.monitor.sources import Scene
from geotl.monitor.state import MonitorState

__all__ = ["SAME_ACQUISITION", "SAME_GROUND", "without_republished"]

log = logging.getLogger(__name__)

#: two scenes acquired this close are one acquisition (catalogues copy the sensing time)
SAME_ACQUISITION = timedelta(seconds=1)
#: ... when their footprints overlap this much (intersection over union); adjacent MGRS tiles
#: of one datatake overlap by about a tenth
SAME_GROUND = 0.9

Policy = Literal["skip", "replace"]


def without_republished(
    found: list[Scene], state: MonitorState, source: str, policy: Policy, now: datetime
) -> list[Scene]:
    """``found`` less the re-publications of done passes (recorded or applied by ``policy``).

    Args:
        found: what the source discovered (new keys, and known keys with a new fingerprint).
        state: the open state (written: re-publications are recorded, replacements applied).
        source: the source's kind (``folder``, ``stac``).
        policy: ``[monitor] republished``.
        now: the run's time.
    """
    known = state.known_fingerprints()
    done = state.done_keys()
    footprints: dict[str, BaseGeometry | None] = {}
    kept: list[Scene] = []
    for scene in found:
        if scene.key in done:
            if source != "stac":
                kept.append(scene)  # a file replaced in place: its pass is redone
                continue
            original: tuple[str, str] | None = (scene.key, scene.name)
        elif scene.acquired_from == "mtime" or scene.day_only:
            # dated when the file was written, not when the ground was seen; or by its day
            # alone, which two passes of one day share
            original = None
        else:
            original = _done_pass_of(scene, state, source, footprints)
        if original is None:
            kept.append(scene)
            continue
        of_key, of_name = original
        if policy == "replace":
            if of_key == scene.key:
                kept.append(scene)  # the state sets its job back to pending
            else:
                state.replace_scene(of_key, scene, now)
            log.warning(
                "%s: predicting the pass again from it ([monitor] republished = 'replace')",
                _what(scene, of_key, of_name),
            )
            continue
        state.record_republished(scene, of_key, now)
        log.warning(
            "%s: recorded, not predicted again (set [monitor] republished = 'replace' to "
            "predict the pass again from it)",
            _what(scene, of_key, of_name),
        )
    return _newest_of_each(kept, known, state, source, footprints, now)


def _what(scene: Scene, of_key: str, of_name: str) -> str:
    """What was re-published, naming both ids."""
    if of_key == scene.key:
        return (
            f"STAC item {scene.name} was updated after its pass was done (acquired "
            f"{scene.acquired.isoformat()})"
        )
    return (
        f"{scene.name} re-publishes pass {of_name} (acquired {scene.acquired.isoformat()}, "
        "the same ground)"
    )


def _done_pass_of(
    scene: Scene,
    state: MonitorState,
    source: str,
    footprints: dict[str, BaseGeometry | None],
) -> tuple[str, str] | None:
    """(key, name) of the done pass ``scene`` re-publishes, or None."""
    candidates = [
        c
        for c in state.done_scenes_near(scene.acquired, SAME_ACQUISITION, source)
        if c[0] != scene.key
    ]
    if not candidates:
        return None
    mine = _footprint(scene.key, scene.footprint_wkt, scene.uri, scene.is_remote, footprints)
    for key, name, wkt, uri in candidates:
        theirs = _footprint(key, wkt, uri, source != "folder", footprints)
        if _same_ground(mine, theirs):
            return key, name
    return None


def _newest_of_each(
    scenes: list[Scene],
    known: dict[str, str],
    state: MonitorState,
    source: str,
    footprints: dict[str, BaseGeometry | None],
    now: datetime,
) -> list[Scene]:
    """New scenes less older versions of another new scene of the same acquisition."""
    new = sorted(
        (s for s in scenes if s.key not in known and s.acquired_from != "mtime" and not s.day_only),
        key=lambda s: s.acquired,
    )
    older: set[str] = set()
    for i, scene in enumerate(new):
        for other in new[i + 1 :]:
            if other.acquired - scene.acquired > SAME_ACQUISITION:
                break
            if scene.key in older or other.key in older:
                continue
            a = _footprint(scene.key, scene.footprint_wkt, scene.uri, scene.is_remote, footprints)
            b = _footprint(other.key, other.footprint_wkt, other.uri, other.is_remote, footprints)
            if not _same_ground(a, b):
                continue
            old, newest = sorted((scene, other), key=lambda s: _version(s, source))
            older.add(old.key)
            state.record_republished(old, newest.key, now)
            log.warning(
                "%s and %s are one acquisition (%s, the same ground): %s is the pass, %s is "
                "recorded as an earlier version of it",
                old.name,
                newest.name,
                old.acquired.isoformat(),
                newest.name,
                old.name,
            )
    return [s for s in scenes if s.key not in older]


def _version(scene: Scene, source: str) -> tuple[str, float, str]:
    """How recent a publication is: a STAC item's ``updated``, a file's time, then its name."""
    if source == "stac":
        return scene.fingerprint.split("|", 1)[0], 0.0, scene.name
    mtime = scene.fingerprint.split(":", 1)[-1]
    return "", float(mtime) if mtime.isdigit() else 0.0, scene.name


def _footprint(
    key: str,
    wkt: str | None,
    uri: str,
    remote: bool,
    cache: dict[str, BaseGeometry | None],
) -> BaseGeometry | None:
    """A scene's footprint (EPSG:4326): recorded or stated, else read from its file."""
    if key not in cache:
        geom: BaseGeometry | None = None
        if wkt:
            geom = shapely_wkt.loads(wkt)
        elif not remote and Path(uri).exists():
            try:
                geom = scene_footprint(Path(uri))
            except (RasterioError, OSError) as exc:
                log.debug("%s: footprint not readable (%s)", uri, exc)
        cache[key] = geom
    return cache[key]


def _same_ground(a: BaseGeometry | None, b: BaseGeometry | None) -> bool:
    """Whether two footprints cover the same ground (IoU of at least :data:`SAME_GROUND`)."""
    if a is None or b is None or a.is_empty or b.is_empty:
        return False
    union = float(a.union(b).area)
    return union > 0 and float(a.intersection(b).area) / union >= SAME_GROUND
