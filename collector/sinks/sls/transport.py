"""PutLogs over the standard library: the signed request the SLS SDK's `put_logs` sends, without importing the SDK.

Why not the SDK here: importing it (requests, urllib3, protobuf, dateparser) costs a sidecar about 25 MiB of memory
for one request shape, and the collector's budget is 80 MB. The request is the SDK's own, header for header
(aliyun/log/logclient.py `_send`, auth.py `AuthV1`, util.py; tests/test_sls_transport.py compares the two on the
wire): `POST /logstores/{ls}/shards/route?key=<hash>`, lz4 block without its size prefix, `x-log-bodyrawsize`,
`x-log-apiversion: 0.6.0`, `Host: {project}.{endpoint}`, Content-MD5, and the v1 signature

    Authorization: LOG <akid>:base64(hmac-sha1(secret, VERB\\nContent-MD5\\nContent-Type\\nDate\\n
                   <sorted x-log-*/x-acs-* headers but x-log-meta-*, each key:value\\n><resource>?<sorted k=v>))

with STS credentials' token in `x-acs-security-token` (signed). One attempt per request: a failure comes back as
SlsError and the sink's backoff governs (the SDK would retry 10 x 1 s). `rayhistory sls init` and log search still
use the SDK (client.py), where its import costs nothing that matters.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import hmac
import http.client
import json
import ssl
import threading
from urllib.parse import quote, urlsplit

import lz4.block

from archive.credentials import CredentialsError, CredentialSource

API_VERSION = "0.6.0"  # the SDK's aliyun/log/version.py
LZ4 = "lz4"  # x-log-compresstype (the SDK's CompressType.LZ4 as a string)
USER_AGENT = "rayhistory-collector"
# What a reused keep-alive connection raises when the server had closed it while idle.
_STALE = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)


class SlsError(RuntimeError):
    """SLS refused a request or could not be reached (one attempt; the sink retries)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"SLS answered {status} {code}: {message}")
        self.status, self.code = status, code

    @property
    def is_quota(self) -> bool:
        return self.status == 403 and "Quota" in self.code


def signed_headers(
    method: str,
    resource: str,
    params: dict[str, str],
    headers: dict[str, str],
    body: bytes,
    access_key_id: str,
    secret: str,
    token: str,
    date: str,
) -> dict[str, str]:
    """`headers` with what AuthV1.sign_request adds, in its order: token, signature method, Date, Content-MD5,
    Authorization, x-log-date."""
    out = dict(headers)
    if token:
        out["x-acs-security-token"] = token
    out["x-log-signaturemethod"] = "hmac-sha1"
    out["Date"] = date
    md5 = hashlib.md5(body).hexdigest().upper() if body else None
    if md5 is not None:
        out["Content-MD5"] = md5
    signed = [
        f"{k}:{out[k]}\n"
        for k in sorted(out)
        if k.lower().startswith("x-acs-")
        or (k.lower().startswith("x-log-") and not k.lower().startswith("x-log-meta-"))
    ]
    query = "?" + "&".join(f"{k}={v}" for k, v in sorted(params.items())) if params else ""
    text = f"{method}\n{md5 or ''}\n{out.get('Content-Type', '')}\n{date}\n{''.join(signed)}{resource}{query}"
    digest = hmac.new(secret.encode(), text.encode(), hashlib.sha1).digest()
    out["Authorization"] = f"LOG {access_key_id}:{base64.b64encode(digest).decode()}"
    out["x-log-date"] = date
    return out


