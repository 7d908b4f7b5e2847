"""The SLS test server's Prometheus remote-write endpoint (tests/servers/sls.py routes it here), as SLS documents
it for a MetricStore (reference 5b): `POST https://{project}.{endpoint}/prometheus/{project}/{metricstore}/api/v1/write`
with BasicAuth (AccessKey id and secret; with STS the password is `{secret}${token}`), a snappy (block format)
compressed `prometheus.WriteRequest`, and the remote-write protocol's headers (Prometheus's remote-write spec 1.0).

Checked exactly: the path's project is the Host's; the MetricStore exists (created by CreateLogStore with
telemetryType Metrics and its `prom` substore); the credentials; `Content-Encoding: snappy`,
`Content-Type: application/x-protobuf`, `X-Prometheus-Remote-Write-Version: 0.1.0`; the body decompresses and
parses as proto3 (decoded here by hand), every series has `__name__`, its label names are unique, valid and
sorted, and its samples are in time order. Samples are kept by (series, timestamp), so a resent sample is one
sample, as in a Prometheus store.
"""

from __future__ import annotations

import base64
import hmac
import math
import re
import struct
import threading
from dataclasses import dataclass, field

import cramjam

from tests.servers.sls_resources import Answer, Resources, error

_PATH = re.compile(r"^/prometheus/([^/]+)/([^/]+)/api/v1/write$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes):
    pos = 0
    while pos < len(buf):
        tag, pos = _varint(buf, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos : pos + 8], pos + 8
        elif wire == 2:
            n, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + n], pos + n
            if pos > len(buf):
                raise ValueError("truncated message")
        else:
            raise ValueError(f"unexpected wire type {wire}")
        yield number, wire, value


def decode_write_request(body: bytes) -> list[tuple[dict[str, str], list[tuple[int, float]]]]:
    """WriteRequest{timeseries=1: TimeSeries{labels=1: Label{name=1, value=2}, samples=2: Sample{value=1 double,
    timestamp=2 int64}}}; raises ValueError saying what is wrong."""
    out = []
    for number, wire, ts in _fields(body):
        if number != 1 or wire != 2:
            continue  # metadata (3) and unknown fields are allowed
        names: list[str] = []
        labels: dict[str, str] = {}
        samples: list[tuple[int, float]] = []
        for n2, w2, v2 in _fields(ts):
            if n2 == 1 and w2 == 2:
                name = value = ""
                for n3, w3, v3 in _fields(v2):
                    if n3 == 1 and w3 == 2:
                        name = v3.decode()
                    elif n3 == 2 and w3 == 2:
                        value = v3.decode()
                names.append(name)
                labels[name] = value
            elif n2 == 2 and w2 == 2:
                value_f, stamp = 0.0, 0
                for n3, w3, v3 in _fields(v2):
                    if n3 == 1 and w3 == 1:
                        value_f = struct.unpack("<d", v3)[0]
                    elif n3 == 2 and w3 == 0:
                        stamp = v3 - (1 << 64) if v3 >= 1 << 63 else v3
                samples.append((stamp, value_f))
        if "__name__" not in labels:
            raise ValueError(f"a series without __name__: {labels}")
        if len(names) != len(labels) or names != sorted(names):
            raise ValueError(f"label names must be unique and sorted: {names}")
        bad = [n for n in names if n != "__name__" and not _LABEL_NAME.match(n)]
        if bad:
            raise ValueError(f"invalid label names {bad}")
        if [t for t, _ in samples] != sorted(t for t, _ in samples):
            raise ValueError(f"samples of {labels['__name__']} out of time order")
        out.append((labels, samples))
    return out


@dataclass
class RemoteWrite:
    resources: Resources
    access_key_id: str
    access_key_secret: str
    security_token: str = ""  # when set, the password must be `{secret}${token}` (STS)
    samples: dict[tuple[str, str, tuple[tuple[str, str], ...], int], float] = field(default_factory=dict)
    requests: list[dict] = field(default_factory=list)
    _faults: list[list] = field(default_factory=list)  # [status, remaining]
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def fail(self, status: int, times: int) -> None:
        with self._lock:
            self._faults.append([status, times])

    def series(self, metricstore: str) -> dict[tuple[tuple[str, str], ...], list[tuple[int, float]]]:
        """Every series written to the MetricStore: sorted labels -> samples (ms, value) in time order."""
        out: dict[tuple[tuple[str, str], ...], list[tuple[int, float]]] = {}
        with self._lock:
            for (_project, store, labels, ts), value in sorted(self.samples.items(), key=lambda kv: kv[0][3]):
                if store == metricstore:
                    out.setdefault(labels, []).append((ts, value))
        return out

    def handle(self, host_project: str, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        m = _PATH.match(path)
        record: dict = {"path": path, "status": None}
        with self._lock:
            self.requests.append(record)
        if method != "POST" or not m:
            record["status"] = 404
            return error(
                404,
                "NotFound",
                f"{method} {path}: remote write is POST /prometheus/{{project}}/{{metricstore}}/api/v1/write",
            )
        project, store = m.groups()
        answer = self._check(host_project, project, store, headers)
        if answer is None:
            with self._lock:
                if self._faults:
                    fault = self._faults[0]
                    fault[1] -= 1
                    if fault[1] <= 0:
                        self._faults.pop(0)
                    answer = error(
                        fault[0], "InternalServerError" if fault[0] >= 500 else "Throttled", "injected by the test"
                    )
        if answer is None:
            try:
                series = decode_write_request(bytes(cramjam.snappy.decompress_raw(body)))
            except Exception as e:  # noqa: BLE001 (any undecodable body is the client's error)
                answer = error(400, "InvalidWriteRequest", f"cannot decode the snappy WriteRequest: {e}")
            else:
                with self._lock:
                    for labels, samples in series:
                        key = tuple(sorted(labels.items()))
                        for ts, value in samples:
                            self.samples[(project, store, key, ts)] = value
                record["samples"] = sum(len(s) for _, s in series)
                answer = (200, {}, b"")
        record["status"] = answer[0]
        return answer

    def _check(self, host_project: str, project: str, store: str, headers: dict[str, str]) -> Answer | None:
        if project != host_project:
            return error(400, "ProjectNotMatch", f"path project {project} is not the Host's {host_project}")
        auth = headers.get("authorization", "")
        if not auth.startswith("Basic "):
            return error(401, "Unauthorized", "remote write needs BasicAuth (AccessKey id and secret)")
        try:
            user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
        except ValueError:
            return error(401, "Unauthorized", "malformed BasicAuth")
        want = f"{self.access_key_secret}${self.security_token}" if self.security_token else self.access_key_secret
        if user != self.access_key_id or not hmac.compare_digest(password, want):
            return error(401, "Unauthorized", "AccessKey id or secret (with STS: secret$token) does not match")
        expected = {
            "content-encoding": "snappy",
            "content-type": "application/x-protobuf",
            "x-prometheus-remote-write-version": "0.1.0",
        }
        for name, value in expected.items():
            if headers.get(name) != value:
                return error(400, "InvalidHeader", f"{name}: {headers.get(name)!r}, want {value!r}")
        if not self.resources.is_metricstore(project, store):
            return error(404, "LogStoreNotExist", f"MetricStore {store} does not exist in project {project}")
        return None


def nan_equal(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b
