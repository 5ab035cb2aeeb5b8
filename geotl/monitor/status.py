"""``geotl monitor status``: what a region's monitor processed, what failed, what is due.

The state is read without taking the lock, so status is safe while a monitor runs; the lock
file says whether one does.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from geotl.config import Region
from geotl.monitor.lock import RegionLock
from geotl.monitor.outputs import counted, format_ha, region_dir
from geotl.monitor.schedule import parse_every
from geotl.monitor.state import (
    DB_FILE,
    LAST_RUN_ERROR,
    MonitorState,
    PassRecord,
    PassWarnings,
    RepublishedRecord,
)

__all__ = ["MonitorStatus", "format_status", "monitor_status"]


@dataclass(frozen=True)
class MonitorStatus:
    """What ``geotl monitor status`` reports."""

    region: str
    dir: Path
    initialised: bool
    scenes: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    latest: PassRecord | None = None
    failed: list[PassRecord] = field(default_factory=list)
    pending: list[PassRecord] = field(default_factory=list)
    last_run_started: datetime | None = None
    last_run_finished: datetime | None = None
    last_run_outcome: str | None = None
    last_run_error: str | None = None  # why the last run ended in error or failed (exit 1)
    next_run_due: datetime | None = None
    loop_stopped: datetime | None = None
    next_retry: datetime | None = None
    running_pid: int | None = None
    #: where and since when the running monitor runs (from the lock file), as it wrote them
    running_host: str | None = None
    running_since: str | None = None
    models: list[str] = field(default_factory=list)
    alerts: dict[str, int] = field(default_factory=dict)  # alert status -> count
    #: open alerts whose delivery failed and is retried: how many, the next attempt, last error
    alerts_retrying: int = 0
    alert_next_attempt: datetime | None = None
    alert_last_error: str | None = None
    #: why the alerts that could not be delivered failed (the latest error among them: a
    #: 410, a redirect and where to): the fix depends on it
    alerts_failed_error: str | None = None
    #: each rule of the region (and any that raised alerts before it was renamed) -> alerts;
    #: a rule at 0 is shown, so a rule that can never fire does not pass unnoticed
    alerts_by_rule: dict[str, int] = field(default_factory=dict)
    #: the passes (as in history.csv) whose processing warned, newest first: suspect results
    warned: list[tuple[PassRecord, PassWarnings]] = field(default_factory=list)
    #: items and files that re-publish a done pass, most recently seen first
    republished: list[RepublishedRecord] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""

        def ts(v: datetime | None) -> str | None:
            return v.isoformat(timespec="seconds") if v else None

        return {
            "region": self.region,
            "dir": str(self.dir),
            "initialised": self.initialised,
            "scenes": self.scenes,
            "by_status": self.by_status,
            # areas in m² (the text says ha); null where not known or not compared
            "latest": None
            if self.latest is None
            else {
                "scene": self.latest.name,
                "acquired": ts(self.latest.acquired),
                "detections": self.latest.detections,
                "detected_area_m2": _m2(self.latest.detected_area_m2),
                "previous_scene": self.latest.previous_scene,
                "new": self.latest.new,
                "new_area_m2": _m2(self.latest.new_area_m2),
                "gone": self.latest.gone,
                "gone_area_m2": _m2(self.latest.gone_area_m2),
            },
            "failed": [
                {
                    "scene": f.name,
                    "attempts": f.attempts,
                    "error": f.error,
                    "next_attempt": ts(f.next_attempt),
                }
                for f in self.failed
            ],
            "pending": [p.name for p in self.pending],
            "last_run": {
                "started": ts(self.last_run_started),
                "finished": ts(self.last_run_finished),
                "outcome": self.last_run_outcome,
                "error": self.last_run_error,
            },
            "next_run_due": ts(self.next_run_due),
            "loop_stopped": ts(self.loop_stopped),
            "next_retry": ts(self.next_retry),
            "running_pid": self.running_pid,
            "running_host": self.running_host,
            "running_since": self.running_since,
            "models": self.models,
            "alerts": self.alerts,
            "alerts_retrying": {
                "count": self.alerts_retrying,
                "next_attempt": ts(self.alert_next_attempt),
                "last_error": self.alert_last_error,
            },
            "alerts_failed": {
                "count": self.alerts.get("failed", 0),
                "last_error": self.alerts_failed_error,
            },
            "alerts_by_rule": self.alerts_by_rule,
            "warned": [
                {
                    "scene": p.name,
                    "acquired": ts(p.acquired),
                    "model": p.model_id,
                    "warnings": w.count,
                    "lines": w.lines,
                }
                for p, w in self.warned
            ],
            "republished": [
                {
                    "scene": r.name,
                    "of": r.of_name,
                    "acquired": ts(r.acquired),
                    "seen": ts(r.seen),
                    "replaced": r.replaced,
                }
                for r in self.republished
            ],
        }


def _m2(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def monitor_status(region: Region, out_dir: Path) -> MonitorStatus:
    """Read a region's monitor state without locking it (safe while a monitor runs)."""
    rdir = region_dir(region, out_dir)
    db_path = rdir / DB_FILE
    lock = RegionLock(rdir, region.name)
    running_pid = lock.holder_pid()
    holder = lock.holder() if running_pid is not None else {}
    running_host = str(holder["host"]) if "host" in holder else None
    running_since = str(holder["since"]) if "since" in holder else None
    if not db_path.exists():  # a first run may be loading its model
        return MonitorStatus(
            region=region.name,
            dir=rdir,
            initialised=False,
            running_pid=running_pid,
            running_host=running_host,
            running_since=running_since,
        )
    with MonitorState(db_path, readonly=True) as state:
        state.check_region_file(region.path, region.name)
        summary = state.summary()
        loop_stopped = state.loop_stopped()
        # withdrawals a receiver must still hear of wait like open alerts
        retrying = [a for a in state.unsent_alerts() if a.attempts > 0]
        undeliverable = state.alerts(("failed",))
        by_rule = _alerts_by_rule(region, [a.rule for a in state.alerts()])
        last_error = state.get_meta(LAST_RUN_ERROR) or None
        heard = state.pass_warnings()
        warned = [
            (p, heard[(p.key, p.model_id)])
            for p in reversed(state.latest_passes())
            if (p.key, p.model_id) in heard
        ]
        republished = state.republished()
    last = summary.last_run
    every_s = last.every_s if last and last.every_s else None
    if last and every_s and running_pid is None:
        # an --every loop holds the lock while it lives: with none held, no run is coming
        # (a loop killed outright did not record its end: then the last run's end stands)
        every_s = None
        if loop_stopped is None or loop_stopped < last.started:
            loop_stopped = last.finished or last.started
    else:
        loop_stopped = None
        if every_s is None and region.monitor is not None and region.monitor.every:
            with contextlib.suppress(ValueError):
                every_s = parse_every(region.monitor.every)
    next_due = (last.started + timedelta(seconds=every_s)) if last and every_s else None
    retries = [f.next_attempt for f in summary.failed if f.next_attempt is not None]
    by_status = dict(summary.by_status)
    if running_pid is None and by_status.get("running"):
        # no run holds the lock: a run was killed mid-pass, and the next one redoes it
        by_status["interrupted"] = by_status.pop("running")
    return MonitorStatus(
        region=region.name,
        dir=rdir,
        initialised=True,
        scenes=summary.scenes,
        by_status=by_status,
        latest=summary.latest_done,
        failed=summary.failed,
        pending=summary.pending,
        last_run_started=last.started if last else None,
        last_run_finished=last.finished if last else None,
        last_run_outcome=last.outcome if last else None,
        # "failed": the run ended but exited 1 (a pass, an alert's delivery): the reason too
        last_run_error=last_error if last and last.outcome in ("error", "failed") else None,
        next_run_due=next_due,
        loop_stopped=loop_stopped,
        next_retry=min(retries) if retries else None,
        running_pid=running_pid,
        running_host=running_host,
        running_since=running_since,
        models=summary.models,
        alerts=summary.alerts,
        alerts_retrying=len(retrying),
        alert_next_attempt=min(
            (a.next_attempt for a in retrying if a.next_attempt is not None), default=None
        ),
        alert_last_error=max(retrying, key=lambda a: a.updated).last_error if retrying else None,
        alerts_failed_error=(
            max(undeliverable, key=lambda a: a.updated).last_error if undeliverable else None
        ),
        alerts_by_rule=by_rule,
        warned=warned,
        republished=republished,
    )


