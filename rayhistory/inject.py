"""`rayhistory inject`: adds the collector to RayCluster, RayJob and RayService manifests, for clusters whose KubeRay
does not inject a collector itself (deploy/README.md shows both ways).

Every pod template (the head and each worker group) gets:
- the collector as a native sidecar (an init container with restartPolicy: Always): it starts before Ray and is
  stopped after the Ray container has exited, so its last upload sees Ray's last writes;
- Ray's temp dir `/tmp/ray` on an emptyDir named `ray-logs`, mounted by Ray and the collector: the name KubeRay gives
  the autoscaler's mount, so the autoscaler shares it (under another name KubeRay adds its own `ray-logs` emptyDir,
  and the autoscaler's logs are lost);
- `RAY_enable_export_api_write=1` on the Ray container (every Ray process reads it, drivers included);
- a preStop `ray stop` on the Ray container (KubeRay's PID 1 does not pass SIGTERM on to Ray's processes) and a
  terminationGracePeriodSeconds covering it plus the collector's final flush;
- the collector's /metrics and /healthz on the pod IP, on a named port (the sidecar's only network exposure).

The collector is configured by its environment alone (RAYHISTORY_* and the downward API). Injecting twice changes
nothing: the collector container is rebuilt from the arguments, everything else is added only when missing. What
the tool cannot handle safely it refuses, naming the object, the part and what to change, and writes nothing.
"""

from __future__ import annotations

import argparse
import copy
import sys
from importlib.metadata import PackageNotFoundError, version
from typing import Any, TextIO

import yaml

RAY_KINDS = {"RayCluster": ("spec",), "RayJob": ("spec", "rayClusterSpec"), "RayService": ("spec", "rayClusterConfig")}
COLLECTOR = "rayhistory-collector"
VOLUME = "ray-logs"  # KubeRay's name for the autoscaler's /tmp/ray volume (reference README 5c)
RAY_TMP = "/tmp/ray"
PORT, PORT_NAME = 8084, "rh-collector"  # 8084: the port KubeRay's own injection points Ray's event export at
RAY_STOP_GRACE = 15  # seconds `ray stop --grace-period` waits for Ray's processes
FINAL_FLUSH = 25  # the collector's --final-flush-deadline
MARGIN = 20  # process exits and the collector's settle time
RAY_UID, RAY_GID = 1000, 100  # rayproject/ray's user and group; the collector image runs as the same
FALSE = {"0", "false", "no", "off", ""}


class CannotInject(ValueError):
    """A manifest the tool will not change: the message names where and what to do."""


def default_image() -> str:
    try:
        return f"rayhistory-collector:{version('rayhistory')}"
    except PackageNotFoundError:  # run from a source tree without an install
        return "rayhistory-collector:latest"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Writes the manifests to stdout with the collector in every Ray pod (deploy/README.md, section 4B). "
        "Other kinds pass through unchanged; YAML comments are not kept. Injecting twice changes nothing."
    )
    parser.add_argument("-f", "--filename", required=True, help="YAML file (several documents allowed), or - for stdin")
    parser.add_argument("--archive", required=True, help="archive URL the collectors write to (s3://bucket/prefix)")
    parser.add_argument("--image", default=None, help=f"collector image (default: {default_image()})")
    parser.add_argument(
        "--env-from",
        action="append",
        default=[],
        metavar="KIND:NAME",
        help="configmap:NAME or secret:NAME whose keys become the collector's environment (credentials, "
        "AWS_ENDPOINT_URL, AWS_REGION, ...); repeatable",
    )


def run(args: argparse.Namespace, stdin: TextIO | None = None, stdout: TextIO | None = None) -> int:
    try:
        text = (stdin or sys.stdin).read() if args.filename == "-" else _read(args.filename)
        options = Options(args.archive, args.image or default_image(), [_env_from(e) for e in args.env_from])
        out = inject_text(text, options)
    except CannotInject as e:
        print(f"rayhistory inject: {e}", file=sys.stderr)
        return 2
    (stdout or sys.stdout).write(out)
    return 0


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as e:
        raise CannotInject(f"cannot read {path}: {e.strerror}") from None


