"""deploy/'s history server: RBAC no wider than reading KubeRay's objects and creating SubjectAccessReviews,
flags that `rayhistory serve` knows, users reaching it only through the authenticating proxy, and the Service
reaching the pod."""

from __future__ import annotations

import argparse

import pytest

from tests.deploy_manifests import (
    KUSTOMIZATIONS,
    _report,  # noqa: F401  (a fixture: prints which renderer and schemas ran)
    check_flags,
    history_server,
    rendered,
    sample_env,
    substituted,
)

# --- RBAC -----------------------------------------------------------------------------------------------------

# The two roles the server needs, and nothing more: reading KubeRay's objects (the live list) and creating
# SubjectAccessReviews (--authz kubernetes), which read and change nothing.
LEAST_PRIVILEGE = {
    "rayhistory-ray-reader": {
        "apiGroups": ["ray.io"],
        "resources": ["rayclusters", "rayjobs", "rayservices"],
        "verbs": ["get", "list", "watch"],
    },
    "rayhistory-access-reviewer": {
        "apiGroups": ["authorization.k8s.io"],
        "resources": ["subjectaccessreviews"],
        "verbs": ["create"],
    },
    # Ray's token of a RayCluster with token auth, for the live dashboard proxy: get only, never list or watch.
    "rayhistory-ray-token-reader": {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]},
}


@pytest.mark.parametrize("name", sorted(KUSTOMIZATIONS))
def test_the_cluster_roles_read_kuberay_objects_and_create_access_reviews_only(name: str) -> None:
    from historyserver.access.policies import REVIEWED
    from historyserver.live.kube import GROUP, KINDS

    objects = rendered(name)
    roles = {o["metadata"]["name"]: o for o in objects if o["kind"] in ("ClusterRole", "Role")}
    assert set(roles) == set(LEAST_PRIVILEGE) and all(r["kind"] == "ClusterRole" for r in roles.values())
    for role_name, role in roles.items():
        assert "aggregationRule" not in role
        (rule,) = role["rules"]
        assert set(rule) == {"apiGroups", "resources", "verbs"}, "no resourceNames, nonResourceURLs or aggregation"
        assert {k: sorted(v) for k, v in rule.items()} == LEAST_PRIVILEGE[role_name], role_name
    reader = LEAST_PRIVILEGE["rayhistory-ray-reader"]
    assert reader["apiGroups"] == [GROUP] and reader["resources"] == sorted(plural for _, plural in KINDS)
    # What the authorizer reviews is something the reader role names: a user who may see it sees the live list too.
    assert REVIEWED["group"] in reader["apiGroups"] and REVIEWED["resource"] in reader["resources"]

    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (account,) = [o for o in objects if o["kind"] == "ServiceAccount"]
    bindings = [o for o in objects if o["kind"] in ("ClusterRoleBinding", "RoleBinding")]
    assert sorted(b["roleRef"]["name"] for b in bindings) == sorted(LEAST_PRIVILEGE)
    for binding in bindings:
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": binding["roleRef"]["name"],
        }
        assert binding["subjects"] == [
            {
                "kind": "ServiceAccount",
                "name": account["metadata"]["name"],
                "namespace": deployment["metadata"]["namespace"],
            }
        ]
    assert pod["serviceAccountName"] == account["metadata"]["name"]
    assert account["metadata"]["namespace"] == deployment["metadata"]["namespace"]
    assert pod.get("automountServiceAccountToken", account.get("automountServiceAccountToken", True)) is True
    env = {e["name"]: e.get("value") for e in history_server(deployment).get("env", [])}
    assert env.get("RAYHISTORY_KUBERNETES") == "in-cluster"


@pytest.mark.parametrize("name", sorted(KUSTOMIZATIONS))
def test_the_history_server_passes_flags_that_rayhistory_serve_knows(name: str) -> None:
    from historyserver import cli as serve_cli

    (deployment,) = [o for o in rendered(name) if o["kind"] == "Deployment"]
    container = history_server(deployment)
    command = container["command"] + container.get("args", [])
    given = check_flags(command[2:], "serve")
    assert given["--archive"] == "$(RAYHISTORY_ARCHIVE)"
    assert given["--host"] == "0.0.0.0"  # for the kubelet's probes and Prometheus: they read the open routes
    (port,) = container["ports"]
    assert given["--port"] == str(port["containerPort"])
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert given["--cache-dir"] in mounts, "the cache must be on the emptyDir (the root filesystem is read-only)"
    parser = argparse.ArgumentParser(prog="rayhistory serve", allow_abbrev=False)
    serve_cli.add_arguments(parser)
    args, extra = parser.parse_known_args([substituted(a, sample_env(container, rendered(name))) for a in command[2:]])
    assert not extra
    settings = serve_cli.settings_from(args)
    assert settings.port == port["containerPort"] and settings.cache_dir == given["--cache-dir"]
    # Reachable on the pod's address, so never without authentication: the user headers are believed only from
    # the pod's loopback, where the proxy runs, and namespaces are Kubernetes' RBAC's.
    assert (settings.auth, settings.authz, settings.insecure_no_auth) == ("proxy", "kubernetes", False)
    from historyserver.access.config import parse_networks

    assert all(n.is_loopback for n in parse_networks(settings.auth_trusted_proxies))
    probes = [container[p]["httpGet"]["path"] for p in ("readinessProbe", "livenessProbe")]
    assert probes == ["/readyz", "/healthz"], "the kubelet sends no user: probes must use the open routes"


@pytest.mark.parametrize("name", sorted(KUSTOMIZATIONS))
def test_users_reach_the_server_only_through_the_authenticating_proxy(name: str) -> None:
    objects = rendered(name)
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    (service,) = [o for o in objects if o["kind"] == "Service"]
    containers = deployment["spec"]["template"]["spec"]["containers"]
    (proxy,) = [c for c in containers if c["name"] == "oauth2-proxy"]
    args = dict(a.removeprefix("--").split("=", 1) for a in proxy["args"])
    server_port = history_server(deployment)["ports"][0]["containerPort"]
    assert args["upstream"] == f"http://127.0.0.1:{server_port}/"  # over the pod's loopback: a trusted peer
    assert args["pass-user-headers"] == "true" and args["oidc-groups-claim"] == "groups"
    proxy_ports = {p["name"]: p["containerPort"] for p in proxy["ports"]}
    assert args["http-address"].endswith(f":{proxy_ports['http']}")
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]  # the proxy's port, not the server's


@pytest.mark.parametrize("name", sorted(KUSTOMIZATIONS))
def test_the_service_reaches_the_history_server(name: str) -> None:
    objects = rendered(name)
    (service,) = [o for o in objects if o["kind"] == "Service"]
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    named = {p["name"] for c in deployment["spec"]["template"]["spec"]["containers"] for p in c["ports"]}
    assert all(p["targetPort"] in named for p in service["spec"]["ports"])
