"""The common case of LogLineParser (archive/log_records.py) for the SLS sink: a chunk of whole lines that are each
one record, parsed and encoded as LogGroup entries in one pass, without a Record object per line.

LogLineParser is the definition of what a record is, and costs ~10 microseconds a line. Most of Ray's log bytes
are runs of single-line records (raw worker output, with its marker lines and the odd C++ or Python header; C++
and Python headers without tracebacks), and for those this module yields exactly the entries LogLineParser's records
would encode to (wire.Encoder), for a few microseconds a line, with the same regular expressions. It declines
(returns None) whenever a chunk holds anything else: in a component's log a line that is not a header (a
continuation), a line over the record limit, a carriage return, bytes that are not UTF-8. The caller then feeds that
chunk to LogLineParser, so behaviour is LogLineParser's in every case (tests/test_sls_wire.py compares the two).
"""

from __future__ import annotations

import re
import struct
import time
from dataclasses import dataclass, field

from archive.log_records import (
    CPP_HEADER,
    CPP_LEVELS,
    MARKER_LINE,
    PY_HEADER,
    LogLineParser,
    Markers,
    Record,
    file_facts,
)
from collector.sinks.sls.wire import KEY_FIELD, Encoder, varint

_ANSI = re.compile(rb"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")  # log_records._ANSI; on valid UTF-8 the same
_DIGITS = frozenset(b"0123456789")
_NANOS = struct.Struct("<I")
_CLOCK_KEPT = 4096
_MILLIS = {b"%03d" % ms: b"\x25" + _NANOS.pack(ms * 1_000_000) for ms in range(1000)}  # a header's ,mmm -> Time_ns
_HEADS = 4096  # values (and entries) shorter than this take their length prefix from a table


def _head(key: str, size: int) -> bytes:
    """What precedes a value of `size` bytes in its Contents field: tag, length, key field, the value's length."""
    key_field = KEY_FIELD[key]
    vlen = varint(size)
    return b"\x12" + varint(len(key_field) + len(vlen) + size) + key_field + vlen


_MESSAGE_HEAD = [_head("message", n) for n in range(_HEADS)]
_DEDUP_HEAD = [_head("__dedup__", n) for n in range(128)]  # a file id, a colon and an offset
_LINE_HEAD = [_head("line", n) for n in range(24)]
_OFFSET_HEAD = [_head("offset", n) for n in range(24)]
_ENTRY_HEAD = [b"\x0a" + varint(n) for n in range(_HEADS)]


@dataclass
class Encoded:
    """Records as LogGroup entries, with what a checkpoint after each needs."""

    entries: list[bytes] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)  # file offset after each record
    end_lines: list[int] = field(default_factory=list)  # the number of the line at that offset
    markers: list[dict[str, str]] = field(default_factory=list)  # the marker state in force (shared dicts)
    complete: list[bool] | None = None  # None: every record is complete
    start: int = 0  # file offset of the first record

    @property
    def count(self) -> int:
        return len(self.entries)


def from_records(records: list[Record], prefix: str, encoder: Encoder) -> Encoded:
    """LogLineParser's records, encoded."""
    marks: dict[tuple[str | None, str | None, str | None], dict[str, str]] = {}
    markers = []
    for r in records:
        key = (r.job_id, r.task_name, r.actor_name)
        m = marks.get(key)
        if m is None:
            m = marks[key] = Markers(*key).to_json()
        markers.append(m)
    return Encoded(
        encoder.entries(records, prefix),
        [r.end for r in records],
        [r.end_line for r in records],
        markers,
        [r.complete for r in records],
        records[0].offset,
    )


def _known(second: bytes | None, millis: bytes | None, tail: bytes | None) -> tuple[bytes, bytes, bytes] | None:
    """Time, Time_ns and the fields' contents of a header whose parts were all read before (else None)."""
    if second and millis is not None and tail is not None:
        return second, millis, tail
    return None


