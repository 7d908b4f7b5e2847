"""A protocol-faithful Alibaba Cloud SLS (Log Service) test server.

No SLS emulator exists anywhere (not from Alibaba, not in LocalStack or elsewhere), so this is the one fake at the
network edge, written from the protocol (reference section 5) and checked against the real SDK
(aliyun-log-python-sdk) in tests/test_sls_sink.py. It is a real HTTP server on 127.0.0.1 that:
- checks the v1 signature (`Authorization: LOG <akid>:<base64 hmac-sha1>`) with the SDK's canonicalization, the
  Content-MD5 of the body and the clock skew, answering 401 as SLS does (`SignatureNotMatch`, `Unauthorized`);
- takes PutLogs (`POST /logstores/{ls}/shards/lb|route?key=`): lz4 (block, no size prefix), deflate or zstd
  bodies of protobuf LogGroups, decoded here by hand (proto2: LogGroup, Log, Content, LogTag), refusing as SLS
  does a LogGroup of more than 4,096 logs and a Log without its required Time;
- answers GetLogs (`POST /logstores/{ls}/logs`, JSON body): `from`/`to` on `__time__`, a plain substring `query`
  (SQL is refused), `line` (at most 100), `offset`, `reverse`, lz4-compressed like SLS when asked;
- can be told to answer 500 (`InternalServerError`) or 403 (`WriteQuotaExceed`) to the next N PutLogs;
- accepts STS credentials (RRSA) when given `temporary_keys` (tests/servers/sts.py's lookup): their AccessKeyId,
  signed with their secret, with the token in `x-acs-security-token` (a signed header, as the SDK's auth.py sends
  it); a missing or wrong token is 401 `SecurityTokenInvalid`, an expired one 401 `SecurityTokenExpired` (codes the
  SDK treats as authentication errors).
- for log search (the section "search, scripted" below): GetLogs V2, GetHistograms and GetContextLogs answered from
  a script. It does not evaluate SLS queries: a test says which exact request to expect (the JSON body of GetLogs,
  the query parameters of the others) and the documented answer to give (rows, `Incomplete` progress, an error);
  once anything is scripted, a request matching no script is answered 400 `UnexpectedRequest` and kept in
  `unexpected`, so a test sees every request it did not foresee.
- logstores, MetricStores and indexes (CreateLogStore, GetLogStore, CreateSubStore, Create/Update/GetIndex):
  tests/servers/sls_resources.py; Prometheus remote write into a MetricStore (BasicAuth, snappy, protobuf):
  tests/servers/sls_remote_write.py. PutLogs and GetLogs accept any logstore (tests need not create them).

The SDK sends to `http://{project}.{endpoint}:{port}`, a name that does not resolve here; it only skips the project
subdomain for a bare IPv4 endpoint, and then on port 80 which a test cannot bind. So the SDK is pointed at any
endpoint name and given this server as its HTTP proxy (the sink's `proxy` setting): the server accepts the proxy
form (`POST http://proj.endpoint/...`) and takes the project from the Host header, as SLS does.
"""

from __future__ import annotations

import base64
import contextlib
import email.utils
import hashlib
import hmac
import json
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import lz4.block

from tests.servers.sls_remote_write import RemoteWrite
from tests.servers.sls_resources import Resources

MAX_GET_LINES = 100
MAX_PUT_BYTES = 10 << 20
MAX_LOGS_PER_GROUP = 4096  # SLS's PutLogs limit; the SDK only checks its own, much larger one client-side
MAX_SKEW_SECONDS = 15 * 60


