"""SLS's LogGroup (protobuf, proto2) encoded column-wise with pyarrow: the bytes the SDK's `put_logs` would send.

Why not the SDK's own serialization: `put_logs` builds one protobuf object per item and per content, about
11 microseconds a line, which caps a core near 4 MB/s of Ray's short log lines (the target is 40). Here every
field of every item is one Arrow column and an item is one `binary_join_element_wise` of them, in C++; the output
is byte-for-byte what `LogGroupRaw.SerializeToString()` gives for the same items (tests/test_sls_wire.py checks
this against the SDK's generated message), and is sent through the SDK's signed transport (client.py).

The message (aliyun/log/log_logs_raw.proto; fields serialized in number order, as protobuf does):
    LogGroup { repeated Log Logs = 1; optional string Topic = 3; optional string Source = 4;
               repeated LogTag LogTags = 6; }
    Log      { required uint32 Time = 1; repeated Content Contents = 2; optional fixed32 Time_ns = 4; }
    Content  { required string Key = 1; required bytes Value = 2; }      LogTag: the same two fields.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from collector.sinks.sls.loggroup import delimited, varint

# The sidecar's memory: Arrow's default pool (mimalloc) keeps freed chunks for reuse, ~35 MiB more RSS in the
# steady 1 MB/s benchmark than the system allocator, and no faster here. Pyarrow serves only this sink in the
# collector's process; an explicit ARROW_DEFAULT_MEMORY_POOL still wins.
if not os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
    pa.set_memory_pool(pa.system_memory_pool())

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


def pair(key: str, value: str | bytes) -> bytes:
    """A Content or LogTag body: Key = 1, Value = 2."""
    return delimited(0x0A, key.encode()) + delimited(0x12, value if isinstance(value, bytes) else value.encode())


def varints(values: np.ndarray, valid: pa.Array | None = None) -> pa.BinaryArray:
    """The varint encoding of each value (a length or a uint32 time) as a binary column; null where `valid`
    (a boolean array) is false."""
    n = values.astype(np.uint64)
    rows = len(n)
    validity = None
    if valid is not None and valid.false_count:
        validity = pa.array(valid.to_numpy(zero_copy_only=False), pa.bool_()).buffers()[1]
    if not rows or int(n.max()) < 0x80:  # the common case: one byte each
        offsets = np.arange(rows + 1, dtype=np.int32)
        return pa.BinaryArray.from_buffers(
            pa.binary(), rows, [validity, pa.py_buffer(offsets), pa.py_buffer(n.astype(np.uint8).tobytes())]
        )
    size = 1 + (n >= 1 << 7) + (n >= 1 << 14) + (n >= 1 << 21) + (n >= 1 << 28)
    table = np.empty((rows, 5), np.uint8)
    for k in range(5):
        byte = ((n >> np.uint64(7 * k)) & np.uint64(0x7F)).astype(np.uint8)
        table[:, k] = np.where(size > k + 1, byte | 0x80, byte)
    keep = np.arange(5)[None, :] < size[:, None]
    offsets = np.zeros(rows + 1, np.int32)
    np.cumsum(size, out=offsets[1:])
    return pa.BinaryArray.from_buffers(
        pa.binary(), rows, [validity, pa.py_buffer(offsets), pa.py_buffer(table[keep].tobytes())]
    )


def varint_sizes(values: np.ndarray) -> np.ndarray:
    n = values.astype(np.uint64)
    return (1 + (n >= 1 << 7) + (n >= 1 << 14) + (n >= 1 << 21) + (n >= 1 << 28)).astype(np.int64)


def _lengths(col: pa.Array) -> np.ndarray:
    return pc.fill_null(pc.binary_length(col), 0).to_numpy(zero_copy_only=False).astype(np.int64)


def _join(*cols) -> pa.Array:
    """Row-wise concatenation; a null piece makes the row null."""
    return pc.binary_join_element_wise(*cols, pa.scalar(b"", pa.binary()))


@dataclass
class Columns:
    """One value per item; None for a key the items don't carry. Text columns are string or binary arrays
    (nulls allowed: that item lacks the content); `constants` are contents equal for every item."""

    seconds: np.ndarray  # int64 epoch seconds
    nanos: np.ndarray  # uint32 nanosecond part
    text: dict[str, pa.Array]
    constants: dict[str, str]


def encode_logs(cols: Columns) -> pa.BinaryArray:
    """Every item as a `Logs` entry of a LogGroup (tag, length, Log message), in a binary column whose data
    buffer holds them back to back: a batch of rows i..j is one zero-copy slice of it.

    Lengths are computed with numpy and every piece is a column or a constant, so each Log is built by one
    row-wise join: [0x0a, len(Log), 0x08, Time, (0x12, len(Content), Key field, 0x12, len(Value)), Value, ...,
    0x25, Time_ns]; an absent content has a null prefix and value, which the join leaves out."""
    n = len(cols.seconds)
    pieces: list = [pa.scalar(b"\x08", pa.binary()), varints(cols.seconds)]
    size = 1 + varint_sizes(cols.seconds) + 5  # Time and Time_ns
    for key in KEYS:
        if key in cols.text:
            values = cols.text[key].cast(pa.binary())
            valid = values.is_valid() if values.null_count else None
            lengths = _lengths(values)
            key_field = delimited(0x0A, key.encode()) + b"\x12"
            inner = len(key_field) + varint_sizes(lengths) + lengths
            prefix = _join(
                pa.scalar(b"\x12", pa.binary()),
                varints(inner, valid),
                pa.scalar(key_field, pa.binary()),
                varints(lengths),
            )
            pieces += [prefix, values]
            content = 1 + varint_sizes(inner) + inner
            size = size + (np.where(valid.to_numpy(zero_copy_only=False), content, 0) if valid is not None else content)
        elif key in cols.constants:
            const = delimited(0x12, pair(key, cols.constants[key]))
            pieces.append(pa.scalar(const, pa.binary()))
            size = size + len(const)
    nanos = cols.nanos.astype("<u4").tobytes()
    pieces += [
        pa.scalar(b"\x25", pa.binary()),
        pa.FixedSizeBinaryArray.from_buffers(pa.binary(4), n, [None, pa.py_buffer(nanos)]).cast(pa.binary()),
    ]
    logs = pc.binary_join_element_wise(
        pa.scalar(b"\x0a", pa.binary()),
        varints(np.asarray(size)),
        *pieces,
        pa.scalar(b"", pa.binary()),
        null_handling="replace",
        null_replacement=b"",
    )
    return logs.combine_chunks() if isinstance(logs, pa.ChunkedArray) else logs


def log_bytes(logs: pa.BinaryArray, start: int, stop: int) -> memoryview:
    """Rows start..stop of encode_logs' output as one contiguous byte range (no copy)."""
    offsets = np.frombuffer(logs.buffers()[1], np.int32, len(logs) + 1 + logs.offset)[logs.offset :]
    data = logs.buffers()[2]
    return memoryview(data)[offsets[start] : offsets[stop]]


def group_tail(topic: str, source: str, tags: Sequence[tuple[str, str]]) -> bytes:
    """The LogGroup fields after its Logs: Topic, Source and LogTags."""
    out = delimited(0x1A, topic.encode()) + delimited(0x22, source.encode())
    return out + b"".join(delimited(0x32, pair(k, v)) for k, v in tags)


__all__ = ["Columns", "encode_logs", "log_bytes", "group_tail", "pair", "varint", "varints", "KEYS"]
