"""The live RayClusters, RayJobs and RayServices, read from the Kubernetes API (KubeRay's ray.io/v1 resources).

Each row links the object to its live Ray dashboard and to the archived sessions of the RayCluster it runs, so a
user sees what runs now next to what the archive holds.

Settings (environment variables):
  RAYHISTORY_KUBERNETES              off | in-cluster | kubeconfig[:PATH]. Default: in-cluster when
                                     KUBERNETES_SERVICE_HOST is set (the server runs in a pod), else off.
                                     `kubeconfig` alone reads $KUBECONFIG or ~/.kube/config.
  RAYHISTORY_KUBERNETES_NAMESPACE    namespaces to list, comma-separated. Default: every namespace, which needs a
                                     ClusterRole; a Role in each listed namespace is enough otherwise.
  RAYHISTORY_DASHBOARD_URL_TEMPLATE  the URL of a live cluster's dashboard, with the placeholders {service},
                                     {service_ip}, {namespace}, {cluster} and {port} (the head service's dashboard
                                     port). Default: http://{service}.{namespace}.svc:{port}, reachable from inside
                                     the Kubernetes cluster; set e.g. https://ray.example.com/{namespace}/{cluster}/
                                     behind an ingress.

The server's identity needs `list` and `watch` on rayclusters, rayjobs and rayservices in API group ray.io.
"""

from __future__ import annotations

import os
import ssl
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from historyserver.errors import HistoryError

GROUP, VERSION = "ray.io", "v1"
KINDS = (("RayCluster", "rayclusters"), ("RayJob", "rayjobs"), ("RayService", "rayservices"))
MODES = ("off", "in-cluster", "kubeconfig")
DEFAULT_DASHBOARD_URL_TEMPLATE = "http://{service}.{namespace}.svc:{port}"
RAY_DASHBOARD_PORT = "8265"  # Ray's default, for a head whose status does not list its endpoints yet
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
RBAC_HINT = (
    "grant the history server's service account list and watch on rayclusters, rayjobs and rayservices in API "
    "group ray.io (a ClusterRole to list every namespace, or a Role in each namespace named in "
    "RAYHISTORY_KUBERNETES_NAMESPACE)"
)


class KubernetesUnavailable(HistoryError):
    """The Kubernetes API could not be asked: not configured, unreachable, or it refused (RBAC)."""

    status = 503


@dataclass(frozen=True)
class LiveSettings:
    mode: str = "off"
    kubeconfig: str | None = None  # None: $KUBECONFIG or ~/.kube/config
    namespaces: tuple[str, ...] = ()  # empty: every namespace
    dashboard_url_template: str = DEFAULT_DASHBOARD_URL_TEMPLATE
    ttl: float = 5.0  # seconds a listing (or a failure) is reused: pages poll, the API server should not feel it
    connect_timeout: float = 3.0
    read_timeout: float = 10.0
    service_account_dir: str = SERVICE_ACCOUNT_DIR

    @classmethod
    def from_settings(cls, settings: Any, environ: Mapping[str, str] = os.environ, **overrides: Any) -> LiveSettings:
        """From the server's --kubernetes, --kubernetes-namespace and --dashboard-url-template; an empty
        --kubernetes means in-cluster inside a pod (Kubernetes sets KUBERNETES_SERVICE_HOST there), else off."""
        default = "in-cluster" if environ.get("KUBERNETES_SERVICE_HOST") else "off"
        mode, kubeconfig = parse_mode(settings.kubernetes or default)
        namespaces = tuple(n.strip() for n in settings.kubernetes_namespace.split(",") if n.strip())
        template = settings.dashboard_url_template or DEFAULT_DASHBOARD_URL_TEMPLATE
        return cls(
            mode=mode, kubeconfig=kubeconfig, namespaces=namespaces, dashboard_url_template=template, **overrides
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ, **overrides: Any) -> LiveSettings:
        """The same settings read from RAYHISTORY_ variables alone (through the server's one mechanism)."""
        from historyserver.settings import ServerSettings

        return cls.from_settings(ServerSettings.load({"archive": "(unused)"}, environ), environ, **overrides)


def parse_mode(value: str) -> tuple[str, str | None]:
    """`off`, `in-cluster`, `kubeconfig` or `kubeconfig:PATH` -> (mode, kubeconfig path or None)."""
    mode, _, path = value.strip().partition(":")
    if mode not in MODES or (path and mode != "kubeconfig"):
        raise KubernetesUnavailable(
            f"RAYHISTORY_KUBERNETES={value!r} is not one of off, in-cluster, kubeconfig or kubeconfig:PATH"
        )
    return mode, (os.path.expanduser(path) if path else None)


