"""deploy/ rendered and validated offline as the API server would: the kustomizations render (and the test's
loader agrees with `kubectl kustomize`); KubeRay's kinds against the CRDs' OpenAPI v3 schemas (KubeRay 1.7,
$RAYHISTORY_KUBERAY_CRDS, default ../shared/k8s/crds beside the repository) with every field the API server would
prune treated as an error; core kinds, the Ray pods' templates and every object's metadata with kubernetes-validate's
strict schemas (bundled in the wheel)."""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest

try:
    import kubernetes_validate
    from kubernetes_validate.utils import latest_version as _kv_latest
except ImportError:  # the fallback checks apiVersion, kind and metadata only (reported at the end)
    kubernetes_validate = None

from tests.deploy_manifests import (
    CRD_DIR,
    KUSTOMIZATIONS,
    MIN_KUBERNETES,
    RAY_KINDS,
    REPORT,
    _docs,
    _report,  # noqa: F401  (a fixture: prints which renderer and schemas ran)
    _strip_hash,
    every_object,
    every_pod_template,
    example,
    kubectl_render,
    load_kustomization,
    rendered,
)


@pytest.mark.parametrize("name", sorted(KUSTOMIZATIONS))
def test_kustomizations_render_and_the_loader_agrees_with_kubectl(name: str) -> None:
    objects = rendered(name)
    kinds = sorted(o["kind"] for o in objects)
    assert kinds == [
        "ClusterRole",
        "ClusterRole",
        "ClusterRole",
        "ClusterRoleBinding",
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
    for where, _, template, _ in [t for t in every_pod_template() if t[1]["kind"] in RAY_KINDS]:
        wrapped = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "template"}, "template": template}
        problems[where + " (as a PodTemplate)"] = core_errors(wrapped, version)
    assert not {w: p for w, p in problems.items() if p}, json.dumps(problems, indent=1)


def test_the_core_check_refuses_unknown_fields() -> None:
    deployment = copy.deepcopy(next(o for o in rendered("base") if o["kind"] == "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    assert any("'livenesProbe' was unexpected" in e for e in core_errors(deployment, MIN_KUBERNETES))
