"""Discovery for the Kubernetes API test server (tests/servers/kube_api.py): /version, /api, /api/v1, /apis,
/apis/{group} and /apis/{group}/{version}, built from the CRDs it is given, in kube-apiserver's shapes."""

from __future__ import annotations

import base64
from typing import Any

from tests.servers.kube_api_status import not_found

VERSION_INFO = {
    "major": "1",
    "minor": "34",
    "gitVersion": "v1.34.1",
    "gitCommit": "0" * 40,
    "gitTreeState": "clean",
    "buildDate": "2026-09-09T12:00:00Z",
    "goVersion": "go1.24.6",
    "compiler": "gc",
    "platform": "linux/amd64",
}
VERBS = ["delete", "deletecollection", "get", "list", "patch", "create", "update", "watch"]


def served_versions(crds: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(crd, version) for every served version of every CRD."""
    return [(c, v) for c in crds for v in c["spec"]["versions"] if v.get("served")]


def core_versions(address: str) -> dict[str, Any]:
    """/api: the core group's versions, and the address clients reach the server at."""
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": address}],
    }


def core_resources() -> dict[str, Any]:
    """/api/v1: only the core resources the history server touches."""
    return {
        "kind": "APIResourceList",
        "groupVersion": "v1",
        "resources": [
            {
                "name": "namespaces",
                "singularName": "namespace",
                "namespaced": False,
                "kind": "Namespace",
                "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
                "shortNames": ["ns"],
            },
            {
                "name": "secrets",
                "singularName": "secret",
                "namespaced": True,
                "kind": "Secret",
                "verbs": VERBS,
            },
        ],
    }


def groups(crds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for crd, version in served_versions(crds):
        group = crd["spec"]["group"]
        entry = found.setdefault(group, {"name": group, "versions": []})
        gv = {"groupVersion": f"{group}/{version['name']}", "version": version["name"]}
        if gv not in entry["versions"]:
            entry["versions"].append(gv)
        if version.get("storage"):
            entry["preferredVersion"] = gv
    return list(found.values())


def group(crds: list[dict[str, Any]], name: str) -> tuple[int, Any]:
    """/apis/{group}."""
    entry = next((g for g in groups(crds) if g["name"] == name), None)
    return (200, {"kind": "APIGroup", "apiVersion": "v1", **entry}) if entry else not_found()


def resource_list(crds: list[dict[str, Any]], group: str, version: str) -> tuple[int, Any]:
    """/apis/{group}/{version}: each CRD's resource, and its status subresource when it has one."""
    resources = []
    for crd, v in served_versions(crds):
        if crd["spec"]["group"] != group or v["name"] != version:
            continue
        names, namespaced = crd["spec"]["names"], crd["spec"]["scope"] == "Namespaced"
        resources.append(
            {
                "name": names["plural"],
                "singularName": names["singular"],
                "namespaced": namespaced,
                "kind": names["kind"],
                "verbs": VERBS,
                "shortNames": names.get("shortNames", []),
                "categories": names.get("categories", []),
                "storageVersionHash": base64.b64encode(names["plural"].encode()[:8]).decode(),
            }
        )
        if "status" in (v.get("subresources") or {}):
            resources.append(
                {
                    "name": f"{names['plural']}/status",
                    "singularName": "",
                    "namespaced": namespaced,
                    "kind": names["kind"],
                    "verbs": ["get", "patch", "update"],
                }
            )
    if not resources:
        return not_found()
    return 200, {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}",
        "resources": resources,
    }
