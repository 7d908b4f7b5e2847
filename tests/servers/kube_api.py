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
"""

from __future__ import annotations

import base64
import json
import secrets
import socket
import ssl
import tempfile
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

HOST = "127.0.0.1"
USER = "system:serviceaccount:ray-system:rayhistory"
VERSION_INFO = {
    "major": "1",
    "minor": "34",
    "gitVersion": "v1.34.1",
    "gitCommit": "0" * 40,
    "gitTreeState": "clean",
    "buildDate": "2026-09-09T12:00:00Z",
    "goVersion": "go1.24.6",
    "compiler": "gc",
    "platform": "linux/amd64",
}
VERBS = ["delete", "deletecollection", "get", "list", "patch", "create", "update", "watch"]


def load_crds(directory: Path) -> list[dict[str, Any]]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the CRDs are megabytes of YAML
    return [yaml.load(p.read_text(), Loader=loader) for p in sorted(Path(directory).glob("*.yaml"))]


def status_object(code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """Kubernetes' Status, the body of every error it answers."""
    doc: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
    }
    if details is not None:
        doc["details"] = details
    doc["code"] = code
    return doc


@dataclass(frozen=True)
class AccessRule:
    """A binding, as RBAC would hold it: `kind` User or Group `name` may use `verbs` on `resource` in `api_group`
    in `namespace` ("*": every namespace, a ClusterRoleBinding). `allow=False` is an explicit denial."""

    kind: str
    name: str
    namespace: str
    verbs: tuple[str, ...] = ("get", "list", "watch")
    api_group: str = "ray.io"
    resource: str = "rayclusters"
    allow: bool = True