@dataclass
class LiveRow:
    kind: str  # RayCluster, RayJob or RayService
    namespace: str
    name: str
    state: str
    created: int | None  # ms since the epoch, as the sessions API counts
    ray_cluster: str | None  # the RayCluster it runs on now (itself for a RayCluster)
    dashboard_url: str | None  # None when that RayCluster or its head service is not there
    message: str | None = None
    pending_ray_cluster: str | None = None  # a RayService's next cluster, while it upgrades
    sessions: list[dict[str, Any]] = field(default_factory=list)  # archived sessions of those RayClusters

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class LiveClusters:
    def __init__(self, settings: LiveSettings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._api: Any = None
        self._client: Any = None  # the ApiClient under _api, shared by other APIs (Secrets, for Ray's tokens)
        self._raw: dict[tuple[str, str], dict[str, Any]] = {}  # the last listing's RayCluster objects
        self._host = "the Kubernetes API server"
        self._cached: tuple[float, list[LiveRow] | KubernetesUnavailable] | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ, **overrides: Any) -> LiveClusters:
        return cls(LiveSettings.from_env(environ, **overrides))

    @property
    def enabled(self) -> bool:
        return self.settings.mode != "off"

    def list(self, catalog: Any = None, base_url: str = "") -> list[LiveRow]:
        """Every live object (by kind, then namespace and age), with the catalog's archived sessions when given one."""
        if not self.enabled:
            return []
        with self._lock:  # one listing at a time: concurrent page loads share it instead of each asking
            if self._cached is None or time.monotonic() - self._cached[0] > self.settings.ttl:
                try:
                    result: list[LiveRow] | KubernetesUnavailable = self._list_objects()
                except KubernetesUnavailable as e:
                    result = e  # reused for the ttl too, so an unreachable API server does not stall every page
                self._cached = (time.monotonic(), result)
            result = self._cached[1]
        if isinstance(result, KubernetesUnavailable):
            raise result
        return link_sessions(result, catalog, base_url) if catalog is not None else [replace(r) for r in result]

    def _list_objects(self) -> list[LiveRow]:
        objects = {kind: self._list_kind(plural) for kind, plural in KINDS}
        if all(items is None for items in objects.values()):
            raise KubernetesUnavailable(
                f"{self._host} serves none of rayclusters, rayjobs, rayservices in {GROUP}/{VERSION}: "
                "install KubeRay's CRDs (v1.0 or later)"
            )
        self._raw = {(_meta(o, "namespace"), _meta(o, "name")): o for o in objects["RayCluster"] or []}
        clusters = [_cluster_row(o, self.settings.dashboard_url_template) for o in objects["RayCluster"] or []]
        by_name = {(r.namespace, r.name): r for r in clusters}
        jobs = [_job_row(o, by_name) for o in objects["RayJob"] or []]
        services = [_service_row(o, by_name) for o in objects["RayService"] or []]
        return clusters + jobs + services

    def cluster(self, namespace: str, name: str) -> tuple[LiveRow, dict[str, Any]] | None:
        """One live RayCluster (its row and the object KubeRay keeps), from the cached listing; None when absent."""
        rows = self.list()
        with self._lock:
            raw = self._raw.get((namespace, name))
        row = next((r for r in rows if r.kind == "RayCluster" and (r.namespace, r.name) == (namespace, name)), None)
        return (row, raw) if row is not None and raw is not None else None

    def api_client(self) -> tuple[Any, str]:
        """The ApiClient the listings use, and the API server's address (for other reads: a cluster's Secret)."""
        self._connect()
        return self._client, self._host

    def _list_kind(self, plural: str) -> list[dict[str, Any]] | None:
        """The objects of one kind, or None when the API server does not serve it (an older KubeRay)."""
        api = self._connect()
        timeout = (self.settings.connect_timeout, self.settings.read_timeout)
        items: list[dict[str, Any]] = []
        # Without a limit the API server answers the whole list at once; a few thousand objects stay small.
        for namespace in self.settings.namespaces or (None,):
            try:
                if namespace is None:
                    listing = api.list_cluster_custom_object(GROUP, VERSION, plural, _request_timeout=timeout)
                else:
                    listing = api.list_namespaced_custom_object(
                        GROUP, VERSION, namespace, plural, _request_timeout=timeout
                    )
            except Exception as e:  # noqa: BLE001 - the client's errors are translated, others re-raised
                if _status(e) == 404:
                    return None
                explained = self._explain(e, plural, namespace)
                if explained is None:
                    raise
                raise explained from e
            items.extend(listing.get("items") or [])
        return sorted(items, key=lambda o: (_meta(o, "namespace"), _meta(o, "creationTimestamp"), _meta(o, "name")))

    def _connect(self) -> Any:
        if self._api is not None:
            return self._api
        from kubernetes import client

        api, self._host = api_client(self.settings)
        self._client = api
        self._api = client.CustomObjectsApi(api)
        return self._api

    def _explain(self, error: Exception, plural: str, namespace: str | None) -> KubernetesUnavailable | None:
        where = f"in namespace {namespace}" if namespace else "in all namespaces"
        return explain_api_error(error, self._host, f"list {plural}.{GROUP} {where}", f"RBAC: {RBAC_HINT}")


