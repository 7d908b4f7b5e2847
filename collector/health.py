"""The collector's own health: Prometheus metrics (/metrics) and a liveness answer (/healthz).

Every sink counts the same things (Vector's habit): bytes and segments shipped, errors, and the time of its last
success, from which the lag is read. Sources add what they received.
"""

from __future__ import annotations

import time
from typing import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Health:
    def __init__(self, stale_after: float) -> None:
        self.stale_after = stale_after
        self.registry = CollectorRegistry()
        self.shipped_bytes = Counter("rayhistory_collector_shipped_bytes", "Bytes uploaded, by source and sink",
                                     ["source", "sink"], registry=self.registry)
        self.shipped_segments = Counter("rayhistory_collector_shipped_segments", "Segments uploaded",
                                        ["source", "sink"], registry=self.registry)
        self.errors = Counter("rayhistory_collector_errors", "Failed upload cycles, by sink", ["sink"],
                              registry=self.registry)
        self.last_success = Gauge("rayhistory_collector_last_success_timestamp_seconds",
                                  "When the sink last completed a cycle", ["sink"], registry=self.registry)
        self.lag = Gauge("rayhistory_collector_lag_seconds", "Seconds since the sink last completed a cycle",
                         ["sink"], registry=self.registry)
        self.spool_bytes = Gauge("rayhistory_collector_spool_bytes", "Bytes waiting in the local spool",
                                 registry=self.registry)
        self.sls_lag_bytes = Gauge("rayhistory_collector_sls_lag_bytes",
                                   "Log bytes Ray has written that SLS has not acknowledged", registry=self.registry)
        self._last: dict[str, float] = {}
        self._extra: list[Callable[[], dict[str, int]]] = []
        self.registry.register(_Counts(self._extra))

    def shipped(self, source: str, sink: str, segments: int, nbytes: int) -> None:
        self.shipped_segments.labels(source, sink).inc(segments)
        self.shipped_bytes.labels(source, sink).inc(nbytes)

    def succeeded(self, sink: str) -> None:
        self._last[sink] = time.time()
        self.last_success.labels(sink).set(self._last[sink])

    def failed(self, sink: str) -> None:
        self.errors.labels(sink).inc()

    def count(self, snapshot: Callable[[], dict[str, int]]) -> None:
        """Expose a source's own counters (e.g. the HTTP events source's stats) as rayhistory_collector_*."""
        self._extra.append(snapshot)

    def metrics(self) -> bytes:
        now = time.time()
        for sink, at in self._last.items():
            self.lag.labels(sink).set(now - at)
        return generate_latest(self.registry)

    def healthz(self) -> tuple[bool, str]:
        if "archive" not in self._last:
            return False, "no upload to the archive has completed yet"
        age = time.time() - self._last["archive"]
        if age > self.stale_after:
            return False, f"the last completed upload to the archive was {age:.0f}s ago; check the archive"
        return True, "ok"


def counters(prefix: str, stats: dict) -> dict[str, int]:
    """A source's or sink's stats as counters named `<prefix>_<field>` (integer fields only)."""
    return {f"{prefix}_{k}": v for k, v in stats.items() if isinstance(v, int) and not isinstance(v, bool)}


class _Counts:
    def __init__(self, snapshots: list[Callable[[], dict[str, int]]]) -> None:
        self.snapshots = snapshots

    def collect(self):
        for snapshot in self.snapshots:
            for name, value in snapshot().items():
                if isinstance(value, (int, float)):
                    family = CounterMetricFamily(f"rayhistory_collector_{name}", f"{name} (collector source)")
                    family.add_metric([], value)
                    yield family
