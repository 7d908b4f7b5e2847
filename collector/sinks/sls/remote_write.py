"""Prometheus remote write, the part a sender needs: the collector's OpenMetrics sample lines as a
`prometheus.WriteRequest` (protobuf, encoded here by hand), snappy-compressed (block format), POSTed with the
protocol's headers and BasicAuth. tests/test_sls_metrics.py proves the encoding against a real Prometheus's
remote-write receiver.

    WriteRequest { repeated TimeSeries timeseries = 1; }
    TimeSeries   { repeated Label labels = 1; repeated Sample samples = 2; }
    Label        { string name = 1; string value = 2; }           labels sorted by name, __name__ included
    Sample       { double value = 1; int64 timestamp = 2; }       timestamp in epoch milliseconds

The input is what archive/metrics_blocks.py writes: `name{k="v",...} value timestamp` (seconds, 3 decimals),
`# HELP`/`# TYPE` lines in between (skipped).
"""

from __future__ import annotations

import base64
import math
import re
import struct
import urllib.error
import urllib.request
from collections.abc import Callable

import cramjam

from archive.credentials import CredentialSource
from collector.sinks.sls.loggroup import delimited, varint

_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
_UNESCAPE = re.compile(r"\\(.)")
HEADERS = {
    "Content-Encoding": "snappy",
    "Content-Type": "application/x-protobuf",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
    "User-Agent": "rayhistory-collector",
}


class BadLine(ValueError):
    pass


def _unescape(value: str) -> str:
    if "\\" not in value:
        return value
    return _UNESCAPE.sub(lambda m: "\n" if m.group(1) == "n" else m.group(1), value)


def series_labels(series: str) -> bytes:
    """`name{k="v",...}` as a TimeSeries' Label fields, sorted by name, `__name__` first among them."""
    brace = series.find("{")
    if brace < 0:
        pairs = [("__name__", series)]
    else:
        if not series.endswith("}"):
            raise BadLine(f"unterminated labels in {series[:200]!r}")
        pairs = [("__name__", series[:brace])]
        pairs += [(k, _unescape(v)) for k, v in _LABEL.findall(series[brace + 1 : -1])]
    out = bytearray()
    for k, v in sorted(pairs):
        out += delimited(0x0A, delimited(0x0A, k.encode()) + delimited(0x12, v.encode()))
    return bytes(out)


def _value(text: str) -> float:
    if text in ("+Inf", "Inf"):
        return math.inf
    if text == "-Inf":
        return -math.inf
    return float(text)  # NaN included


class Encoder:
    """Sample lines -> TimeSeries messages; a series' labels are encoded once and reused (bounded cache)."""

    def __init__(self, cache_size: int = 50_000) -> None:
        self._heads: dict[str, bytes] = {}
        self.cache_size = cache_size

    def timeseries(self, line: str) -> bytes | None:
        """One sample line as a TimeSeries field of the WriteRequest (tag and length included); None for
        comments and blank lines; raises BadLine."""
        if not line or line[0] == "#":
            return None
        cut = line.find(" # ")  # an exemplar, if the writer ever adds one: not sent
        if cut > 0:
            line = line[:cut]
        close = line.rfind("}")
        head_end = line.find(" ", close if close > 0 else 0)
        if head_end < 0:
            raise BadLine(f"no value in {line[:200]!r}")
        series, rest = line[:head_end], line[head_end + 1 :].split()
        if len(rest) != 2:
            raise BadLine(f"want `series value timestamp`, got {line[:200]!r}")
        try:
            value, ts_ms = _value(rest[0]), round(float(rest[1]) * 1000)
        except ValueError as e:
            raise BadLine(f"{e} in {line[:200]!r}") from None
        head = self._heads.get(series)
        if head is None:
            if len(self._heads) >= self.cache_size:
                self._heads.clear()
            head = self._heads[series] = series_labels(series)
        sample = b"\x09" + struct.pack("<d", value) + b"\x10" + varint(ts_ms & 0xFFFFFFFFFFFFFFFF)
        return delimited(0x0A, head + delimited(0x12, sample))


def compress(write_request: bytes) -> bytes:
    return bytes(cramjam.snappy.compress_raw(write_request))


def basic_auth(access_key_id: str, secret: str, security_token: str = "") -> str:
    """SLS's remote-write credentials: the AccessKey pair; with STS the password is `{secret}${token}`."""
    password = f"{secret}${security_token}" if security_token else secret
    return "Basic " + base64.b64encode(f"{access_key_id}:{password}".encode()).decode()


def authorization(source: CredentialSource) -> Callable[[], str]:
    """The Authorization header, asked of `source` for each request: RRSA's credentials change before they expire."""

    def header() -> str:
        c = source.get()
        return basic_auth(c.access_key_id, c.access_key_secret, c.security_token)

    return header


class RemoteWriteError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"remote write answered {status}: {message}" if status else message)
        self.status = status


def post(opener: urllib.request.OpenerDirector, url: str, body: bytes, auth: str, timeout: float) -> None:
    """One POST of a compressed WriteRequest; raises RemoteWriteError (status 0: not reached)."""
    request = urllib.request.Request(url, data=body, method="POST", headers={**HEADERS, "Authorization": auth})
    try:
        with opener.open(request, timeout=timeout) as r:
            r.read()
    except urllib.error.HTTPError as e:
        detail = e.read(2000).decode("utf-8", "replace").strip()
        raise RemoteWriteError(e.code, detail or e.reason) from None
    except (OSError, ValueError) as e:  # URLError, timeouts, connection resets
        raise RemoteWriteError(0, f"cannot reach {url}: {e}") from None


def opener(proxy: str | None) -> urllib.request.OpenerDirector:
    """No environment proxy unless given one (as the log sink's client); `proxy` for every scheme."""
    return urllib.request.build_opener(urllib.request.ProxyHandler({"http": proxy, "https": proxy} if proxy else {}))
