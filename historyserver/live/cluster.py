"""One Ray cluster, present and past: the live RayCluster (when Kubernetes has it) and its archived sessions.

Each view is one dict, rendered as JSON by the API and as HTML by the cluster page.
"""

from __future__ import annotations

import time
from typing import Any

from archive.manifest import RUNNING
from historyserver.catalog import CatalogView, SessionEntry
from historyserver.live.kube import KubernetesUnavailable, LiveClusters, LiveRow

OWNER_KINDS = ("RayJob", "RayService")


def cluster_path(namespace: str, name: str) -> str:
    return f"/clusters/{namespace}/{name}"


def live_detail(row: LiveRow, obj: dict[str, Any], now_ms: int | None = None) -> dict[str, Any]:
    """What the cluster page shows of a live RayCluster, from the object KubeRay keeps."""
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    meta = obj.get("metadata") or {}
    head = status.get("head") or {}
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    groups = []
    for g in spec.get("workerGroupSpecs") or []:
        groups.append(
            {
                "name": g.get("groupName"),
                "replicas": g.get("replicas"),
                "min_replicas": g.get("minReplicas"),
                "max_replicas": g.get("maxReplicas"),
                "suspended": bool(g.get("suspend")),
            }
        )
    return {
        "state": row.state,
        "message": row.message,
        "created": row.created,
        "age_ms": now_ms - row.created if row.created else None,
        "ray_version": spec.get("rayVersion"),
        "head": {"pod": head.get("podName"), "pod_ip": head.get("podIP"), "service": head.get("serviceName")},
        "worker_groups": groups,
        "workers": {
            "desired": status.get("desiredWorkerReplicas"),
            "ready": status.get("readyWorkerReplicas"),
            "available": status.get("availableWorkerReplicas"),
        },
        "owner": _owner(meta),
        "token_auth": ((spec.get("authOptions") or {}).get("mode") == "token"),
    }


def _owner(meta: dict[str, Any]) -> dict[str, str] | None:
    """The RayJob or RayService this cluster belongs to: its owner reference, else KubeRay's origin labels."""
    for ref in meta.get("ownerReferences") or []:
        if ref.get("kind") in OWNER_KINDS:
            return {"kind": ref["kind"], "name": ref.get("name", "")}
    labels = meta.get("labels") or {}
    kind, name = labels.get("ray.io/originated-from-crd"), labels.get("ray.io/originated-from-cr-name")
    return {"kind": kind, "name": name} if kind in OWNER_KINDS and name else None


def past_sessions(view: CatalogView, namespace: str, name: str) -> list[SessionEntry]:
    """The archived sessions of one cluster, newest first (the catalog's order)."""
    return [e for e in view.sessions() if e.manifest.namespace == namespace and e.manifest.cluster == name]


def session_row(entry: SessionEntry, failures: Any = None) -> dict[str, Any]:
    """A past session as the cluster page lists it; failures are counted only from tables already built."""
    s = entry.summary("")
    end = s["end"]
    s["duration_ms"] = end - s["start"] if end and s["start"] else None
    counted = failures.get(entry, end or 0) if failures is not None and end else None
    s["failed_jobs"] = int(counted.jobs.size) if counted is not None else None
    s["failed_tasks"] = int(counted.tasks.size) if counted is not None else None
    s["overview_url"] = f"/sessions/{entry.ref.id}/overview"
    return s


def cluster_view(
    live: LiveClusters, view: CatalogView, namespace: str, name: str, failures: Any = None
) -> dict[str, Any] | None:
    """The cluster page's dict, or None when neither Kubernetes nor the archive knows this cluster (or the
    request may not see its namespace: the same None, so names do not leak)."""
    if not view.allows(namespace):
        return None
    entries = past_sessions(view, namespace, name)
    found, live_error = None, None
    if live.enabled:
        try:
            found = live.cluster(namespace, name)
        except KubernetesUnavailable as e:  # the archive still answers: say what is wrong, show the rest
            live_error = str(e)
    if found is None and not entries and live_error is None:
        return None
    running = next((e for e in entries if e.status == RUNNING), None) if found is not None else None
    path = cluster_path(namespace, name)
    return {
        "namespace": namespace,
        "name": name,
        "url": path,
        "live_enabled": live.enabled,
        "live_error": live_error,
        "live": live_detail(*found) if found is not None else None,
        "live_dashboard": f"{path}/live/" if found is not None or entries else None,
        "running_session": session_row(running, failures) if running is not None else None,
        "sessions": [session_row(e, failures) for e in entries],
    }


def last_session(view: CatalogView, namespace: str, name: str) -> SessionEntry | None:
    """The newest archived session of a cluster (where a link to a cluster that is gone leads)."""
    if not view.allows(namespace):
        return None
    return next(iter(past_sessions(view, namespace, name)), None)
