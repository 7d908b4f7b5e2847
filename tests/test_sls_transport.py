"""PutLogs without the SDK (collector/sinks/sls/transport.py): the request on the wire is the SDK's own, header for
header and byte for byte, read off a recording HTTP proxy; and against the SLS test server (no SLS emulator
exists; tests/servers/sls.py) its signature is accepted, and refusals, quotas and an unreachable endpoint come back
as SlsError for the sink's backoff."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aliyun.log import LogItem, PutLogsRequest
from aliyun.log.auth import AuthV1

from archive.credentials import Credentials, StaticCredentials
from collector.sinks.sls import loggroup
from collector.sinks.sls.client import make_client as sdk_client
from collector.sinks.sls.transport import PutLogsClient, SlsError
from tests.servers.sls import running_sls

DATE = "Sat, 05 Dec 2026 22:58:00 GMT"
# Added by the HTTP library, not by the SDK's request; neither signed nor read by SLS.
TRANSPORT_HEADERS = {"user-agent", "accept", "accept-encoding", "connection"}


@contextlib.contextmanager
def recording_proxy() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """An HTTP proxy that answers 200 to everything and keeps each request as it arrived."""
    seen: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
            body = self.rfile.read(int(self.headers["Content-Length"]))
            seen.append({"line": (self.command, self.path), "headers": list(self.headers.items()), "body": body})
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", seen
    finally:
        httpd.shutdown()
        httpd.server_close()


def _signed(request: dict[str, Any]) -> tuple[Any, dict[str, str], bytes]:
    headers = {k.lower(): v for k, v in request["headers"] if k.lower() not in TRANSPORT_HEADERS}
    return request["line"], headers, request["body"]


@pytest.mark.parametrize("token", ["", "sts-token-1"])
def test_the_request_is_the_sdks_own(monkeypatch, token):
    """The same LogGroup through the SDK's put_logs and through PutLogsClient: same request line (proxy form), same
    headers (Host, Content-MD5, x-log-*, the STS token, the signature), same lz4 body."""
    monkeypatch.setattr(AuthV1, "_getGMT", staticmethod(lambda: DATE))
    source = StaticCredentials(Credentials("akid", "secret", token))
    items = [
        (1_764_100_000_123_456_789, [("message", "héllo ✓"), ("level", "INFO")]),
        (1_764_100_001_000_000_005, [("message", "x" * 300)]),
    ]
    tags = [("__tag__:node", "n1"), ("__pack_id__", "ABC-1")]
    key = "0123456789abcdef0123456789abcdef"
    with recording_proxy() as (proxy, seen):
        sdk = sdk_client("cn-test.log.example.com", source, "node-1", 10.0, proxy)
        logitems = [LogItem(t // 10**9, contents, t % 10**9) for t, contents in items]
        sdk.put_logs(PutLogsRequest("proj", "ray-logs", "ray", "node-1", logitems, hashKey=key, logtags=tags))
        ours = PutLogsClient("cn-test.log.example.com", source, 10.0, proxy, date=lambda: DATE)
        body = loggroup.log_group([loggroup.log_entry(t, c) for t, c in items], "ray", "node-1", tags)
        ours.put_log_group("proj", "ray-logs", body, key)
    assert len(seen) == 2
    sdk_request, our_request = _signed(seen[0]), _signed(seen[1])
    assert our_request == sdk_request
    line, headers, _ = our_request
    assert line == ("POST", f"http://proj.cn-test.log.example.com:80/logstores/ray-logs/shards/route?key={key}")
    assert headers["host"] == "proj.cn-test.log.example.com" and headers["authorization"].startswith("LOG akid:")
    assert headers.get("x-acs-security-token", "") == token


def test_the_test_server_accepts_it_and_refusals_come_back_typed():
    with running_sls() as sls:
        good = StaticCredentials(Credentials(sls.access_key_id, sls.access_key_secret))
        client = PutLogsClient(sls.endpoint, good, 10.0, sls.proxy)
        body = loggroup.log_group([loggroup.log_entry(time.time_ns(), [("message", "m")])], "ray", "n1", [])
        for _ in range(3):  # one keep-alive connection, reused
            client.put_log_group("rayhistory", "ray-logs", body, "0" * 32)
        assert [x.contents["message"] for x in sls.items()] == ["m"] * 3
        assert sls.items()[0].project == "rayhistory" and sls.items()[0].hash_key == "0" * 32

        wrong = PutLogsClient(sls.endpoint, StaticCredentials(Credentials(sls.access_key_id, "nope")), 10, sls.proxy)
        with pytest.raises(SlsError) as refused:
            wrong.put_log_group("rayhistory", "ray-logs", body, "0" * 32)
        assert (refused.value.status, refused.value.code) == (401, "SignatureNotMatch")

        sls.fail_puts(403, 1, "WriteQuotaExceed")
        with pytest.raises(SlsError) as quota:
            client.put_log_group("rayhistory", "ray-logs", body, "0" * 32)
        assert quota.value.is_quota
        client.put_log_group("rayhistory", "ray-logs", body, "0" * 32)  # and the next one goes through
        assert len(sls.items()) == 4

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    client = PutLogsClient("sls.test", good, 2.0, dead)
    with pytest.raises(SlsError) as unreachable:
        client.put_log_group("rayhistory", "ray-logs", body, "0" * 32)
    assert unreachable.value.status == 0 and "cannot reach" in str(unreachable.value)
