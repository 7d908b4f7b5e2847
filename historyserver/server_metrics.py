"""The server's own figures on /metrics, beside the process and authentication ones (access/metrics.py): request
latency per route family, compactions, cache use, and work refused by limits. Labels are route families and limit
names, never paths, sessions or users, so the series count stays fixed however the server is used.

Figures that already live in the objects doing the work (gates, the warehouse, the metrics cache) are read when
Prometheus scrapes, by a collector, instead of being mirrored into counters on every change.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from historyserver.services import Services

# Ray's UI under /sessions/{id}/ asks for these; everything else there is Ray's API (or our pages, Grafana, PromQL).
_RAY_UI = ("", "index.html", "favicon.ico", "logo.svg", "manifest.json")
_PROBES = frozenset({"/healthz", "/readyz", "/metrics"})
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


def route_family(path: str) -> str:
    """The family a request path belongs to: a fixed, small set of label values."""
    if path in _PROBES:
        return "probes"
    if "/prometheus/api/v1" in path:
        return "prometheus"
    if path.startswith("/api/v1/"):
        return "api"
    if path.startswith("/assets/"):
        return "assets"
    if path in ("/", "/login", "/logout"):
        return "pages"
    if path.startswith("/sessions/"):
        rest = path.split("/", 3)[3] if path.count("/") >= 3 else ""
        if rest.startswith("grafana/"):
            return "grafana"
        if rest in ("overview", "timeline"):
            return "pages"
        if rest in _RAY_UI or rest.startswith("static/"):
            return "ray_ui"
        if rest.startswith("api/v0/logs"):
            return "ray_logs"
        if rest.startswith(("api/v0/tasks", "api/v0/placement_groups")):
            return "ray_tasks"
        return "ray_api"
    return "other"


class ServerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Histogram(
            "rayhistory_server_request_duration_seconds",
            "Time from a request's arrival to its response's last byte, by route family and status class",
            ["family", "status"],
            buckets=BUCKETS,
            registry=registry,
        )
        self.query_limits = Counter(
            "rayhistory_server_query_limit_refusals",
            "PromQL queries stopped by a limit: max_samples (--query-max-samples), timeout (--query-timeout), "
            "max_sessions (--query-max-sessions)",
            ["limit"],
            registry=registry,
        )
        for limit in ("max_samples", "timeout", "max_sessions"):
            self.query_limits.labels(limit)  # present at 0 from the start, so rate() and alerts see them

    def watch(self, services: Services) -> None:
        self.registry.register(_StateCollector(services))


class _StateCollector(Collector):
    def __init__(self, services: Services) -> None:
        self.services = services

    def collect(self) -> Iterator[Metric]:
        svc = self.services
        gates = (("queries", svc.gates.queries), ("large", svc.gates.large), ("compactions", svc.gates.compactions))
        refused = CounterMetricFamily(
            "rayhistory_server_admission_refusals",
            "Requests answered 503 + Retry-After because no slot of a gate freed within --queue-wait, by gate",
            labels=["gate"],
        )
        running = GaugeMetricFamily(
            "rayhistory_server_admission_running", "Work holding a slot, by gate", labels=["gate"]
        )
        slots = GaugeMetricFamily("rayhistory_server_admission_slots", "Slots of each gate", labels=["gate"])
        for name, gate in gates:
            refused.add_metric([name], gate.refused)
            running.add_metric([name], gate.running)
            slots.add_metric([name], gate.slots)
        yield from (refused, running, slots)

        w = svc.warehouse.stats
        done = CounterMetricFamily(
            "rayhistory_server_compactions",
            "Sessions compacted by this server, by outcome (ok, failed)",
            labels=["outcome"],
        )
        for outcome in ("ok", "failed"):
            done.add_metric([outcome], w.compactions[outcome])
        yield done
        yield CounterMetricFamily(
            "rayhistory_server_compaction_seconds", "Time spent compacting sessions", value=w.compaction_seconds
        )
        yield CounterMetricFamily(
            "rayhistory_server_compacted_downloads",
            "Sessions whose compacted tables were fetched from the archive instead of compacted here",
            value=w.downloads,
        )
        yield GaugeMetricFamily(
            "rayhistory_server_open_sessions",
            "Sessions whose compacted tables are open",
            value=svc.warehouse.open_sessions,
        )

        groups = svc.metrics_cache.groups
        yield GaugeMetricFamily(
            "rayhistory_server_metrics_cache_bytes", "Decoded metric samples held for PromQL", value=groups.used
        )
        yield GaugeMetricFamily(
            "rayhistory_server_metrics_cache_budget_bytes", "--metrics-cache-mb, in bytes", value=groups.budget
        )
        lookups = CounterMetricFamily(
            "rayhistory_server_metrics_cache_lookups", "Metrics cache lookups, by result (hit, miss)", labels=["result"]
        )
        lookups.add_metric(["hit"], groups.hits)
        lookups.add_metric(["miss"], groups.misses)
        yield lookups


class RequestTimer:
    """ASGI middleware timing every request to its response's last byte (streamed answers included)."""

    def __init__(self, app: ASGIApp, metrics: ServerMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # an exception before the response started is answered 500 by the server

        async def timed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, timed_send)
        finally:
            family = route_family(scope.get("path", ""))
            self.metrics.requests.labels(family, f"{status // 100}xx").observe(time.perf_counter() - start)
