"""Our collector image as KubeRay's own injection runs it (KubeRay 1.7, feature gate RayClusterHistoryServer): the
deploy/examples that use spec.historyServerOptions pass the operator's validation, and the container the operator
builds from them, with no arguments and the operator's environment, gives `rayhistory collect` every setting it
needs: the session dir on the volume the operator mounts, the port the operator points Ray's event export at, the
cluster and namespace.

No operator runs here: `operator_collector()` builds the container as KubeRay's BuildCollectorContainer does
(ray-operator/controllers/ray/common/pod.go, as described with source lines in
../shared/reference/kuberay-injection.md), and `operator_validation()` applies the rules of its validation.go. They
encode KubeRay's behaviour, not ours."""

from __future__ import annotations

import math
import re
from typing import Any
from urllib.parse import urlparse

from archive.storage.s3 import S3Settings
from collector.settings import CollectorSettings
from tests.deploy_manifests import EXAMPLES, cluster_spec, example, kuberay_injected, pod_templates
from tests.image_envs import DOCKERFILES, parse

FORBIDDEN_ENV = {"POD_IP", "FQ_RAY_IP", "RAY_CLUSTER_NAME", "RAY_CLUSTER_NAMESPACE", "RAY_ROLE", "OWNER_KIND"}
FORBIDDEN_ENV |= {"OWNER_NAME", "EVENTS_PORT"}
BACKEND_REQUIRES = {
    "gcs": {"GCS_BUCKET"},
    "s3": {"S3_REGION"},
    "aliyunoss": {"OSS_BUCKET", "OSS_ENDPOINT", "OSS_REGION"},
}
EVENTS_PORT = 8084  # hard-coded in the operator, on both sides
EXPOSABLE_EVENT_TYPES = (  # utils.DEFAULT_RAY_EXPOSABLE_EVENT_TYPES
    "TASK_DEFINITION_EVENT,TASK_LIFECYCLE_EVENT,ACTOR_TASK_DEFINITION_EVENT,TASK_PROFILE_EVENT,"
    "DRIVER_JOB_DEFINITION_EVENT,DRIVER_JOB_LIFECYCLE_EVENT,ACTOR_DEFINITION_EVENT,ACTOR_LIFECYCLE_EVENT,"
    "NODE_DEFINITION_EVENT,NODE_LIFECYCLE_EVENT"
)
RAY_EVENT_ENV = {  # what the operator adds to the Ray container, each unless already set
    "RAY_enable_ray_event": "true",
    "RAY_enable_core_worker_ray_event_to_aggregator": "true",
    "RAY_DASHBOARD_AGGREGATOR_AGENT_EVENTS_EXPORT_ADDR": f"http://localhost:{EVENTS_PORT}/v1/events",
    "RAY_DASHBOARD_AGGREGATOR_AGENT_EXPOSABLE_EVENT_TYPES": EXPOSABLE_EVENT_TYPES,
    "RAY_DASHBOARD_AGGREGATOR_AGENT_PUBLISHER_HTTP_ENDPOINT_EXPOSABLE_EVENT_TYPES": EXPOSABLE_EVENT_TYPES,
}


def operator_validation(cluster: dict[str, Any]) -> list[str]:
    options = (cluster.get("historyServerOptions") or {}).get("collectorOptions")
    if not options:
        return ["collectorOptions must be set"]
    problems = [] if options.get("image") else ["collectorOptions.image must be non-empty"]
    env = options.get("env") or []
    problems += [f"env {e['name']} is set by the operator" for e in env if e["name"] in FORBIDDEN_ENV]
    backend = [e for e in env if e["name"] == "STORAGE_BACKEND"]
    if not backend or "value" not in backend[0]:
        return [*problems, "STORAGE_BACKEND must be set as a literal value"]
    names = {e["name"] for e in env}
    missing = BACKEND_REQUIRES.get(backend[0]["value"].lower(), set()) - names
    problems += [f"backend {backend[0]['value']} needs {sorted(missing)}"] if missing else []
    for _, template in pod_templates({"kind": "RayCluster", "spec": cluster}):
        if any(c["name"] == "ray-history-collector" for c in template["spec"]["containers"]):
            problems.append("a template already has a container named ray-history-collector")
    return problems


