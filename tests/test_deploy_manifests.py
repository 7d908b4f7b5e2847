"""deploy/: rendered as `kubectl apply -k` would, validated as the API server would, and held to what matters.

Rendering: `kubectl kustomize` when kubectl is installed, else a small loader of the kustomization (resources,
namespace, labels, configMapGenerator: the only features deploy/ uses, and the loader refuses any other); when
kubectl is there the loader is compared with it, so the fallback cannot drift. Which one ran is printed at the end.
Validation, offline: KubeRay's kinds against the CRDs' OpenAPI v3 schemas (KubeRay 1.7, $RAYHISTORY_KUBERAY_CRDS,
default ../shared/k8s/crds beside the repository) with every field the API server would prune treated as an error; core kinds, the
Ray pods' templates and every object's metadata with kubernetes-validate's strict schemas (bundled in the wheel).
Then the things a wrong manifest would break silently: RBAC wider than reading KubeRay's objects and creating
SubjectAccessReviews, a server reachable without authentication, a collector flag the CLI does not know, a grace period shorter than the final flush, an unresolved `$(VAR)`, ConfigMap, Secret or label reference.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import functools
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

try:
    import kubernetes_validate
    from kubernetes_validate.utils import latest_version as _kv_latest
except ImportError:  # the fallback checks apiVersion, kind and metadata only (reported at the end)
    kubernetes_validate = None

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
KUSTOMIZATIONS = {"base": DEPLOY / "base", "oss": DEPLOY / "overlays" / "oss"}
EXAMPLES = {p.name: p for p in sorted((DEPLOY / "examples").glob("*.yaml"))}
CRD_DIR = Path(
    os.environ.get("RAYHISTORY_KUBERAY_CRDS", Path(__file__).resolve().parents[2] / "shared" / "k8s" / "crds")
)
MIN_KUBERNETES = "1.29"  # native sidecars: init containers with restartPolicy Always (deploy/README.md)
RAY_KINDS = ("RayCluster", "RayJob", "RayService")
SHUTDOWN_MARGIN = 5  # seconds for process exits and the collector's settle time, on top of the two budgets
# Labels KubeRay puts on every Ray pod: a downward-API reference to one of them resolves.
KUBERAY_POD_LABELS = {"ray.io/cluster", "ray.io/node-type", "ray.io/group", "ray.io/identifier", "ray.io/is-ray-node"}
DOWNWARD_FIELDS = re.compile(
    r"^(metadata\.(name|namespace|uid)|metadata\.(labels|annotations)\['([^']+)'\]|spec\.(nodeName|serviceAccountName)"
    r"|status\.(hostIP|hostIPs|podIP|podIPs))$"
)
REPORT: dict[str, str] = {}
OAUTH2_PROXY_IMAGE = "quay.io/oauth2-proxy/oauth2-proxy:v7.8.2"  # in front of the history server (deploy/base)


# --- rendering --------------------------------------------------------------------------------------------------


def _docs(text: str) -> list[dict[str, Any]]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: the CRDs are 3 MB of YAML
    return [d for d in yaml.load_all(text, Loader=loader) if d]


@functools.cache
def kubectl_render(kdir: Path) -> list[dict[str, Any]] | None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return None
    done = subprocess.run([kubectl, "kustomize", str(kdir)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"kubectl kustomize {kdir} failed:\n{done.stderr}"
    return _docs(done.stdout)


LOADER_KEYS = {"apiVersion", "kind", "resources", "namespace", "labels", "configMapGenerator"}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}


def load_kustomization(kdir: Path) -> list[dict[str, Any]]:
    """What `kubectl kustomize` renders for the features deploy/ uses, without the generated names' hash suffix."""
    k = yaml.safe_load((kdir / "kustomization.yaml").read_text())
    unknown = set(k) - LOADER_KEYS
    assert not unknown, f"{kdir}/kustomization.yaml uses {sorted(unknown)}, which this test's loader does not handle"
    objects: list[dict[str, Any]] = []
    for entry in k.get("resources", []):
        path = kdir / entry
        objects.extend(load_kustomization(path) if path.is_dir() else _docs(path.read_text()))
    for gen in k.get("configMapGenerator", []):
        assert set(gen) <= {"name", "literals", "behavior"}, f"configMapGenerator keys {sorted(gen)}"
        data = dict(lit.split("=", 1) for lit in gen.get("literals", []))
        behavior = gen.get("behavior", "create")
        existing = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == gen["name"]]
        if behavior == "create":
            assert not existing, f"ConfigMap {gen['name']} generated twice"
            objects.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": gen["name"]}, "data": data})
        else:
            assert behavior in ("merge", "replace") and len(existing) == 1, f"{behavior} of ConfigMap {gen['name']}"
            existing[0]["data"] = {**existing[0].get("data", {}), **data} if behavior == "merge" else data
    for obj in objects:
        if k.get("namespace") and obj["kind"] not in CLUSTER_SCOPED:
            obj["metadata"]["namespace"] = k["namespace"]
        for label in k.get("labels", []):
            assert set(label) <= {"pairs", "includeTemplates"}, f"labels keys {sorted(label)}"
            obj["metadata"].setdefault("labels", {}).update(label["pairs"])
            template = obj.get("spec", {}).get("template")
            if label.get("includeTemplates") and isinstance(template, dict):
                template.setdefault("metadata", {}).setdefault("labels", {}).update(label["pairs"])
    return objects


