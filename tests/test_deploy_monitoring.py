"""deploy/monitoring validated offline and matched against the pods it must scrape: the Service with
kubernetes-validate, the PodMonitors and the ServiceMonitor against the Prometheus Operator's CRD schemas (vendored
in tests/crds/ with their source), and each monitor's selector against the pods of deploy/examples (as KubeRay
labels them and adds its `metrics` port) and of the history server's Deployment, down to the named ports."""

from __future__ import annotations

import argparse
import copy
import functools
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from collector.settings import CollectorSettings
from tests.deploy_manifests import (
    DEPLOY,
    RAY_KINDS,
    _docs,
    _report,  # noqa: F401  (a fixture: prints which renderer and schemas ran)
    collector_argv,
    collectors,
    document_sets,
    kubectl_render,
    load_kustomization,
    pod_templates,
    rendered,
    sample_env,
    substituted,
)
from tests.test_deploy_validation import CrdValidator, core_errors, core_versions, strict_schema

MONITORING = DEPLOY / "monitoring"
CRDS = Path(__file__).resolve().parent / "crds"
DASHBOARDS = Path(__file__).resolve().parents[1] / "dashboards"
# What KubeRay adds to a Ray pod (ray-operator/controllers/ray/common/pod.go, utils/constant.go): these labels, and
# the port `metrics` (8080) on the Ray container, the first one, unless it declares one.
KUBERAY_METRICS_PORT = ("metrics", 8080)
# The container KubeRay adds for spec.historyServerOptions (its pod.go), without ports; it serves on EVENTS_PORT.
INJECTED_COLLECTOR, INJECTED_PORT = "ray-history-collector", 8084


@functools.cache
def monitoring() -> tuple[dict[str, Any], ...]:
    objects = kubectl_render(MONITORING)
    return tuple(objects if objects is not None else load_kustomization(MONITORING))


def monitor(name: str) -> dict[str, Any]:
    (found,) = [
        o for o in monitoring() if o["kind"] in ("PodMonitor", "ServiceMonitor") and o["metadata"]["name"] == name
    ]
    return found


# --- schemas ---------------------------------------------------------------------------------------------------


