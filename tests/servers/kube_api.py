"""A test server of the Kubernetes API, for KubeRay's ray.io resources.

No Kubernetes API server can run on this machine (no kube-apiserver or etcd binary in any registry it reaches, no
container runtime for kind or k3s), so this one answers, over real HTTPS on 127.0.0.1, the part of the protocol
the history server and the official client use, the way kube-apiserver does:
- TLS with a certificate signed by a CA generated at start (clients verify it: `ca_pem`, `write_kubeconfig`,
  `write_service_account`);
- bearer tokens (the scheme is case-insensitive, as the real authenticator's); anything else is a 401 Status;
  /version, /healthz, /livez and /readyz are public, as the default system:public-info-viewer role makes them;
- discovery (/api, /api/v1, /apis, /apis/{group}, /apis/{group}/{version}), built from the CRDs it is given;
- GET and LIST of the CRDs' served versions, cluster-wide and per namespace, in the exact list shape
  (apiVersion, kind `XList`, metadata.resourceVersion, items with the metadata the API server fills in);
- GET of core v1 Secrets (`secrets`: {(namespace, name): {key: bytes}}), in the Secret shape with base64 data; a
  404 NotFound Status for an unknown one, 403 in a forbidden namespace; secrets are never listed (the server has
  only `get` on them);
- 403 Forbidden Status for the namespaces it is told to forbid, as RBAC answers; a token denied any namespace holds
  no ClusterRole, so cluster-wide lists are refused then too.
- POST /apis/authorization.k8s.io/v1/subjectaccessreviews, answered from the AccessRules a test gives as the RBAC
  authorizer answers (201 with status.allowed and its reason; allowed false and no reason when no rule matches;
  denied true for a rule that denies, as a webhook authorizer may); 403 when the caller may not create reviews
  (`may_review`). Each body received is kept in `reviews`. It is stricter than kube-apiserver on one point: an
  unknown field is a 400 (the real one, by default, drops it with a warning), so a test sees exactly what was sent.
It ignores `limit` (the API allows a server to answer the whole list) and refuses watch with a 400 Status.

This module is the server (TLS socket, HTTP, authentication, routing) and its import surface for the tests; the
answers live beside it: kube_api_discovery.py, kube_api_objects.py (CRD objects and Secrets), kube_api_reviews.py
(SubjectAccessReviews and AccessRule), kube_api_status.py (Status bodies) and kube_api_tls.py (certificates).
"""

from __future__ import annotations

import base64
import json
import secrets
import socket
import ssl
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

from tests.servers import kube_api_discovery as discovery
from tests.servers import kube_api_objects as objects
from tests.servers.kube_api_discovery import VERBS, VERSION_INFO
from tests.servers.kube_api_reviews import REVIEW_PATH, AccessRule, review
from tests.servers.kube_api_status import USER, not_found, status_object
from tests.servers.kube_api_tls import certificates

# What tests import from here, wherever it is defined.
__all__ = [
    "HOST",
    "USER",
    "VERBS",
    "VERSION_INFO",
    "AccessRule",
    "KubeAPI",
    "closed_port",
    "load_crds",
    "silent_listener",
    "status_object",
]

HOST = "127.0.0.1"


def load_crds(directory: Path) -> list[dict[str, Any]]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the CRDs are megabytes of YAML
    return [yaml.load(p.read_text(), Loader=loader) for p in sorted(Path(directory).glob("*.yaml"))]