def _env_from(value: str) -> dict[str, Any]:
    kind, _, name = value.partition(":")
    key = {"configmap": "configMapRef", "secret": "secretRef"}.get(kind.lower())
    if key is None or not name:
        raise CannotInject(f"--env-from {value!r}: give configmap:NAME or secret:NAME")
    return {key: {"name": name}}


class Options:
    def __init__(self, archive: str, image: str, env_from: list[dict[str, Any]]) -> None:
        if not archive:
            raise CannotInject("--archive is empty: give the archive URL, e.g. s3://bucket/prefix")
        self.archive, self.image, self.env_from = archive, image, env_from


def inject_text(text: str, options: Options) -> str:
    try:
        docs = list(yaml.safe_load_all(text))
    except yaml.YAMLError as e:
        raise CannotInject(f"the input is not YAML: {e}") from None
    docs = [d for d in docs if d is not None]
    if not docs:
        raise CannotInject("the input holds no YAML document")
    out = [inject(doc, options) for doc in docs]
    return yaml.safe_dump_all(out, sort_keys=False, default_flow_style=False, width=120)


def inject(doc: Any, options: Options) -> Any:
    """One document with the collector added (a copy); other kinds come back unchanged."""
    if not isinstance(doc, dict):
        raise CannotInject(f"a document is a {type(doc).__name__}, not a Kubernetes object")
    kind = doc.get("kind")
    if kind not in RAY_KINDS or not str(doc.get("apiVersion", "")).startswith("ray.io/"):
        return doc
    doc = copy.deepcopy(doc)
    name = f"{kind} {(doc.get('metadata') or {}).get('name', '(unnamed)')}"
    cluster: Any = doc
    for step in RAY_KINDS[kind]:
        cluster = cluster.get(step) if isinstance(cluster, dict) else None
    if not isinstance(cluster, dict):
        if kind == "RayJob" and (doc.get("spec") or {}).get("clusterSelector"):
            raise CannotInject(
                f"{name} runs on an existing cluster (spec.clusterSelector): inject into that RayCluster instead"
            )
        raise CannotInject(f"{name} has no {'.'.join(RAY_KINDS[kind])}: nothing to add the collector to")
    if cluster.get("historyServerOptions"):
        raise CannotInject(
            f"{name} already asks KubeRay to inject its collector (historyServerOptions): use one way, not both "
            "(deploy/README.md); remove historyServerOptions to use this command"
        )
    head = cluster.get("headGroupSpec")
    if not isinstance(head, dict):
        raise CannotInject(f"{name} has no headGroupSpec")
    groups = [("head", head)] + [
        (f"worker group {g.get('groupName', i)}", g) for i, g in enumerate(cluster.get("workerGroupSpecs") or [])
    ]
    for part, group in groups:
        _inject_group(f"{name} {part}", group, options)
    return doc


def _inject_group(where: str, group: dict[str, Any], options: Options) -> None:
    temp_dir = (group.get("rayStartParams") or {}).get("temp-dir")
    if temp_dir not in (None, RAY_TMP, RAY_TMP + "/"):
        raise CannotInject(
            f"{where}: rayStartParams temp-dir is {temp_dir!r}; the collector and KubeRay's autoscaler expect "
            f"Ray's temp dir at {RAY_TMP}: remove temp-dir"
        )
    spec = (group.get("template") or {}).get("spec")
    if not isinstance(spec, dict) or not spec.get("containers"):
        raise CannotInject(f"{where}: the pod template has no containers")
    ray = spec["containers"][0]  # KubeRay takes the first container as Ray's
    for c in spec["containers"][1:] + [c for c in spec.get("initContainers") or [] if c.get("name") != COLLECTOR]:
        if c.get("name") == "ray-history-collector" or list(c.get("command") or [])[:2] == ["rayhistory", "collect"]:
            raise CannotInject(
                f"{where}: container {c.get('name')!r} already collects this pod's logs; remove it, or use it alone"
            )
    _share_volume(where, spec, ray)
    _ray_env(where, ray)
    _ray_pre_stop(ray)
    grace = spec.get("terminationGracePeriodSeconds")
    needed = RAY_STOP_GRACE + FINAL_FLUSH + MARGIN
    if grace is None or grace < needed:
        spec["terminationGracePeriodSeconds"] = needed
    security = spec.setdefault("securityContext", {})
    security.setdefault("fsGroup", RAY_GID)  # the collector writes its checkpoint beside Ray's session directories
    inits = [c for c in spec.get("initContainers") or [] if c.get("name") != COLLECTOR]
    # First: a native sidecar must start before any init container that could run long (and before Ray).
    spec["initContainers"] = [_collector(options)] + inits