def operator_collector(obj: dict[str, Any], role: str) -> tuple[dict[str, Any], dict[str, str]]:
    """(the collector container, the env the operator adds to the Ray container) for the head or a worker."""
    cluster = cluster_spec(obj)
    options = cluster["historyServerOptions"]["collectorOptions"]
    name = obj["metadata"]["name"] if obj["kind"] == "RayCluster" else f"{obj['metadata']['name']}-abcde"
    env = [
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "RAY_CLUSTER_NAME", "value": name},
        {"name": "RAY_CLUSTER_NAMESPACE", "value": "team-a"},
        {"name": "RAY_ROLE", "value": role},
        {"name": "EVENTS_PORT", "value": str(EVENTS_PORT)},
        {"name": "FQ_RAY_IP", "value": f"{name}-head-svc.team-a.svc.cluster.local"},
    ]
    if obj["kind"] != "RayCluster":
        env += [{"name": "OWNER_KIND", "value": obj["kind"]}, {"name": "OWNER_NAME", "value": obj["metadata"]["name"]}]
    user = options.get("env") or []
    if role == "Head" and not any(e["name"] == "RAY_DASHBOARD_ADDRESS" for e in user):
        env.append({"name": "RAY_DASHBOARD_ADDRESS", "value": "http://localhost:8265"})
    container = {
        "name": "ray-history-collector",
        "image": options["image"],
        "env": env + user,
        "volumeMounts": [{"name": "ray-logs", "mountPath": "/tmp/ray"}],
    }
    return container, RAY_EVENT_ENV


def _env(container: dict[str, Any]) -> dict[str, str]:
    """Literal values as given; a value from a Secret or the downward API as a stand-in."""
    return {e["name"]: e.get("value", f"<{e['name']}>") for e in container["env"]}


def injected_objects() -> list[tuple[str, dict[str, Any]]]:
    return [(f"{n} {o['kind']}", o) for n in EXAMPLES for o in example(n) if kuberay_injected(o)]


def test_the_injection_examples_pass_the_operators_validation() -> None:
    found = injected_objects()
    assert {o["kind"] for _, o in found} == {"RayCluster", "RayJob"}
    for where, obj in found:
        assert not operator_validation(cluster_spec(obj)), (where, operator_validation(cluster_spec(obj)))


def test_the_operators_container_gives_our_collector_everything_it_needs() -> None:
    entrypoint = parse(DOCKERFILES["collector"]).command
    assert entrypoint == ["rayhistory", "collect"]  # the operator sets no command or args: the image's run
    for where, obj in injected_objects():
        for role in ("Head", "Worker"):
            container, ray_env = operator_collector(obj, role)
            env = _env(container)
            assert not CollectorSettings.unknown_variables(env, also=(S3Settings,)), where
            settings = CollectorSettings.load({}, env)  # no flags: the operator passes none
            mount = container["volumeMounts"][0]["mountPath"]
            assert settings.session_dir == f"{mount}/session_latest" and settings.session_wait == math.inf
            # Ray's dashboard agent POSTs its events where the operator points it: our receiver listens there.
            target = urlparse(ray_env["RAY_DASHBOARD_AGGREGATOR_AGENT_EVENTS_EXPORT_ADDR"])
            assert settings.http_port == target.port and target.path == "/v1/events", where
            assert target.hostname == "localhost" and settings.http_host in ("0.0.0.0", "127.0.0.1")
            assert settings.cluster == env["RAY_CLUSTER_NAME"] and settings.namespace == "team-a", where
            assert re.fullmatch(r"s3://[a-z0-9.-]+/\S+", settings.archive), where
            assert settings.http_host == "0.0.0.0", f"{where}: /metrics on the pod IP for scrapers"


def test_a_ray_container_in_the_injection_examples_stops_ray_before_its_pod_goes() -> None:
    for where, obj in injected_objects():
        for part, template in pod_templates(obj):
            spec = template["spec"]
            assert spec["containers"][0]["lifecycle"]["preStop"]["exec"]["command"][:2] == ["ray", "stop"], part
            assert spec["terminationGracePeriodSeconds"] >= 15 + 25, (where, part)
