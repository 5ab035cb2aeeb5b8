"""Webhook delivery: POST each alert once (at least), with retries and backoff in the state.

Every attempt is recorded *before* anything is sent (``alert_deliveries.outcome = 'sending'``)
and its outcome after; the alert stays ``open`` until a 2xx answer is recorded. A geotl killed
between sending and recording therefore sends the alert again on its next run: delivery is
at least once, never lost, and the ``Idempotency-Key`` header (also in the body) lets the
receiver drop the duplicate.

Answers: 2xx delivered; 408, 425, 429, 5xx and network errors are retried with exponential
backoff (``retry_base_s``, doubling, at most six hours) up to ``max_attempts``; any other
status (4xx: a wrong URL, a rejected payload; 3xx: a hook that moved, whose redirect is not
followed because urllib would resend the POST as a GET without its body) marks the alert
``failed`` with the status at once: retrying cannot fix it.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import unquote, urlsplit, urlunsplit

from shapely.geometry import shape

from geotl import __version__
from geotl.config import AlertsConfig, Region, check_webhook_url
from geotl.errors import AlertError, error_text
from geotl.io.geojson import DECIMALS
from geotl.monitor.state import AlertRecord, MonitorState

__all__ = [
    "WEBHOOK_ENV",
    "DeliveryPolicy",
    "DeliveryReport",
    "alert_feature",
    "deliver_due",
    "idempotency_key",
    "pass_evidence",
    "webhook_payload",
    "webhook_url",
]

log = logging.getLogger(__name__)

#: Environment variable naming the webhook when the region file does not.
WEBHOOK_ENV = "GEOTL_WEBHOOK"

RETRY_STATUSES = frozenset({408, 425, 429})
RETRY_MAX_S = 6 * 3600.0
#: An unanswered attempt that took this long (or the whole timeout) makes one alert probe a
#: receiver alone until it answers (see :func:`deliver_due`).
SLOW_ATTEMPT_S = 1.0


def webhook_url(region: Region) -> str | None:
    """``[monitor.alerts] webhook``, else ``$GEOTL_WEBHOOK``, else None.

    Raises:
        AlertError: the environment variable holds something that is not an http(s) URL.
    """
    alerts = region.monitor.alerts if region.monitor is not None else None
    if alerts is not None and alerts.webhook:
        return alerts.webhook
    env = os.environ.get(WEBHOOK_ENV, "").strip()
    if not env:
        return None
    try:
        return check_webhook_url(env)
    except ValueError as exc:
        raise AlertError(f"{exc} (from ${WEBHOOK_ENV})", region.path) from None


@dataclass(frozen=True)
class DeliveryPolicy:
    """How alerts are sent.

    Attributes:
        url: the webhook.
        timeout_s: per request.
        max_attempts: attempts before an alert is marked failed.
        retry_base_s: backoff after the first failed attempt; doubles with each further one.
        wait_s: how long one run may wait for due retries before leaving them to the next.
    """

    url: str
    timeout_s: float = 10.0
    max_attempts: int = 8
    retry_base_s: float = 30.0
    wait_s: float = 60.0

    @classmethod
    def from_config(cls, url: str, config: AlertsConfig, wait_s: float = 60.0) -> DeliveryPolicy:
        """The policy of a region's ``[monitor.alerts]``."""
        return cls(
            url=url,
            timeout_s=config.timeout_s,
            max_attempts=config.max_attempts,
            retry_base_s=config.retry_base_s,
            wait_s=wait_s,
        )

    def backoff(self, attempts: int) -> timedelta:
        """Delay after ``attempts`` failed attempts.

        >>> DeliveryPolicy("http://x", retry_base_s=30).backoff(3).total_seconds()
        120.0
        """
        return timedelta(seconds=min(self.retry_base_s * 2 ** max(attempts - 1, 0), RETRY_MAX_S))


@dataclass
class DeliveryReport:
    """What one delivery round did."""

    delivered: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    retrying: list[str] = field(default_factory=list)
    attempts: int = 0
    tried: set[str] = field(default_factory=set)
    open: int = 0  # alerts still open after the round, tried or not (a hanging webhook
    # leaves most untried: each attempt costs the request timeout)

    @property
    def unanswered(self) -> list[str]:
        """Alerts tried in this round and still waiting for a retry (down, hanging, 5xx).

        A run that leaves them undelivered exits 1, as one with a failed pass does, so a
        webhook that stopped answering shows up in cron at once, not when it gives up hours
        later; alerts merely waiting for their backoff (not tried) do not count.
        """
        return [i for i in self.retrying if i in self.tried]


