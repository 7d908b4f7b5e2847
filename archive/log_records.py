"""Ray's log lines as structured records, parsed from a byte stream one file at a time (the collector's SLS sink
and compaction's log tables share these rules).

Formats (reference section 1, samples in `ray-2.60/logs/log_line_samples.txt`):
- C++ (raylet, gcs_server, python-core-*): `[2026-11-25 19:58:17,283 I 7013 7013] (raylet) main.cc:283: msg`,
  the `(component)` tag absent in python-core-*; lines without the `[` prefix continue the previous record.
- Python components: `2026-11-25 19:58:12,633<TAB>INFO utils.py:319 -- msg`; following lines that are not
  headers (tracebacks) continue the record.
- Raw output (`worker-*.out/.err`, `job-driver-*.log`): one record per line, with the marker lines
  `:job_id:`, `:task_name:`, `:actor_name:` setting the job/task/actor of the lines after them.

Every record carries the 1-based number of the line it starts on (`line`, counted from the file's start; a
parser started mid-file is told the number of the line at its offset) and of the line at its end (`end_line`),
so that a reader resuming at a record's end knows the number to continue from.

A record never holds more than `max_record_bytes` of text: longer lines are cut into parts at fixed byte
positions counted from the record's start, so a re-read from the same offset yields the same records.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

# Public: the SLS sink's one-pass reader (collector/sinks/sls/lines.py) matches with these same patterns.
CPP_HEADER = re.compile(
    rb"^\[(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}),(\d{3}) ([DIWEF]) (\d+) (\d+)\] (?:\(([^)\s]+)\) )?"
    rb"([^\s:]+:\d+): ?"
)
PY_HEADER = re.compile(rb"^(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}),(\d{3})\t([A-Z]+) ([^\s:]+:\d+) -- ?")
MARKER_LINE = re.compile(rb"^:(job_id|task_name|actor_name):(.*)$")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")
CPP_LEVELS = {b"D": "DEBUG", b"I": "INFO", b"W": "WARNING", b"E": "ERROR", b"F": "FATAL"}

_WORKER_FILE = re.compile(r"^worker-([0-9a-f]+)-([0-9a-f]{8})-(\d+)\.(?:out|err)$")
_CORE_FILE = re.compile(r"^python-core-(worker|driver)-[0-9a-f]+_(\d+)\.log$")
_CORE_WORKER_ID = re.compile(r"^python-core-worker-([0-9a-f]+)_\d+\.log$")
_TRAILING_ID = re.compile(r"[-_](?:[0-9a-f]{8,}|\d+)$")
_NIL_JOB = "ffffffff"


@dataclass(slots=True)
class Record:
    """One log record. `offset`/`end` are its byte range in the file, `line`/`end_line` the 1-based numbers of the
    lines holding those offsets; `complete` is False for every part of a cut record but the last (a resume may
    only start at the end of a complete record)."""

    file: str
    node: str
    offset: int
    end: int
    message: str
    format: str  # "cpp" | "python" | "raw"
    time_ns: int | None = None
    level: str | None = None
    component: str | None = None
    source: str | None = None  # the emitting source file:line
    pid: int | None = None
    tid: int | None = None
    job_id: str | None = None
    task_name: str | None = None
    actor_name: str | None = None
    part: int = 0
    complete: bool = True
    line: int = 1
    end_line: int = 1


@dataclass
class Markers:
    """What the marker lines of a worker output file said last; persisted with a checkpoint."""

    job_id: str | None = None
    task_name: str | None = None
    actor_name: str | None = None

    def to_json(self) -> dict[str, str]:
        return {
            k: v
            for k, v in (("job_id", self.job_id), ("task_name", self.task_name), ("actor_name", self.actor_name))
            if v is not None
        }

    @classmethod
    def from_json(cls, data: dict[str, str] | None) -> Markers:
        data = data or {}
        return cls(data.get("job_id"), data.get("task_name"), data.get("actor_name"))


def worker_id_of(path: str) -> str | None:
    """The worker id a worker's log file names (worker-<id>-<job>-<pid>.out/.err, python-core-worker-<id>_<pid>.log)."""
    name = path.rsplit("/", 1)[-1]
    m = _WORKER_FILE.match(name)
    if m:
        return m.group(1)
    m = _CORE_WORKER_ID.match(name)
    return m.group(1) if m else None


def file_facts(path: str) -> tuple[str, int | None, str | None, bool]:
    """(component, pid, job_id, raw_output) that a log file's name tells."""
    name = path.rsplit("/", 1)[-1]
    m = _WORKER_FILE.match(name)
    if m:
        return "worker", int(m.group(3)), None if m.group(2) == _NIL_JOB else m.group(2), True
    m = _CORE_FILE.match(name)
    if m:
        return f"python-core-{m.group(1)}", int(m.group(2)), None, False
    stem = name.split(".", 1)[0]
    if stem.startswith("job-driver-"):
        return "job-driver", None, None, True
    return _TRAILING_ID.sub("", stem) or stem, None, None, False


