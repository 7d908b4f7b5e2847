"""The collector's settings, declared once with defaults and help text (the CLI and README use these): each is a
flag of `rayhistory collect` and a RAYHISTORY_<NAME> variable (archive/settings.py), so a sidecar can be configured
from its environment alone."""

from __future__ import annotations

import math
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

    archive: str = field(metadata={"help": "archive URL: a directory, file://PATH or s3://bucket/prefix"})
    session_dir: str = field(
        default="/tmp/ray/session_latest",
        metadata={"help": "Ray's session directory; the default is where Ray (and KubeRay's shared volume) puts it"},
    )
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
            "help": "Kubernetes namespace (default: $POD_NAMESPACE, else KubeRay's $RAY_CLUSTER_NAMESPACE, else "
            "the pod's namespace, else 'default')",
            "env": ("POD_NAMESPACE", "RAY_CLUSTER_NAMESPACE"),
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
    ray_stop_wait: float = field(
        default=20.0,
        metadata={
            "help": "after SIGTERM, seconds to wait for Ray on this node to exit (its raylet socket closes) before "
            "the final upload, so that Ray's last writes are in it when the collector is stopped together with Ray "
            "(KubeRay's injection); a native sidecar, stopped after Ray, does not wait; 0: never wait"
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
            "/healthz (default: $EVENTS_PORT, which KubeRay's collector injection sets to the port it points Ray "
            "at, else 0: this server is off)",
            "env": "EVENTS_PORT",
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
        default=-1.0,
        metadata={
            "help": "seconds to wait for Ray to create the session directory (a sidecar starts before Ray "
            "does); negative, the default: as long as it takes, except with --once (which fails at once); 0: fail "
            "at once"
        },
    )

    @property
    def session_wait(self) -> float:
        """Seconds to wait for the session directory (math.inf: until it appears)."""
        if self.wait_for_session < 0:
            return 0.0 if self.once else math.inf
        return self.wait_for_session

    SLS_OUTPUTS: ClassVar[tuple[str, ...]] = ("sls_logstore", "sls_events_logstore", "sls_metricstore")

    def check(self) -> None:
        """SLS is on with an endpoint (store names alone leave it off: a manifest can name them and leave the
        endpoint empty), and then sends each output whose store is named."""
        named = [f"--{k.replace('_', '-')}" for k in self.SLS_OUTPUTS if getattr(self, k)]
        if self.sls_endpoint and not self.sls_project:
            raise SettingsError("--sls-endpoint is set but --sls-project is not (or $RAYHISTORY_SLS_PROJECT)")
        if self.sls_endpoint and not named:
            raise SettingsError(
                "--sls-endpoint is set but nothing is sent to SLS: name --sls-logstore (log lines), "
                "--sls-events-logstore (Ray's events) or --sls-metricstore (metrics), or unset the endpoint"
            )
