"""The collector's settings, declared once with defaults and help text (the CLI and README use these): each is a
flag of `rayhistory collect` and a RAYHISTORY_<NAME> variable (archive/settings.py), so a sidecar can be configured
from its environment alone."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from archive.settings import Settings


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
    # Ray's own Prometheus configuration (dashboard/modules/metrics/export/prometheus/prometheus.yml, the one its
    # docs give for its service-discovery file) scrapes every 10 s. The archive must see what that Prometheus sees:
    # Ray 2.60's agent serves a gauge series only for 2 x metrics_report_interval_ms (20 s) after its last report
    # (open_telemetry_metric_recorder.py), and core workers report task counts when they change, so ray_tasks
    # series come and go in windows that long, and which steps of a panel show them depends on the sampling.
    metrics_interval: float = field(
        default=10.0, metadata={"help": "seconds between scrapes of the node's Prometheus endpoints; 0: off"}
    )
    api_interval: float = field(
        default=30.0,
        metadata={
            "help": "seconds between snapshots of the head's dashboard API (placement groups, jobs, "
            "cluster status); 0: off"
        },
    )
    sls_endpoint: str = field(
        default="",
        metadata={
            "help": "Alibaba SLS endpoint (e.g. cn-hangzhou.log.aliyuncs.com) to stream log lines to; empty: "
            "off. Credentials: ALIBABA_CLOUD_ACCESS_KEY_ID / ALIBABA_CLOUD_ACCESS_KEY_SECRET"
        },
    )
    sls_project: str = field(default="", metadata={"help": "SLS project"})
    sls_logstore: str = field(default="", metadata={"help": "SLS logstore"})
    sls_proxy: str = field(default="", metadata={"help": "HTTP proxy for SLS requests (optional)"})
    once: bool = field(default=False, metadata={"help": "archive the session as it stands, mark it ended, and exit"})
    wait_for_session: float = field(
        default=0.0,
        metadata={
            "help": "seconds to wait for Ray to create the session directory (a sidecar may start before "
            "Ray does); 0: fail at once"
        },
    )