def api_client(settings: LiveSettings) -> tuple[Any, str]:
    """A client of the Kubernetes API for the configured mode, and the API server's address."""
    try:
        from kubernetes import client, config
    except ImportError as e:
        raise KubernetesUnavailable("the kubernetes package is missing: pip install 'rayhistory[server]'") from e
    configuration = client.Configuration()
    try:
        if settings.mode == "in-cluster":
            account = Path(settings.service_account_dir)
            loader = config.incluster_config.InClusterConfigLoader(
                token_filename=str(account / "token"), cert_filename=str(account / "ca.crt")
            )
            loader.load_and_set(configuration)  # re-reads the token as the kubelet rotates it
        else:
            config.load_kube_config(
                config_file=settings.kubeconfig, client_configuration=configuration, persist_config=False
            )
    except Exception as e:  # noqa: BLE001 - the loaders raise ConfigException, OSError, YAML and type errors
        where = (
            "in-cluster service account"
            if settings.mode == "in-cluster"
            else (f"kubeconfig {settings.kubeconfig or '($KUBECONFIG or ~/.kube/config)'}")
        )
        raise KubernetesUnavailable(
            f"cannot load the {where}: {e}; check RAYHISTORY_KUBERNETES, or set it to off"
        ) from e
    # One attempt per request: the next page load is the retry, and a dead API server must fail within the
    # timeouts, not after urllib3's default three retries of each.
    configuration.retries = 0
    return client.ApiClient(configuration), configuration.host


def explain_api_error(error: Exception, host: str, action: str, rbac_hint: str) -> KubernetesUnavailable | None:
    """The client's error on `action` as a KubernetesUnavailable saying what to check; None for an error that is
    neither the API server's answer nor the network's (a bug: re-raised by the caller)."""
    import urllib3

    status = _status(error)
    if status is None:
        if isinstance(getattr(error, "reason", None), (urllib3.exceptions.SSLError, ssl.SSLError)):
            return KubernetesUnavailable(
                f"TLS to the Kubernetes API server at {host} failed ({_reason(error)}); check the "
                "certificate authority in the kubeconfig or the service account's ca.crt"
            )
        if isinstance(error, urllib3.exceptions.HTTPError):
            return KubernetesUnavailable(
                f"cannot reach the Kubernetes API server at {host} ({_reason(error)}); check the "
                "RAYHISTORY_KUBERNETES configuration and that this pod's network may reach the API server"
            )
        return None
    body = getattr(error, "body", None) or ""
    detail = _status_message(body) or getattr(error, "reason", "") or ""
    if status == 401:
        return KubernetesUnavailable(
            f"the Kubernetes API server at {host} rejected our credentials (401 Unauthorized: {detail}); "
            "check the service account token or the kubeconfig's user"
        )
    if status == 403:
        return KubernetesUnavailable(
            f"the Kubernetes API server refused to {action} (403 Forbidden: {detail}); {rbac_hint}"
        )
    if status == 0:  # the client's wrapping of a TLS failure
        last_line = (detail.splitlines() or [""])[-1]
        return KubernetesUnavailable(
            f"TLS to the Kubernetes API server at {host} failed ({last_line}); check the "
            "certificate authority in the kubeconfig or the service account's ca.crt"
        )
    return KubernetesUnavailable(f"the Kubernetes API server answered {status} when asked to {action}: {detail}")


def link_sessions(rows: list[LiveRow], catalog: Any, base_url: str = "") -> list[LiveRow]:
    """Copies of rows, each with the archived sessions of the RayClusters it runs (newest first, as the catalog)."""
    by_cluster: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for entry in catalog.sessions():
        by_cluster.setdefault((entry.manifest.namespace, entry.manifest.cluster), []).append(entry.summary(base_url))
    linked = []
    for row in rows:
        names = [n for n in (row.ray_cluster, row.pending_ray_cluster) if n]
        sessions = [s for n in dict.fromkeys(names) for s in by_cluster.get((row.namespace, n), [])]
        linked.append(replace(row, sessions=sessions))
    return linked


