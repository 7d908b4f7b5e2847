"""The common case of LogLineParser (archive/log_records.py), column-wise: a chunk of whole lines that are each one record.

LogLineParser is the definition of what a record is; it costs ~10 microseconds a line in Python. Most of Ray's
log bytes are runs of single-line records (C++ and Python headers without tracebacks, raw output without marker
lines), and for those this module yields the same records as Arrow columns (RE2 in C++, no Python per line).
It declines (returns None) whenever a chunk holds anything else: a continuation line, a marker line, a line over
the record limit, a carriage return, an ANSI escape, bytes that are not UTF-8, an unreadable timestamp. The
caller then feeds that chunk to LogLineParser, so behaviour is LogLineParser's in every case
(tests/test_sls_wire.py compares the two on mixed input).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from archive.log_columns import (
    CPP_STRICT,
    HEADER,
    MARKER_KEYS,
    PY_STRICT,
    headed,
    plain,
)
from archive.log_records import LogLineParser, Markers, Record, file_facts
from collector.sinks.sls.wire import Columns


@dataclass
class ColumnChunk:
    """Records of a chunk's first `count` lines; bytes from `consumed` on were not used (the caller feeds them
    to LogLineParser: the last header line, which continuation lines may still extend, and any partial line)."""

    columns: Columns
    starts: np.ndarray  # file offset of each record
    ends: np.ndarray
    lines: np.ndarray  # 1-based line number of each record (one line each: the next record's is at least +1)
    consumed: int
    next_line: int  # the number of the line starting at `consumed`
    markers: Markers  # the marker state after the consumed bytes

    @property
    def count(self) -> int:
        return len(self.starts)

    def markers_at(self, row: int) -> dict[str, str]:
        """The job/task/actor markers in force for one record (what a checkpoint at its end records)."""
        out = {}
        for key in MARKER_KEYS:
            if key in self.columns.text:
                value = self.columns.text[key][row].as_py()
            else:
                value = self.columns.constants.get(key)
            if value:
                out[key] = value
        return out


def read_chunk(
    parser: LogLineParser, data: bytes, base: int, more: bool, max_record_bytes: int, dedup_prefix: str
) -> tuple[list[list[Record] | ColumnChunk], int]:
    """The records of the file bytes `data` (at offset `base`), column-wise where parse_chunk can and by the parser
    otherwise, in file order; and where the next read should start. With `more` (the file goes on past data),
    what would stay held in the parser (a last line awaiting continuations) is handed back to be read again with
    the next chunk, so the column path can take the next run of lines."""
    parts: list[list[Record] | ColumnChunk] = []
    end = base + len(data)
    chunk = (
        parse_chunk(data, base, parser.file, parser.markers, max_record_bytes, dedup_prefix, parser.resume_line)
        if parser.idle
        else None
    )
    if chunk is not None:
        parts.append(chunk)
        parser.skip_to(chunk.consumed, chunk.next_line)
        parser.markers = chunk.markers
        if more:
            return parts, chunk.consumed
        data = data[chunk.consumed - base :]
    records = parser.feed(data)
    if records:
        parts.append(records)
    if more and not parser.idle and parser.resume_offset > base:
        # (only when that moves forward: a record as long as a chunk stays with the parser)
        back = parser.release()
        if back is not None:
            return parts, back
    return parts, end


def parse_chunk(
    data: bytes, base: int, path: str, markers: Markers, max_record_bytes: int, dedup_prefix: str, line: int = 1
) -> ColumnChunk | None:
    """The chunk `data` at file offset `base`, whose first byte starts line number `line`, column-wise; None when
    LogLineParser must read it (see the module's docstring)."""
    cut = data.rfind(b"\n") + 1
    if not cut:
        return None
    lines = data[:cut]
    if b"\r" in lines:
        return None
    ansi = b"\x1b" in lines  # Ray colours some output; LogLineParser strips the escapes from messages
    try:
        lines.decode("utf-8")
    except UnicodeDecodeError:
        return None
    component, pid, _, raw_output = file_facts(path)
    nl = np.flatnonzero(np.frombuffer(lines, np.uint8) == 10)
    bounds = np.empty(len(nl) + 1, np.int64)
    bounds[0] = 0
    bounds[1:] = nl + 1
    if int(np.diff(bounds).max()) > max_record_bytes:
        return None
    if not raw_output and len(nl) < 2:
        return None  # the single line would be held back anyway
    n = len(nl) if raw_output else len(nl) - 1  # the last header line may still get continuation lines
    # Rows without their newline: a string array over the same buffer with lengths one shorter. The held-back
    # last line is kept in `every` line's check: were it a continuation, the record before it would not be whole.
    text = pa.StringArray.from_buffers(len(nl), pa.py_buffer(bounds.astype(np.int32)), pa.py_buffer(lines))
    every = pc.utf8_slice_codeunits(text, 0, -1)
    body = every.slice(0, n)
    starts = bounds[:n] + base
    ends = bounds[1 : n + 1] + base
    numbers = np.arange(line, line + n, dtype=np.int64)
    consumed = base + int(bounds[n])
    if raw_output:
        return _raw_output(body, starts, ends, numbers, consumed, component, pid, markers, ansi, dedup_prefix)
    cpp = lines[:1] == b"["
    # The whole header is checked by one match; its fields are then cut out by position and by the separators
    # the check guarantees (cheaper than RE2 submatch extraction, which costs more than everything else here).
    if not pc.all(pc.match_substring_regex(every, CPP_STRICT if cpp else PY_STRICT)).as_py():
        return None  # a continuation line, another format, or a rare spelling: LogLineParser decides
    parsed = headed(body, cpp, component, pid, ansi)
    if parsed is None:
        return None
    seconds, nanos, text_cols, constants = parsed
    _positions(text_cols, dedup_prefix, starts, numbers)
    constants.update(markers.to_json())
    return ColumnChunk(
        Columns(seconds, nanos, text_cols, constants), starts, ends, numbers, consumed, line + n, markers
    )


def _positions(text_cols: dict[str, pa.Array], prefix: str, starts: np.ndarray, numbers: np.ndarray) -> None:
    """Where each record is in its file: `__dedup__` (file id:offset, for readers dropping repeats), and the
    `line` and `offset` that search hits point at."""
    offsets = pc.cast(pa.array(starts), pa.string())
    text_cols["__dedup__"] = pc.binary_join_element_wise(pa.scalar(prefix), offsets, "")
    text_cols["line"] = pc.cast(pa.array(numbers), pa.string())
    text_cols["offset"] = offsets


def _raw_output(
    body: pa.Array,
    starts: np.ndarray,
    ends: np.ndarray,
    numbers: np.ndarray,
    consumed: int,
    component: str,
    pid: int | None,
    markers: Markers,
    ansi: bool,
    dedup_prefix: str,
) -> ColumnChunk | None:
    """Worker and driver output: one record per line, except marker lines (`:task_name:f`, state for the lines
    after them) and lines shaped like a C++ or Python header (read as headers, as LogLineParser does)."""
    n = len(body)
    next_line = int(numbers[-1]) + 1 if n else 1
    now = time.time_ns()
    seconds = np.full(n, now // 1_000_000_000, np.int64)
    nanos = np.full(n, now % 1_000_000_000, np.uint32)
    text_cols: dict[str, pa.Array] = {"message": plain(body) if ansi else body}
    constants: dict[str, str] = {}
    has_header = pc.match_substring_regex(body, HEADER)
    if pc.any(has_header).as_py():
        cpp_rows = pc.match_substring_regex(body, CPP_STRICT)
        py_rows = pc.match_substring_regex(body, PY_STRICT)
        if pc.any(pc.and_(has_header, pc.invert(pc.or_(cpp_rows, py_rows)))).as_py():
            return None  # a header spelt loosely: LogLineParser's
        text_cols["component"] = pa.array(np.full(n, component, object), pa.string())
        text_cols["pid"] = pa.nulls(n, pa.string()) if pid is None else pa.array(np.full(n, str(pid), object))
        for rows, cpp in ((cpp_rows, True), (py_rows, False)):
            if not pc.any(rows).as_py():
                continue
            got = headed(pc.filter(body, rows), cpp, component, pid, ansi)
            if got is None:
                return None
            sub_seconds, sub_nanos, sub_cols, _ = got
            mask = rows.to_numpy(zero_copy_only=False)
            seconds[mask], nanos[mask] = sub_seconds, sub_nanos
            for key, values in sub_cols.items():
                into = text_cols.get(key, pa.nulls(n, pa.string()))
                text_cols[key] = pc.replace_with_mask(into, rows, values.cast(pa.string()))
    else:
        if component:
            constants["component"] = component
        if pid is not None:
            constants["pid"] = str(pid)
    after = Markers(markers.job_id, markers.task_name, markers.actor_name)
    marker_rows = pc.match_substring_regex(body, r"^:(?:job_id|task_name|actor_name):")
    if pc.any(marker_rows).as_py():
        for key in MARKER_KEYS:
            is_key = pc.starts_with(body, f":{key}:")
            if not pc.any(is_key).as_py():
                if getattr(markers, key):
                    constants[key] = getattr(markers, key)
                continue
            value = pc.utf8_slice_codeunits(body, len(key) + 2, 1 << 30)
            value = plain(value) if ansi else value
            if pc.any(pc.and_(is_key, pc.equal(value, ""))).as_py():
                return None  # an empty marker clears the state: LogLineParser's
            held = pc.fill_null_forward(pc.if_else(is_key, value, pa.scalar(None, pa.string())))
            if getattr(markers, key):
                held = pc.fill_null(held, getattr(markers, key))
            text_cols[key] = held
            setattr(after, key, held[n - 1].as_py())
        keep = pc.invert(marker_rows)
        mask = keep.to_numpy(zero_copy_only=False)
        text_cols = {k: pc.filter(v, keep) for k, v in text_cols.items()}
        seconds, nanos, starts, ends = seconds[mask], nanos[mask], starts[mask], ends[mask]
        numbers = numbers[mask]
    else:
        constants.update(markers.to_json())
    _positions(text_cols, dedup_prefix, starts, numbers)
    return ColumnChunk(Columns(seconds, nanos, text_cols, constants), starts, ends, numbers, consumed, next_line, after)


__all__ = ["ColumnChunk", "parse_chunk", "read_chunk", "records_columns"]


def records_columns(records: list[Record], prefix: str) -> Columns:
    """LogLineParser's records as the encoder's columns (contents as the column-wise path sends them)."""
    now = time.time_ns()
    stamps = [r.time_ns if r.time_ns is not None else now for r in records]
    text = {
        "message": [r.message for r in records],
        "__dedup__": [f"{prefix}{r.offset}" for r in records],
        "line": [str(r.line) for r in records],
        "offset": [str(r.offset) for r in records],
        "level": [r.level for r in records],
        "component": [r.component for r in records],
        "caller": [r.source for r in records],
        "pid": [None if r.pid is None else str(r.pid) for r in records],
        "tid": [None if r.tid is None else str(r.tid) for r in records],
        "job_id": [r.job_id for r in records],
        "task_name": [r.task_name for r in records],
        "actor_name": [r.actor_name for r in records],
        "part": [str(r.part) if r.part or not r.complete else None for r in records],
    }
    return Columns(
        np.array([t // 1_000_000_000 for t in stamps], np.int64),
        np.array([t % 1_000_000_000 for t in stamps], np.uint32),
        {k: pa.array(v, pa.string()) for k, v in text.items() if any(x is not None for x in v)},
        {},
    )
