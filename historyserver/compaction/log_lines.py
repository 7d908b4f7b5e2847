"""Ray's log files as one row per physical line, column-wise (Arrow): what compaction's log tables hold and what
log search matches. The rules are LogLineParser's (log_records.py), spelt per line:

- A C++ or Python header line (log_columns.CPP_STRICT / PY_STRICT) gives the line's time, level, pid and
  component; `head` keeps the header's text as written and `message` the rest (ANSI escapes removed).
- A line that is not a header continues the record above it (a traceback): it carries that record's time, level,
  pid and component, its whole text is its message and its head is empty. In raw output files (worker-*.out/.err,
  job-driver-*.log) every line is its own record: lines without a header have no time or level.
- Marker lines (`:job_id:`, `:task_name:`, `:actor_name:`, raw output files only) set the job/task/actor of the
  lines after them; the marker line itself is a row too, carrying the value it sets (line numbers stay the file's).
- A line longer than max_line_bytes keeps its first max_line_bytes bytes (the rest is not searchable).

`head + message` is the line as grep sees it, except for removed ANSI escapes and a trailing carriage return.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from archive.log_columns import ANSI, CPP_LEVELS, CPP_STRICT, MARKER_KEYS, PY_STRICT, epoch_seconds, map_values
from archive.log_records import file_facts

_S = pa.string()
SCHEMA = pa.schema(
    [
        ("node_id", _S),
        ("file", _S),
        ("line", pa.int32()),
        ("offset", pa.int64()),
        ("time", pa.float64()),
        ("level", _S),
        ("job_id", _S),
        ("worker_id", _S),
        ("pid", pa.int64()),
        ("component", _S),
        ("task_name", _S),
        ("actor_name", _S),
        ("head", _S),
        ("message", _S),
    ]
)
_WORKER_ID = re.compile(r"^(?:worker-([0-9a-f]{56})-|python-core-worker-([0-9a-f]{56})_)")
_CLEARED = "\x00"  # an empty marker clears its value: a sentinel that survives fill_null_forward
MAX_LINE_BYTES = 64 << 10


@dataclass
class FileState:
    """What one file's lines carry across chunks: the last header's fields and the markers in force."""

    time: float | None = None
    level: str | None = None
    pid: int | None = None
    component: str | None = None
    markers: dict[str, str | None] = field(default_factory=dict)


class FileLines:
    """Feed a file's bytes in order; get its lines as Arrow tables of SCHEMA (whole lines only; flush() for the
    unterminated last one)."""

    def __init__(self, node_id: str, path: str, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        self.node_id, self.path, self.max_line_bytes = node_id, path, max_line_bytes
        component, pid, job, self.raw_output = file_facts(path)
        m = _WORKER_ID.match(path.rsplit("/", 1)[-1])
        self.worker_id = (m.group(1) or m.group(2)) if m else None
        self.state = FileState(pid=pid, component=component, markers={"job_id": job})
        self.file_pid, self.file_component = pid, component
        self.offset, self.line = 0, 0
        self._tail = b""  # an unfinished line
        self._skip = False  # dropping the rest of an over-long line

    def feed(self, data: bytes) -> Iterator[pa.Table]:
        if self._tail:
            data = self._tail + data
            self._tail = b""
        cut = data.rfind(b"\n") + 1
        if self._skip:
            nl = data.find(b"\n")
            if nl < 0:
                self.offset += len(data)
                return
            self.offset += nl + 1
            data, cut, self._skip = data[nl + 1 :], cut - nl - 1, False
        if cut:
            yield self._lines(data[:cut])
        rest = data[cut:]
        if len(rest) > self.max_line_bytes:
            yield self._lines(rest[: self.max_line_bytes] + b"\n", consumed=len(rest))
            self._skip = True
        else:
            self._tail = rest

    def snapshot(self) -> dict[str, Any]:
        """Where the parser stands, as JSON: resume() continues the file as if it had never stopped."""
        st = self.state
        return {
            "offset": self.offset,
            "line": self.line,
            "tail": base64.b64encode(self._tail).decode(),
            "skip": self._skip,
            "state": [st.time, st.level, st.pid, st.component, st.markers],
        }

    @classmethod
    def resume(cls, node_id: str, path: str, doc: dict[str, Any]) -> FileLines:
        lines = cls(node_id, path)
        lines.offset, lines.line, lines._skip = int(doc["offset"]), int(doc["line"]), bool(doc["skip"])
        lines._tail = base64.b64decode(doc["tail"])
        time, level, pid, component, markers = doc["state"]
        lines.state = FileState(time, level, pid, component, dict(markers))
        return lines

    def flush(self) -> Iterator[pa.Table]:
        if self._tail:
            tail, self._tail = self._tail, b""
            yield self._lines(tail + b"\n", consumed=len(tail))

    # --- one chunk of whole lines ------------------------------------------------------------------------
    def _lines(self, data: bytes, consumed: int | None = None) -> pa.Table:
        nl = np.flatnonzero(np.frombuffer(data, np.uint8) == 10)
        n = len(nl)
        bounds = np.empty(n + 1, np.int64)
        bounds[0], bounds[1:] = 0, nl + 1
        offsets = bounds[:-1] + self.offset
        lengths = np.diff(bounds)
        if (lengths > self.max_line_bytes + 1).any():
            data, bounds = _clip(data, bounds, self.max_line_bytes)
        self.offset += len(data) if consumed is None else consumed
        text = _text(data, bounds)
        if b"\r" in data:
            text = pc.utf8_rtrim(text, characters="\r")
        ansi = b"\x1b" in data
        cols: dict[str, pa.Array] = {}
        level = pa.nulls(n, _S)
        comp = pa.nulls(n, _S)
        pid = pa.nulls(n, pa.int64())
        stamp = pa.nulls(n, pa.float64())
        head = pa.array(np.full(n, "", object), _S) if n else pa.array([], _S)
        message = text
        for cpp, pattern in ((True, CPP_STRICT), (False, PY_STRICT)):
            if (b"[" if cpp else b"\t") not in data:
                continue
            rows = pc.match_substring_regex(text, pattern)
            if not pc.any(rows).as_py():
                continue
            got = _header_fields(pc.filter(text, rows), cpp, self.file_component)
            if got is None:
                continue  # an unreadable timestamp: those lines stay continuation lines
            for name, values in got.items():
                into = {"level": level, "component": comp, "pid": pid, "time": stamp, "head": head}.get(name)
                if name == "message":
                    message = pc.replace_with_mask(message, rows, values)
                    continue
                assert into is not None
                merged = pc.replace_with_mask(into, rows, values.cast(into.type))
                if name == "level":
                    level = merged
                elif name == "component":
                    comp = merged
                elif name == "pid":
                    pid = merged
                elif name == "time":
                    stamp = merged
                else:
                    head = merged
        if ansi:
            message = pc.replace_substring_regex(message, ANSI, "")
        st = self.state
        if not self.raw_output:  # continuation lines carry their record's fields
            stamp = _carry(stamp, st.time)
            level = _carry(level, st.level)
            pid = _carry(pid, st.pid)
            comp = _carry(comp, st.component)
            if n:
                st.time, st.level = stamp[n - 1].as_py(), level[n - 1].as_py()
                st.pid, st.component = pid[n - 1].as_py(), comp[n - 1].as_py()
        else:
            pid = pc.fill_null(pid, pa.scalar(self.file_pid, pa.int64())) if self.file_pid is not None else pid
            comp = pc.fill_null(comp, pa.scalar(self.file_component, _S))
        for key in MARKER_KEYS:
            cols[key] = self._marker_column(key, text, n)
        first = self.line + 1
        self.line += n
        return pa.table(
            {
                "node_id": pa.array(np.full(n, self.node_id, object), _S),
                "file": pa.array(np.full(n, self.path, object), _S),
                "line": pa.array(np.arange(first, first + n, dtype=np.int32)),
                "offset": pa.array(offsets),
                "time": stamp,
                "level": level,
                "job_id": cols["job_id"],
                "worker_id": pa.array(np.full(n, self.worker_id, object), _S),
                "pid": pid,
                "component": comp,
                "task_name": cols["task_name"],
                "actor_name": cols["actor_name"],
                "head": head,
                "message": message,
            },
            schema=SCHEMA,
        )

    def _marker_column(self, key: str, text: pa.Array, n: int) -> pa.Array:
        held = self.state.markers.get(key)
        if self.raw_output and n:
            is_key = pc.starts_with(text, f":{key}:")
            if pc.any(is_key).as_py():
                value = pc.utf8_slice_codeunits(text, len(key) + 2, 1 << 30)
                value = pc.if_else(pc.equal(value, ""), pa.scalar(_CLEARED), value)
                col = pc.fill_null_forward(pc.if_else(is_key, value, pa.scalar(None, _S)))
                if held is not None:
                    col = pc.fill_null(col, pa.scalar(held, _S))
                last = col[n - 1].as_py()
                self.state.markers[key] = None if last == _CLEARED else last
                return pc.if_else(pc.equal(col, _CLEARED), pa.scalar(None, _S), col)
        return pa.array(np.full(n, held, object), _S) if held is not None else pa.nulls(n, _S)


def _carry(col: pa.Array, held: object) -> pa.Array:
    col = pc.fill_null_forward(col)
    return pc.fill_null(col, pa.scalar(held, col.type)) if held is not None else col


def _text(data: bytes, bounds: np.ndarray) -> pa.Array:
    """The lines without their newline, as a string array over data (a slow path decodes bad UTF-8 per line)."""
    n = len(bounds) - 1
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return pa.array([data[bounds[i] : bounds[i + 1] - 1].decode("utf-8", "replace") for i in range(n)], _S)
    # every line with its newline, over data without a copy; then each without its last character
    full = pa.StringArray.from_buffers(n, pa.py_buffer(bounds.astype(np.int32)), pa.py_buffer(data))
    return pc.utf8_slice_codeunits(full, 0, -1)


def _clip(data: bytes, bounds: np.ndarray, limit: int) -> tuple[bytes, np.ndarray]:
    """Lines longer than limit cut to their first limit bytes (at a character boundary: decoding replaces the
    rest). Rare: done in Python."""
    pieces = []
    for i in range(len(bounds) - 1):
        line = data[bounds[i] : bounds[i + 1] - 1]
        pieces.append(line[:limit] + b"\n")
    out = b"".join(pieces)
    lengths = np.array([len(p) for p in pieces], np.int64)
    new = np.empty(len(pieces) + 1, np.int64)
    new[0], new[1:] = 0, np.cumsum(lengths)
    return out, new


def _header_fields(rows: pa.Array, cpp: bool, component: str) -> dict[str, pa.Array] | None:
    """Fields of lines that all match CPP_STRICT (cpp) or PY_STRICT, cut by position and by the separator the
    pattern guarantees (as log_columns.headed does)."""
    stamps = pc.utf8_slice_codeunits(rows, 1, 20) if cpp else pc.utf8_slice_codeunits(rows, 0, 19)
    seconds = epoch_seconds(stamps)
    if seconds is None:
        return None
    ms = pc.utf8_slice_codeunits(rows, 21, 24) if cpp else pc.utf8_slice_codeunits(rows, 20, 23)
    when = seconds + ms.cast(pa.int64()).to_numpy() / 1000.0
    sep = ": " if cpp else " -- "
    parts = pc.split_pattern(rows, sep, max_splits=1)
    before = pc.list_element(parts, 0)
    out = {
        "time": pa.array(when, pa.float64()),
        "head": pc.binary_join_element_wise(before, pa.scalar(sep), ""),
        "message": pc.list_element(parts, 1),
    }
    if cpp:
        words = pc.split_pattern(
            pc.binary_join_element_wise(pc.utf8_slice_codeunits(before, 27, 1 << 30), "", " "), " "
        )
        named = pc.equal(pc.list_value_length(words), 5)
        out["level"] = map_values(pc.utf8_slice_codeunits(rows, 25, 26), CPP_LEVELS)
        out["component"] = pc.if_else(
            named, pc.utf8_slice_codeunits(pc.list_element(words, 2), 1, -1), pa.scalar(component)
        )
        out["pid"] = pc.list_element(words, 0).cast(pa.int64())
    else:
        out["level"] = pc.list_element(
            pc.split_pattern(pc.utf8_slice_codeunits(before, 24, 1 << 30), " ", max_splits=1), 0
        )
    return out


def file_tables(node_id: str, path: str, chunks: Iterable[bytes]) -> Iterator[pa.Table]:
    """Every line of one file, from its bytes in order."""
    lines = FileLines(node_id, path)
    for chunk in chunks:
        yield from lines.feed(chunk)
    yield from lines.flush()
