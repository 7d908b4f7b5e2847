"""The collector's settings, declared once with defaults and help text (the CLI and README use these)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def _default_namespace() -> str:
    ns_file = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
    if os.environ.get("POD_NAMESPACE"):
        return os.environ["POD_NAMESPACE"]
    if ns_file.exists():
        return ns_file.read_text().strip()
    return "default"


@dataclass
class CollectorSettings:
    session_dir: str = field(metadata={"help": "Ray's session directory, e.g. /tmp/ray/session_latest"})
    archive: str = field(metadata={"help": "archive URL: a directory, file://PATH or s3://bucket/prefix"})
    cluster: str = field(
        default_factory=lambda: os.environ.get("RAY_CLUSTER_NAME", "local"),
        metadata={"help": "Ray cluster name (default: $RAY_CLUSTER_NAME, which KubeRay sets, else 'local')"},
    )
    namespace: str = field(
        default_factory=_default_namespace,
        metadata={"help": "Kubernetes namespace (default: $POD_NAMESPACE, the pod's namespace, else 'default')"},
    )
    interval: float = field(default=30.0, metadata={"help": "seconds between uploads (at most 60 keeps the archive "
                                                            "at most a minute behind)"})
    final_flush_deadline: float = field(
        default=25.0,
        metadata={"help": "seconds allowed for the last upload after SIGTERM; keep it below the pod's "
                          "terminationGracePeriodSeconds"},
    )
    state_dir: str = field(
        default="",
        metadata={"help": "where the collector keeps its checkpoint (default: rayhistory-collector/ beside the "
                          "session directory, on Ray's shared temp volume)"},
    )
    heartbeat: float = field(
        default=120.0,
        metadata={"help": "seconds between rewrites of the session manifest by the head (readers call a session "
                          "whose manifest is much older unfinished)"},
    )
    once: bool = field(default=False, metadata={"help": "archive the session as it stands, mark it ended, and exit"})