def idempotency_key(region_name: str, alert_id: str, withdrawn: bool = False) -> str:
    """The key a receiver uses to drop duplicate deliveries of one alert.

    A withdrawal has a key of its own: a receiver dropping the alert's key as a duplicate
    would drop the news that it was withdrawn.

    >>> idempotency_key("naip-nd", "3f2a9c01b7de")
    'geotl:naip-nd:3f2a9c01b7de'
    >>> idempotency_key("naip-nd", "3f2a9c01b7de", withdrawn=True)
    'geotl:naip-nd:3f2a9c01b7de:withdrawn'
    """
    return f"geotl:{region_name}:{alert_id}" + (":withdrawn" if withdrawn else "")


def _key(region_name: str, alert: AlertRecord) -> str:
    return idempotency_key(region_name, alert.id, withdrawn=alert.status == "withdrawn")


def alert_feature(alert: AlertRecord) -> dict[str, Any]:
    """An alert as a GeoJSON Feature (RFC 7946; properties flat, times ISO 8601)."""

    def ts(v: datetime | None) -> str | None:
        return v.isoformat() if v else None

    geom = shape(alert.geometry)
    # RFC 7946 5: where it is at a glance, for a receiver that posts to a chat or a ticket
    # and cannot draw a polygon (a map link from two corners)
    bbox = {} if geom.is_empty else {"bbox": [round(v, DECIMALS) for v in geom.bounds]}
    return {
        "type": "Feature",
        "id": alert.id,
        **bbox,
        "geometry": alert.geometry,
        "properties": {
            "id": alert.id,
            "rule": alert.rule,
            "class": alert.class_name,
            "change": alert.change,
            "status": alert.status,
            "object_id": alert.object_id,
            "score": alert.score,
            "area_m2": round(alert.area_m2, 2),  # when it fired
            # when last seen (last_scene): a pond that grew after it fired
            "last_area_m2": round(
                alert.area_m2 if alert.last_area_m2 is None else alert.last_area_m2, 2
            ),
            "model": alert.model_id,
            "fired_scene": alert.fired_scene,
            "fired_acquired": ts(alert.fired_acquired),
            "first_scene": alert.first_scene,
            "first_acquired": ts(alert.first_acquired),
            "last_scene": alert.last_scene,
            "last_acquired": ts(alert.last_acquired),
            "reference_layer": alert.reference_layer,
            "reference_ids": ",".join(alert.reference_ids),
            "seen": alert.seen,
            "looked": alert.looked,
            "created": ts(alert.created),
            "delivered": ts(alert.delivered),
            "acknowledged": ts(alert.acknowledged),
            # its pass was done again (a corrected file) without the object
            "withdrawn": ts(alert.withdrawn),
            "withdrawn_scene": alert.withdrawn_scene,
            # a "grown" alert: the alert first raised for the object, the area it grew from
            "grown_from": alert.grown_from,
            "grown_from_area_m2": None
            if alert.grown_from_area_m2 is None
            else round(alert.grown_from_area_m2, 2),
        },
    }


#: (scene name, model id) -> the pass's files, relative to the region's output folder
Evidence = dict[tuple[str, str], dict[str, str | None]]


def pass_evidence(state: MonitorState) -> Evidence:
    """The detections and changes files of each done pass, to send with its alerts.

    A team acting on an alert wants what it rests on: the pass's detections (the object
    with its neighbours) and the changes since the pass before, not only the polygon.
    """
    return {
        (rec.name, rec.model_id): {"detections": rec.pass_path, "changes": rec.changes_path}
        for rec in state.done_passes()
    }


