"""Kubernetes' Status, the body of every error the Kubernetes API test server (tests/servers/kube_api.py) answers,
and the identity its Forbidden messages name, as kube-apiserver words them."""

from __future__ import annotations

from typing import Any

# The service account the history server runs as in the Helm chart; RBAC's messages name the caller.
USER = "system:serviceaccount:ray-system:rayhistory"


def status_object(code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """Kubernetes' Status, the body of every error it answers."""
    doc: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
    }
    if details is not None:
        doc["details"] = details
    doc["code"] = code
    return doc


def not_found() -> tuple[int, Any]:
    return 404, status_object(404, "NotFound", "the server could not find the requested resource", {})