@dataclass
class KubeAPI:
    crds: list[dict[str, Any]]
    objects: list[dict[str, Any]] = field(default_factory=list)
    forbidden_namespaces: set[str] = field(default_factory=set)
    token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    requests: list[tuple[str, str]] = field(default_factory=list)  # (method, path?query) in the order received
    access_rules: list[AccessRule] = field(default_factory=list)
    reviews: list[dict[str, Any]] = field(default_factory=list)  # SubjectAccessReview bodies, as received
    secrets: dict[tuple[str, str], dict[str, bytes]] = field(default_factory=dict)
    may_review: bool = True
    resource_version: int = 48213
    _httpd: _Server | None = None
    _dir: tempfile.TemporaryDirectory | None = None
    ca_pem: bytes = b""

    @property
    def port(self) -> int:
        assert self._httpd is not None, "start() the server first"
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"https://{HOST}:{self.port}"

    def start(self) -> KubeAPI:
        self._dir = tempfile.TemporaryDirectory(prefix="kube-api-")
        self.ca_pem, cert, key = certificates(Path(self._dir.name), HOST)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        httpd = _Server((HOST, 0), _handler(self))
        # The handshake happens in each request's thread, so a client that never completes one blocks nobody.
        httpd.socket = context.wrap_socket(httpd.socket, server_side=True, do_handshake_on_connect=False)
        self._httpd = httpd
        threading.Thread(target=httpd.serve_forever, args=(0.05,), name="kube-api", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> KubeAPI:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def write_kubeconfig(self, path: Path, token: str | None = None, server: str | None = None) -> Path:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "preferences": {},
            "clusters": [
                {
                    "name": "test",
                    "cluster": {
                        "server": server or self.url,
                        "certificate-authority-data": base64.b64encode(self.ca_pem).decode(),
                    },
                }
            ],
            "users": [{"name": "rayhistory", "user": {"token": token or self.token}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": "rayhistory"}}],
            "current-context": "test",
        }
        path.write_text(yaml.safe_dump(config))
        return path

    def write_service_account(self, directory: Path, namespace: str = "ray-system") -> dict[str, str]:
        """What the kubelet mounts in a pod; returns the environment it sets for the API server's address."""
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "token").write_text(self.token)
        (directory / "ca.crt").write_bytes(self.ca_pem)
        (directory / "namespace").write_text(namespace)
        return {"KUBERNETES_SERVICE_HOST": HOST, "KUBERNETES_SERVICE_PORT": str(self.port)}

    # -- the API: authentication and routing; the answers are built in the kube_api_* modules ----------------------

    def _authenticated(self, authorization: str | None) -> bool:
        # The scheme is case-insensitive, as the real bearer-token authenticator's.
        scheme, _, token = (authorization or "").partition(" ")
        return scheme.lower() == "bearer" and secrets.compare_digest(token.strip().encode(), self.token.encode())

    def answer(self, path: str, query: dict[str, list[str]], authorization: str | None) -> tuple[int, Any]:
        if path in ("/healthz", "/livez", "/readyz"):
            return 200, "ok"
        if path == "/version":
            return 200, VERSION_INFO
        if not self._authenticated(authorization):
            return 401, status_object(401, "Unauthorized", "Unauthorized")
        parts = [p for p in path.split("/") if p]
        if parts == ["api"]:
            return 200, discovery.core_versions(f"{HOST}:{self.port}")
        if parts == ["api", "v1"]:
            return 200, discovery.core_resources()
        if parts[:3] == ["api", "v1", "namespaces"] and len(parts) == 6 and parts[4] == "secrets":
            return objects.secret(self, parts[3], parts[5])
        if parts == ["apis"]:
            return 200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": discovery.groups(self.crds)}
        if parts[:1] == ["apis"] and len(parts) == 2:
            return discovery.group(self.crds, parts[1])
        if parts[:1] == ["apis"] and len(parts) == 3:
            return discovery.resource_list(self.crds, parts[1], parts[2])
        if parts[:1] == ["apis"] and len(parts) >= 4:
            if query.get("watch", ["false"])[0] in ("true", "1"):
                return 400, status_object(400, "BadRequest", "this test server does not implement watch")
            group, version, rest = parts[1], parts[2], parts[3:]
            namespace = None
            if rest[0] == "namespaces" and len(rest) >= 3:
                namespace, rest = rest[1], rest[2:]
            if len(rest) in (1, 2):
                return objects.read(self, group, version, rest[0], namespace, rest[1] if len(rest) == 2 else None)
        return not_found()

    def create(self, path: str, body: bytes, content_type: str, authorization: str | None) -> tuple[int, Any]:
        if not self._authenticated(authorization):
            return 401, status_object(401, "Unauthorized", "Unauthorized")
        if path != REVIEW_PATH:
            return 405, status_object(
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the "
                "requested resource (this test server creates only subjectaccessreviews)",
                {},
            )
        return review(self, body, content_type)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        # A client that refuses our certificate or hangs up is what some tests do; anything else is a bug here.
        if not isinstance(sys.exc_info()[1], (ssl.SSLError, ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


def _handler(api: KubeAPI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the client's connection pool expects

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            split = urlsplit(self.path)
            api.requests.append(("GET", self.path))
            status, body = api.answer(split.path, parse_qs(split.query), self.headers.get("Authorization"))
            self._send(status, body)

        def _refuse(self) -> None:
            api.requests.append((self.command, self.path))
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            self._send(
                405,
                status_object(
                    405,
                    "MethodNotAllowed",
                    "the server does not allow this method on the requested resource (this test server only reads)",
                    {},
                ),
            )

        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            api.requests.append(("POST", self.path))
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status, answer = api.create(
                urlsplit(self.path).path, body, self.headers.get("Content-Type", ""), self.headers.get("Authorization")
            )
            self._send(status, answer)

        do_PUT = do_PATCH = do_DELETE = _refuse

        def _send(self, status: int, body: Any) -> None:
            raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header(
                "Content-Type", "text/plain; charset=utf-8" if isinstance(body, str) else "application/json"
            )
            self.send_header("Cache-Control", "no-cache, private")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
            pass

    return Handler


@contextmanager
def silent_listener() -> Iterator[int]:
    """A port that accepts TCP connections (the kernel's backlog does) and never answers: a hung API server."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        sock.listen(16)
        yield sock.getsockname()[1]


def closed_port() -> int:
    """A port nobody listens on: connections to it are refused."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]