class LineReader:
    """One file's fast path; keeps the encoded contents that repeat (its component and pid, the marker state)."""

    def __init__(self, parser: LogLineParser, encoder: Encoder) -> None:
        self.parser, self.encoder = parser, encoder
        self.component, self.pid, _, self.raw_output = file_facts(parser.file)
        self._epochs: dict[bytes, int | None] = {}
        self._state: tuple[Markers, dict[str, str], bytes, bytes] | None = None
        self._heads = (_MESSAGE_HEAD, _DEDUP_HEAD, _LINE_HEAD, _OFFSET_HEAD)
        self._tails: dict[bytes, bytes] = {}  # a header's fields -> its encoded contents after the offset
        self._seconds: dict[bytes, bytes] = {}  # a header's `YYYY-mm-dd HH:MM:SS` -> its Time field (b"": unreadable)

    def read(self, data: bytes, base: int, more: bool, prefix: str) -> tuple[list[Encoded], int]:
        """The records of the file bytes `data` (at offset `base`), by the fast path where it can and by the parser
        otherwise, in file order; and where the next read should start. With `more` (the file goes on past data),
        what would stay held in the parser (a last line awaiting continuations) is handed back to be read again
        with the next chunk, so the fast path can take the next run of lines."""
        parser = self.parser
        parts: list[Encoded] = []
        end = base + len(data)
        chunk = self.chunk(data, base, prefix) if parser.idle else None
        if chunk is not None:
            encoded, consumed, next_line = chunk
            parts.append(encoded)
            parser.skip_to(consumed, next_line)
            if more:
                return parts, consumed
            data = data[consumed - base :]
        records = parser.feed(data)
        if records:
            parts.append(from_records(records, prefix, self.encoder))
        if more and not parser.idle and parser.resume_offset > base:
            # (only when that moves forward: a record as long as a chunk stays with the parser)
            back = parser.release()
            if back is not None:
                return parts, back
        return parts, end

    def flush(self, prefix: str) -> Encoded | None:
        records = self.parser.flush()
        return from_records(records, prefix, self.encoder) if records else None

    def _constants(self) -> tuple[dict[str, str], bytes, bytes]:
        """The marker state as JSON, the encoded contents a raw line carries after its position (component, pid,
        job, task, actor) and those of the markers alone (after a header's fields); re-encoded only when a marker
        line changes them."""
        mk = self.parser.markers
        state = self._state
        if state is None or state[0] != mk:
            cached = self.encoder.cached
            fixed = []
            if self.component is not None:
                fixed.append(cached("component", self.component))
            if self.pid is not None:
                fixed.append(cached("pid", str(self.pid)))
            marks = mk.to_json()
            marked = b"".join(cached(k, v) for k, v in marks.items())  # job_id, task_name, actor_name: KEYS order
            state = self._state = (
                Markers(mk.job_id, mk.task_name, mk.actor_name),
                marks,
                b"".join(fixed) + marked,
                marked,
            )
        return state[1], state[2], state[3]

    def _second(self, second: bytes) -> bytes:
        """A header's Time field from its `YYYY-mm-dd HH:MM:SS` (local time, mktime once per distinct second, as
        LogLineParser's clock); b"" when it cannot be read."""
        epoch = self._epoch(second)
        if len(self._seconds) >= _CLOCK_KEPT:
            self._seconds.clear()
        got = self._seconds[second] = b"" if epoch is None else b"\x08" + varint(epoch)
        return got

    def _tail(self, fixed: bytes, head: re.Match[bytes]) -> bytes:
        """The contents after a header line's position: level, component, caller, pid, tid (the markers follow);
        kept under the header's bytes after its time (`fixed`)."""
        cached = self.encoder.cached
        pid: str | None
        tid: str | None
        if head.re is CPP_HEADER:
            letter, pid_b, tid_b, tag, caller = head.group(3, 4, 5, 6, 7)
            level, component = CPP_LEVELS[letter], tag.decode() if tag else self.component
            pid, tid = str(int(pid_b)), str(int(tid_b))
        else:
            level_b, caller = head.group(3, 4)
            level, component, tid = level_b.decode(), self.component, None
            pid = None if self.pid is None else str(self.pid)
        parts = [cached("level", level)]
        if component is not None:
            parts.append(cached("component", component))
        parts.append(cached("caller", caller.decode()))
        if pid is not None:
            parts.append(cached("pid", pid))
        if tid is not None:
            parts.append(cached("tid", tid))
        if len(self._tails) >= _CLOCK_KEPT:
            self._tails.clear()
        got = self._tails[fixed] = b"".join(parts)
        return got

    def _epoch(self, second: bytes) -> int | None:
        """mktime once per distinct second, as LogLineParser's clock."""
        if second in self._epochs:
            return self._epochs[second]
        if len(self._epochs) >= _CLOCK_KEPT:
            self._epochs.clear()
        try:
            epoch: int | None = int(time.mktime(time.strptime(second.decode(), "%Y-%m-%d %H:%M:%S")))
        except ValueError:
            epoch = None
        self._epochs[second] = epoch
        return epoch

    def chunk(self, data: bytes, base: int, prefix: str) -> tuple[Encoded, int, int] | None:
        """(entries, the offset and line number after the consumed lines) of the chunk at file offset `base`; None
        when LogLineParser must read it (see the module's docstring)."""
        cut = data.rfind(b"\n") + 1
        if not cut:
            return None
        body = data[:cut]
        if b"\r" in body:
            return None
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            return None
        lines = body.split(b"\n")
        lines.pop()  # after the last newline
        if max(map(len, lines)) + 1 > self.parser.max_record_bytes:
            return None  # LogLineParser cuts it in parts
        if not self.raw_output:
            if len(lines) < 2:
                return None  # the single line would be held back anyway
            last = lines.pop()  # the last header line may still get continuation lines: held back
            if (CPP_HEADER if last[:1] == b"[" else PY_HEADER).match(last) is None:
                return None  # a continuation: the record before it is not whole
        out = Encoded(start=base)
        entries, ends, end_lines, markers = out.entries, out.ends, out.end_lines, out.markers
        parser, raw_output = self.parser, self.raw_output
        now = time.time_ns()
        now_time = b"\x08" + varint(now // 1_000_000_000)
        now_nanos = b"\x25" + _NANOS.pack(now % 1_000_000_000)
        marks, constants, marked = self._constants()
        heads, tails, seconds = self._heads, self._tails, self._seconds
        message_head, dedup_head, line_head, offset_head = heads
        prefix_b = prefix.encode()
        if len(prefix_b) > 100:
            return None
        pos, number = base, parser.resume_line
        join = b"".join
        for line in lines:
            end = pos + len(line) + 1
            first = line[:1]
            # A header is a fixed-width time, then fields that repeat line after line (level, pid, tid, component,
            # caller) up to the first separator. A time and such a run already read and checked by the regex are
            # keys of what was encoded for them: a line made of two known keys is that header without the regex
            # (the regex's match of a line depends only on those bytes).
            known = None
            if first == b"[":
                sep = line.find(b": ", 24) + 2
                if sep > 1 and line[20] == 44:  # the comma before the milliseconds
                    known = _known(seconds.get(line[1:20]), _MILLIS.get(line[21:24]), tails.get(line[24:sep]))
            elif first.isdigit():
                sep = line.find(b" -- ", 23) + 4
                if sep > 3 and line[19] == 44:
                    known = _known(seconds.get(line[:19]), _MILLIS.get(line[20:23]), tails.get(line[23:sep]))
            elif first == b":" and raw_output:
                m = MARKER_LINE.match(line)
                if m:  # state, not a record
                    value = m.group(2)
                    if b"\x1b" in value:
                        value = _ANSI.sub(b"", value)
                    setattr(parser.markers, m.group(1).decode(), value.decode() or None)
                    marks, constants, marked = self._constants()
                    pos, number = end, number + 1
                    continue
            if known is not None:
                message, (stamp, nanos, tail) = line[sep:], known
                tail += marked
            else:
                head = None
                if first == b"[":
                    head = CPP_HEADER.match(line)
                elif first.isdigit():
                    head = PY_HEADER.match(line)
                if head is None:
                    if not raw_output:
                        return None  # a continuation line, another format, or a rare spelling: LogLineParser's
                    message, stamp, nanos, tail = line, now_time, now_nanos, constants
                else:
                    cut_at = head.end()
                    message = line[cut_at:]
                    if first == b"[":
                        when, fixed = line[1:24], line[24:cut_at]
                    else:
                        when, fixed = line[:23], line[23:cut_at]
                    stamp = seconds.get(when[:19]) or self._second(when[:19])
                    nanos = _MILLIS[when[20:]]
                    if not stamp:  # an unreadable time: stamped now, as LogLineParser's time None
                        stamp, nanos = now_time, now_nanos
                    tail = (tails.get(fixed) or self._tail(fixed, head)) + marked
            if b"\x1b" in message:
                message = _ANSI.sub(b"", message)
            offset = b"%d" % pos
            dedup = prefix_b + offset
            numeral = b"%d" % number
            size = len(message)
            fields = join(
                (
                    stamp,
                    message_head[size] if size < _HEADS else _head("message", size),
                    message,
                    dedup_head[len(dedup)],
                    dedup,
                    line_head[len(numeral)],
                    numeral,
                    offset_head[len(offset)],
                    offset,
                    tail,
                    nanos,
                )
            )
            size = len(fields)
            entries.append((_ENTRY_HEAD[size] if size < _HEADS else b"\x0a" + varint(size)) + fields)
            ends.append(end)
            number += 1
            end_lines.append(number)
            markers.append(marks)
            pos = end
        return out, pos, number