# --- proto2 wire format, by hand ----------------------------------------------------------------------------
def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) of one message: varints as int, length-delimited as bytes, fixed32/64 as int."""
    pos, n = 0, len(buf)
    while pos < n:
        tag, pos = _varint(buf, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + length], pos + length
        elif wire == 5:
            value, pos = int.from_bytes(buf[pos : pos + 4], "little"), pos + 4
        elif wire == 1:
            value, pos = int.from_bytes(buf[pos : pos + 8], "little"), pos + 8
        else:
            raise ValueError(f"unsupported wire type {wire}")
        yield number, value


def _pair(buf: bytes) -> tuple[str, bytes]:
    key, value = "", b""
    for number, v in _fields(buf):
        if number == 1:
            key = v.decode()  # type: ignore[union-attr]
        elif number == 2:
            value = v  # type: ignore[assignment]
    return key, value


def decode_log_group(buf: bytes) -> dict[str, Any]:
    """LogGroup{Logs=1, Reserved=2, Topic=3, Source=4, MachineUUID=5, LogTags=6}, Log{Time=1, Contents=2, Time_ns=4}."""
    group: dict[str, Any] = {"logs": [], "topic": "", "source": "", "tags": []}
    for number, value in _fields(buf):
        if number == 1:
            item: dict[str, Any] = {"time": None, "time_ns": 0, "contents": []}
            for n2, v2 in _fields(value):  # type: ignore[arg-type]
                if n2 == 1:
                    item["time"] = v2
                elif n2 == 2:
                    item["contents"].append(_pair(v2))  # type: ignore[arg-type]
                elif n2 == 4:
                    item["time_ns"] = v2
            if item["time"] is None:  # proto2 `required uint32 Time`: a Log without it does not parse
                raise ValueError(f"Log {len(group['logs'])} has no Time (a required field)")
            group["logs"].append(item)
        elif number == 3:
            group["topic"] = value.decode()  # type: ignore[union-attr]
        elif number == 4:
            group["source"] = value.decode()  # type: ignore[union-attr]
        elif number == 6:
            group["tags"].append(_pair(value))  # type: ignore[arg-type]
    return group


def decompress(body: bytes, kind: str, raw_size: int) -> bytes:
    if kind in ("", None):
        return body
    if kind == "lz4":
        return lz4.block.decompress(body, uncompressed_size=raw_size)
    if kind == "deflate":
        return zlib.decompress(body)
    if kind == "zstd":
        import zstandard  # only if a client sends zstd

        return zstandard.ZstdDecompressor().decompress(body, max_output_size=raw_size)
    raise ValueError(f"unsupported x-log-compresstype {kind!r}")


# --- the v1 signature, as the SDK computes it (aliyun/log/auth.py AuthV1, util.py) --------------------------
def signature_v1(secret: str, method: str, resource: str, params: dict[str, str], headers: dict[str, str]) -> str:
    lower = {k.lower(): v for k, v in headers.items()}
    content = f"{method}\n{lower.get('content-md5', '')}\n{lower.get('content-type', '')}\n{lower.get('date', '')}\n"
    for key in sorted(
        k
        for k in lower
        if k.startswith("x-acs-") or (k.startswith("x-log-") and not k.startswith("x-log-meta-") and k != "x-log-date")
    ):
        content += f"{key}:{lower[key]}\n"
    if params:
        resource += "?" + "&".join(f"{k}={v}" for k, v in sorted(params.items()))
    content += resource
    digest = hmac.new(secret.encode(), content.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


@dataclass
class StoredLog:
    project: str
    logstore: str
    time: int
    time_ns: int
    contents: dict[str, str]
    topic: str
    source: str
    tags: dict[str, str]
    hash_key: str | None
    arrival: int


@dataclass
class _Fault:
    status: int
    code: str
    remaining: int


# --- search, scripted (issue 11): GetLogs V2, GetHistograms, GetContextLogs -------------------------------------
# Shapes from the SDK's parsers (aliyun/log/getlogsresponse.py, gethistogramsresponse.py,
# getcontextlogsresponse.py) and SLS's API reference: GetLogs V2 answers {"meta": {...,"progress"}, "data": [rows]}
# (lz4 when asked by Accept-Encoding); GetHistograms a list of {from, to, count, progress} with the overall
# progress in the x-log-progress header; GetContextLogs {progress, total_lines, back_lines, forward_lines, logs}.
@dataclass
class Scripted:
    kind: str  # "logs" | "histograms" | "context"
    logstore: str
    request: dict[str, Any]  # GetLogs: the exact JSON body; the others: the exact query parameters (as strings)
    status: int
    answer: Any  # the JSON answer (or {"errorCode", "errorMessage"} with an error status)
    headers: dict[str, str]
    used: bool = False


def logs_answer(rows: list[dict[str, Any]], progress: str = "Complete", **meta: Any) -> dict[str, Any]:
    """A GetLogs V2 answer: every value a string, as SLS gives them."""
    data = [{k: str(v) for k, v in row.items()} for row in rows]
    base = {
        "progress": progress,
        "count": len(data),
        "processedRows": len(data),
        "elapsedMillisecond": 1,
        "hasSQL": False,
        "whereQuery": "",
        "aggQuery": "",
        "keys": sorted({k for row in data for k in row}),
        "cpuSec": 0.0,
        "cpuCores": 0,
    }
    base.update(meta)
    return {"meta": base, "data": data}


class ScriptedSearch:
    """SlsServer's scripted search: tests call expect_logs / expect_histograms / expect_context, then read
    `searches` (every search request as received) and `unexpected` (those no script matched)."""

    _lock: threading.Lock
    scripts: list[Scripted]
    searches: list[dict[str, Any]]
    unexpected: list[dict[str, Any]]

    def expect_logs(
        self,
        body: dict[str, Any],
        rows: list[dict[str, Any]] | None = None,
        progress: str = "Complete",
        logstore: str = "ray-logs",
        status: int = 200,
        error: tuple[str, str] | None = None,
        **meta: Any,
    ) -> None:
        """Answer the GetLogs V2 request whose JSON body is exactly `body` with these rows (or this error)."""
        answer = (
            {"errorCode": error[0], "errorMessage": error[1]} if error else logs_answer(rows or [], progress, **meta)
        )
        with self._lock:
            self.scripts.append(Scripted("logs", logstore, body, status if error else 200, answer, {}))

    def expect_histograms(
        self,
        params: dict[str, str],
        buckets: list[tuple[int, int, int]] | None = None,
        progress: str = "Complete",
        logstore: str = "ray-logs",
        status: int = 200,
        error: tuple[str, str] | None = None,
    ) -> None:
        """Answer the GetHistograms request with exactly these query parameters: buckets of (from, to, count)."""
        if error:
            answer: Any = {"errorCode": error[0], "errorMessage": error[1]}
            headers: dict[str, str] = {}
        else:
            answer = [{"from": a, "to": b, "count": n, "progress": progress} for a, b, n in buckets or []]
            headers = {"x-log-progress": progress, "x-log-count": str(sum(n for _, _, n in buckets or []))}
        with self._lock:
            self.scripts.append(Scripted("histograms", logstore, params, status if error else 200, answer, headers))

    def expect_context(
        self,
        params: dict[str, str],
        logs: list[dict[str, Any]] | None = None,
        back_lines: int = 0,
        forward_lines: int = 0,
        progress: str = "Complete",
        logstore: str = "ray-logs",
        status: int = 200,
        error: tuple[str, str] | None = None,
    ) -> None:
        """Answer the GetContextLogs request with exactly these query parameters."""
        if error:
            answer: Any = {"errorCode": error[0], "errorMessage": error[1]}
        else:
            rows = [{k: str(v) for k, v in row.items()} for row in logs or []]
            answer = {
                "progress": progress,
                "total_lines": len(rows),
                "back_lines": back_lines,
                "forward_lines": forward_lines,
                "logs": rows,
            }
        with self._lock:
            self.scripts.append(Scripted("context", logstore, params, status if error else 200, answer, {}))

    def _take_script(self, kind: str, logstore: str, request: dict[str, Any]) -> Scripted | None:
        with self._lock:
            for script in self.scripts:
                if (
                    not script.used
                    and script.kind == kind
                    and script.logstore == logstore
                    and script.request == request
                ):
                    script.used = True
                    return script
        return None

    def _scripted_get_logs(
        self, project: str, logstore: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        if headers.get("content-type") != "application/json":
            return _error(400, "InvalidContentType", "GetLogs V2 takes a JSON body (Content-Type: application/json)")
        if headers.get("x-log-bodyrawsize") != str(len(body)):
            return _error(400, "InvalidBodyRawSize", "x-log-bodyrawsize does not match the body")
        try:
            request = json.loads(body)
        except ValueError as e:
            return _error(400, "ParameterInvalid", f"bad GetLogs body: {e}")
        return self._answer("logs", logstore, request, headers)

    def _scripted_get(
        self, project: str, logstore: str, kind: str, params: dict[str, str], headers: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        return self._answer(kind, logstore, params, headers)

    def _answer(
        self, kind: str, logstore: str, request: dict[str, Any], headers: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        record = {"kind": kind, "logstore": logstore, "request": request, "accept": headers.get("accept-encoding", "")}
        with self._lock:
            self.searches.append(record)
        script = self._take_script(kind, logstore, request)
        if script is None:
            with self._lock:
                self.unexpected.append(record)
            return _error(400, "UnexpectedRequest", f"the SLS test server was not told to expect {kind} {request}")
        payload = json.dumps(script.answer).encode()
        out = dict(script.headers)
        if script.status == 200 and kind == "logs" and "lz4" in headers.get("accept-encoding", ""):
            out["x-log-bodyrawsize"] = str(len(payload))
            out["x-log-compresstype"] = "lz4"
            payload = lz4.block.compress(payload, store_size=False)
        return script.status, out, payload


@dataclass
class SlsServer(ScriptedSearch):
    access_key_id: str = "test-akid"
    access_key_secret: str = "test-secret"
    endpoint: str = "sls.test"  # the name clients are given; this server answers for {project}.{endpoint}
    temporary_keys: Callable[[str], Any] | None = None  # AccessKeyId -> tests.servers.sts.Issued, or None
    logs: list[StoredLog] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)  # PutLogs as received: sizes, hash key, status
    refused: list[str] = field(default_factory=list)  # error codes of requests refused before any API ran (401...)
    _faults: list[_Fault] = field(default_factory=list)
    scripts: list[Scripted] = field(default_factory=list)  # search answers to give (expect_*)
    searches: list[dict[str, Any]] = field(default_factory=list)  # search requests as received
    unexpected: list[dict[str, Any]] = field(default_factory=list)  # those no script matched
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _httpd: ThreadingHTTPServer | None = None
    port: int = 0
    security_token: str = ""  # STS: remote write's password is then `{secret}${token}`
    resources: Resources = field(default_factory=Resources)
    remote_write: RemoteWrite | None = None

    def __post_init__(self) -> None:
        self.remote_write = RemoteWrite(self.resources, self.access_key_id, self.access_key_secret, self.security_token)

    @property
    def proxy(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def fail_puts(self, status: int, times: int, code: str | None = None) -> None:
        """Answer the next `times` PutLogs with this error (500 InternalServerError, 403 WriteQuotaExceed...)."""
        code = code or {500: "InternalServerError", 403: "WriteQuotaExceed", 503: "ServerBusy"}.get(status, "Error")
        with self._lock:
            self._faults.append(_Fault(status, code, times))

    def items(self, logstore: str | None = None) -> list[StoredLog]:
        with self._lock:
            return [x for x in self.logs if logstore is None or x.logstore == logstore]

    # --- lifecycle -------------------------------------------------------------------------------------
    def start(self) -> SlsServer:
        server = self

        class Handler(_Handler):
            sls = server

        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        threading.Thread(target=self._httpd.serve_forever, name="sls-test-server", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    # --- request handling ------------------------------------------------------------------------------
    def handle(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        url = urlsplit(target)
        host = (headers.get("host") or url.netloc).split(":")[0]
        suffix = "." + self.endpoint
        if not host.endswith(suffix):
            return _error(404, "ProjectNotExist", f"host {host} is not <project>{suffix}")
        project = host[: -len(suffix)]
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        if url.path.startswith("/prometheus/"):  # BasicAuth, not the LOG signature (sls_remote_write.py)
            assert self.remote_write is not None
            return self.remote_write.handle(project, method, url.path, headers, body)
        denied = self._authenticate(method, url.path, params, headers, body)
        if denied:
            with self._lock:
                self.refused.append(json.loads(denied[2])["errorCode"])
            return denied
        parts = url.path.strip("/").split("/")
        # GetHistograms and GetContextLogs share GetLogStore's path (`GET /logstores/{ls}`), told apart by `type`
        if method == "GET" and len(parts) == 2 and parts[0] == "logstores" and params.get("type") == "histogram":
            return self._scripted_get(project, parts[1], "histograms", params, headers)
        if method == "GET" and len(parts) == 2 and parts[0] == "logstores" and params.get("type") == "context_log":
            return self._scripted_get(project, parts[1], "context", params, headers)
        with self._lock:
            answer = self.resources.handle(project, method, parts, headers, body)
        if answer is not None:
            return answer
        if method == "POST" and len(parts) == 4 and parts[0] == "logstores" and parts[2] == "shards":
            return self._put_logs(project, parts[1], params.get("key"), headers, body)
        if method == "POST" and len(parts) == 3 and parts[0] == "logstores" and parts[2] == "logs":
            if self.scripts:
                return self._scripted_get_logs(project, parts[1], headers, body)
            return self._get_logs(project, parts[1], headers, body)

        return _error(404, "NotImplemented", f"{method} {url.path} is not served by the SLS test server")

    def _authenticate(
        self, method: str, path: str, params: dict[str, str], headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes] | None:
        auth = headers.get("authorization", "")
        if not auth.startswith("LOG ") or ":" not in auth:
            return _error(401, "Unauthorized", "missing or malformed Authorization header (want LOG akid:signature)")
        akid, given = auth[4:].rsplit(":", 1)
        secret = self.access_key_secret if akid == self.access_key_id else None
        issued = self.temporary_keys(akid) if secret is None and self.temporary_keys else None
        if issued is not None:
            secret = issued.access_key_secret
            if not hmac.compare_digest(headers.get("x-acs-security-token", ""), issued.security_token):
                return _error(401, "SecurityTokenInvalid", f"the security token of {akid} is missing or wrong")
            if time.time() >= issued.expiration:
                return _error(401, "SecurityTokenExpired", f"the security token of {akid} has expired")
        if secret is None:
            return _error(401, "Unauthorized", f"AccessKeyId {akid} not found")
        if body and headers.get("content-md5", "").upper() != hashlib.md5(body).hexdigest().upper():
            return _error(400, "InvalidContentMD5", "Content-MD5 does not match the body")
        date = headers.get("date") or headers.get("x-log-date", "")
        try:
            skew = abs(time.time() - email.utils.parsedate_to_datetime(date).timestamp())
        except (TypeError, ValueError):
            return _error(400, "InvalidDate", f"unparseable Date {date!r}")
        if skew > MAX_SKEW_SECONDS:
            return _error(400, "RequestTimeExpired", "Date is more than 15 minutes off")
        expected = signature_v1(secret, method, path, params, headers)
        if not hmac.compare_digest(expected, given):
            return _error(401, "SignatureNotMatch", "signature does not match")
        return None

    def _put_logs(
        self, project: str, logstore: str, key: str | None, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        raw_size = int(headers.get("x-log-bodyrawsize", len(body)))
        akid = headers.get("authorization", "")[4:].rsplit(":", 1)[0]
        record = {
            "logstore": logstore,
            "hash_key": key,
            "body_bytes": len(body),
            "raw_bytes": raw_size,
            "access_key_id": akid,
            "at": time.time(),
        }
        with self._lock:
            self.requests.append(record)
            if self._faults:
                fault = self._faults[0]
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.pop(0)
                record["status"] = fault.status
                return _error(fault.status, fault.code, "injected by the test")
        if raw_size > MAX_PUT_BYTES or len(body) > MAX_PUT_BYTES:
            record["status"] = 413
            return _error(413, "PostBodyTooLarge", f"body of {raw_size} bytes exceeds {MAX_PUT_BYTES}")
        try:
            data = decompress(body, headers.get("x-log-compresstype", ""), raw_size)
            if len(data) != raw_size:
                raise ValueError(f"x-log-bodyrawsize {raw_size} but {len(data)} bytes decompressed")
            group = decode_log_group(data)
        except Exception as e:  # noqa: BLE001 (any undecodable body is the client's error)
            record["status"] = 400
            return _error(400, "InvalidLogGroup", str(e))
        if len(group["logs"]) > MAX_LOGS_PER_GROUP:
            record["status"] = 400
            return _error(
                400, "InvalidLogSize", f"{len(group['logs'])} logs in one LogGroup, more than {MAX_LOGS_PER_GROUP}"
            )
        tags = {k: v.decode("utf-8", "replace") for k, v in group["tags"]}
        with self._lock:
            for item in group["logs"]:
                self.logs.append(
                    StoredLog(
                        project,
                        logstore,
                        item["time"],
                        item["time_ns"],
                        {k: v.decode("utf-8", "replace") for k, v in item["contents"]},
                        group["topic"],
                        group["source"],
                        tags,
                        key,
                        len(self.logs),
                    )
                )
            record["status"] = 200
            record["items"] = len(group["logs"])
        return 200, {}, b""

    def _get_logs(
        self, project: str, logstore: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        try:
            req = json.loads(body or b"{}")
            start, end = int(req["from"]), int(req["to"])
            line, offset = int(req.get("line", 100)), int(req.get("offset", 0))
        except (ValueError, KeyError) as e:
            return _error(400, "ParameterInvalid", f"bad GetLogs body: {e}")
        query = (req.get("query") or "").strip()
        if "|" in query or req.get("powerSql"):
            return _error(400, "ParameterInvalid", "the SLS test server answers substring queries only, no SQL")
        if query in ("*", ""):
            query = ""
        line = max(0, min(line, MAX_GET_LINES))
        with self._lock:
            rows = [
                x
                for x in self.logs
                if x.project == project
                and x.logstore == logstore
                and start <= x.time < end
                and (not query or any(query in v for v in x.contents.values()))
            ]
        rows.sort(key=lambda x: (x.time, x.time_ns, x.arrival), reverse=bool(req.get("reverse")))
        page = rows[offset : offset + line]
        data = []
        for x in page:
            row = {"__time__": x.time, "__time_ns_part__": x.time_ns, "__topic__": x.topic, "__source__": x.source}
            row.update({f"__tag__:{k}": v for k, v in x.tags.items()})
            row.update(x.contents)
            data.append(row)
        payload = json.dumps(
            {
                "meta": {
                    "progress": "Complete",
                    "count": len(data),
                    "processedRows": len(rows),
                    "hasSQL": False,
                    "keys": [],
                    "whereQuery": query,
                    "aggQuery": "",
                },
                "data": data,
            }
        ).encode()
        out_headers = {"x-log-bodyrawsize": str(len(payload))}
        if "lz4" in headers.get("accept-encoding", ""):
            payload = lz4.block.compress(payload, store_size=False)
            out_headers["x-log-compresstype"] = "lz4"
        return 200, out_headers, payload


def _error(status: int, code: str, message: str) -> tuple[int, dict[str, str], bytes]:
    return status, {}, json.dumps({"errorCode": code, "errorMessage": message}).encode()


class _Handler(BaseHTTPRequestHandler):
    sls: SlsServer
    protocol_version = "HTTP/1.1"

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, extra, payload = self.sls.handle(self.command, self.path, headers, body)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("x-log-requestid", hashlib.md5(body + str(time.time_ns()).encode()).hexdigest()[:24].upper())
        for k, v in extra.items():
            self.send_header(k, v)
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # a client killed mid-request
            self.wfile.write(payload)

    do_POST = do_GET = do_PUT = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the stdlib's name)
        pass


@contextlib.contextmanager
def running_sls(**kwargs: Any) -> Iterator[SlsServer]:
    server = SlsServer(**kwargs).start()
    try:
        yield server
    finally:
        server.stop()


def main() -> None:
    """`python -m tests.servers.sls`: serve on a free port (printed) until stdin closes; for benchmarks that keep
    the server's CPU out of the measured process."""
    import sys

    with running_sls() as server:
        print(server.port, flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    main()