def _alerts_by_rule(region: Region, fired: list[str]) -> dict[str, int]:
    """Alerts per rule, the region's rules first (in file order) with 0 where none fired."""
    alerts = region.monitor.alerts if region.monitor is not None else None
    counts = dict.fromkeys(alerts.rule_names() if alerts is not None else [], 0)
    for rule in fired:
        counts[rule] = counts.get(rule, 0) + 1
    return counts


def format_status(status: MonitorStatus) -> str:
    """Human-readable status, one fact per line."""
    lines = [f"region: {status.region} ({status.dir})"]
    running = (
        f"running now: pid {status.running_pid}"
        + (f" on {status.running_host}" if status.running_host else "")
        + (f" since {status.running_since}" if status.running_since else "")
    )
    if not status.initialised:
        lines.append("state: never run (no state database yet)")
        if status.running_pid is not None:
            lines.append(running)
        return "\n".join(lines) + "\n"

    def ts(v: datetime | None) -> str:
        return v.isoformat(timespec="seconds") if v else "-"

    counts = ", ".join(f"{k} {v}" for k, v in sorted(status.by_status.items())) or "none"
    lines.append(f"scenes: {status.scenes} ({counts})")
    processed = status.by_status.get("done", 0)
    lines.append(f"processed: {processed}")
    if (latest := status.latest) is not None:
        area = latest.detected_area_m2
        lines.append(
            f"latest pass: {latest.name} acquired {ts(latest.acquired)} "
            f"({latest.detections} detections{'' if area is None else ', ' + format_ha(area)})"
        )
        if latest.previous_scene is not None:
            lines.append(
                f"  since {latest.previous_scene}: "
                f"{counted(latest.new, latest.new_area_m2, 'new')}, "
                f"{counted(latest.gone, latest.gone_area_m2, 'gone')}"
            )
    if status.warned:
        lines.append(
            f"passes with warnings: {len(status.warned)} (their results may be suspect; "
            "newest first)"
        )
        for p, w in status.warned[:5]:
            lines.append(
                f"  {p.name} acquired {ts(p.acquired)}: {w.count} warning(s): {w.lines[0]}"
            )
        if len(status.warned) > 5:
            lines.append(f"  ... and {len(status.warned) - 5} more (history.csv: warnings)")
    if status.republished:
        lines.append(
            f"re-published: {len(status.republished)} item(s) or file(s) of passes already "
            "done ([monitor] republished)"
        )
        for r in status.republished[:5]:
            if r.key == r.of_key:
                again = "updated in place"
            elif r.replaced:  # [monitor] republished = "replace"
                again = f"superseded: pass {r.of_name} predicted again from a later version"
            else:
                again = f"re-publishes {r.of_name}"
            lines.append(f"  {r.name} {again} (acquired {ts(r.acquired)}; seen {ts(r.seen)})")
        if len(status.republished) > 5:
            lines.append(f"  ... and {len(status.republished) - 5} more")
    lines.append(f"failed: {len(status.failed)}")
    for f in status.failed:
        retry = f"next retry {ts(f.next_attempt)}" if f.next_attempt else "no automatic retry left"
        lines.append(f"  {f.name}: {f.attempts} attempt(s), {retry}: {f.error}")
    if status.pending:
        what = "pending" + (", interrupted included" if status.by_status.get("interrupted") else "")
        lines.append(
            f"to process: {len(status.pending)} ({', '.join(p.name for p in status.pending[:5])}"
            f"{', ...' if len(status.pending) > 5 else ''}; {what})"
        )
    # a run without an outcome is running, or was killed
    unfinished = "running" if status.running_pid is not None else "unfinished"
    lines.append(
        f"last run: started {ts(status.last_run_started)}, finished {ts(status.last_run_finished)}, "
        f"{status.last_run_outcome or unfinished}"
        + (f": {status.last_run_error}" if status.last_run_error else "")
    )
    if status.running_pid is not None:
        lines.append(running)
    if status.next_run_due:
        due = ts(status.next_run_due)
    elif status.loop_stopped:
        due = f"none: the --every loop stopped at {ts(status.loop_stopped)} (start it again)"
    else:
        due = "on the next scheduled run (cron/systemd; no --every recorded)"
    lines.append(f"next run due: {due}")
    if status.next_retry is not None:
        lines.append(f"next retry due: {ts(status.next_retry)}")
    lines.append(f"models: {', '.join(status.models) or 'none yet'}")
    if status.alerts or status.alerts_by_rule:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(status.alerts.items())) or "none yet"
        lines.append(f"alerts: {sum(status.alerts.values())} ({counts})")
        rules = ", ".join(f"{k} {v}" for k, v in status.alerts_by_rule.items())
        silent = [k for k, v in status.alerts_by_rule.items() if v == 0]
        lines.append(
            f"  by rule: {rules}"
            + (
                f" (none in {processed} pass(es) yet: {', '.join(silent)})"
                if silent and processed
                else ""
            )
        )
        if status.alerts_retrying:
            # every open alert waits, not only those tried: a hanging webhook leaves most untried
            untried = status.alerts.get("open", 0) - status.alerts_retrying
            lines.append(
                f"  {status.alerts_retrying + max(untried, 0)} open alert(s) not delivered yet "
                f"({status.alert_last_error or 'no answer'}"
                + (f"; {untried} not tried yet" if untried > 0 else "")
                + f"): retried from {ts(status.alert_next_attempt)} by the next run; check the "
                "webhook"
            )
        if status.alerts.get("failed"):
            lines.append(
                f"  {status.alerts['failed']} alert(s) could not be delivered"
                + (f" ({status.alerts_failed_error})" if status.alerts_failed_error else "")
                + ": fix the webhook or the receiver, then run geotl monitor with --retry-failed "
                "to send them again"
            )
    return "\n".join(lines) + "\n"
