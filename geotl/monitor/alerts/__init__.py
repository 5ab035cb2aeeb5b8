"""Alerts: which changes matter (rules against reference layers, with persistence), where they go.

- :mod:`~geotl.monitor.alerts.reference`: reference layers (permits, maps, reserves), checked;
- :mod:`~geotl.monitor.alerts.persistence`: K of the last N passes that saw the ground;
- :mod:`~geotl.monitor.alerts.rules`: which objects of a pass fire which rule;
- :mod:`~geotl.monitor.alerts.engine`: the pass runner's hook (evaluate, record, deliver) and
  ``alerts.geojson``;
- :mod:`~geotl.monitor.alerts.delivery`: the webhook (at least once, idempotency key, backoff);
- :mod:`~geotl.monitor.alerts.report`: the static report page.
"""

from geotl.monitor.alerts.delivery import (
    WEBHOOK_ENV,
    DeliveryPolicy,
    DeliveryReport,
    deliver_due,
    webhook_payload,
    webhook_url,
)
from geotl.monitor.alerts.engine import (
    ALERTS_GEOJSON,
    AlertEngine,
    AlertRound,
    alert_id,
    write_alert_outputs,
)
from geotl.monitor.alerts.persistence import persistent_change
from geotl.monitor.alerts.reference import ReferenceLayer, load_reference_layers
from geotl.monitor.alerts.report import ReportSummary, write_report
from geotl.monitor.alerts.rules import Candidate, PassView, evaluate_rules

__all__ = [
    "ALERTS_GEOJSON",
    "WEBHOOK_ENV",
    "AlertEngine",
    "AlertRound",
    "Candidate",
    "DeliveryPolicy",
    "DeliveryReport",
    "PassView",
    "ReferenceLayer",
    "ReportSummary",
    "alert_id",
    "deliver_due",
    "evaluate_rules",
    "load_reference_layers",
    "persistent_change",
    "webhook_payload",
    "webhook_url",
    "write_alert_outputs",
    "write_report",
]
