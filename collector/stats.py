"""The counters every source and sink keeps, the same for all (Vector's component metrics), and their exposition.

A component keeps whatever detailed stats it likes; what the topology and /metrics see is one `ComponentStats`,
labelled by component name and kind, so a dashboard compares sources and sinks with one query per field:

    rayhistory_collector_component_received_total{component="metrics",kind="source"}  items taken in
    ..._received_bytes_total, ..._sent_total, ..._sent_bytes_total                     and passed on
    ..._dropped_total        items lost for good (stays 0 where the design pushes back instead)
    ..._errors_total{error_type="..."}                                                  failures, by kind of failure
    ..._retries_total        attempts repeated after a failure
    rayhistory_collector_component_lag_bytes                                           bytes written, not yet sent

"Items" are what the component handles: events, scrapes, snapshots, records, segments.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

PREFIX = "rayhistory_collector_component_"
LABELS = ("component", "kind")
_COUNTERS = {
    "received": "Items the component took in",
    "received_bytes": "Bytes the component took in",
    "sent": "Items the component passed on (sinks: acknowledged by the destination)",
    "sent_bytes": "Bytes the component passed on",
    "dropped": "Items lost for good",
    "retries": "Attempts repeated after a failure",
}


@dataclass
class ComponentStats:
    received: int = 0
    received_bytes: int = 0
    sent: int = 0
    sent_bytes: int = 0
    dropped: int = 0
    retries: int = 0
    errors: dict[str, int] = field(default_factory=dict)  # error type -> count
    lag_bytes: int = 0  # a gauge: bytes the component has seen and not yet passed on

    def count_error(self, error_type: str, n: int = 1) -> None:
        self.errors[error_type] = self.errors.get(error_type, 0) + n


Snapshot = Callable[[], ComponentStats]


class ComponentMetrics:
    """A prometheus_client collector over the current components: (name, kind) -> a stats snapshot. A new session's
    topology replaces the previous one's components, so their counters start again from 0 (a reset, as
    Prometheus's rate() expects of a restarted process)."""

    def __init__(self) -> None:
        self.components: dict[tuple[str, str], Snapshot] = {}

    def replace(self, components: dict[tuple[str, str], Snapshot]) -> None:
        self.components = dict(components)  # swapped whole: a scrape on the HTTP thread sees old or new

    def collect(self) -> Iterable:
        snapshots = [(labels, snapshot()) for labels, snapshot in sorted(self.components.items())]
        for name, doc in _COUNTERS.items():
            family = CounterMetricFamily(PREFIX + name, doc, labels=LABELS)
            for labels, stats in snapshots:
                family.add_metric(labels, getattr(stats, name))
            yield family
        errors = CounterMetricFamily(
            PREFIX + "errors", "Failures, by component and type", labels=(*LABELS, "error_type")
        )
        for labels, stats in snapshots:
            for error_type, n in sorted(stats.errors.items()):
                errors.add_metric((*labels, error_type), n)
        yield errors
        lag = GaugeMetricFamily(
            PREFIX + "lag_bytes", "Bytes the component has seen and not yet passed on", labels=LABELS
        )
        for labels, stats in snapshots:
            lag.add_metric(labels, stats.lag_bytes)
        yield lag
