"""The collector's own health: Prometheus metrics (/metrics) and a liveness answer (/healthz).

Every source and sink counts the same things (Vector's habit, collector/stats.py), labelled by component. Beside
them, the upload cycle's own families: bytes and segments shipped per source, failed cycles, and the time of the
last completed cycle, from which the lag is read; and the events spool's size.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from collector.stats import ComponentMetrics

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Health:
    def __init__(self, stale_after: float) -> None:
        self.stale_after = stale_after
        self.registry = CollectorRegistry()
        self.shipped_bytes = Counter(
            "rayhistory_collector_shipped_bytes",
            "Bytes uploaded, by source and sink",
            ["source", "sink"],
            registry=self.registry,
        )
        self.shipped_segments = Counter(
            "rayhistory_collector_shipped_segments", "Segments uploaded", ["source", "sink"], registry=self.registry
        )
        self.errors = Counter(
            "rayhistory_collector_errors", "Failed upload cycles, by sink", ["sink"], registry=self.registry
        )
        self.last_success = Gauge(
            "rayhistory_collector_last_success_timestamp_seconds",
            "When the sink last completed a cycle",
            ["sink"],
            registry=self.registry,
        )
        self.lag = Gauge(
            "rayhistory_collector_lag_seconds",
            "Seconds since the sink last completed a cycle",
            ["sink"],
            registry=self.registry,
        )
        self.spool_bytes = Gauge(
            "rayhistory_collector_spool_bytes", "Bytes waiting in the local spool", registry=self.registry
        )
        self.waiting_for = Gauge(
            "rayhistory_collector_waiting",
            "1 while the collector waits at start for this (archive: unreachable, retried; session: Ray has not "
            "created its session directory yet)",
            ["what"],
            registry=self.registry,
        )
        for what in ("archive", "session"):
            self.waiting_for.labels(what).set(0)
        self._waits: dict[str, str] = {}
        self._last: dict[str, float] = {}
        self.components = ComponentMetrics()
        self.registry.register(self.components)

    def waiting(self, what: str, reason: str | None) -> None:
        """The collector waits for `what` (reason: what /healthz says), or no longer does (None)."""
        if reason is None:
            self._waits.pop(what, None)
        else:
            self._waits[what] = reason
        self.waiting_for.labels(what).set(0 if reason is None else 1)

    def shipped(self, source: str, sink: str, segments: int, nbytes: int) -> None:
        self.shipped_segments.labels(source, sink).inc(segments)
        self.shipped_bytes.labels(source, sink).inc(nbytes)

    def succeeded(self, sink: str) -> None:
        self._last[sink] = time.time()
        self.last_success.labels(sink).set(self._last[sink])

    def failed(self, sink: str) -> None:
        self.errors.labels(sink).inc()

    def metrics(self) -> bytes:
        now = time.time()
        for sink, at in self._last.items():
            self.lag.labels(sink).set(now - at)
        return generate_latest(self.registry)

    def healthz(self) -> tuple[bool, str]:
        if self._waits:
            return False, "; ".join(self._waits.values())
        if "archive" not in self._last:
            return False, "no upload to the archive has completed yet"
        age = time.time() - self._last["archive"]
        if age > self.stale_after:
            return False, f"the last completed upload to the archive was {age:.0f}s ago; check the archive"
        return True, "ok"
