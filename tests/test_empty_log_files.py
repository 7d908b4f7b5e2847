"""Files that exist in Ray's logs/ but are empty (raylet.err, a quiet worker's .out): Ray's log listing shows them
(log_agent.py ListLogs globs the folder, whatever a file's size), so the archive keeps them and the history server
lists and serves them. A real Ray session's empty files: tests/test_after_the_fact.py."""

from __future__ import annotations

from archive import logs as archive_logs
from archive.layout import LogSegment, SessionRef, parse_segment_key
from collector.service import Collector
from collector.settings import CollectorSettings
from collector.sources.session_dir import SessionDir
from tests.fake_session import NODE_ID, SESSION_NAME, make_session
from tests.helpers import client_for
from tests.test_collector import RecordingStore, collect_once

REF = SessionRef("ns", "c", SESSION_NAME)
EMPTY = ("raylet.err", "old/worker-aa-01000000-7.out", "debug_state.txt")


def _session_with_empty_files(tmp_path):
    session = make_session(tmp_path)
    (session / "logs" / "old").mkdir()
    for path in EMPTY:
        (session / "logs" / path).write_bytes(b"")
    return session


def test_an_empty_file_is_archived_as_one_empty_segment(tmp_path):
    session = _session_with_empty_files(tmp_path)
    store = RecordingStore(tmp_path / "archive")
    collect_once(session, store)
    node = REF.node(NODE_ID)
    for path in EMPTY:
        [seg] = archive_logs.list_segments(store, node, path)[path]
        assert seg == LogSegment(path, 0, 0, 0)
        assert parse_segment_key(node.segment_key(seg), node) == seg
        assert archive_logs.read_file(store, node, path) == b""
    before = len(store.puts)
    collect_once(session, store)  # a restarted collector: the archive already holds them
    assert not [k for k in store.puts[before:] if "/logs/" in k]


def test_an_empty_file_that_grows_is_archived_whole(tmp_path):
    session = _session_with_empty_files(tmp_path)
    store = RecordingStore(tmp_path / "archive")
    settings = CollectorSettings(session_dir=str(session), archive=store.url, cluster="c", namespace="ns", once=True)
    collector = Collector(settings, store, SessionDir(session))
    collector.start()
    collector.ship_once()
    err = session / "logs" / "raylet.err"
    err.write_bytes(b"[2026-11-25 20:59:30,001 E 2288 2288] (raylet) main.cc:1: late trouble\n")
    collector.finish()
    node = REF.node(NODE_ID)
    assert archive_logs.read_file(store, node, "raylet.err") == err.read_bytes()
    err.write_bytes(b"")  # truncated to nothing: the file is empty again, a new generation
    collect_once(session, store)
    assert archive_logs.read_file(store, node, "raylet.err") == b""
    assert archive_logs.read_file(store, node, "raylet.err", epoch=0) != b""


def test_empty_files_are_listed_and_served_empty(tmp_path):
    session = _session_with_empty_files(tmp_path)
    store = RecordingStore(tmp_path / "archive")
    collect_once(session, store)
    with client_for(store.url, tmp_path / "cache") as client:
        base = f"/sessions/{REF.id}/api/v0/logs"
        listing = client.get(base, params={"node_id": NODE_ID}).json()["data"]["result"]
        assert "raylet.err" in listing["raylet"]
        assert "debug_state.txt" in listing["internal"]
        old = client.get(base, params={"node_id": NODE_ID, "glob": "old/*"}).json()["data"]["result"]
        assert old == {"worker_out": ["old/worker-aa-01000000-7.out"]}
        for path in EMPTY:
            for lines in (-1, 1000):
                served = client.get(base + "/file", params={"node_id": NODE_ID, "filename": path, "lines": lines})
                assert served.status_code == 200 and served.content == b"", (path, served.text)
