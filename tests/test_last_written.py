"""The end of a session archived after the fact is the newest time Ray wrote in its files (FORMAT.md, `end_ms`),
whatever the clock at collection and the files' times. The same on a real Ray session: test_after_the_fact.py."""

from __future__ import annotations

import json
import os
from datetime import datetime

from archive.layout import SessionRef
from archive.manifest import NodeRecord, SessionManifest
from collector.sources.last_written import TAIL_BYTES, last_written_ms
from tests.fake_session import NODE_ID, SESSION_NAME, make_session
from tests.test_collector import RecordingStore, collect_once


def _ms(local: str) -> int:
    """A local-time stamp as Ray writes it, `2026-11-25 21:14:03,250`, in epoch milliseconds."""
    second, millis = local.split(",")
    return int(datetime.strptime(second, "%Y-%m-%d %H:%M:%S").timestamp()) * 1000 + int(millis)


def _write(session, path, data: bytes) -> None:
    target = session / "logs" / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)


def test_the_newest_stamp_of_every_kind_of_file(tmp_path):
    session = make_session(tmp_path)
    logs = session / "logs"
    assert last_written_ms(logs) == _ms("2026-11-25 20:59:24,783")  # raylet.out's only line
    _write(session, "dashboard.log", b"2026-11-25 21:10:00,100\tINFO head.py:1 -- up\ntraceback line\n")
    assert last_written_ms(logs) == _ms("2026-11-25 21:10:00,100")
    # C++ headers, with and without the component tag, in a file whose tail starts mid-line.
    big = b"x" * (TAIL_BYTES + 10) + b"\n[2026-11-25 21:12:00,007 I 1 2] core_worker.cc:5: exiting\n"
    _write(session, "python-core-worker-ab_12.log", big)
    assert last_written_ms(logs) == _ms("2026-11-25 21:12:00,007")
    # Cluster events (a string of epoch seconds) and export events (a number), the last line still being written.
    later = _ms("2026-11-25 21:14:03,000")
    event = {"event_id": "1", "source_type": "GCS", "timestamp": str(later // 1000), "message": "m"}
    _write(session, "events/event_GCS.log", json.dumps(event).encode() + b'\n{"event_id": "2", "timest')
    assert last_written_ms(logs) == later
    export = {"event_id": "e", "source_type": "EXPORT_NODE", "timestamp": later // 1000 + 60, "event_data": {}}
    _write(session, "export_events/event_EXPORT_NODE.log", json.dumps(export).encode() + b"\n")
    assert last_written_ms(logs) == later + 60_000
    # What user code printed is not Ray's clock, wherever it is (worker output, a submitted job's driver).
    for path in ("worker-aa-01000000-7.out", "old/worker-aa-01000000-7.err", "job-driver-raysubmit_1.log"):
        _write(session, path, b"2031-01-01 00:00:00,000\tINFO user.py:1 -- a date from the future\n")
    assert last_written_ms(logs) == later + 60_000


def test_no_stamp_at_all(tmp_path):
    session = make_session(tmp_path)
    for f in (session / "logs").rglob("*"):
        if f.is_file():
            f.write_bytes(b"no header here\n")
    assert last_written_ms(session / "logs") is None


def test_once_days_later_ends_the_session_when_ray_wrote_last(tmp_path):
    """The fake session is from 2026-11-25; it is archived now, from files copied today (their times are now)."""
    session = make_session(tmp_path)
    _write(session, "raylet.err", b"")
    _write(session, "gcs_server.out", b"[2026-11-25 21:05:00,500 I 1998 1998] (gcs_server) main.cc:1: bye\n")
    for f in (session / "logs").rglob("*"):
        os.utime(f)  # a copy's times: now
    store = RecordingStore(tmp_path / "archive")
    collect_once(session, store)
    ref = SessionRef("ns", "c", SESSION_NAME)
    manifest = SessionManifest.from_json(store.get(ref.manifest_key))
    end = _ms("2026-11-25 21:05:00,500")
    assert manifest.end_ms == end and json.loads(store.get(ref.ended_key))["end_ms"] == end
    assert NodeRecord.from_json(store.get(ref.node(NODE_ID).node_key)).end_ms == end
    assert manifest.last_seen_ms > end + 86_400_000  # the collection itself happened later


def test_once_without_any_stamp_ends_at_the_start(tmp_path):
    session = make_session(tmp_path)
    for f in (session / "logs").rglob("*"):
        if f.is_file():
            f.write_bytes(b"no header here\n")
    store = RecordingStore(tmp_path / "archive")
    collect_once(session, store)
    manifest = SessionManifest.from_json(store.get(SessionRef("ns", "c", SESSION_NAME).manifest_key))
    assert manifest.end_ms == manifest.start_ms
