"""A LogGroup (PutLogs' protobuf, reference section 5) encoded in plain Python, for sinks whose items are few
(events: a hundred a second) and which should not load pyarrow for it (wire.py does the log sink's volume).

    LogGroup { repeated Log Logs = 1; optional string Topic = 3; optional string Source = 4;
               repeated LogTag LogTags = 6; }
    Log      { required uint32 Time = 1; repeated Content Contents = 2; optional fixed32 Time_ns = 4; }
    Content, LogTag { required string Key = 1; required string Value = 2; }
Fields in number order, as protobuf serializes them (tests/test_sls_events.py compares with the SDK's message).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence


def varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(tag: int, value: bytes) -> bytes:
    return bytes([tag]) + varint(len(value)) + value


def _pair(key: str, value: str) -> bytes:
    return _field(0x0A, key.encode()) + _field(0x12, value.encode("utf-8", "replace"))


def log_entry(time_ns: int, contents: Iterable[tuple[str, str]]) -> bytes:
    """One `Logs` entry of a LogGroup (its tag and length included)."""
    body = b"\x08" + varint(time_ns // 1_000_000_000)
    body += b"".join(_field(0x12, _pair(k, v)) for k, v in contents)
    body += b"\x25" + struct.pack("<I", time_ns % 1_000_000_000)
    return _field(0x0A, body)


def log_group(entries: Sequence[bytes], topic: str, source: str, tags: Sequence[tuple[str, str]]) -> bytes:
    out = b"".join(entries) + _field(0x1A, topic.encode()) + _field(0x22, source.encode())
    return out + b"".join(_field(0x32, _pair(k, v)) for k, v in tags)