def _share_volume(where: str, spec: dict[str, Any], ray: dict[str, Any]) -> None:
    mounts = ray.setdefault("volumeMounts", [])
    at_tmp = [m for m in mounts if str(m.get("mountPath", "")).rstrip("/") == RAY_TMP]
    if at_tmp and at_tmp[0].get("name") != VOLUME:
        raise CannotInject(
            f"{where}: the Ray container mounts {RAY_TMP} from volume {at_tmp[0].get('name')!r}; rename that volume "
            f"to {VOLUME!r} (KubeRay mounts the volume of that name in its autoscaler container, which would "
            "otherwise log to a volume of its own)"
        )
    if at_tmp and at_tmp[0].get("readOnly"):
        raise CannotInject(f"{where}: the Ray container mounts {RAY_TMP} read-only; Ray must write there")
    if not at_tmp:
        mounts.append({"name": VOLUME, "mountPath": RAY_TMP})
    volumes = spec.setdefault("volumes", [])
    if not any(v.get("name") == VOLUME for v in volumes):
        volumes.append({"name": VOLUME, "emptyDir": {}})


def _ray_env(where: str, ray: dict[str, Any]) -> None:
    env = ray.setdefault("env", [])
    values = {e.get("name"): e.get("value") for e in env}
    if str(values.get("RAY_enable_ray_event", "")).lower() not in FALSE:
        raise CannotInject(
            f"{where}: the Ray container sets RAY_enable_ray_event, with which Ray 2.60 leaves its export-event "
            "files empty (it sends events over HTTP instead); remove it, or use KubeRay's injection "
            "(deploy/README.md), which receives them over HTTP"
        )
    if "RAY_enable_export_api_write" in values:
        if str(values["RAY_enable_export_api_write"]).lower() in FALSE:
            raise CannotInject(
                f"{where}: the Ray container sets RAY_enable_export_api_write={values['RAY_enable_export_api_write']!r}"
                "; the collector reads Ray's export events: set it to 1"
            )
        return
    env.append({"name": "RAY_enable_export_api_write", "value": "1"})


def _ray_pre_stop(ray: dict[str, Any]) -> None:
    lifecycle = ray.setdefault("lifecycle", {})
    if "preStop" not in lifecycle:  # a preStop of the user's own is theirs to keep
        lifecycle["preStop"] = {"exec": {"command": ["ray", "stop", "--grace-period", str(RAY_STOP_GRACE)]}}


def _collector(options: Options) -> dict[str, Any]:
    """The collector container, built whole from the options (so injecting again yields the same one)."""
    container: dict[str, Any] = {
        "name": COLLECTOR,
        "image": options.image,
        "restartPolicy": "Always",
        "command": ["rayhistory", "collect"],  # the image's entrypoint, spelled out for images built otherwise
        # Settings from the environment alone (README, Configuration); the session directory and waiting for Ray
        # to create it are the defaults. No probes: readiness would hold the Ray pod back, and liveness would
        # restart a collector that waits for an unreachable archive, which /healthz reports (503) instead.
        "env": [
            {"name": "RAYHISTORY_ARCHIVE", "value": options.archive},
            {"name": "RAYHISTORY_FINAL_FLUSH_DEADLINE", "value": str(FINAL_FLUSH)},
            {"name": "RAYHISTORY_HTTP_HOST", "value": "0.0.0.0"},  # /metrics and /healthz on the pod IP
            {"name": "RAYHISTORY_HTTP_PORT", "value": str(PORT)},
            {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "RAY_CLUSTER_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['ray.io/cluster']"}}},
        ],
        "ports": [{"name": PORT_NAME, "containerPort": PORT, "protocol": "TCP"}],
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RAY_UID,
            "runAsGroup": RAY_GID,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": VOLUME, "mountPath": RAY_TMP}],
    }
    if options.env_from:
        container["envFrom"] = copy.deepcopy(options.env_from)
    return container