def webhook_payload(
    region_name: str,
    alert: AlertRecord,
    evidence: Evidence | None = None,
    region_dir: str | None = None,
) -> dict[str, Any]:
    """The JSON body: the alert as a GeoJSON Feature plus ``region``, ``pass`` and the key.

    ``pass`` also names the pass's ``detections`` and ``changes`` files (paths relative to
    ``region_dir``, the region's output folder, sent as ``pass.dir``) when ``evidence`` has
    them.
    """
    feature = alert_feature(alert)
    fired: dict[str, Any] = {
        "scene": alert.fired_scene,
        "acquired": alert.fired_acquired.isoformat(),
    }
    files = (evidence or {}).get((alert.fired_scene, alert.model_id))
    if files is not None:
        fired.update({"dir": region_dir, **files})
    return {
        **feature,
        "region": region_name,
        "pass": fired,
        "idempotency_key": _key(region_name, alert),
    }


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is answered as it is, never followed.

    urllib sends a POST's 301/302/303 on as a GET without the body, whose 200 then marked an
    alert delivered that nobody received.
    """

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def _split_credentials(url: str) -> tuple[str, str | None]:
    """The URL without ``user:password@`` and the Basic ``Authorization`` header they make.

    urllib cannot send a URL's credentials (it looked the host up as ``user:password@host``).

    >>> _split_credentials("https://geotl:s3cr%40t@hooks.example.org/a")
    ('https://hooks.example.org/a', 'Basic Z2VvdGw6czNjckB0')
    >>> _split_credentials("https://hooks.example.org/a")
    ('https://hooks.example.org/a', None)
    """
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None
    host = parts.netloc.rsplit("@", 1)[1]
    pair = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
    token = base64.b64encode(pair.encode()).decode("ascii")
    return urlunsplit(parts._replace(netloc=host)), f"Basic {token}"


def _post(
    url: str, body: bytes, headers: dict[str, str], timeout_s: float
) -> tuple[int, str | None]:
    """POST; return the HTTP status and, for a redirect, where it points.

    Network failures raise OSError.
    """
    url, authorization = _split_credentials(url)
    if authorization is not None:
        headers = {**headers, "Authorization": authorization}
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with _OPENER.open(request, timeout=timeout_s) as response:
            response.read(65536)
            return int(response.status), None
    except urllib.error.HTTPError as exc:
        location = exc.headers.get("Location") if exc.headers is not None else None
        return int(exc.code), location


def _now() -> datetime:
    return datetime.now(UTC)


def _attempt(
    state: MonitorState,
    region_name: str,
    alert: AlertRecord,
    policy: DeliveryPolicy,
    report: DeliveryReport,
    failures: _RoundFailures,
    evidence: Evidence | None = None,
) -> bool:
    """One attempt at one alert; False when the receiver did not answer at all."""
    payload = webhook_payload(region_name, alert, evidence, str(state.path.parent.resolve()))
    body = json.dumps(payload, separators=(",", ":")).encode()
    headers = {
        "Content-Type": "application/geo+json",
        "Idempotency-Key": _key(region_name, alert),
        "User-Agent": f"geotl/{__version__}",
    }
    # the state records where it went, not the password
    delivery_id = state.start_delivery(alert.id, _split_credentials(policy.url)[0], _now())
    attempts = alert.attempts + 1
    report.attempts += 1
    report.tried.add(alert.id)
    status: int | None = None
    error: str | None = None
    location: str | None = None
    try:
        status, location = _post(policy.url, body, headers, policy.timeout_s)
    except (OSError, ValueError) as exc:  # refused, reset, timeout, DNS, bad URL
        error = f"{type(exc).__name__}: {error_text(exc, 300)}"
    outcome: Literal["delivered", "retry", "failed"]
    next_attempt: datetime | None = None
    retryable = status is None or status >= 500 or status in RETRY_STATUSES
    if status is not None and 200 <= status < 300:
        outcome = "delivered"
    elif retryable and attempts < policy.max_attempts:
        outcome, next_attempt = "retry", _now() + policy.backoff(attempts)
    else:
        outcome = "failed"
    if outcome != "delivered" and status is not None:
        error = f"HTTP {status}"
        if 300 <= status < 400:
            where = f" to {location[:200]}" if location else ""
            error += f": the webhook redirects{where}; set the webhook to the URL it redirects to"
    if outcome == "failed" and retryable:
        error = f"{error}; gave up after {attempts} attempts"
    state.finish_delivery(
        delivery_id,
        alert.id,
        now=_now(),
        outcome=outcome,
        http_status=status,
        error=error,
        next_attempt=next_attempt,
    )
    if outcome == "delivered":
        report.delivered.append(alert.id)
        log.debug("alert %s delivered (HTTP %s)", alert.id, status)
        failures.add_delivered(alert.id)
    elif next_attempt is not None:
        report.retrying.append(alert.id)
        log.debug(
            "alert %s: delivery attempt %d failed (%s); retry after %s",
            alert.id,
            attempts,
            error,
            next_attempt.isoformat(timespec="seconds"),
        )
        failures.add(alert.id, error or "", next_attempt)
    else:
        report.failed.append(alert.id)
        log.debug("alert %s: delivery attempt %d failed for good (%s)", alert.id, attempts, error)
        failures.add(alert.id, error or "", None)
    return status is not None


@dataclass
class _RoundFailures:
    """The attempts since the last wait, logged as one line per outcome, not one per alert.

    A webhook answering 500 fails every alert of a round the same way: 21 alerts made 21
    warnings per round in a cron log. Retries fall due milliseconds apart (each alert's
    backoff starts when its own attempt ended), so the lines are only written when the run
    really waits or ends, not after each of those rounds of one or two alerts. Each alert's
    own attempt stays at debug level (and in the state's deliveries table).
    """

    #: (error, retried) -> {alert id: its next attempt}; each alert in the group of its
    #: latest attempt (tried again before the lines were written, it is still one alert)
    groups: dict[tuple[str, bool], dict[str, datetime | None]] = field(default_factory=dict)
    delivered: list[str] = field(default_factory=list)

    def _forget(self, alert_id: str) -> None:
        for ids in self.groups.values():
            ids.pop(alert_id, None)

    def add_delivered(self, alert_id: str) -> None:
        # its failed attempts before stay said: the receiver failed, then recovered
        self.delivered.append(alert_id)  # delivered once: never tried again

    def add(self, alert_id: str, error: str, next_attempt: datetime | None) -> None:
        self._forget(alert_id)
        self.groups.setdefault((error, next_attempt is not None), {})[alert_id] = next_attempt

    def log(self) -> None:
        for (error, retried), by_id in self.groups.items():
            if not by_id:
                continue
            ids = list(by_id)
            earliest = min((t for t in by_id.values() if t is not None), default=None)
            if retried and earliest is not None:
                log.warning(
                    "%d alert(s) not delivered (%s): next try at %s (%s)",
                    len(ids),
                    error,
                    earliest.isoformat(timespec="seconds"),
                    _named(ids),
                )
            else:
                log.error(
                    "%d alert(s) could not be delivered (%s): fix the webhook or the receiver; "
                    "they stay in alerts.geojson and the report (%s)",
                    len(ids),
                    error,
                    _named(ids),
                )
        self.groups.clear()
        if self.delivered:  # after the failures: a receiver that recovered reads in order
            log.info("%d alert(s) delivered (%s)", len(self.delivered), _named(self.delivered))
            self.delivered.clear()


def _named(ids: list[str]) -> str:
    """The first few ids of a group, for one log line."""
    return ", ".join(ids[:5]) + (", ..." if len(ids) > 5 else "")


def deliver_due(
    state: MonitorState,
    region_name: str,
    policy: DeliveryPolicy,
    *,
    sleep: Callable[[float], object] = time.sleep,
    stop: Callable[[], bool] | None = None,
) -> DeliveryReport:
    """Send every open alert that is due; wait for retries due within ``policy.wait_s``.

    Args:
        state: the region's state (the caller holds the region's lock).
        region_name: goes into the body and the idempotency key.
        policy: URL, timeouts, retries.
        sleep: how to wait between rounds (tests pass a fake; the runner its stop event's
            ``wait``, which SIGTERM ends early).
        stop: returns True when the run should stop waiting (SIGTERM).

    Returns:
        What was delivered, what failed for good and what waits for a later run.
    """
    report = DeliveryReport()
    deadline = time.monotonic() + policy.wait_s
    failures = _RoundFailures()
    evidence = pass_evidence(state)
    # An alert whose attempt waited for an answer that never came (a webhook hanging past
    # timeout_s, a slow DNS failure) probes the receiver alone until it answers: trying each
    # other alert in turn cost timeout_s apiece, so a hanging webhook held the run (and the
    # region's lock) for all of wait_s. A refused connection costs nothing: the others are
    # tried too, so each records why it waits, from one reading of the due alerts per round
    # (they stay due while this process, holding the lock, tries them): read again after
    # each refusal, a webhook that was down cost O(n^2), and 2,000 open alerts held the lock
    # for all of wait_s having tried 813 of them.
    probe: str | None = None
    while True:
        due = state.due_alerts(_now())
        if probe is not None:
            due = [a for a in due if a.id == probe]
        for alert in due:
            started = time.monotonic()
            if _attempt(state, region_name, alert, policy, report, failures, evidence):
                probe = None
            elif time.monotonic() - started >= min(SLOW_ATTEMPT_S, policy.timeout_s):
                probe = alert.id  # the others wait for a later round or run
                break
            elif stop is not None and stop():  # refused: the next one, unless stopped
                break
        if probe is not None:
            upcoming = next((a.next_attempt for a in state.unsent_alerts() if a.id == probe), None)
        else:
            upcoming = state.next_alert_attempt()
        if upcoming is None or (stop is not None and stop()):
            break
        wait = max((upcoming - _now()).total_seconds(), 0.0)
        if time.monotonic() + wait > deadline:
            break
        if wait >= 1:  # not once per alert while retries fall due one after the other
            failures.log()
            log.info("waiting %.0f s for the next delivery attempt (due within this run)", wait)
        sleep(wait)
        if stop is not None and stop():  # stopped while waiting: no attempt after SIGTERM
            break
    failures.log()
    still_open = state.unsent_alerts()
    report.retrying = [a.id for a in still_open if a.attempts > 0]
    report.open = len(still_open)
    return report