@functools.cache
def operator_validator(kind: str) -> Any:
    for path in sorted(CRDS.glob("monitoring.coreos.com_*.yaml")):
        (crd,) = _docs(path.read_text())
        if crd["spec"]["names"]["kind"] == kind:
            (served,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1" and v.get("served")]
            schema = strict_schema(served["schema"]["openAPIV3Schema"])
            schema["properties"]["metadata"] = {"type": "object"}  # ObjectMeta: checked with kubernetes-validate
            return CrdValidator(schema)
    raise AssertionError(f"no CRD for {kind} in {CRDS}")


def operator_errors(obj: dict[str, Any]) -> list[str]:
    validator = operator_validator(obj["kind"])
    return [f"{'.'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in validator.iter_errors(obj)]


def test_the_kustomization_renders_and_the_loader_agrees_with_kubectl() -> None:
    kinds = sorted(o["kind"] for o in monitoring())
    assert kinds == ["PodMonitor", "PodMonitor", "PodMonitor", "Service", "ServiceMonitor"]
    rendered_by_kubectl = kubectl_render(MONITORING)
    if rendered_by_kubectl is not None:  # kubectl orders by kind; the loader keeps the files' order

        def key(o: dict[str, Any]) -> tuple[str, str]:
            return o["kind"], o["metadata"]["name"]

        assert sorted(rendered_by_kubectl, key=key) == sorted(load_kustomization(MONITORING), key=key)


@pytest.mark.parametrize("version", core_versions())
def test_every_object_validates_against_its_schema(version: str) -> None:
    problems = {}
    for obj in monitoring():
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        if obj["apiVersion"].startswith("monitoring.coreos.com/"):
            wrapped = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": obj["metadata"]}
            problems[where] = operator_errors(obj) + core_errors(wrapped, version)
        else:
            problems[where] = core_errors(obj, version)
    assert not {w: p for w, p in problems.items() if p}, json.dumps(problems, indent=1)


@pytest.mark.parametrize(
    "path, value, expected",
    [
        (("spec", "podMetricsEndpoints", 0, "relabeling"), [], "'relabeling' was unexpected"),
        (("spec", "podMetricsEndpoints", 0, "relabelings", 0, "action"), "rename", "is not one of"),
        (("spec", "selector", "matchLabels"), "ray.io/is-ray-node", "is not of type 'object'"),
    ],
)
def test_the_operator_schema_refuses_what_the_api_server_would(path: tuple, value: Any, expected: str) -> None:
    obj = copy.deepcopy(monitor("ray-workers"))
    assert not operator_errors(obj)
    target = obj
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    assert any(expected in e for e in operator_errors(obj)), operator_errors(obj)


# --- selectors against the pods they must find ------------------------------------------------------------------


def kuberay_pods() -> list[tuple[str, dict[str, str], dict[str, Any]]]:
    """(where, labels, pod spec) of every Ray pod of deploy/examples as KubeRay creates it."""
    pods = []
    for where, docs in document_sets().items():
        for obj in docs:
            if obj["kind"] not in RAY_KINDS:
                continue
            cluster = obj["metadata"]["name"]
            for part, template in pod_templates(obj):
                spec = copy.deepcopy(template["spec"])
                head = part == "head"
                labels = {
                    **template.get("metadata", {}).get("labels", {}),
                    "ray.io/cluster": cluster,
                    "ray.io/node-type": "head" if head else "worker",
                    "ray.io/group": "headgroup" if head else part.removeprefix("worker group "),
                    "ray.io/identifier": f"{cluster}-{'head' if head else 'worker'}",
                    "ray.io/is-ray-node": "yes",
                }
                ray = spec["containers"][0]
                if not any(p.get("name") == KUBERAY_METRICS_PORT[0] for p in ray.get("ports", [])):
                    ray.setdefault("ports", []).append(
                        {"name": KUBERAY_METRICS_PORT[0], "containerPort": KUBERAY_METRICS_PORT[1]}
                    )
                if (obj.get("spec") or {}).get("historyServerOptions") or (
                    (obj.get("spec") or {}).get("rayClusterSpec") or {}
                ).get("historyServerOptions"):
                    spec["containers"].append({"name": INJECTED_COLLECTOR, "image": "(collectorOptions.image)"})
                pods.append((f"{where} {obj['kind']}/{cluster} {part}", labels, spec))
    return pods


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    ok = all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())
    for e in selector.get("matchExpressions", []):
        present, value = e["key"] in labels, labels.get(e["key"])
        ok &= {
            "In": value in e.get("values", []),
            "NotIn": value not in e.get("values", []),
            "Exists": present,
            "DoesNotExist": not present,
        }[e["operator"]]
    return ok


def container_ports(spec: dict[str, Any]) -> dict[str, int]:
    return {
        p["name"]: p["containerPort"]
        for c in spec.get("initContainers", []) + spec["containers"]
        for p in c.get("ports", [])
        if p.get("name")
    }


def test_the_ray_monitors_find_every_ray_pod_once_with_its_metrics_port_and_cluster_label() -> None:
    pods = kuberay_pods()
    assert {labels["ray.io/node-type"] for _, labels, _ in pods} == {"head", "worker"}
    for where, labels, spec in pods:
        found = [m for m in ("ray-head", "ray-workers") if selects(monitor(m)["spec"]["selector"], labels)]
        assert found == ["ray-head" if labels["ray.io/node-type"] == "head" else "ray-workers"], where
        endpoints = monitor(found[0])["spec"]["podMetricsEndpoints"]
        assert endpoints[0]["port"] in container_ports(spec), where  # the one port every Ray pod has
        for endpoint in endpoints:
            relabel = {r["targetLabel"]: r["sourceLabels"] for r in endpoint["relabelings"]}
            assert relabel["ray_io_cluster"] == ["__meta_kubernetes_pod_label_ray_io_cluster"]
            assert "ray.io/cluster" in labels  # the label that source reads


def collector_http(container: dict[str, Any], docs: tuple[dict[str, Any], ...]) -> tuple[str, int]:
    """Where the collector's HTTP server listens, read as `rayhistory collect` reads its flags and environment."""
    env = sample_env(container, docs)
    parser = argparse.ArgumentParser()
    CollectorSettings.add_arguments(parser)
    args, _ = parser.parse_known_args([substituted(a, env) for a in collector_argv(container) or []])
    given = {k: v for k, v in vars(args).items() if k in ("http_host", "http_port") and v is not None}
    fields = {f.name: f for f in CollectorSettings.fields()}
    values = {}
    for name in ("http_host", "http_port"):
        f = fields[name]
        raw = given.get(name, env.get(CollectorSettings.env_name(f), env.get(f.metadata.get("env") or "", None)))
        values[name] = CollectorSettings._convert(f, raw, name) if raw is not None else f.default
    return values["http_host"], values["http_port"]


def test_the_collector_monitor_reaches_every_collector_where_it_listens() -> None:
    pm = monitor("rayhistory-collectors")
    named, injected = pm["spec"]["podMetricsEndpoints"]
    checked = 0
    docs_of = {where: docs for where, docs in document_sets().items()}
    for where, labels, spec in kuberay_pods():
        assert selects(pm["spec"]["selector"], labels), where
        docs = docs_of[where.split(" ")[0]]
        sidecars = collectors({"spec": spec})
        if sidecars:
            (sidecar,) = sidecars
            ports = {p.get("name"): p["containerPort"] for p in sidecar.get("ports", [])}
            host, port = collector_http(sidecar, docs)
            assert host not in ("127.0.0.1", "localhost", "::1"), f"{where}: the collector listens on loopback only"
            assert ports.get(named["port"]) == port != 0, f"{where}: port {named['port']} is not where it listens"
            checked += 1
        elif any(c["name"] == INJECTED_COLLECTOR for c in spec["containers"]):
            keep, address = injected["relabelings"][:2]
            assert keep["action"] == "keep" and re.fullmatch(keep["regex"], INJECTED_COLLECTOR)
            assert address["targetLabel"] == "__address__" and address["replacement"] == f"$1:{INJECTED_PORT}"
            checked += 1
    assert checked >= 2, "deploy/examples holds collectors to scrape"


def test_the_server_monitor_selects_only_the_metrics_service_which_reaches_the_server_port() -> None:
    (service,) = [o for o in monitoring() if o["kind"] == "Service"]
    sm = monitor("rayhistory-server")
    for name in ("base", "oss"):
        services = [o for o in rendered(name) if o["kind"] == "Service"]
        assert not any(selects(sm["spec"]["selector"], s["metadata"].get("labels", {})) for s in services), name
        (deployment,) = [o for o in rendered(name) if o["kind"] == "Deployment"]
        template = deployment["spec"]["template"]
        assert service["spec"]["selector"].items() <= template["metadata"]["labels"].items()
        assert service["metadata"]["namespace"] == deployment["metadata"]["namespace"]
        server_ports = {
            p["name"]: p["containerPort"] for c in template["spec"]["containers"] for p in c.get("ports", [])
        }
        (port,) = service["spec"]["ports"]
        assert server_ports[port["targetPort"]] == 8080  # the server's own port, where /metrics is open
        container = next(
            c for c in template["spec"]["containers"] if c.get("command", [])[:2] == ["rayhistory", "serve"]
        )
        assert any(p["name"] == port["targetPort"] for p in container["ports"]), "the server's port, not the proxy's"
    assert selects(sm["spec"]["selector"], service["metadata"]["labels"])
    assert [e["port"] for e in sm["spec"]["endpoints"]] == [p["name"] for p in service["spec"]["ports"]]
    assert sm["spec"]["endpoints"][0]["path"] == "/metrics"


def test_metrics_stay_open_on_the_servers_port() -> None:
    from historyserver.routes.access import OPEN_PATHS

    assert {"/metrics", "/healthz"} <= OPEN_PATHS


# --- Grafana's provisioning inside the cluster ----------------------------------------------------------------


def test_grafana_datasources_take_in_cluster_urls_that_reach_the_services() -> None:
    text = (DASHBOARDS / "provisioning" / "datasources.yaml").read_text()
    variables = set(re.findall(r"\$\{([A-Z_]+)\}", text))
    readme = (DEPLOY / "README.md").read_text()
    values = dict(re.findall(r"^\s*- name: ([A-Z_]+)\n\s*value: (\S+)$", readme, re.M))
    assert variables and variables <= set(values), (
        f"deploy/README.md gives Grafana no value for {variables - set(values)}"
    )
    expanded = yaml.safe_load(re.sub(r"\$\{([A-Z_]+)\}", lambda m: values[m.group(1)], text))
    archive = next(d for d in expanded["datasources"] if d["uid"] == "rayhistory-archive")
    m = re.fullmatch(r"http://([a-z0-9-]+)\.([a-z0-9-]+)\.svc(?::(\d+))?/prometheus", archive["url"])
    assert m, archive["url"]
    service = next(o for o in rendered("base") if o["kind"] == "Service" and o["metadata"]["name"] == m.group(1))
    assert service["metadata"]["namespace"] == m.group(2)
    assert int(m.group(3) or 80) in [p["port"] for p in service["spec"]["ports"]]
    assert archive["jsonData"].get("oauthPassThru") is True  # through oauth2-proxy, as the signed-in user


@pytest.mark.parametrize("version", core_versions())
def test_the_ingress_validates_and_leads_to_the_proxy_not_the_server(version: str) -> None:
    (ingress,) = _docs((DEPLOY / "ingress" / "ingress.yaml").read_text())
    assert not core_errors(ingress, version)
    (service,) = [o for o in rendered("base") if o["kind"] == "Service"]
    (deployment,) = [o for o in rendered("base") if o["kind"] == "Deployment"]
    backends = [p["backend"]["service"] for r in ingress["spec"]["rules"] for p in r["http"]["paths"]]
    assert backends == [{"name": service["metadata"]["name"], "port": {"name": "http"}}]
    (port,) = [p for p in service["spec"]["ports"] if p["name"] == "http"]
    proxy = next(c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "oauth2-proxy")
    assert port["targetPort"] in [p["name"] for p in proxy["ports"]]
    public = next(e["value"] for e in proxy["env"] if e["name"] == "PUBLIC_URL")
    assert [f"https://{h}" for t in ingress["spec"]["tls"] for h in t["hosts"]] == [public]
