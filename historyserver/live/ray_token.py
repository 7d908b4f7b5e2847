"""Ray's token for a live RayCluster that uses token authentication, read from its Secret through the Kubernetes API.

KubeRay (`spec.authOptions.mode: token`) gives the Ray containers RAY_AUTH_TOKEN from the Secret named
`spec.authOptions.secretName`, or the cluster's own name, key `auth_token`. The proxy in front of the cluster's
dashboard sends that token on the user's behalf, so the server's identity needs `get` on that Secret (and nothing
else on Secrets: it never lists them).
"""

from __future__ import annotations

import base64
import threading
import time
from typing import Any

from historyserver.live.kube import KubernetesUnavailable, LiveClusters, explain_api_error

TOKEN_KEY = "auth_token"
SECRET_RBAC_HINT = (
    "grant the history server's service account get on secrets in that namespace "
    "(deploy/base/rbac.yaml: rayhistory-ray-token-reader)"
)


def token_secret(cluster: dict[str, Any]) -> str | None:
    """The name of the Secret holding the cluster's Ray token, or None when the cluster does not use token auth."""
    options = (cluster.get("spec") or {}).get("authOptions") or {}
    if options.get("mode") != "token":
        return None
    return options.get("secretName") or (cluster.get("metadata") or {}).get("name")


class RayTokens:
    """Tokens by (namespace, secret), reused for `ttl` seconds so a page's dozens of API calls read the Secret once."""

    def __init__(self, live: LiveClusters, ttl: float = 30.0) -> None:
        self.live = live
        self.ttl = ttl
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str], tuple[float, str]] = {}

    def token(self, namespace: str, cluster: dict[str, Any]) -> str | None:
        secret = token_secret(cluster)
        if secret is None:
            return None
        key = (namespace, secret)
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None and time.monotonic() - hit[0] < self.ttl:
                return hit[1]
        value = self._read(namespace, secret)
        with self._lock:
            self._cache[key] = (time.monotonic(), value)
        return value

    def _read(self, namespace: str, secret: str) -> str:
        from kubernetes import client

        api, host = self.live.api_client()
        settings = self.live.settings
        try:
            found = client.CoreV1Api(api).read_namespaced_secret(
                secret, namespace, _request_timeout=(settings.connect_timeout, settings.read_timeout)
            )
        except Exception as e:  # noqa: BLE001 - the client's errors are translated, others re-raised
            if getattr(e, "status", None) == 404:
                raise KubernetesUnavailable(
                    f"the RayCluster's token Secret {namespace}/{secret} does not exist; KubeRay creates it for "
                    "spec.authOptions.mode token (or set spec.authOptions.secretName to the Secret you made)"
                ) from e
            explained = explain_api_error(e, host, f"get secret {secret} in namespace {namespace}", SECRET_RBAC_HINT)
            if explained is None:
                raise
            raise explained from e
        encoded = (found.data or {}).get(TOKEN_KEY)
        if not encoded:
            raise KubernetesUnavailable(
                f"the Secret {namespace}/{secret} has no key {TOKEN_KEY}: Ray's token goes there"
            )
        return base64.b64decode(encoded).decode().strip()