REVIEW_PATH = "/apis/authorization.k8s.io/v1/subjectaccessreviews"
REVIEW_SPEC_KEYS = {"user", "groups", "uid", "extra", "resourceAttributes", "nonResourceAttributes"}
RESOURCE_ATTRIBUTE_KEYS = {
    "namespace",
    "verb",
    "group",
    "version",
    "resource",
    "subresource",
    "name",
    "fieldSelector",
    "labelSelector",
}


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
        self.ca_pem, cert, key = _certificates(Path(self._dir.name))
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

    # -- the API --------------------------------------------------------------------------------------------------

    def _resources(self) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """(crd, version) for every served version of every CRD."""
        return [(c, v) for c in self.crds for v in c["spec"]["versions"] if v.get("served")]

    def answer(self, path: str, query: dict[str, list[str]], authorization: str | None) -> tuple[int, Any]:
        if path in ("/healthz", "/livez", "/readyz"):
            return 200, "ok"
        if path == "/version":
            return 200, VERSION_INFO
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(token.strip().encode(), self.token.encode()):
            return 401, status_object(401, "Unauthorized", "Unauthorized")
        parts = [p for p in path.split("/") if p]
        if parts == ["api"]:
            return 200, {
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": f"{HOST}:{self.port}"}],
            }
        if parts == ["api", "v1"]:
            return 200, {
                "kind": "APIResourceList",
                "groupVersion": "v1",
                "resources": [
                    {
                        "name": "namespaces",
                        "singularName": "namespace",
                        "namespaced": False,
                        "kind": "Namespace",
                        "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
                        "shortNames": ["ns"],
                    },
                    {
                        "name": "secrets",
                        "singularName": "secret",
                        "namespaced": True,
                        "kind": "Secret",
                        "verbs": VERBS,
                    },
                ],
            }
        if parts[:3] == ["api", "v1", "namespaces"] and len(parts) == 6 and parts[4] == "secrets":
            return self._secret(parts[3], parts[5])
        if parts == ["apis"]:
            return 200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": self._groups()}
        if parts[:1] == ["apis"] and len(parts) == 2:
            group = next((g for g in self._groups() if g["name"] == parts[1]), None)
            return (200, {"kind": "APIGroup", "apiVersion": "v1", **group}) if group else _not_found()
        if parts[:1] == ["apis"] and len(parts) == 3:
            return self._resource_list(parts[1], parts[2])
        if parts[:1] == ["apis"] and len(parts) >= 4:
            if query.get("watch", ["false"])[0] in ("true", "1"):
                return 400, status_object(400, "BadRequest", "this test server does not implement watch")
            group, version, rest = parts[1], parts[2], parts[3:]
            namespace = None
            if rest[0] == "namespaces" and len(rest) >= 3:
                namespace, rest = rest[1], rest[2:]
            if len(rest) in (1, 2):
                return self._read(group, version, rest[0], namespace, rest[1] if len(rest) == 2 else None)
        return _not_found()

    def create(self, path: str, body: bytes, content_type: str, authorization: str | None) -> tuple[int, Any]:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(token.strip().encode(), self.token.encode()):
            return 401, status_object(401, "Unauthorized", "Unauthorized")
        if path != REVIEW_PATH:
            return 405, status_object(
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the "
                "requested resource (this test server creates only subjectaccessreviews)",
                {},
            )
        # kube-apiserver reads a body without Content-Type as its first serializer's, JSON.
        if content_type.split(";")[0].strip() not in ("", "application/json"):
            return 415, status_object(
                415,
                "UnsupportedMediaType",
                "the body of the request was in an unknown format - accepted media types include: application/json",
                {},
            )
        try:
            review = json.loads(body)
        except ValueError as e:
            return 400, status_object(400, "BadRequest", f"the request body is not JSON: {e}")
        self.reviews.append(review)
        if not self.may_review:
            return 403, status_object(
                403,
                "Forbidden",
                (
                    f'subjectaccessreviews.authorization.k8s.io is forbidden: User "{USER}" cannot create resource '
                    '"subjectaccessreviews" in API group "authorization.k8s.io" at the cluster scope'
                ),
                {"group": "authorization.k8s.io", "kind": "subjectaccessreviews"},
            )
        problem = _review_problem(review)
        if problem:
            status = 422 if problem.startswith("spec") else 400
            return status, status_object(status, "Invalid" if status == 422 else "BadRequest", problem)
        spec = review["spec"]
        attributes = spec["resourceAttributes"]
        subjects = {("User", spec.get("user") or "")} | {("Group", g) for g in spec.get("groups") or []}
        matching = [
            r
            for r in self.access_rules
            if (r.kind, r.name) in subjects
            and r.namespace in ("*", attributes.get("namespace", ""))
            and attributes.get("verb") in r.verbs
            and attributes.get("group", "") == r.api_group
            and attributes.get("resource") == r.resource
        ]
        status_part: dict[str, Any] = {"allowed": False}
        denial = next((r for r in matching if not r.allow), None)
        grant = next((r for r in matching if r.allow), None)
        if denial is not None:
            status_part = {
                "allowed": False,
                "denied": True,
                "reason": f'denied by policy for {denial.kind} "{denial.name}"',
            }
        elif grant is not None:
            binding = (
                f'ClusterRoleBinding "{grant.name}-ray-viewer"'
                if grant.namespace == "*"
                else f'RoleBinding "{grant.name}-ray-viewer/{grant.namespace}"'
            )
            status_part = {
                "allowed": True,
                "reason": f'RBAC: allowed by {binding} of ClusterRole "ray-viewer" to {grant.kind} "{grant.name}"',
            }
        return 201, {
            "kind": "SubjectAccessReview",
            "apiVersion": "authorization.k8s.io/v1",
            "metadata": {"creationTimestamp": None},
            "spec": spec,
            "status": status_part,
        }

    def _secret(self, namespace: str, name: str) -> tuple[int, Any]:
        if namespace in self.forbidden_namespaces:
            return 403, status_object(
                403,
                "Forbidden",
                f'secrets "{name}" is forbidden: User "{USER}" cannot get resource "secrets" in API group "" in the '
                f'namespace "{namespace}"',
                {"name": name, "kind": "secrets"},
            )
        data = self.secrets.get((namespace, name))
        if data is None:
            return 404, status_object(404, "NotFound", f'secrets "{name}" not found', {"name": name, "kind": "secrets"})
        return 200, {
            "kind": "Secret",
            "apiVersion": "v1",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"secret/{namespace}/{name}")),
                "resourceVersion": str(self.resource_version),
                "creationTimestamp": "2026-11-25T20:00:00Z",
            },
            "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
            "type": "Opaque",
        }

    def _groups(self) -> list[dict[str, Any]]:
        groups: dict[str, dict[str, Any]] = {}
        for crd, version in self._resources():
            group = crd["spec"]["group"]
            entry = groups.setdefault(group, {"name": group, "versions": []})
            gv = {"groupVersion": f"{group}/{version['name']}", "version": version["name"]}
            if gv not in entry["versions"]:
                entry["versions"].append(gv)
            if version.get("storage"):
                entry["preferredVersion"] = gv
        return list(groups.values())

    def _resource_list(self, group: str, version: str) -> tuple[int, Any]:
        resources = []
        for crd, v in self._resources():
            if crd["spec"]["group"] != group or v["name"] != version:
                continue
            names, namespaced = crd["spec"]["names"], crd["spec"]["scope"] == "Namespaced"
            resources.append(
                {
                    "name": names["plural"],
                    "singularName": names["singular"],
                    "namespaced": namespaced,
                    "kind": names["kind"],
                    "verbs": VERBS,
                    "shortNames": names.get("shortNames", []),
                    "categories": names.get("categories", []),
                    "storageVersionHash": base64.b64encode(names["plural"].encode()[:8]).decode(),
                }
            )
            if "status" in (v.get("subresources") or {}):
                resources.append(
                    {
                        "name": f"{names['plural']}/status",
                        "singularName": "",
                        "namespaced": namespaced,
                        "kind": names["kind"],
                        "verbs": ["get", "patch", "update"],
                    }
                )
        if not resources:
            return _not_found()
        return 200, {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": f"{group}/{version}",
            "resources": resources,
        }

    def _read(self, group: str, version: str, plural: str, namespace: str | None, name: str | None):
        crd = next(
            (
                c
                for c, v in self._resources()
                if c["spec"]["group"] == group and v["name"] == version and c["spec"]["names"]["plural"] == plural
            ),
            None,
        )
        if crd is None:
            return _not_found()
        verb = "get" if name else "list"
        if namespace in self.forbidden_namespaces or (namespace is None and self.forbidden_namespaces):
            scope = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
            subject = f'{plural}.{group} "{name}"' if name else f"{plural}.{group}"
            details = {"name": name, "group": group, "kind": plural} if name else {"group": group, "kind": plural}
            return 403, status_object(
                403,
                "Forbidden",
                (
                    f'{subject} is forbidden: User "{USER}" cannot {verb} resource "{plural}" in API group "{group}" '
                    f"{scope}"
                ),
                details,
            )
        kind = crd["spec"]["names"]["kind"]
        items = [
            self._served(o)
            for o in self.objects
            if o.get("kind") == kind
            and o.get("apiVersion") == f"{group}/{version}"
            and (namespace is None or o["metadata"].get("namespace") == namespace)
        ]
        if name is not None:
            found = [o for o in items if o["metadata"]["name"] == name]
            if not found:
                return 404, status_object(
                    404,
                    "NotFound",
                    f'{plural}.{group} "{name}" not found',
                    {"name": name, "group": group, "kind": plural},
                )
            return 200, found[0]
        return 200, {
            "apiVersion": f"{group}/{version}",
            "items": items,
            "kind": crd["spec"]["names"]["listKind"],
            "metadata": {"continue": "", "resourceVersion": str(self.resource_version)},
        }

    def _served(self, obj: dict[str, Any]) -> dict[str, Any]:
        """The object as the API server returns it: with the metadata it fills in on create."""
        served = json.loads(json.dumps(obj))
        meta = served["metadata"]
        meta.setdefault("uid", str(uuid.uuid5(uuid.NAMESPACE_URL, f"{meta.get('namespace')}/{meta['name']}")))
        meta.setdefault("resourceVersion", str(self.resource_version - 1 - self.objects.index(obj)))
        meta.setdefault("generation", 1)
        meta.setdefault("creationTimestamp", "2026-11-25T20:00:00Z")
        return served


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        # A client that refuses our certificate or hangs up is what some tests do; anything else is a bug here.
        if not isinstance(sys.exc_info()[1], (ssl.SSLError, ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


def _review_problem(review: Any) -> str | None:
    """What kube-apiserver would refuse in a SubjectAccessReview (and unknown fields, which it would drop)."""
    if not isinstance(review, dict):
        return "the body is not an object"
    unknown = set(review) - {"apiVersion", "kind", "metadata", "spec"}
    if unknown:
        return f"unknown fields {sorted(unknown)} in SubjectAccessReview"
    if (review.get("apiVersion"), review.get("kind")) != ("authorization.k8s.io/v1", "SubjectAccessReview"):
        return (
            f"the object is {review.get('kind')!r} of {review.get('apiVersion')!r}, not SubjectAccessReview of "
            "authorization.k8s.io/v1"
        )
    spec = review.get("spec")
    if not isinstance(spec, dict):
        return "spec: Required value"
    unknown = set(spec) - REVIEW_SPEC_KEYS
    if unknown:
        return f"unknown fields {sorted(unknown)} in SubjectAccessReview.spec"
    if ("resourceAttributes" in spec) == ("nonResourceAttributes" in spec):
        return (
            "spec.resourceAttributes: Invalid value: exactly one of nonResourceAttributes or resourceAttributes "
            "must be specified"
        )
    if not spec.get("user") and not spec.get("groups"):
        return 'spec.user: Invalid value: "": at least one of user or group must be specified'
    attributes = spec.get("resourceAttributes")
    if isinstance(attributes, dict) and set(attributes) - RESOURCE_ATTRIBUTE_KEYS:
        return f"unknown fields {sorted(set(attributes) - RESOURCE_ATTRIBUTE_KEYS)} in spec.resourceAttributes"
    return None


def _not_found() -> tuple[int, Any]:
    return 404, status_object(404, "NotFound", "the server could not find the requested resource", {})


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


def _certificates(directory: Path) -> tuple[bytes, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it: (CA PEM, certificate file, key file)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.now(timezone.utc)

    def builder(subject: str, issuer: str, public_key: Any) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=1))
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        builder("kubernetes", "kubernetes", ca_key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        builder("kube-apiserver", "kubernetes", key.public_key())
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.IPAddress(ipaddress.ip_address(HOST)),
                    x509.DNSName("localhost"),
                    x509.DNSName("kubernetes.default.svc"),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_pem = ca.public_bytes(serialization.Encoding.PEM)
    cert_file, key_file = directory / "apiserver.crt", directory / "apiserver.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return ca_pem, cert_file, key_file


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
