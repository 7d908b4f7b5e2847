"""The server's own /metrics registry: process figures and authentication outcomes (no user or namespace names)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, PlatformCollector, ProcessCollector


class AccessMetrics:
    """The server's own /metrics: process figures and authentication outcomes (no user or namespace names)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.refused = Counter(
            "rayhistory_server_unauthenticated_requests",
            "Requests refused for want of a valid identity, by reason",
            ["reason"],
            registry=self.registry,
        )
        self.logins = Counter(
            "rayhistory_server_logins", "Login form submissions, by outcome", ["outcome"], registry=self.registry
        )