class _Clock:
    """Ray stamps lines in the node's local time to the millisecond; mktime once per distinct second."""

    def __init__(self) -> None:
        self._second: bytes = b""
        self._epoch = 0

    def ns(self, second: bytes, millis: bytes) -> int | None:
        if second != self._second:
            try:
                self._epoch = int(time.mktime(time.strptime(second.decode(), "%Y-%m-%d %H:%M:%S")))
            except ValueError:
                return None
            self._second = second
        return self._epoch * 1_000_000_000 + int(millis) * 1_000_000


@dataclass
class _Pending:
    rec: Record
    skip: int  # header bytes at the start of data that are not message
    data: bytearray


class LogLineParser:
    """Feed the bytes of one file in order (from `offset`), get records. Keeps partial lines, the record that
    continuation lines may still extend, and the marker state between calls."""

    def __init__(
        self,
        file: str,
        node: str,
        offset: int = 0,
        markers: Markers | None = None,
        max_record_bytes: int = 1 << 20,
        strip_ansi: bool = True,
        line: int = 1,
    ) -> None:
        self.file = file
        self.node = node
        self.markers = markers or Markers()
        self.max_record_bytes = max(64, max_record_bytes)
        self.strip_ansi = strip_ansi
        self.component, self.pid, job, self.raw_output = file_facts(file)
        if job and not self.markers.job_id:
            self.markers.job_id = job
        self._buf = bytearray()  # an unfinished line (bounded: long lines are cut as they arrive)
        self._buf_start = offset  # file offset of _buf[0]
        self._line_no = line  # the number of the line holding _buf_start
        self._long: Record | None = None  # the template of a physical line being emitted in parts
        self._pending: _Pending | None = None
        self._clock = _Clock()

    @property
    def resume_offset(self) -> int:
        """The start of the first byte not yet part of an emitted, complete record."""
        if self._pending is not None:
            return self._pending.rec.offset
        return self._buf_start

    @property
    def resume_line(self) -> int:
        """The number of the line holding resume_offset."""
        if self._pending is not None:
            return self._pending.rec.line
        return self._line_no

    @property
    def idle(self) -> bool:
        """Nothing held: no partial line, no record awaiting continuations, no long line in parts."""
        return not self._buf and self._pending is None and self._long is None

    def skip_to(self, offset: int, line: int) -> None:
        """Continue at `offset`, the start of line number `line`, after the bytes before it were read elsewhere
        (log_columns.py's readers); only when idle, so no state refers to the skipped bytes."""
        assert self.idle, "skip_to while a record is held"
        self._buf_start = offset
        self._line_no = line

    def release(self) -> int | None:
        """Drop what is held (a record awaiting continuations, a partial line) so that the caller reads those
        bytes again, with what follows them; returns the offset to read from. None while a long line is being
        emitted in parts, a state that re-reading cannot rebuild."""
        if self._long is not None:
            return None
        offset, line = self.resume_offset, self.resume_line
        self._pending = None
        self._buf.clear()
        self._buf_start = offset
        self._line_no = line
        return offset

    def feed(self, data: bytes) -> list[Record]:
        out: list[Record] = []
        pos, n = 0, len(data)
        while pos < n:
            nl = data.find(b"\n", pos)
            if nl < 0:
                self._buf += data[pos:]
                self._cut_long_line(out)
                break
            if self._buf:
                self._buf += data[pos : nl + 1]
                self._cut_long_line(out)  # the tail of a long line is bounded too
                line = bytes(self._buf)
                self._buf.clear()
            else:
                line = data[pos : nl + 1]
            pos = nl + 1
            start = self._buf_start
            self._buf_start = start + len(line)
            self._line(line, start, out)
        return out

    def flush(self) -> list[Record]:
        """Emit what is held back: the record awaiting continuations and an unterminated last line."""
        out: list[Record] = []
        if self._buf:
            line = bytes(self._buf)
            self._buf.clear()
            start = self._buf_start
            self._buf_start = start + len(line)
            self._line(line, start, out)
        self._emit_pending(out)
        return out

    # --- internals ----------------------------------------------------------------------------------
    def _cut_long_line(self, out: list[Record]) -> None:
        """A line longer than a record may hold is emitted in parts as it arrives (bounded memory)."""
        cut = self.max_record_bytes
        while len(self._buf) > cut:
            piece = bytes(self._buf[:cut])
            del self._buf[:cut]
            start = self._buf_start
            self._buf_start += cut
            if self._long is None:
                self._emit_pending(out)
                head = self._header(piece, start, start + cut)
                rec, skip = head if head else (self._raw(start, start + cut), 0)
                self._long = rec
            else:
                rec, skip = _copy(self._long, start, start + cut, self._long.part + 1, self._line_no, self._line_no), 0
                self._long = rec
            rec.message = self._text(piece[skip:])
            rec.complete = False
            out.append(rec)

    def _line(self, line: bytes, start: int, out: list[Record]) -> None:
        end_line = self._line_no + (line[-1:] == b"\n")
        try:
            self._one_line(line, start, out, end_line)
        finally:
            self._line_no = end_line

    def _one_line(self, line: bytes, start: int, out: list[Record], end_line: int) -> None:
        end = start + len(line)
        body = line.rstrip(b"\r\n")
        if self._long is not None:  # the tail of a line emitted in parts
            rec = _copy(self._long, start, end, self._long.part + 1, self._line_no, end_line)
            rec.message = self._text(body)
            self._long = None
            out.append(rec)
            return
        if self.raw_output:
            m = MARKER_LINE.match(body)
            if m:
                self._emit_pending(out)
                setattr(self.markers, m.group(1).decode(), self._text(m.group(2)) or None)
                return  # markers are state, not records
        head = self._header(body, start, end)
        if head is None and self._pending is not None:
            p = self._pending
            p.data += line
            p.rec.end = end
            p.rec.end_line = end_line
            if len(p.data) > self.max_record_bytes:
                self._cut(p, out, keep_rest=True)
            return
        self._emit_pending(out)
        rec, skip = head if head else (self._raw(start, end), 0)
        rec.end_line = end_line
        p = _Pending(rec, skip, bytearray(line))
        if self.raw_output or head is None:
            self._cut(p, out, keep_rest=False)
        else:
            self._pending = p
            if len(p.data) > self.max_record_bytes:
                self._cut(p, out, keep_rest=True)

    def _header(self, body: bytes, start: int, end: int) -> tuple[Record, int] | None:
        mk = self.markers
        if body[:1] == b"[":
            m = CPP_HEADER.match(body)
            if m:
                return Record(
                    self.file,
                    self.node,
                    start,
                    end,
                    "",
                    "cpp",
                    time_ns=self._clock.ns(m.group(1), m.group(2)),
                    level=CPP_LEVELS[m.group(3)],
                    component=(m.group(6).decode() if m.group(6) else self.component),
                    source=m.group(7).decode(),
                    pid=int(m.group(4)),
                    tid=int(m.group(5)),
                    job_id=mk.job_id,
                    task_name=mk.task_name,
                    actor_name=mk.actor_name,
                    line=self._line_no,
                    end_line=self._line_no,
                ), m.end()
        elif body[:1].isdigit():
            m = PY_HEADER.match(body)
            if m:
                return Record(
                    self.file,
                    self.node,
                    start,
                    end,
                    "",
                    "python",
                    time_ns=self._clock.ns(m.group(1), m.group(2)),
                    level=m.group(3).decode(),
                    component=self.component,
                    source=m.group(4).decode(),
                    pid=self.pid,
                    job_id=mk.job_id,
                    task_name=mk.task_name,
                    actor_name=mk.actor_name,
                    line=self._line_no,
                    end_line=self._line_no,
                ), m.end()
        return None

    def _raw(self, start: int, end: int) -> Record:
        mk = self.markers
        return Record(
            self.file,
            self.node,
            start,
            end,
            "",
            "raw",
            component=self.component,
            pid=self.pid,
            job_id=mk.job_id,
            task_name=mk.task_name,
            actor_name=mk.actor_name,
            line=self._line_no,
            end_line=self._line_no,
        )

    def _emit_pending(self, out: list[Record]) -> None:
        p, self._pending = self._pending, None
        if p is not None:
            self._cut(p, out, keep_rest=False)

    def _cut(self, p: _Pending, out: list[Record], keep_rest: bool) -> None:
        """Emit p as records of at most max_record_bytes each; with keep_rest the tail stays pending."""
        cut = self.max_record_bytes
        rec, skip, data = p.rec, p.skip, bytes(p.data)
        while len(data) > cut:
            piece, data = data[:cut], data[cut:]
            part = _copy(rec, rec.offset, rec.offset + cut, rec.part, rec.line, rec.line + piece.count(b"\n"))
            part.message = self._text(piece[skip:])
            part.complete = False
            out.append(part)
            rec, skip = _copy(rec, part.end, rec.end, rec.part + 1, part.end_line, rec.end_line), 0
        if keep_rest:
            self._pending = _Pending(rec, skip, bytearray(data))
            return
        rec.message = self._text(data[skip:].rstrip(b"\r\n"))
        out.append(rec)

    def _text(self, raw: bytes) -> str:
        text = raw.decode("utf-8", "backslashreplace")
        if self.strip_ansi and "\x1b" in text:
            text = _ANSI.sub("", text)
        return text


def _copy(rec: Record, offset: int, end: int, part: int, line: int, end_line: int) -> Record:
    return Record(
        rec.file,
        rec.node,
        offset,
        end,
        "",
        rec.format,
        rec.time_ns,
        rec.level,
        rec.component,
        rec.source,
        rec.pid,
        rec.tid,
        rec.job_id,
        rec.task_name,
        rec.actor_name,
        part,
        True,
        line,
        end_line,
    )
