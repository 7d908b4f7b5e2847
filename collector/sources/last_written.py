"""When Ray last wrote in a session's logs/ folder: the end of a session archived after the fact (`--once`).

The clock at collection says nothing about when Ray stopped (a session may be archived days later), and file times
are lost by copies; the times Ray wrote inside its files are not. Read from the tail of each file:
- cluster events (`events/`) and export events (`export_events/`): the JSON lines' `timestamp`, epoch seconds;
- Ray's own logs: the time stamp of each record header, C++ (`[2026-11-25 19:58:17,283 I ...`) and Python
  (`2026-11-25 19:58:12,633<TAB>INFO ...`), in the node's local time, read as `SessionDir.start_ms` reads the
  session's name (so a session's duration is right whatever the time zone, as long as both are read alike).
Raw output (`worker-*.out/.err`, `job-driver-*.log`) is skipped: its lines are whatever user code printed.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path

from collector.sources.session_dir import scan_tree

TAIL_BYTES = 64 << 10  # Ray's last records of a file fit in its tail; a file with no stamp there is skipped
_JSON_DIRS = ("events/", "export_events/")
_RAW_OUTPUT = re.compile(r"(?:^|/)(?:worker-[^/]*\.(?:out|err)|job-driver-[^/]*\.log)$")
_HEADER = re.compile(
    rb"^\[?(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}),(\d{3})(?:\t[A-Z]+ | [DIWEF] \d+ \d+\])", re.MULTILINE
)


def last_written_ms(logs: Path) -> int | None:
    """The newest time stamp Ray wrote under `logs`, epoch milliseconds; None when no file holds one."""
    newest: int | None = None
    for f in scan_tree(logs):
        if not f.size or _RAW_OUTPUT.search(f.path):
            continue
        try:
            tail = _tail(logs / f.path, f.size)
        except OSError:
            continue  # gone since the scan
        stamp = _json_stamp(tail) if f.path.startswith(_JSON_DIRS) else _header_stamp(tail)
        if stamp is not None and (newest is None or stamp > newest):
            newest = stamp
    return newest


def _tail(path: Path, size: int) -> bytes:
    with open(path, "rb") as f:
        if size > TAIL_BYTES:
            f.seek(size - TAIL_BYTES)
            data = f.read(TAIL_BYTES)
            return data[data.find(b"\n") + 1 :]  # the first line is cut: drop it
        return f.read()


def _json_stamp(tail: bytes) -> int | None:
    newest = None
    for line in tail.splitlines():
        try:
            seconds = float(json.loads(line)["timestamp"])
        except (ValueError, TypeError, KeyError, IndexError):
            continue  # a line being written, or not an event
        ms = int(seconds * 1000)
        newest = ms if newest is None else max(newest, ms)
    return newest


def _header_stamp(tail: bytes) -> int | None:
    newest = None
    for m in _HEADER.finditer(tail):
        try:
            stamp = datetime.strptime(m.group(1).decode(), "%Y-%m-%d %H:%M:%S")
        except ValueError:
            continue
        ms = int(stamp.timestamp()) * 1000 + int(m.group(2))
        newest = ms if newest is None else max(newest, ms)
    return newest