@functools.cache
def rendered(name: str) -> tuple[dict[str, Any], ...]:
    kdir = KUSTOMIZATIONS[name]
    objects = kubectl_render(kdir)
    REPORT["renderer"] = "kubectl kustomize" if objects is not None else "the test's kustomization loader (no kubectl)"
    return tuple(objects if objects is not None else load_kustomization(kdir))


def example(name: str) -> tuple[dict[str, Any], ...]:
    return tuple(_docs(EXAMPLES[name].read_text()))


def document_sets() -> dict[str, tuple[dict[str, Any], ...]]:
    """What is applied together: each kustomization's rendering, each example file."""
    sets = {f"kustomize:{name}": rendered(name) for name in KUSTOMIZATIONS}
    sets.update({f"example:{name}": example(name) for name in EXAMPLES})
    return sets


def every_object() -> Iterator[tuple[str, dict[str, Any]]]:
    for where, docs in document_sets().items():
        for obj in docs:
            yield f"{where} {obj.get('kind')}/{obj.get('metadata', {}).get('name')}", obj


def pod_templates(obj: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    spec = obj.get("spec") or {}
    if obj["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        return [("pod", spec["template"])]
    cluster = {
        "RayCluster": spec,
        "RayJob": spec.get("rayClusterSpec"),
        "RayService": spec.get("rayClusterConfig"),
    }.get(obj["kind"])
    if not cluster:
        return []
    found = [("head", cluster["headGroupSpec"]["template"])]
    found += [(f"worker group {g['groupName']}", g["template"]) for g in cluster.get("workerGroupSpecs", [])]
    return found


def every_pod_template() -> Iterator[tuple[str, dict[str, Any], dict[str, Any], tuple[dict[str, Any], ...]]]:
    for where, docs in document_sets().items():
        for obj in docs:
            for part, template in pod_templates(obj):
                yield f"{where} {obj['kind']}/{obj['metadata']['name']} {part}", obj, template, docs


def ray_pod_templates() -> list[tuple[str, dict[str, Any], dict[str, Any], tuple[dict[str, Any], ...]]]:
    return [t for t in every_pod_template() if t[1]["kind"] in RAY_KINDS]


def _strip_hash(obj: Any, names: set[str]) -> Any:
    if isinstance(obj, dict):
        return {k: _strip_hash(v, names) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_strip_hash(v, names) for v in obj]
    if isinstance(obj, str):
        m = re.fullmatch(r"(.+)-[a-z0-9]{10}", obj)
        if m and m.group(1) in names:
            return m.group(1)
    return obj


@pytest.mark.parametrize("name", sorted(KUSTOMIZATIONS))
def test_kustomizations_render_and_the_loader_agrees_with_kubectl(name: str) -> None:
    objects = rendered(name)
    kinds = sorted(o["kind"] for o in objects)
    assert kinds == [
        "ClusterRole",
        "ClusterRole",
        "ClusterRoleBinding",
        "ClusterRoleBinding",
        "ConfigMap",
        "Deployment",
        "Namespace",
        "Service",
        "ServiceAccount",
    ], kinds
    from_kubectl = kubectl_render(KUSTOMIZATIONS[name])
    if from_kubectl is None:  # not a Debian package: the machine image ships it, .ci/install-system-packages cannot
        pytest.fail(
            "kubectl is not installed, so the test's kustomization loader has nothing to be checked against: "
            "install kubectl (1.14 or later, which has `kubectl kustomize`)",
            pytrace=False,
        )
    loaded = load_kustomization(KUSTOMIZATIONS[name])
    generated = {o["metadata"]["name"] for o in loaded if o["kind"] == "ConfigMap"}
    key = lambda o: (o["kind"], o["metadata"]["name"])  # noqa: E731
    assert sorted(map(key, _strip_hash(from_kubectl, generated))) == sorted(map(key, loaded))
    by_key = {key(o): o for o in loaded}
    for obj in _strip_hash(from_kubectl, generated):
        assert obj == by_key[key(obj)], f"the loader renders {key(obj)} differently from kubectl kustomize"


# --- KubeRay kinds against the CRDs' schemas ----------------------------------------------------------------------

_DROPPED = {
    "description",
    "default",
    "nullable",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-embedded-resource",
    "x-kubernetes-int-or-string",
    "x-kubernetes-map-type",
}


def strict_schema(node: dict[str, Any]) -> dict[str, Any]:
    """A structural schema as JSON Schema in which every field the API server would prune is an error.

    An object schema without additionalProperties keeps only its listed properties (none when it lists none) unless
    it says x-kubernetes-preserve-unknown-fields; an embedded resource also keeps apiVersion, kind and metadata.
    CEL rules (x-kubernetes-validations) are not evaluated here: touching a field that carries one is reported,
    except transition rules (oldSelf), which only run on update."""
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "properties":
            out[key] = {name: strict_schema(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "not") and isinstance(value, dict):
            out[key] = strict_schema(value)
        elif key in ("anyOf", "allOf", "oneOf"):
            out[key] = [strict_schema(sub) for sub in value]
        elif key == "x-kubernetes-validations":
            rules = [r["rule"] for r in value if "oldSelf" not in r["rule"]]
            if rules:
                out["x-unevaluated-cel"] = rules
        elif key not in _DROPPED:
            out[key] = value
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if (
        node.get("type") == "object"
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        if node.get("x-kubernetes-embedded-resource"):
            out.setdefault("properties", {}).update(
                apiVersion={"type": "string"}, kind={"type": "string"}, metadata={"type": "object"}
            )
        out["additionalProperties"] = False
    return out


def _list_type(validator: Any, list_type: str, instance: Any, schema: dict[str, Any]) -> Iterator[Any]:
    """x-kubernetes-list-type: the API server refuses duplicate keys in a map list and duplicate items in a set."""
    if not validator.is_type(instance, "array"):
        return
    if list_type == "map":
        keys = schema.get("x-kubernetes-list-map-keys", [])
        defaults = {k: (schema.get("items", {}).get("properties", {}).get(k) or {}).get("default") for k in keys}
        seen: set[str] = set()
        for item in instance:
            ident = json.dumps({k: item.get(k, defaults[k]) for k in keys}, sort_keys=True)
            if ident in seen:
                yield jsonschema.ValidationError(f"duplicate entry {ident} in a list keyed by {keys}")
            seen.add(ident)
    elif list_type == "set":
        items = [json.dumps(i, sort_keys=True) for i in instance]
        if len(set(items)) != len(items):
            yield jsonschema.ValidationError("duplicate items in a list of type set")


def _unevaluated_cel(validator: Any, rules: list[str], instance: Any, schema: dict[str, Any]) -> Iterator[Any]:
    yield jsonschema.ValidationError(f"sets a field guarded by CEL rules this test does not evaluate: {rules}")


CrdValidator = jsonschema.validators.extend(
    jsonschema.Draft4Validator, {"x-kubernetes-list-type": _list_type, "x-unevaluated-cel": _unevaluated_cel}
)


@functools.cache
def crd_validator(api_version: str, kind: str) -> Any:
    if not CRD_DIR.is_dir():
        pytest.fail(
            f"KubeRay CRDs not found in {CRD_DIR}: the repository expects ../shared/ beside it "
            "(or set RAYHISTORY_KUBERAY_CRDS)"
        )
    group, version = api_version.split("/")
    for path in sorted(CRD_DIR.glob("*.yaml")):
        for crd in _docs(path.read_text()):
            if (
                crd.get("kind") == "CustomResourceDefinition"
                and crd["spec"]["group"] == group
                and crd["spec"]["names"]["kind"] == kind
            ):
                served = [v for v in crd["spec"]["versions"] if v["name"] == version and v.get("served")]
                assert served, f"{kind} {api_version} is not served by the CRD in {path}"
                schema = strict_schema(served[0]["schema"]["openAPIV3Schema"])
                schema["properties"]["metadata"] = {"type": "object"}  # ObjectMeta: checked by metadata_errors()
                return CrdValidator(schema)
    raise AssertionError(f"no CRD for {kind} in {group} under {CRD_DIR}")


def crd_errors(obj: dict[str, Any]) -> list[str]:
    validator = crd_validator(obj["apiVersion"], obj["kind"])
    return [
        f"{'.'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
        for e in sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))
    ]


def core_errors(obj: dict[str, Any], version: str) -> list[str]:
    if kubernetes_validate is None:
        REPORT["core"] = "apiVersion/kind/metadata checks only (kubernetes-validate is not installed)"
        problems = [f"missing {k}" for k in ("apiVersion", "kind") if not obj.get(k)]
        name = (obj.get("metadata") or {}).get("name", "")
        if not re.fullmatch(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?", name):
            problems.append(f"metadata.name {name!r} is not a DNS-1123 name")
        return problems
    REPORT["core"] = f"kubernetes-validate --strict against Kubernetes {' and '.join(core_versions())}"
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as e:
        return [f"{'.'.join(map(str, e.path)) or '(root)'}: {e.message}"]
    return []


def core_versions() -> list[str]:
    if kubernetes_validate is None:
        return [MIN_KUBERNETES]
    return [MIN_KUBERNETES, ".".join(_kv_latest().split(".")[:2])]


def metadata_errors(obj: dict[str, Any], version: str) -> list[str]:
    """A custom resource's metadata is ObjectMeta: checked by wrapping it in a ConfigMap."""
    return core_errors({"apiVersion": "v1", "kind": "ConfigMap", "metadata": obj["metadata"]}, version)


def test_every_kuberay_object_fits_its_crd_schema_without_pruned_fields() -> None:
    ray_objects = [(where, obj) for where, obj in every_object() if obj["kind"] in RAY_KINDS]
    assert {obj["kind"] for _, obj in ray_objects} >= {"RayCluster", "RayJob"}
    problems = {
        where: crd_errors(obj) + [m for v in core_versions() for m in metadata_errors(obj, v)]
        for where, obj in ray_objects
    }
    assert not {w: p for w, p in problems.items() if p}, json.dumps(problems, indent=1)


@pytest.mark.parametrize(
    "path, value, expected",
    [
        (("spec", "workerGroupSpec"), [], "'workerGroupSpec' was unexpected"),
        (("spec", "headGroupSpec", "template", "spec", "containers", 0, "envv"), [], "'envv' was unexpected"),
        (("spec", "headGroupSpec", "template", "spec", "initContainers", 0, "restartPolicy"), 7, "is not of type"),
        (("spec", "workerGroupSpecs", 0, "template", "spec", "volumes", 0, "emptyDir", "medium2"), "", "'medium2'"),
        (
            ("spec", "headGroupSpec", "template", "spec", "containers", 0, "env", 1),
            {"name": "RAY_enable_export_api_write"},
            "duplicate entry",
        ),
        (("spec", "managedBy"), "someone", "CEL rules"),
    ],
)
def test_the_crd_check_refuses_what_the_api_server_would_prune_or_reject(
    path: tuple, value: Any, expected: str
) -> None:
    obj = copy.deepcopy(next(o for o in example("raycluster-with-collector.yaml") if o["kind"] == "RayCluster"))
    assert not crd_errors(obj)
    target = obj
    for step in path[:-1]:
        target = target[step]
    if isinstance(target, list):
        target.insert(path[-1], value)
    else:
        target[path[-1]] = value
    errors = crd_errors(obj)
    assert any(expected in e for e in errors), errors


# --- core kinds -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", core_versions())
def test_core_objects_and_ray_pod_templates_validate_strictly(version: str) -> None:
    problems: dict[str, list[str]] = {}
    for where, obj in every_object():
        if obj["kind"] not in RAY_KINDS:
            problems[where] = core_errors(obj, version)
    for where, _, template, _ in ray_pod_templates():
        wrapped = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "template"}, "template": template}
        problems[where + " (as a PodTemplate)"] = core_errors(wrapped, version)
    assert not {w: p for w, p in problems.items() if p}, json.dumps(problems, indent=1)


def test_the_core_check_refuses_unknown_fields() -> None:
    deployment = copy.deepcopy(next(o for o in rendered("base") if o["kind"] == "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    assert any("'livenesProbe' was unexpected" in e for e in core_errors(deployment, MIN_KUBERNETES))


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


def history_server(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = [
        c
        for c in deployment["spec"]["template"]["spec"]["containers"]
        if c.get("command", [])[:2] == ["rayhistory", "serve"]
    ]
    return container


# --- the CLI flags --------------------------------------------------------------------------------------------


def rayhistory_command() -> str:
    beside = Path(sys.executable).parent / "rayhistory"
    found = str(beside) if beside.exists() else shutil.which("rayhistory")
    assert found, "the rayhistory command is not installed (pip install -e .)"
    return found


@functools.cache
def cli_help(subcommand: str) -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
    """(every flag, the required ones, those taking a value), read from the real `rayhistory <sub> --help`."""
    done = subprocess.run([rayhistory_command(), subcommand, "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    usage = " ".join(done.stdout.split("\n\n")[0].split())
    every = set(re.findall(r"(?<![\w-])(--[a-z0-9][a-z0-9-]*)", usage)) - {"--help"}
    optional = set(re.findall(r"\[(--[a-z0-9][a-z0-9-]*)", usage))
    valued = set(re.findall(r"(--[a-z0-9][a-z0-9-]*) [A-Z][A-Z0-9_]*", usage))
    assert "--archive" in every, f"cannot read the flags of `rayhistory {subcommand} --help`:\n{done.stdout}"
    return frozenset(every), frozenset(every - optional), frozenset(valued)


def check_flags(argv: list[str], subcommand: str) -> dict[str, str | None]:
    every, required, valued = cli_help(subcommand)
    given: dict[str, str | None] = {}
    i = 0
    while i < len(argv):
        flag, eq, value = argv[i].partition("=")
        assert flag in every, f"{flag} is not a flag of `rayhistory {subcommand}` (its --help: {sorted(every)})"
        if flag in valued and not eq:
            i += 1
            assert i < len(argv) and not argv[i].startswith("--"), f"{flag} needs a value"
            value = argv[i]
        given[flag] = value if flag in valued else None
        i += 1
    assert required <= set(given), f"`rayhistory {subcommand}` requires {sorted(required - set(given))}"
    return given


def collector_argv(container: dict[str, Any]) -> list[str] | None:
    """The arguments of `rayhistory collect` in a container."""
    command, args = list(container.get("command", [])), list(container.get("args", []))
    if command[:2] == ["rayhistory", "collect"]:
        return command[2:] + args
    return None


def collectors(template: dict[str, Any]) -> list[dict[str, Any]]:
    spec = template["spec"]
    return [c for c in spec.get("initContainers", []) + spec["containers"] if collector_argv(c) is not None]


def substituted(value: str, env: dict[str, str]) -> str:
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env[m.group(1)], value)


def sample_env(container: dict[str, Any], docs: tuple[dict[str, Any], ...]) -> dict[str, str]:
    """The container's environment as the kubelet would build it, with stand-ins for Secrets and the downward API."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(
                {
                    source.get("prefix", "") + k: v
                    for k, v in configmap(docs, source["configMapRef"]["name"]).get("data", {}).items()
                }
            )
    for e in container.get("env", []):
        ref = e.get("valueFrom", {})
        if "configMapKeyRef" in ref:
            env[e["name"]] = configmap(docs, ref["configMapKeyRef"]["name"])["data"][ref["configMapKeyRef"]["key"]]
        else:
            env[e["name"]] = e.get("value", f"<{e['name']}>")
    return env


def configmap(docs: tuple[dict[str, Any], ...], name: str) -> dict[str, Any]:
    found = [o for o in docs if o["kind"] == "ConfigMap" and o["metadata"]["name"] == name]
    assert len(found) == 1, f"ConfigMap {name} is referred to but not defined alongside"
    return found[0]


def test_collector_sidecars_pass_flags_that_rayhistory_collect_knows() -> None:
    from collector import cli as collect_cli
    from collector.settings import CollectorSettings

    templates = ray_pod_templates()
    assert len(templates) >= 4  # head and workers, of the RayCluster and of the RayJob
    for where, _, template, docs in templates:
        (sidecar,) = collectors(template)
        argv = collector_argv(sidecar)
        given = check_flags(argv, "collect")
        assert given["--session-dir"] == "/tmp/ray/session_latest", where
        assert given["--archive"] == "$(RAYHISTORY_ARCHIVE)" and given["--cluster"] == "$(RAY_CLUSTER_NAME)", where
        # The same arguments through the CLI's own parser and settings: types, and no abbreviated flags.
        parser = argparse.ArgumentParser(prog="rayhistory collect", allow_abbrev=False)
        collect_cli.add_arguments(parser)
        args, extra = parser.parse_known_args([substituted(a, sample_env(sidecar, docs)) for a in argv])
        assert not extra, f"{where}: `rayhistory collect` does not take {extra}"
        CollectorSettings(
            **{
                f.name: getattr(args, f.name)
                for f in dataclasses.fields(CollectorSettings)
                if getattr(args, f.name) is not None
            }
        )


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


# --- the collector in the Ray pods ----------------------------------------------------------------------------


@functools.cache
def ray_stop_flags() -> frozenset[str]:
    ray = Path(sys.executable).parent / "ray"
    if not ray.exists():
        pytest.fail(
            f"the ray command is missing beside {sys.executable}: install the test extras "
            "(`make install`, i.e. pip install -e '.[test]')",
            pytrace=False,
        )
    done = subprocess.run([str(ray), "stop", "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return frozenset(re.findall(r"(--[a-z][a-z-]*)", done.stdout))


def test_grace_period_covers_ray_stop_and_the_final_flush() -> None:
    from collector.settings import CollectorSettings

    default_deadline = next(
        f.default for f in dataclasses.fields(CollectorSettings) if f.name == "final_flush_deadline"
    )
    for where, _, template, _ in ray_pod_templates():
        spec = template["spec"]
        ray = spec["containers"][0]
        stop = ray["lifecycle"]["preStop"]["exec"]["command"]
        assert stop[:2] == ["ray", "stop"], f"{where}: the Ray container must run `ray stop` before it is killed"
        assert set(a for a in stop[2:] if a.startswith("--")) <= ray_stop_flags(), stop
        stop_grace = int(stop[stop.index("--grace-period") + 1])
        (sidecar,) = collectors(template)
        given = check_flags(collector_argv(sidecar), "collect")
        deadline = float(given.get("--final-flush-deadline") or default_deadline)
        grace = spec["terminationGracePeriodSeconds"]
        assert grace >= stop_grace + deadline + SHUTDOWN_MARGIN, (
            f"{where}: terminationGracePeriodSeconds {grace} < ray stop's {stop_grace} s + the final flush's "
            f"{deadline:.0f} s + {SHUTDOWN_MARGIN} s"
        )
        assert deadline <= default_deadline + 60, "a deadline this long keeps deleted pods around for minutes"


def test_ray_pods_write_export_events_to_a_volume_the_collector_reads() -> None:
    for where, _obj, template, _ in ray_pod_templates():
        spec = template["spec"]
        ray = spec["containers"][0]
        assert ray["image"].startswith("rayproject/ray:"), f"{where}: KubeRay takes the first container as Ray's"
        env = {e["name"]: e.get("value") for e in ray.get("env", [])}
        assert env.get("RAY_enable_export_api_write") == "1", where
        (sidecar,) = collectors(template)
        assert sidecar in spec.get("initContainers", []) and sidecar.get("restartPolicy") == "Always", (
            f"{where}: the collector must be a native sidecar, so it is stopped after Ray"
        )
        volumes = {v["name"]: v for v in spec["volumes"]}
        shared = {m["name"] for m in ray["volumeMounts"] if m["mountPath"] == "/tmp/ray"}
        assert shared and shared == {m["name"] for m in sidecar["volumeMounts"] if m["mountPath"] == "/tmp/ray"}
        assert all("emptyDir" in volumes[n] for n in shared), where
        assert not any(m.get("readOnly") for m in sidecar["volumeMounts"]), "the checkpoint lives on that volume"
        env = {e["name"]: e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") for e in sidecar["env"]}
        assert env["POD_NAMESPACE"] == "metadata.namespace", where
        assert env["RAY_CLUSTER_NAME"] == "metadata.labels['ray.io/cluster']", where
        # The sidecar starts before Ray creates its session directory: the collector must wait for it, for longer
        # than Ray takes to start (its own test: tests/test_collector.py, --wait-for-session).
        given = check_flags(collector_argv(sidecar), "collect")
        assert float(given.get("--wait-for-session") or 0) >= 600, where
        security = sidecar["securityContext"]
        assert security["runAsNonRoot"] and security["allowPrivilegeEscalation"] is False
        assert security["readOnlyRootFilesystem"] and security["capabilities"]["drop"] == ["ALL"]


# --- references -----------------------------------------------------------------------------------------------


@functools.cache
def documented_secrets() -> dict[str, frozenset[str]]:
    """Secrets the manifests expect to exist: those deploy/README.md tells you to create, with their keys."""
    text = (DEPLOY / "README.md").read_text().replace("\\\n", " ")
    secrets: dict[str, frozenset[str]] = {}
    for line in text.splitlines():
        m = re.search(r"kubectl create secret generic (\S+)", line)
        if m:
            secrets[m.group(1)] = frozenset(re.findall(r"--from-literal=([A-Za-z_][A-Za-z0-9_]*)=", line))
    return secrets


def var_references(value: str) -> list[str]:
    """The $(VAR) the kubelet expands in a value ($$ escapes a $)."""
    found, i = [], 0
    while i < len(value):
        if value.startswith("$$", i):
            i += 2
        elif value.startswith("$(", i):
            end = value.find(")", i)
            found.append(value[i + 2 : end])
            i = end + 1
        else:
            i += 1
    return found


def test_every_env_label_volume_port_and_secret_reference_resolves() -> None:
    problems: list[str] = []
    secrets = documented_secrets()
    for where, obj, template, docs in every_pod_template():
        spec = template["spec"]
        labels = set((template.get("metadata") or {}).get("labels", {}))
        if obj["kind"] in RAY_KINDS:
            labels |= KUBERAY_POD_LABELS
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for v in volumes.values():
            if "configMap" in v:
                configmap(docs, v["configMap"]["name"])
        if "serviceAccountName" in spec and obj["kind"] not in RAY_KINDS:
            assert any(
                o["kind"] == "ServiceAccount" and o["metadata"]["name"] == spec["serviceAccountName"] for o in docs
            ), f"{where}: no ServiceAccount {spec['serviceAccountName']}"
        for container in spec.get("initContainers", []) + spec["containers"]:
            at = f"{where} container {container['name']}"
            defined: set[str] = set()
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    defined |= {
                        source.get("prefix", "") + k
                        for k in configmap(docs, source["configMapRef"]["name"]).get("data", {})
                    }
                if "secretRef" in source:
                    name = source["secretRef"]["name"]
                    if name not in secrets:
                        problems.append(f"{at}: Secret {name} is neither defined nor documented in deploy/README.md")
                    defined |= {source.get("prefix", "") + k for k in secrets.get(name, ())}
            for e in container.get("env", []):
                for var in var_references(e.get("value", "")):
                    if var not in defined:
                        problems.append(f"{at}: env {e['name']} refers to $({var}), not defined before it")
                ref = e.get("valueFrom", {})
                if "configMapKeyRef" in ref:
                    r = ref["configMapKeyRef"]
                    if r["key"] not in configmap(docs, r["name"]).get("data", {}):
                        problems.append(f"{at}: ConfigMap {r['name']} has no key {r['key']}")
                if "secretKeyRef" in ref:
                    r = ref["secretKeyRef"]
                    if r["key"] not in secrets.get(r["name"], ()):
                        problems.append(
                            f"{at}: Secret {r['name']} key {r['key']} is not in deploy/README.md's "
                            "`kubectl create secret` command"
                        )
                if "fieldRef" in ref:
                    m = DOWNWARD_FIELDS.match(ref["fieldRef"]["fieldPath"])
                    if not m:
                        problems.append(f"{at}: the downward API has no field {ref['fieldRef']['fieldPath']}")
                    elif m.group(4) and m.group(3) == "labels" and m.group(4) not in labels:
                        problems.append(f"{at}: the pod has no label {m.group(4)}")
                defined.add(e["name"])
            for value in container.get("command", []) + container.get("args", []):
                for var in var_references(value):
                    if var not in defined:
                        problems.append(f"{at}: $({var}) is not in the container's environment (left as is)")
            for mount in container.get("volumeMounts", []):
                if mount["name"] not in volumes:
                    problems.append(f"{at}: no volume {mount['name']}")
            ports = {p.get("name") for p in container.get("ports", [])}
            for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                port = (container.get(probe) or {}).get("httpGet", {}).get("port")
                if isinstance(port, str) and port not in ports:
                    problems.append(f"{at}: {probe} uses port {port}, which the container does not name")
    assert not problems, "\n".join(problems)
    assert secrets, "deploy/README.md must show how to create the credentials Secret"


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


def test_images_are_the_versions_this_repository_pins() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()  # tomllib is 3.11+, the project supports 3.10
    version = re.search(r'^version = "([^"]+)"', pyproject, re.M).group(1)
    (ray_pin,) = set(re.findall(r'"ray==([^"]+)"', pyproject))
    allowed = {f"rayhistory:{version}", f"rayproject/ray:{ray_pin}", OAUTH2_PROXY_IMAGE}
    seen = set()
    for where, obj, template, _ in every_pod_template():
        for container in template["spec"].get("initContainers", []) + template["spec"]["containers"]:
            assert container["image"] in allowed, f"{where}: image {container['image']} (expected one of {allowed})"
            seen.add(container["image"])
        if obj["kind"] in RAY_KINDS:
            cluster = obj["spec"] if obj["kind"] == "RayCluster" else obj["spec"]["rayClusterSpec"]
            assert cluster["rayVersion"] == ray_pin, where
    assert seen == allowed


# --- the archive settings -------------------------------------------------------------------------------------


def test_examples_use_the_same_archive_settings_as_the_base_and_the_same_cluster() -> None:
    (base,) = [o for o in rendered("base") if o["kind"] == "ConfigMap"]
    for name in EXAMPLES:
        assert configmap(example(name), "rayhistory-archive")["data"] == base["data"], name
    (cluster,) = [o for o in example("raycluster-with-collector.yaml") if o["kind"] == "RayCluster"]
    (job,) = [o for o in example("rayjob-with-collector.yaml") if o["kind"] == "RayJob"]
    assert job["spec"]["rayClusterSpec"] == cluster["spec"], "the RayJob's cluster drifted from the RayCluster example"
    assert job["spec"]["shutdownAfterJobFinishes"] is True


def test_the_oss_overlay_makes_boto3_address_oss_as_it_requires(monkeypatch: pytest.MonkeyPatch) -> None:
    from archive.storage import open_store

    (config,) = [o for o in rendered("oss") if o["kind"] == "ConfigMap"]
    data = config["data"]
    assert re.fullmatch(r"https://s3\.oss-[a-z0-9-]+\.aliyuncs\.com", data["AWS_ENDPOINT_URL"]), data
    assert data["RAYHISTORY_S3_ADDRESSING_STYLE"] == "virtual"
    for key in [k for k in os.environ if k.startswith(("AWS_", "RAYHISTORY_S3_"))]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test-secret")
    for key, value in data.items():
        monkeypatch.setenv(key, value)
    store = open_store(data["RAYHISTORY_ARCHIVE"])  # builds the client; nothing is sent
    client = store._client
    assert client.meta.config.s3["addressing_style"] == "virtual"
    assert client.meta.config.request_checksum_calculation == "when_required"
    assert client.meta.config.response_checksum_validation == "when_required"
    bucket = data["RAYHISTORY_ARCHIVE"].removeprefix("s3://").split("/")[0]
    url = client.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"})
    host = data["AWS_ENDPOINT_URL"].removeprefix("https://")
    assert url.startswith(f"https://{bucket}.{host}/k?"), url


@pytest.fixture(scope="module", autouse=True)
def _report(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if capture is not None and REPORT:
        with capture.global_and_fixture_disabled():
            print(
                f"\ndeploy manifests: rendered with {REPORT.get('renderer', '-')}; core kinds checked with "
                f"{REPORT.get('core', '-')}; KubeRay kinds against the CRDs in {CRD_DIR}"
            )
