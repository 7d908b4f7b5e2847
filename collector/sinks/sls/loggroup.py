"""A LogGroup (PutLogs' protobuf, reference section 5) encoded in plain Python from (key, value) pairs, for the
events sink (the log sink's records have their own encoder, wire.py, on these field helpers).

    LogGroup { repeated Log Logs = 1; optional string Topic = 3; optional string Source = 4;
               repeated LogTag LogTags = 6; }
    Log      { required uint32 Time = 1; repeated Content Contents = 2; optional fixed32 Time_ns = 4; }
    Content, LogTag { required string Key = 1; required string Value = 2; }
Fields in number order, as protobuf serializes them (tests/test_sls_events.py compares with the SDK's message).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence

_SMALL = [bytes((i,)) for i in range(128)]
_KEYS: dict[str, bytes] = {}  # a Content's Key field, encoded once per key name
_HEADS: dict[str, list[bytes]] = {}


def varint(n: int) -> bytes:
    if n < 128:
        return _SMALL[n]
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def delimited(tag: int, value: bytes) -> bytes:
    """A length-delimited protobuf field: its key byte, the varint length, the bytes (SLS LogGroups, remote write)."""
    return bytes([tag]) + varint(len(value)) + value


def _pair(key: str, value: str) -> bytes:
    return delimited(0x0A, key.encode()) + delimited(0x12, value.encode("utf-8", "replace"))


def _content(key: str, value: str) -> bytes:
    """A Logs entry's Contents field (tag 2): Key = 1, Value = 2, with their lengths."""
    v = value.encode("utf-8", "replace")
    heads = _HEADS.get(key) or _heads(key)
    if len(v) < 128:  # most values: everything before them comes from a table
        return heads[len(v)] + v
    k = _KEYS[key]
    vlen = varint(len(v))
    return b"".join((b"\x12", varint(len(k) + 1 + len(vlen) + len(v)), k, b"\x12", vlen, v))


def _heads(key: str) -> list[bytes]:
    """What precedes a value of 0..127 bytes in a Contents field of this key (tag, length, key field, value tag and
    length), kept per key name."""
    kb = key.encode()
    k = _KEYS[key] = b"\x0a" + varint(len(kb)) + kb
    heads = _HEADS[key] = [b"\x12" + varint(len(k) + 2 + n) + k + b"\x12" + _SMALL[n] for n in range(128)]
    return heads


def log_entry(time_ns: int, contents: Iterable[tuple[str, str]]) -> bytes:
    """One `Logs` entry of a LogGroup (its tag and length included)."""
    seconds, nanos = divmod(time_ns, 1_000_000_000)
    body = b"".join(
        [b"\x08", varint(seconds), *[_content(k, v) for k, v in contents], b"\x25", struct.pack("<I", nanos)]
    )
    return b"\x0a" + varint(len(body)) + body


def log_group(entries: Sequence[bytes], topic: str, source: str, tags: Sequence[tuple[str, str]]) -> bytes:
    out = b"".join(entries) + delimited(0x1A, topic.encode()) + delimited(0x22, source.encode())
    return out + b"".join(delimited(0x32, _pair(k, v)) for k, v in tags)
