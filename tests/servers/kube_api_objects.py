"""Reads of the Kubernetes API test server (tests/servers/kube_api.py): GET and LIST of the CRDs' objects and GET
of core v1 Secrets, in the API server's shapes, with the Forbidden and NotFound Statuses RBAC and the store answer."""

from __future__ import annotations

import base64
import json
import uuid
from typing import TYPE_CHECKING, Any

from tests.servers.kube_api_discovery import served_versions
from tests.servers.kube_api_status import USER, not_found, status_object

if TYPE_CHECKING:  # the server imports this module; its fields are read at call time
    from tests.servers.kube_api import KubeAPI


def read(api: KubeAPI, group: str, version: str, plural: str, namespace: str | None, name: str | None):
    """GET of one object (`name`) or LIST, in one namespace or (namespace None) cluster-wide."""
    crd = next(
        (
            c
            for c, v in served_versions(api.crds)
            if c["spec"]["group"] == group and v["name"] == version and c["spec"]["names"]["plural"] == plural
        ),
        None,
    )
    if crd is None:
        return not_found()
    verb = "get" if name else "list"
    # A token denied any namespace holds no ClusterRole, so a cluster-wide read is refused too.
    if namespace in api.forbidden_namespaces or (namespace is None and api.forbidden_namespaces):
        scope = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
        subject = f'{plural}.{group} "{name}"' if name else f"{plural}.{group}"
        details = {"name": name, "group": group, "kind": plural} if name else {"group": group, "kind": plural}
        return 403, status_object(
            403,
            "Forbidden",
            f'{subject} is forbidden: User "{USER}" cannot {verb} resource "{plural}" in API group "{group}" {scope}',
            details,
        )
    kind = crd["spec"]["names"]["kind"]
    items = [
        served(api, o)
        for o in api.objects
        if o.get("kind") == kind
        and o.get("apiVersion") == f"{group}/{version}"
        and (namespace is None or o["metadata"].get("namespace") == namespace)
    ]
    if name is not None:
        found = [o for o in items if o["metadata"]["name"] == name]
        if not found:
            return 404, status_object(
                404,
                "NotFound",
                f'{plural}.{group} "{name}" not found',
                {"name": name, "group": group, "kind": plural},
            )
        return 200, found[0]
    return 200, {
        "apiVersion": f"{group}/{version}",
        "items": items,
        "kind": crd["spec"]["names"]["listKind"],
        "metadata": {"continue": "", "resourceVersion": str(api.resource_version)},
    }


def served(api: KubeAPI, obj: dict[str, Any]) -> dict[str, Any]:
    """The object as the API server returns it: with the metadata it fills in on create."""
    copy = json.loads(json.dumps(obj))
    meta = copy["metadata"]
    meta.setdefault("uid", str(uuid.uuid5(uuid.NAMESPACE_URL, f"{meta.get('namespace')}/{meta['name']}")))
    meta.setdefault("resourceVersion", str(api.resource_version - 1 - api.objects.index(obj)))
    meta.setdefault("generation", 1)
    meta.setdefault("creationTimestamp", "2026-11-25T20:00:00Z")
    return copy


def secret(api: KubeAPI, namespace: str, name: str) -> tuple[int, Any]:
    """GET of a core v1 Secret, its data base64-encoded as the API server answers it."""
    if namespace in api.forbidden_namespaces:
        return 403, status_object(
            403,
            "Forbidden",
            f'secrets "{name}" is forbidden: User "{USER}" cannot get resource "secrets" in API group "" in the '
            f'namespace "{namespace}"',
            {"name": name, "kind": "secrets"},
        )
    data = api.secrets.get((namespace, name))
    if data is None:
        return 404, status_object(404, "NotFound", f'secrets "{name}" not found', {"name": name, "kind": "secrets"})
    return 200, {
        "kind": "Secret",
        "apiVersion": "v1",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"secret/{namespace}/{name}")),
            "resourceVersion": str(api.resource_version),
            "creationTimestamp": "2026-11-25T20:00:00Z",
        },
        "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
        "type": "Opaque",
    }
