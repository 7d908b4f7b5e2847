"""Authorization by namespace: which namespaces' sessions a principal may see.

A policy is a callable (principal, namespace) -> bool. `file` reads a YAML mapping of users and groups to
namespaces; `kubernetes` asks the API server whether the principal may `get rayclusters.ray.io` in the namespace
(a SubjectAccessReview, answers cached for --authz-cache-ttl seconds).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from historyserver.access.principal import AccessConfigError, Principal
from historyserver.live.kube import KubernetesUnavailable, LiveSettings, api_client, explain_api_error

ANY_NAMESPACE = "*"
REVIEWED = {"group": "ray.io", "resource": "rayclusters", "verb": "get"}  # what seeing a namespace's sessions means
SAR_RBAC_HINT = (
    "RBAC: bind the history server's service account to a ClusterRole allowing create on "
    "subjectaccessreviews in API group authorization.k8s.io (deploy/base/rbac.yaml)"
)


class FileAuthz:
    """`users: {alice: [team-a]}` and `groups: {team-a-devs: [team-a], platform: ["*"]}`."""

    def __init__(self, users: dict[str, list[str]], groups: dict[str, list[str]]) -> None:
        self.users = {k: frozenset(v) for k, v in users.items()}
        self.groups = {k: frozenset(v) for k, v in groups.items()}

    @classmethod
    def from_file(cls, path: str) -> FileAuthz:
        where = f"--authz-file {path}"
        try:
            doc = yaml.safe_load(Path(path).read_text())
        except (OSError, UnicodeDecodeError) as e:
            raise AccessConfigError(f"{where}: cannot read it ({e})") from None
        except yaml.YAMLError as e:
            raise AccessConfigError(f"{where}: not valid YAML ({e})") from None
        return cls.from_dict(doc, where)

    @classmethod
    def from_dict(cls, doc: Any, where: str = "authz file") -> FileAuthz:
        example = 'e.g. users: {alice: [team-a]} and groups: {platform: ["*"]}'
        if not isinstance(doc, dict) or not doc:
            raise AccessConfigError(f"{where}: expected a mapping with users and/or groups; {example}")
        unknown = sorted(set(doc) - {"users", "groups"})
        if unknown:
            raise AccessConfigError(
                f"{where}: unknown key(s) {', '.join(map(str, unknown))}; only users and groups; {example}"
            )
        parts = {}
        for key in ("users", "groups"):
            mapping = doc.get(key) or {}
            if not isinstance(mapping, dict):
                raise AccessConfigError(f"{where}: {key} must map names to lists of namespaces; {example}")
            for name, namespaces in mapping.items():
                if not isinstance(namespaces, list) or not all(isinstance(n, str) and n for n in namespaces):
                    raise AccessConfigError(
                        f'{where}: {key}.{name} must be a list of namespace names ("*" for '
                        f"all), got {namespaces!r}; {example}"
                    )
            parts[key] = {str(k): v for k, v in mapping.items()}
        return cls(parts["users"], parts["groups"])

    def __call__(self, principal: Principal, namespace: str) -> bool:
        granted = set(self.users.get(principal.user, ()))
        for group in principal.groups:
            granted |= self.groups.get(group, frozenset())
        return ANY_NAMESPACE in granted or namespace in granted


class KubernetesAuthz:
    """A SubjectAccessReview per (user, groups, namespace), each answer reused for `ttl` seconds."""

    def __init__(self, settings: LiveSettings, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._answers: dict[tuple[str, tuple[str, ...], str], tuple[float, bool]] = {}
        self._api: Any = None
        self._host = "the Kubernetes API server"

    def __call__(self, principal: Principal, namespace: str) -> bool:
        key = (principal.user, tuple(sorted(principal.groups)), namespace)
        with self._lock:
            cached = self._answers.get(key)
        if cached is not None and self._clock() < cached[0]:
            return cached[1]
        allowed = self._review(principal, namespace)
        with self._lock:
            self._answers[key] = (self._clock() + self.ttl, allowed)
        return allowed

    def _review(self, principal: Principal, namespace: str) -> bool:
        from kubernetes import client

        if self._api is None:
            if self.settings.mode == "off":
                raise KubernetesUnavailable(
                    "--authz kubernetes needs the Kubernetes API: set RAYHISTORY_KUBERNETES "
                    "to in-cluster or kubeconfig[:PATH]"
                )
            api, self._host = api_client(self.settings)
            self._api = client.AuthorizationV1Api(api)
        body = client.V1SubjectAccessReview(
            api_version="authorization.k8s.io/v1",
            kind="SubjectAccessReview",
            spec=client.V1SubjectAccessReviewSpec(
                user=principal.user,
                groups=list(principal.groups) or None,
                resource_attributes=client.V1ResourceAttributes(namespace=namespace, **REVIEWED),
            ),
        )
        try:
            review = self._api.create_subject_access_review(
                body,
                _content_type="application/json",
                _request_timeout=(self.settings.connect_timeout, self.settings.read_timeout),
            )
        except Exception as e:  # noqa: BLE001 - the client's errors are translated, others re-raised
            explained = explain_api_error(
                e, self._host, "create subjectaccessreviews.authorization.k8s.io", SAR_RBAC_HINT
            )
            if explained is None:
                raise
            raise explained from e
        status = review.status
        return bool(status and status.allowed and not status.denied)
