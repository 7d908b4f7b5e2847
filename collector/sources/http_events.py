"""Receives Ray's HTTP event export (`POST /v1/events`) into the durable spool.

Each node's dashboard agent, given `RAY_DASHBOARD_AGGREGATOR_AGENT_EVENTS_EXPORT_ADDR`, POSTs a JSON array of
RayEvent objects with `Content-Type: application/json` (aiohttp's `json=`), waits 3 s for an answer
(`RAY_DASHBOARD_AGGREGATOR_AGENT_PUBLISHER_TIMEOUT_SECONDS`), and retries any failure or non-2xx answer with
backoff, forever. So the batch is stored and fsynced before the 200, a full spool answers 503 (push back: Ray
buffers up to 100k events meanwhile), and an answer that arrives too late only costs a duplicate.

Answers: 200 stored (or an empty array: a well-formed batch of nothing; refusing it would make a sender retry it
forever); 400 a body that is empty, not UTF-8, not JSON, or not an array of objects; 411 no Content-Length;
413 a body above `max_body_bytes`; 415 a content type other than JSON whose body is not valid JSON either, or a
Content-Encoding; 503 + Retry-After when the spool is full or cannot write. Error bodies are
`{"error": {"code", "message"}}`.

Events are accepted from a loopback address only (403 otherwise): the sender is the dashboard agent of this pod,
which KubeRay and our manifests point at localhost, while the server may listen on the pod IP for /metrics and
/healthz (a sidecar's scrape target). Anyone else on the pod network could otherwise write into the archive.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import threading
from dataclasses import dataclass, field, fields
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from collector.spool import Spool, SpoolError, SpoolFull

log = logging.getLogger("rayhistory.collector.http_events")

EVENTS_PATH = "/v1/events"


@dataclass
class HttpEventStats:
    """What the receiver has seen; `refused_*` counts what it answered with an error (the sender keeps it)."""

    requests: int = 0
    received_events: int = 0
    received_bytes: int = 0
    stored_events: int = 0
    stored_bytes: int = 0  # bytes written to the spool (compact JSON lines)
    refused_requests: int = 0
    refused_events: int = 0  # events of well-formed batches answered 503
    refused_bytes: int = 0
    errors: int = 0  # spool write failures
    by_status: dict[int, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, n in counts.items():
                setattr(self, name, getattr(self, name) + n)

    def answered(self, status: int) -> None:
        with self._lock:
            self.by_status[status] = self.by_status.get(status, 0) + 1

    def snapshot(self) -> dict:
        with self._lock:
            out = {f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("_")}
            out["by_status"] = dict(self.by_status)
            return out


class _Refused(Exception):
    def __init__(self, status: HTTPStatus, message: str, events: int = 0) -> None:
        super().__init__(message)
        self.status, self.message, self.events = status, message, events


class HttpEventsSource:
    """An HTTP receiver on host:port (port 0 picks a free one) that stores each POSTed batch in `spool`."""

    def __init__(
        self,
        spool: Spool,
        host: str = "127.0.0.1",
        port: int = 0,
        path: str = EVENTS_PATH,
        max_body_bytes: int = 64 << 20,
        retry_after: int = 5,
        max_concurrent: int = 8,
        read_timeout: float = 30.0,
    ) -> None:
        self.spool = spool
        self.path = path
        self.max_body_bytes = max_body_bytes
        self.retry_after = retry_after
        self.read_timeout = read_timeout
        self.stats = HttpEventStats()
        self.get_routes: dict = {}  # path -> () -> (status, content type, body): added by the collector
        # Each request holds its whole body in memory: bound how many do at once.
        self._slots = threading.BoundedSemaphore(max_concurrent)
        self._host, self._port = host, port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        if self._server is None:
            raise RuntimeError("the HTTP events source is not started")
        host, port = self._server.server_address[:2]
        return host, port

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://{host}:{port}{self.path}"

    def start(self) -> HttpEventsSource:
        handler = type("Handler", (_Handler,), {"source": self, "timeout": self.read_timeout})
        self._server = ThreadingHTTPServer((self._host, self._port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.1,), name="http-events", daemon=True)
        self._thread.start()
        log.info("receiving Ray events on %s", self.url)
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        self._server = self._thread = None

    # -- one POST --------------------------------------------------------------------------------------------

    def receive(self, body: bytes, content_type: str) -> int:
        """Validate and store one body; returns the number of events stored, raises _Refused."""
        self.stats.add(received_bytes=len(body))
        is_json_type = _is_json(content_type)
        try:
            events = _parse(body)
        except _Refused as e:
            if not is_json_type:
                raise _Refused(
                    HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                    f"Content-Type {content_type or '(none)'!r} is not application/json and the body is "
                    f"not valid JSON either ({e.message})",
                ) from None
            raise
        self.stats.add(received_events=len(events))
        if not events:
            return 0
        lines = [
            json.dumps(ev, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode("ascii") for ev in events
        ]
        try:
            self.spool.append(lines)
        except SpoolFull as e:
            raise _Refused(HTTPStatus.SERVICE_UNAVAILABLE, str(e), len(events)) from None
        except SpoolError as e:
            log.error("could not store %d events: %s", len(events), e)
            self.stats.add(errors=1)
            raise _Refused(
                HTTPStatus.SERVICE_UNAVAILABLE, f"the spool cannot store events now: {e}", len(events)
            ) from None
        self.stats.add(stored_events=len(events), stored_bytes=sum(len(x) + 1 for x in lines))
        return len(events)


def _is_json(content_type: str) -> bool:
    mime = content_type.split(";", 1)[0].strip().lower()
    return mime == "application/json" or (mime.startswith("application/") and mime.endswith("+json"))


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def _parse(body: bytes) -> list[dict]:
    if not body.strip():
        raise _Refused(HTTPStatus.BAD_REQUEST, "the body is empty; send a JSON array of RayEvent objects")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _Refused(HTTPStatus.BAD_REQUEST, f"the body is not UTF-8 (byte {e.start}); JSON must be UTF-8") from None
    if text.startswith("\ufeff"):
        text = text[1:]  # RFC 8259 lets a parser ignore a byte order mark
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise _Refused(HTTPStatus.BAD_REQUEST, "the body is not valid JSON: nested too deeply") from None
    except ValueError as e:
        raise _Refused(HTTPStatus.BAD_REQUEST, f"the body is not valid JSON: {e}") from None
    if not isinstance(value, list):
        raise _Refused(HTTPStatus.BAD_REQUEST, f"expected a JSON array of RayEvent objects, got a JSON {_kind(value)}")
    for i, ev in enumerate(value):
        if not isinstance(ev, dict):
            raise _Refused(
                HTTPStatus.BAD_REQUEST, f"expected a JSON array of RayEvent objects; item {i} is a JSON {_kind(ev)}"
            )
    return value


def _kind(value) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number"
    )


def _loopback(host: str) -> bool:
    try:
        ip = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return bool((mapped or ip).is_loopback)


class _Handler(BaseHTTPRequestHandler):
    source: HttpEventsSource
    protocol_version = "HTTP/1.1"  # keep-alive: the agent reuses its connection
    server_version = "rayhistory-collector"

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        extra = self.source.get_routes.get(path)
        if extra is not None:  # the collector's own routes (/metrics, /healthz) share this server
            status, content_type, body = extra()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif path == "/healthz":
            self._answer(HTTPStatus.OK, {"status": "ok"})
        elif path == self.source.path:
            self._error(HTTPStatus.METHOD_NOT_ALLOWED, f"{path} accepts POST only", {"Allow": "POST"})
        else:
            self._error(HTTPStatus.NOT_FOUND, f"no route {path}; Ray's events go to POST {self.source.path}")

    def do_POST(self) -> None:
        source = self.source
        path = urlsplit(self.path).path
        if path != source.path:
            self._discard_body()
            self._error(HTTPStatus.NOT_FOUND, f"no route {path}; Ray's events go to POST {source.path}")
            return
        source.stats.add(requests=1)
        if not _loopback(self.client_address[0]):
            self._discard_body()
            source.stats.add(refused_requests=1, refused_bytes=self._claimed_length())
            log.info("refused events from %s: not a loopback address", self.client_address[0])
            self._error(
                HTTPStatus.FORBIDDEN,
                "Ray's events are accepted from this pod only: point "
                f"RAY_DASHBOARD_AGGREGATOR_AGENT_EVENTS_EXPORT_ADDR at http://localhost:<port>{source.path}",
            )
            return
        try:
            body = self._read_body()
            if not source._slots.acquire(timeout=1.0):
                raise _Refused(HTTPStatus.SERVICE_UNAVAILABLE, "too many requests in flight; retry later")
            try:
                stored = source.receive(body, self.headers.get("Content-Type", ""))
            except _Refused:
                raise
            except Exception as e:  # a bug must not cost the sender its batch: it retries on a 500
                log.exception("failed on a batch of %d bytes", len(body))
                source.stats.add(errors=1)
                raise _Refused(HTTPStatus.INTERNAL_SERVER_ERROR, f"the collector failed on this batch: {e!r}") from e
            finally:
                source._slots.release()
        except _Refused as e:
            source.stats.add(refused_requests=1, refused_events=e.events, refused_bytes=self._claimed_length())
            if e.status >= 500:
                log.warning("refused a batch from %s: %s", self.client_address[0], e.message)
            else:
                log.info("refused a request from %s: %d %s", self.client_address[0], e.status, e.message)
            self._error(e.status, e.message)
            return
        self._answer(HTTPStatus.OK, {"stored": stored})

    def _claimed_length(self) -> int:
        try:
            return max(0, int(self.headers.get("Content-Length") or 0))
        except ValueError:
            return 0

    def handle_expect_100(self) -> bool:
        """Refuse an oversized body before the client sends it (curl asks first for bodies above 1 MB)."""
        n = self._claimed_length()
        if urlsplit(self.path).path == self.source.path and n > self.source.max_body_bytes:
            self.source.stats.add(requests=1, refused_requests=1, refused_bytes=n)
            self.close_connection = True
            self._error(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"the body is {n} bytes, above the limit of {self.source.max_body_bytes}; send smaller batches",
            )
            return False
        return super().handle_expect_100()

    def _read_body(self) -> bytes:
        if self.headers.get("Content-Encoding", "identity").strip().lower() != "identity":
            self.close_connection = True
            raise _Refused(
                HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                f"Content-Encoding {self.headers['Content-Encoding']!r} is not supported; send identity",
            )
        length = self.headers.get("Content-Length")
        if length is None:
            self.close_connection = True
            raise _Refused(HTTPStatus.LENGTH_REQUIRED, "send Content-Length (chunked bodies are not accepted)")
        try:
            n = int(length)
            if n < 0:
                raise ValueError
        except ValueError:
            self.close_connection = True
            raise _Refused(HTTPStatus.BAD_REQUEST, f"Content-Length {length!r} is not a byte count") from None
        if n > self.source.max_body_bytes:
            self.close_connection = True  # the body is left unread
            raise _Refused(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"the body is {n} bytes, above the limit of {self.source.max_body_bytes}; send smaller batches",
            )
        body = self.rfile.read(n)
        if len(body) < n:
            self.close_connection = True
            raise _Refused(HTTPStatus.BAD_REQUEST, f"the body ended after {len(body)} of {n} bytes")
        return body

    def _discard_body(self) -> None:
        try:
            n = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            n = -1
        if 0 <= n <= self.source.max_body_bytes:
            self.rfile.read(n)
        else:
            self.close_connection = True

    def _error(self, status: HTTPStatus, message: str, headers: dict[str, str] | None = None) -> None:
        headers = dict(headers or {})
        if status == HTTPStatus.SERVICE_UNAVAILABLE:
            headers["Retry-After"] = str(self.source.retry_after)
        self._answer(status, {"error": {"code": status.phrase.lower().replace(" ", "_"), "message": message}}, headers)

    def _answer(self, status: HTTPStatus, payload: dict, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(payload).encode()
        self.source.stats.answered(int(status))
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (the base class's name)
        log.debug("%s %s", self.address_string(), format % args)