def _cluster_row(obj: dict[str, Any], template: str) -> LiveRow:
    status = obj.get("status") or {}
    state = status.get("state") or _state_from_conditions(status.get("conditions") or [])
    namespace, name = _meta(obj, "namespace"), _meta(obj, "name")
    return LiveRow(
        kind="RayCluster",
        namespace=namespace,
        name=name,
        state=state,
        created=_created(obj),
        ray_cluster=name,
        dashboard_url=_dashboard_url(template, namespace, name, status),
        message=status.get("reason") or _false_condition_message(status.get("conditions") or []),
    )


def _state_from_conditions(conditions: list[dict[str, Any]]) -> str:
    # KubeRay deprecates status.state for these conditions; newer operators may leave state empty.
    true = {c.get("type") for c in conditions if c.get("status") == "True"}
    if "RayClusterSuspended" in true:
        return "suspended"
    if "RayClusterSuspending" in true:
        return "suspending"
    if {"HeadPodReady", "RayClusterProvisioned"} <= true:
        return "ready"
    return "pending"


def _false_condition_message(conditions: list[dict[str, Any]]) -> str | None:
    for c in conditions:
        if c.get("status") == "False" and c.get("message"):
            return f"{c.get('type')}: {c['message']}"
    return None


def _dashboard_url(template: str, namespace: str, cluster: str, status: dict[str, Any]) -> str | None:
    head = status.get("head") or {}
    service, service_ip = head.get("serviceName"), head.get("serviceIP")
    if not service and not service_ip:
        return None  # the head service does not exist yet
    port = (status.get("endpoints") or {}).get("dashboard") or RAY_DASHBOARD_PORT
    if not service and template == DEFAULT_DASHBOARD_URL_TEMPLATE:
        template = "http://{service_ip}:{port}"
    values = {"service": service, "service_ip": service_ip, "namespace": namespace, "cluster": cluster, "port": port}
    try:
        return template.format(**{k: v for k, v in values.items() if v})
    except (KeyError, IndexError, ValueError):
        return None  # the template needs a value this cluster's status does not have yet


def _job_row(obj: dict[str, Any], clusters: dict[tuple[str, str], LiveRow]) -> LiveRow:
    status = obj.get("status") or {}
    parts = [status.get("jobDeploymentStatus"), status.get("jobStatus")]
    namespace, cluster = _meta(obj, "namespace"), status.get("rayClusterName") or None
    live = clusters.get((namespace, cluster or ""))
    return LiveRow(
        kind="RayJob",
        namespace=namespace,
        name=_meta(obj, "name"),
        state="/".join(p for p in parts if p) or "New",
        created=_created(obj),
        ray_cluster=cluster,
        dashboard_url=live.dashboard_url if live else None,
        message=status.get("message") or status.get("reason") or None,
    )


def _service_row(obj: dict[str, Any], clusters: dict[tuple[str, str], LiveRow]) -> LiveRow:
    status = obj.get("status") or {}
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    ready = conditions.get("Ready") or {}
    state = status.get("serviceStatus") or ("Ready" if ready.get("status") == "True" else "NotReady")
    if (conditions.get("UpgradeInProgress") or {}).get("status") == "True":
        state += " (upgrading)"
    namespace = _meta(obj, "namespace")
    active = (status.get("activeServiceStatus") or {}).get("rayClusterName") or None
    pending = (status.get("pendingServiceStatus") or {}).get("rayClusterName") or None
    live = clusters.get((namespace, active or pending or ""))
    return LiveRow(
        kind="RayService",
        namespace=namespace,
        name=_meta(obj, "name"),
        state=state,
        created=_created(obj),
        ray_cluster=active or pending,
        pending_ray_cluster=pending if active else None,
        dashboard_url=live.dashboard_url if live else None,
        message=ready.get("message") or ready.get("reason") or None,
    )


def _meta(obj: dict[str, Any], key: str) -> str:
    return (obj.get("metadata") or {}).get(key) or ""


def _created(obj: dict[str, Any]) -> int | None:
    stamp = _meta(obj, "creationTimestamp")
    try:
        return int(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() * 1000) if stamp else None
    except ValueError:
        return None


def _status(error: Exception) -> int | None:
    from kubernetes.client.exceptions import ApiException

    return error.status if isinstance(error, ApiException) else None


def _status_message(body: str) -> str | None:
    """The message of the Status object Kubernetes answers errors with."""
    import json

    try:
        doc = json.loads(body)
    except ValueError:
        return body.strip()[:300] or None
    return doc.get("message") if isinstance(doc, dict) else None


def _reason(error: Exception) -> str:
    reason = getattr(error, "reason", None)  # urllib3's MaxRetryError keeps the connection error here
    return str(reason or error)
