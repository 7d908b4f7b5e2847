"""The collector's settings, declared once with defaults and help text (the CLI and README use these): each is a
flag of `rayhistory collect` and a RAYHISTORY_<NAME> variable (archive/settings.py), so a sidecar can be configured
from its environment alone."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from archive.settings import Settings, SettingsError, sls_field


def _default_namespace() -> str:
    ns_file = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
    if ns_file.exists():
        return ns_file.read_text().strip()
    return "default"


@dataclass
class CollectorSettings(Settings):
    command = "rayhistory collect"

    session_dir: str = field(metadata={"help": "Ray's session directory, e.g. /tmp/ray/session_latest"})
    archive: str = field(metadata={"help": "archive URL: a directory, file://PATH or s3://bucket/prefix"})
    cluster: str = field(
        default="local",
        metadata={
            "help": "Ray cluster name (default: $RAY_CLUSTER_NAME, which KubeRay sets, else 'local')",
            "env": "RAY_CLUSTER_NAME",
        },
    )
    namespace: str = field(
        default_factory=_default_namespace,
        metadata={
            "help": "Kubernetes namespace (default: $POD_NAMESPACE, the pod's namespace, else 'default')",
            "env": "POD_NAMESPACE",
        },
    )
    interval: float = field(
        default=30.0,
        metadata={"help": "seconds between uploads (at most 60 keeps the archive at most a minute behind)"},
    )
    final_flush_deadline: float = field(
        default=25.0,
        metadata={
            "help": "seconds allowed for the last upload after SIGTERM; keep it below the pod's "
            "terminationGracePeriodSeconds"
        },
    )
    state_dir: str = field(
        default="",
        metadata={
            "help": "where the collector keeps its checkpoint (default: rayhistory-collector/ beside the "
            "session directory, on Ray's shared temp volume)"
        },
    )
    heartbeat: float = field(
        default=120.0,
        metadata={
            "help": "seconds between rewrites of the session manifest by the head (readers call a session "
            "whose manifest is much older unfinished)"
        },
    )
    http_port: int = field(
        default=0,
        metadata={
            "help": "port for Ray's HTTP event export (POST /v1/events; point "
            "RAY_DASHBOARD_AGGREGATOR_AGENT_EVENTS_EXPORT_ADDR at it) and the collector's /metrics and "
            "/healthz; 0 turns this server off"
        },
    )
    http_host: str = field(default="127.0.0.1", metadata={"help": "address the HTTP server binds"})
    spool_max_bytes: int = field(
        default=1 << 30,
        metadata={"help": "bound of the local spool of received events; above it Ray is answered 503 and retries"},
    )
    metrics_interval: float = field(
        default=15.0, metadata={"help": "seconds between scrapes of the node's Prometheus endpoints; 0: off"}
    )
    api_interval: float = field(
        default=30.0,
        metadata={
            "help": "seconds between snapshots of the head's dashboard API (placement groups, jobs, "
            "cluster status); 0: off"
        },
    )
    sls_endpoint: str = sls_field(
        "sls_endpoint", "to stream logs, events and metrics to (each one on when its logstore or MetricStore is given)"
    )
    sls_project: str = sls_field("sls_project")
    sls_logstore: str = sls_field("sls_logstore", "for the session's log lines; empty: log lines are not sent")
    sls_events_logstore: str = field(
        default="",
        metadata={
            "help": "SLS logstore for Ray's task, actor, job, node and placement group events, one log per event "
            "(e.g. ray-events); empty: events are not sent"
        },
    )
    sls_metricstore: str = field(
        default="",
        metadata={
            "help": "SLS MetricStore that every metrics scrape is also sent to, by Prometheus remote write; "
            "empty: metrics are not sent"
        },
    )
    sls_proxy: str = sls_field("sls_proxy")
    once: bool = field(default=False, metadata={"help": "archive the session as it stands, mark it ended, and exit"})
    wait_for_session: float = field(
        default=0.0,
        metadata={
            "help": "seconds to wait for Ray to create the session directory (a sidecar may start before "
            "Ray does); 0: fail at once"
        },
    )

    SLS_OUTPUTS: ClassVar[tuple[str, ...]] = ("sls_logstore", "sls_events_logstore", "sls_metricstore")

    def check(self) -> None:
        """SLS is on with an endpoint and a project, and then sends each output whose store is named."""
        named = [f"--{k.replace('_', '-')}" for k in self.SLS_OUTPUTS if getattr(self, k)]
        if named and not (self.sls_endpoint and self.sls_project):
            raise SettingsError(
                f"{', '.join(named)} given, but SLS needs --sls-endpoint and --sls-project too (or "
                "$RAYHISTORY_SLS_ENDPOINT, $RAYHISTORY_SLS_PROJECT)"
            )
        if self.sls_endpoint and not named:
            raise SettingsError(
                "--sls-endpoint is set but nothing is sent to SLS: name --sls-logstore (log lines), "
                "--sls-events-logstore (Ray's events) or --sls-metricstore (metrics), or unset the endpoint"
            )
