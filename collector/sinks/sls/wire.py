"""The log sink's records as `Logs` entries of SLS's LogGroup (protobuf, proto2): the bytes the SDK's `put_logs`
would serialize for the same items (tests/test_sls_wire.py checks this against the SDK's generated message).

Plain Python, no pyarrow: at a sidecar's rates (1 MB/s is ~8,000 lines a second) what costs is the line parser
(archive/log_records.py), not this; the contents that repeat from record to record (component, level, caller, pid,
the marker state) are encoded once and reused, so a record costs about its message, its position and two lengths.

The message (aliyun/log/log_logs_raw.proto; fields serialized in number order, as protobuf does):
    LogGroup { repeated Log Logs = 1; optional string Topic = 3; optional string Source = 4;
               repeated LogTag LogTags = 6; }
    Log      { required uint32 Time = 1; repeated Content Contents = 2; optional fixed32 Time_ns = 4; }
    Content  { required string Key = 1; required bytes Value = 2; }      LogTag: the same two fields.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Sequence

from archive.log_records import Record
from collector.sinks.sls.loggroup import delimited, varint

# Content keys in the order the sink sends them (message and __dedup__ first; archive/sls_schema.py names them).
KEYS = (
    "message",
    "__dedup__",
    "line",
    "offset",
    "level",
    "component",
    "caller",
    "pid",
    "tid",
    "job_id",
    "task_name",
    "actor_name",
    "part",
)
KEY_FIELD = {k: delimited(0x0A, k.encode()) + b"\x12" for k in KEYS}  # Key = 1 and Value's tag
_CACHED = 8192  # distinct (key, value) contents kept encoded; cleared when full (callers and pids are bounded)
_NANOS = struct.Struct("<I")


def content(key_field: bytes, value: bytes) -> bytes:
    """A Log's Contents field (tag 2) from its key field (`KEY_FIELD`) and value."""
    vlen = varint(len(value))
    return b"\x12" + varint(len(key_field) + len(vlen) + len(value)) + key_field + vlen + value


def pair(key: str, value: str | bytes) -> bytes:
    """A Content or LogTag body: Key = 1, Value = 2."""
    return delimited(0x0A, key.encode()) + delimited(0x12, value if isinstance(value, bytes) else value.encode())


class Encoder:
    """Records -> `Logs` entries (each with its tag and length), contents in KEYS order, absent ones left out."""

    def __init__(self) -> None:
        self._contents: dict[tuple[str, str], bytes] = {}
        self._second = -1
        self._time = b""

    def cached(self, key: str, value: str) -> bytes:
        got = self._contents.get((key, value))
        if got is None:
            if len(self._contents) >= _CACHED:
                self._contents.clear()
            got = self._contents[(key, value)] = content(KEY_FIELD[key], value.encode())
        return got

    def entries(self, records: Sequence[Record], prefix: str) -> list[bytes]:
        """One entry per record; `prefix` (the file's id and a colon) starts each `__dedup__`. A record without a
        time (raw output) is stamped now."""
        now = time.time_ns()
        cached = self.cached
        k_message, k_dedup, k_line, k_offset = (KEY_FIELD[k] for k in KEYS[:4])
        out = []
        for r in records:
            t = r.time_ns if r.time_ns is not None else now
            second, nanos = divmod(t, 1_000_000_000)
            if second != self._second:
                self._second, self._time = second, b"\x08" + varint(second)
            offset = str(r.offset)
            parts = [
                self._time,
                content(k_message, r.message.encode()),
                content(k_dedup, (prefix + offset).encode()),
                content(k_line, str(r.line).encode()),
                content(k_offset, offset.encode()),
            ]
            if r.level is not None:
                parts.append(cached("level", r.level))
            if r.component is not None:
                parts.append(cached("component", r.component))
            if r.source is not None:
                parts.append(cached("caller", r.source))
            if r.pid is not None:
                parts.append(cached("pid", str(r.pid)))
            if r.tid is not None:
                parts.append(cached("tid", str(r.tid)))
            if r.job_id is not None:
                parts.append(cached("job_id", r.job_id))
            if r.task_name is not None:
                parts.append(cached("task_name", r.task_name))
            if r.actor_name is not None:
                parts.append(cached("actor_name", r.actor_name))
            if r.part or not r.complete:
                parts.append(cached("part", str(r.part)))
            parts.append(b"\x25" + _NANOS.pack(nanos))
            body = b"".join(parts)
            out.append(b"\x0a" + varint(len(body)) + body)
        return out


def group_tail(topic: str, source: str, tags: Sequence[tuple[str, str]]) -> bytes:
    """The LogGroup fields after its Logs: Topic, Source and LogTags."""
    out = delimited(0x1A, topic.encode()) + delimited(0x22, source.encode())
    return out + b"".join(delimited(0x32, pair(k, v)) for k, v in tags)


__all__ = ["Encoder", "KEYS", "content", "group_tail", "pair", "varint"]
