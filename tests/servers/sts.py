"""A protocol-faithful Alibaba Cloud STS test server: AssumeRoleWithOIDC, the call ACK's RRSA relies on.

STS cannot run here, so this is a fake at the network edge, written from Alibaba's API reference (STS
2015-04-01, AssumeRoleWithOIDC) and the request `alibabacloud-credentials` sends (provider/oidc.py). It is a real
HTTP server on 127.0.0.1 that:
- takes the RPC call as STS does, unsigned (the OIDC token is the proof): parameters in the query (GET, as the
  SDK sends them) or a form body (POST), `Action`, `Version=2015-04-01`, `Format=JSON`, `RoleArn`,
  `OIDCProviderArn`, `OIDCToken`, `RoleSessionName` (2 to 64 of `[A-Za-z0-9.@_-]`), `DurationSeconds` (900 to
  the role's maximum, 3600 here), optional `Policy` and `Timestamp`;
- checks the role, the provider and the token against what it was told (an unknown token is refused as an
  invalid OIDC token);
- answers `{RequestId, AssumedRoleUser{Arn, AssumedRoleId}, OIDCTokenInfo{Subject, Issuer, ClientIds},
  Credentials{AccessKeyId, AccessKeySecret, SecurityToken, Expiration}}`, Expiration as `YYYY-MM-DDTHH:MM:SSZ`;
  errors as `{RequestId, HostId, Code, Message, Recommend}` with STS's HTTP status (the codes are named after
  Alibaba's error list; not checked against the live service).

Test knobs, each a deviation the tests rely on and say so: `lifetime_s` issues credentials shorter-lived than STS's
15-minute minimum (so they expire mid-run); `on_issue` lets a test register each new key pair with the service
that must accept it (SeaweedFS, the SLS test server); `session_tokens=False` answers an empty SecurityToken, for
SeaweedFS, which takes any X-Amz-Security-Token for one of its own STS tokens and refuses the request.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

ACCOUNT = "1234567890123456"
_SESSION_NAME = re.compile(r"^[A-Za-z0-9.@_-]{2,64}$")
MAX_SESSION_S = 3600  # the role's MaxSessionDuration


@dataclass(frozen=True)
class Issued:
    access_key_id: str
    access_key_secret: str
    security_token: str
    expiration: int  # epoch seconds, as the Expiration string says
    session_name: str


@dataclass
class StsServer:
    role_arn: str = f"acs:ram::{ACCOUNT}:role/rayhistory-collector"
    provider_arn: str = f"acs:ram::{ACCOUNT}:oidc-provider/ack-rrsa-c0ffee"
    oidc_tokens: set[str] = field(default_factory=set)  # tokens "the cluster's OIDC issuer" signed
    lifetime_s: float | None = None  # None: what DurationSeconds asks, as STS does
    session_tokens: bool = True
    delay_s: float = 0.0  # answer this much later (a slow STS)
    on_issue: Callable[[Issued], None] | None = None
    issued: list[Issued] = field(default_factory=list)
    requests: list[dict[str, str]] = field(default_factory=list)
    _faults: list[tuple[int, str]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _httpd: ThreadingHTTPServer | None = None
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def new_oidc_token(self) -> str:
        """A token as the kubelet projects it (a JWT's shape; its content is not read)."""
        token = "eyJhbGciOiJSUzI1NiJ9." + secrets.token_urlsafe(48) + "." + secrets.token_urlsafe(64)
        self.oidc_tokens.add(token)
        return token

    def fail_next(self, times: int, status: int = 503, code: str = "ServiceUnavailable") -> None:
        with self._lock:
            self._faults.extend([(status, code)] * times)

    def lookup(self, access_key_id: str) -> Issued | None:
        with self._lock:
            return next((i for i in self.issued if i.access_key_id == access_key_id), None)

    def start(self) -> StsServer:
        server = self

        class Handler(_Handler):
            sts = server

        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        threading.Thread(target=self._httpd.serve_forever, name="sts-test-server", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    # --- the API ---------------------------------------------------------------------------------------
    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        params = dict(parse_qsl(urlsplit(target).query, keep_blank_values=True))
        if method == "POST" and headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            params.update(parse_qsl(body.decode(), keep_blank_values=True))
        elif method not in ("GET", "POST"):
            return _error(405, "UnsupportedHTTPMethod", f"{method} is not supported")
        if self.delay_s:
            time.sleep(self.delay_s)
        with self._lock:
            self.requests.append(params)
            if self._faults:
                return _error(*self._faults.pop(0), "injected by the test")
        for name in ("Action", "Version", "RoleArn", "OIDCProviderArn", "OIDCToken", "RoleSessionName"):
            if not params.get(name):
                return _error(400, f"Missing{name}", f"{name} is mandatory for this action.")
        if params["Action"] != "AssumeRoleWithOIDC":
            return _error(400, "InvalidAction.NotFound", f"Specified api {params['Action']} is not found")
        if params["Version"] != "2015-04-01":
            return _error(400, "InvalidVersion", f"Specified version {params['Version']} is not valid")
        if params.get("Format", "XML").upper() != "JSON":
            return _error(400, "InvalidParameter.Format", "the STS test server answers JSON only (Format=JSON)")
        if not _SESSION_NAME.match(params["RoleSessionName"]):
            return _error(400, "InvalidParameter.RoleSessionName", "RoleSessionName is 2-64 of [A-Za-z0-9.@_-]")
        try:
            duration = int(params.get("DurationSeconds", "3600"))
        except ValueError:
            duration = -1
        if not 900 <= duration <= MAX_SESSION_S:
            return _error(400, "InvalidParameter.DurationSeconds", f"DurationSeconds must be in [900, {MAX_SESSION_S}]")
        if params["OIDCProviderArn"] != self.provider_arn:
            return _error(
                404, "EntityNotExist.OIDCProvider", f"The OIDC provider does not exist: {params['OIDCProviderArn']}"
            )
        if params["RoleArn"] != self.role_arn:
            return _error(404, "EntityNotExist.Role", f"The role does not exist: {params['RoleArn']}")
        if params["OIDCToken"] not in self.oidc_tokens:
            return _error(400, "AuthenticationFail.OIDCToken.Invalid", "The OIDC token is invalid.")
        expiration = int(time.time() + (self.lifetime_s if self.lifetime_s is not None else duration))
        issued = Issued(
            "STS." + secrets.token_hex(10).upper(),
            secrets.token_urlsafe(30),
            ("CAIS" + secrets.token_urlsafe(96)) if self.session_tokens else "",
            expiration,
            params["RoleSessionName"],
        )
        if self.on_issue:
            self.on_issue(issued)  # before the answer: the key works once the client has it
        with self._lock:
            self.issued.append(issued)
        role = self.role_arn.rsplit("/", 1)[1]
        return 200, {
            "RequestId": str(uuid.uuid4()).upper(),
            "AssumedRoleUser": {
                "Arn": f"acs:ram::{ACCOUNT}:role/{role}/{issued.session_name}",
                "AssumedRoleId": f"3{secrets.token_hex(8)}:{issued.session_name}",
            },
            "OIDCTokenInfo": {
                "Subject": "system:serviceaccount:ray:rayhistory",
                "Issuer": "https://oidc-ack.test",
                "ClientIds": "sts.aliyuncs.com",
            },
            "Credentials": {
                "AccessKeyId": issued.access_key_id,
                "AccessKeySecret": issued.access_key_secret,
                "SecurityToken": issued.security_token,
                "Expiration": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expiration)),
            },
        }


def _error(status: int, code: str, message: str) -> tuple[int, dict[str, Any]]:
    return status, {
        "RequestId": str(uuid.uuid4()).upper(),
        "HostId": "sts.aliyuncs.com",
        "Code": code,
        "Message": message,
        "Recommend": "https://api.aliyun.com/troubleshoot?q=" + code,
    }


class _Handler(BaseHTTPRequestHandler):
    sts: StsServer
    protocol_version = "HTTP/1.1"

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, answer = self.sts.handle(self.command, self.path, headers, body)
        payload = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json;charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the stdlib's name)
        pass


@contextlib.contextmanager
def running_sts(**kwargs: Any) -> Iterator[StsServer]:
    server = StsServer(**kwargs).start()
    try:
        yield server
    finally:
        server.stop()
