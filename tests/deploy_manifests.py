"""deploy/ as the tests see it: rendered as `kubectl apply -k` would, its pod templates, and the flags a manifest
passes to `rayhistory collect` and `rayhistory serve` (read from the real --help). Shared by tests/test_deploy_*.py.

Rendering: `kubectl kustomize` when kubectl is installed, else a small loader of the kustomization (resources,
namespace, labels, configMapGenerator: the only features deploy/ uses, and the loader refuses any other); when
kubectl is there the loader is compared with it (tests/test_deploy_validation.py), so the fallback cannot drift.
Which one ran is printed at the end of each module that imports the `_report` fixture.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

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


def cluster_spec(obj: dict[str, Any]) -> dict[str, Any]:
    spec = obj.get("spec") or {}
    return {"RayCluster": spec, "RayJob": spec.get("rayClusterSpec"), "RayService": spec.get("rayClusterConfig")}.get(
        obj["kind"]
    ) or {}


def kuberay_injected(obj: dict[str, Any]) -> bool:
    """KubeRay adds the collector itself (spec.historyServerOptions): its templates hold no collector."""
    return obj["kind"] in RAY_KINDS and bool(cluster_spec(obj).get("historyServerOptions"))


def ray_pod_templates() -> list[tuple[str, dict[str, Any], dict[str, Any], tuple[dict[str, Any], ...]]]:
    """The Ray pod templates that carry the collector sidecar themselves (rayhistory inject's way)."""
    return [t for t in every_pod_template() if t[1]["kind"] in RAY_KINDS and not kuberay_injected(t[1])]


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