class PutLogsClient:
    """PutLogs of already serialized LogGroups (wire.py, loggroup.py), one keep-alive connection per thread."""

    def __init__(
        self,
        endpoint: str,
        credentials: CredentialSource,
        timeout: float = 30.0,
        proxy: str | None = None,
        date=lambda: email.utils.formatdate(usegmt=True),  # the SDK's `%a, %d %b %Y %H:%M:%S GMT`
    ) -> None:
        scheme, _, rest = endpoint.strip().rpartition("://")
        self.https = scheme.lower() == "https"
        host = rest.split("/", 1)[0]
        self.host, _, port = host.partition(":")
        self.port = int(port) if port else (443 if self.https else 80)
        self.credentials, self.timeout, self.date = credentials, timeout, date
        self.proxy = urlsplit(proxy) if proxy else None
        self._local = threading.local()

    def put_log_group(self, project: str, logstore: str, body: bytes, hash_key: str) -> None:
        """One PutLogs (lz4, routed by `hash_key`); raises SlsError."""
        resource = f"/logstores/{logstore}/shards/route"
        params = {"key": hash_key}
        compressed = lz4.block.compress(body, store_size=False)
        headers = {
            "x-log-bodyrawsize": str(len(body)),
            "Content-Type": "application/x-protobuf",
            "x-log-compresstype": LZ4,
            "Content-Length": str(len(compressed)),
            "x-log-apiversion": API_VERSION,
            "Host": f"{project}.{self.host}",
        }
        try:
            c = self.credentials.get()
        except CredentialsError as e:  # STS refused or is unreachable; the sink retries
            raise SlsError(0, "Credentials", str(e)) from None
        headers = signed_headers(
            "POST",
            resource,
            params,
            headers,
            compressed,
            c.access_key_id,
            c.access_key_secret,
            c.security_token,
            self.date(),
        )
        headers["User-Agent"] = USER_AGENT
        target = resource + "?" + "&".join(f"{k}={quote(v, safe='')}" for k, v in params.items())
        self._request("POST", project, target, compressed, headers)

    def _request(self, method: str, project: str, target: str, body: bytes, headers: dict[str, str]) -> None:
        if self.proxy is not None and not self.https:  # a plain-HTTP proxy takes the absolute URL
            target = f"http://{project}.{self.host}:{self.port}{target}"
        for attempt in (0, 1):
            conn, reused = self._connection(project)
            try:
                conn.request(method, target, body, headers)
                response = conn.getresponse()
                status, payload = response.status, response.read()
                request_id = response.getheader("x-log-requestid", "")
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                self._local.conns.pop(project, None)
                if reused and attempt == 0 and isinstance(e, _STALE):
                    continue  # the server closed the idle keep-alive connection: once more on a new one
                raise SlsError(0, "LogRequestError", f"cannot reach {project}.{self.host}: {e}") from None
            break
        if response.will_close:
            conn.close()
            self._local.conns.pop(project, None)
        if status == 200:
            return
        try:
            answer = json.loads(payload)
            code, message = answer["errorCode"], answer["errorMessage"]
        except (ValueError, KeyError, TypeError):
            code, message = "LogRequestError", f"HTTP {status}: {payload[:200].decode('utf-8', 'replace')}"
        raise SlsError(status, str(code), f"{message} (request {request_id})" if request_id else str(message))

    def _connection(self, project: str) -> tuple[http.client.HTTPConnection, bool]:
        """This thread's connection for `project`, and whether it served a request before."""
        if not hasattr(self._local, "conns"):
            self._local.conns = {}
        conn: http.client.HTTPConnection | None = self._local.conns.get(project)
        if conn is not None:
            return conn, True
        host = f"{project}.{self.host}"
        if self.proxy is not None:
            proxy_host, proxy_port = self.proxy.hostname or "", self.proxy.port or 80
            if self.https:
                conn = http.client.HTTPSConnection(proxy_host, proxy_port, timeout=self.timeout, context=_tls())
                conn.set_tunnel(host, self.port)
            else:
                conn = http.client.HTTPConnection(proxy_host, proxy_port, timeout=self.timeout)
        elif self.https:
            conn = http.client.HTTPSConnection(host, self.port, timeout=self.timeout, context=_tls())
        else:
            conn = http.client.HTTPConnection(host, self.port, timeout=self.timeout)
        self._local.conns[project] = conn
        return conn, False


def _tls() -> ssl.SSLContext:
    """The system's trust store, as remote write's (the images' base has ca-certificates)."""
    return ssl.create_default_context()


def make_client(
    endpoint: str, credentials: CredentialSource, timeout: float = 30.0, proxy: str | None = None
) -> PutLogsClient:
    """A client that asks `credentials` as it signs each request (RRSA's are renewed ahead of expiry)."""
    return PutLogsClient(endpoint, credentials, timeout, proxy)
