"""The catalog (sessions from the index, statuses, filters) and the warehouse (compacted tables shared)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from archive import compacted
from archive.layout import SessionRef
from archive.manifest import ENDED, RUNNING, SessionManifest
from archive.storage.local import LocalStore
from collector.service import Collector
from collector.settings import CollectorSettings
from collector.sources.session_dir import SessionDir
from historyserver.catalog import Catalog
from historyserver.queries.task_records import records_sql
from historyserver.warehouse import Warehouse
from tests.fake_session import SESSION_NAME, make_session
from tests.helpers import client_for


def _manifest(cluster: str, session: str, status: str, start_ms: int, last_seen_ms: int | None = None):
    return SessionManifest(
        namespace="team-a",
        cluster=cluster,
        session_name=session,
        status=status,
        start_ms=start_ms,
        last_seen_ms=last_seen_ms,
        end_ms=start_ms + 1000 if status == ENDED else None,
    )


def _publish(store, m: SessionManifest) -> None:
    store.put(m.ref.index_key, m.to_json())
    store.put(m.ref.manifest_key, m.to_json())


def test_statuses_and_filters(tmp_path):
    store = LocalStore(tmp_path)
    now = int(time.time() * 1000)
    _publish(store, _manifest("a", "session_2026-01-01_00-00-00_000001_1", ENDED, now - 50_000))
    _publish(store, _manifest("a", "session_2026-01-01_00-00-00_000002_1", RUNNING, now - 40_000, now - 1000))
    _publish(store, _manifest("b", "session_2026-01-01_00-00-00_000003_1", RUNNING, now - 10**8, now - 10**8))
    with client_for(str(tmp_path), tmp_path / "cache") as client:
        all_ = client.get("/api/v1/sessions").json()
        assert all_["total"] == 3
        assert [s["status"] for s in all_["sessions"]] == ["running", "ended", "unfinished"]  # newest first
        unfinished = all_["sessions"][2]
        assert unfinished["end"] == now - 10**8  # last heard from
        assert client.get("/api/v1/sessions", params={"cluster": "a"}).json()["total"] == 2
        assert client.get("/api/v1/sessions", params={"status": "unfinished"}).json()["total"] == 1
        window = {"start_after": now - 45_000, "start_before": now - 30_000}
        assert [s["status"] for s in client.get("/api/v1/sessions", params=window).json()["sessions"]] == ["running"]
        page = client.get("/api/v1/sessions", params={"limit": 1, "offset": 1}).json()
        assert [s["status"] for s in page["sessions"]] == ["ended"]
        bad = client.get("/api/v1/sessions", params={"status": "dead"})
        assert bad.status_code == 400 and "unfinished" in bad.json()["error"]["message"]
        missing = client.get("/api/v1/sessions/team-a~a~session_2000-01-01_00-00-00_000000_1")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "SessionNotFound"


def test_a_rewritten_entry_is_seen_within_the_ttl(tmp_path):
    store = LocalStore(tmp_path)
    m = _manifest("a", "session_2026-01-01_00-00-00_000001_1", RUNNING, 1, int(time.time() * 1000))
    _publish(store, m)
    catalog = Catalog(store, ttl=0)
    assert catalog.get(m.ref.id).status == RUNNING
    m.status, m.end_ms = ENDED, 2
    _publish(store, m)
    assert catalog.get(m.ref.id).status == ENDED


def _archived(session, archive):
    """The session archived by a collector run with --once into a local archive: (store, ref, catalog entry)."""
    store = LocalStore(archive)
    settings = CollectorSettings(session_dir=str(session), archive=store.url, cluster="c", namespace="ns", once=True)
    Collector(settings, store, SessionDir(session)).run()
    ref = SessionRef("ns", "c", SESSION_NAME)
    return store, ref, Catalog(store).get(ref.id)


def test_compacted_tables_are_written_back_once_and_reused(tmp_path, monkeypatch):
    session = make_session(tmp_path)
    store, ref, entry = _archived(session, tmp_path / "archive")
    first = Warehouse(store, tmp_path / "cache-1")
    first.db(entry)
    assert first.wait_for_write_backs(60)
    prefix = ref.compacted_prefix(compacted.COMPACTION_VERSION)
    files = {t.file for t in compacted.TABLES} | {compacted.INFO_FILE}
    assert {o.key[len(prefix) :] for o in store.list(prefix)} == files

    def no_compaction(*args, **kwargs):
        raise AssertionError("a second server compacted a session whose tables are in the archive")

    monkeypatch.setattr("historyserver.warehouse.compact", no_compaction)
    db = Warehouse(store, tmp_path / "cache-2").db(entry)
    assert db.query("SELECT count(*) FROM log_files")[0][0] >= 3


def test_the_write_back_waits_out_a_quiet_period_unless_hurried(tmp_path, monkeypatch):
    """A closed session's first requests come right after its build: its write-back starts only after
    WRITE_BACK_QUIET_S (its upload slowed those answers by a third at 1M tasks), or at once when a stopping server
    (or a test) waits for the write-backs."""
    from concurrent.futures import wait

    from historyserver import warehouse as warehouse_module
    from historyserver.compaction import publish

    monkeypatch.setattr(warehouse_module, "WRITE_BACK_QUIET_S", 600.0)
    session = make_session(tmp_path)
    store, ref, entry = _archived(session, tmp_path / "archive")
    warehouse = Warehouse(store, tmp_path / "cache")
    assert warehouse.db(entry).query("SELECT count(*) FROM log_files")[0][0] >= 3
    job = warehouse._last_write_back
    assert job is not None and wait([job], timeout=1.0).not_done  # still in its quiet period
    assert not publish.is_published(store, ref)
    assert warehouse.wait_for_write_backs(60)  # hurried
    assert publish.is_published(store, ref)


def test_built_tables_serve_while_they_are_written_back(tmp_path, monkeypatch):
    """A closed session's built tables are written back to the archive after they serve: a request for the
    session is answered meanwhile, not held until the upload ends."""
    import threading

    from historyserver.admission import Gate
    from historyserver.compaction import publish

    session = make_session(tmp_path)
    store, ref, entry = _archived(session, tmp_path / "archive")
    uploading, release = threading.Event(), threading.Event()

    def slow_publish(*args):
        uploading.set()
        assert release.wait(60), "the test never released the upload"
        publish.publish(*args)

    monkeypatch.setattr("historyserver.warehouse.publish", slow_publish)
    warehouse = Warehouse(store, tmp_path / "cache", gate=Gate("compactions", 2, 1.0, "max-concurrent-compactions"))
    builder = threading.Thread(target=warehouse.db, args=(entry, True))
    builder.start()
    try:
        assert uploading.wait(60), "the tables were never written back"
        db = warehouse.db(entry)  # at most the gate's 1 s wait, then Overloaded, if the upload held the session
        assert db.query("SELECT count(*) FROM log_files")[0][0] >= 3
        assert not publish.is_published(store, ref)
    finally:
        release.set()
        builder.join(60)
    assert warehouse.wait_for_write_backs(60)
    assert publish.is_published(store, ref)


def test_a_first_open_answers_before_the_log_search_tables_are_built(tmp_path, monkeypatch):
    """A closed session's first open answers its pages once the tables other than log search are built; a search
    waits for the log-search tables (at most the queue wait, then 503 with Retry-After, in the search API's error
    shape), which follow on their own, and the archive gets the tables only once they are all there."""
    import threading

    from fastapi.testclient import TestClient

    from historyserver.app import create_app
    from historyserver.compaction import log_tables, publish
    from historyserver.search.log_index import SEARCH_TABLES, LogIndex
    from historyserver.settings import ServerSettings

    session = make_session(tmp_path)
    store, ref, entry = _archived(session, tmp_path / "archive")
    indexing, release = threading.Event(), threading.Event()
    real_build = log_tables.build

    def held_build(*args, **kwargs):
        indexing.set()
        assert release.wait(60), "the log-search tables were built before the session's pages answered"
        return real_build(*args, **kwargs)

    monkeypatch.setattr(log_tables, "build", held_build)
    settings = ServerSettings(archive=store.url, cache_dir=str(tmp_path / "cache"), catalog_ttl=0, queue_wait=0.5)
    app = create_app(settings, store)
    warehouse = app.state.services.warehouse
    search = f"/api/v1/sessions/{ref.id}/logs/search"
    with TestClient(app) as client:
        try:
            # With the index built inline, this page would wait on `release`, which comes only after it.
            page = client.get(f"/api/v1/sessions/{ref.id}/overview")
            assert page.status_code == 200, page.text
            assert compacted.pending(warehouse.db(entry).info)
            assert indexing.wait(60), "the log-search tables were never started"
            busy = client.get(search, params={"q": "metadata"})
            assert busy.status_code == 503 and int(busy.headers["Retry-After"]) >= 1, busy.text
            assert "log_lines and log_terms tables are still being built" in busy.json()["error"]["message"]
            # The timeline's table, built before them, answers meanwhile.
            timeline = client.get(f"/api/v1/sessions/{ref.id}/timeline")
            assert timeline.status_code == 200 and timeline.json()["total"] == 0, timeline.text
            assert compacted.pending(warehouse.db(entry).info) == ["log_lines", "log_terms"]
            assert not warehouse.ready(entry) and not publish.is_published(store, ref)
        finally:
            release.set()
        found = client.get(search, params={"q": "metadata"})
        assert found.status_code == 200 and found.json()["hits"], found.text
    index = LogIndex(Path(warehouse.db(entry, needs=SEARCH_TABLES).dir))
    lines = sum(b.rows for b in index.blocks)
    assert index.exists and lines > 0
    assert warehouse.ready(entry) and not compacted.pending(warehouse.db(entry).info)
    assert warehouse.wait_for_write_backs(60)
    prefix = ref.compacted_prefix(compacted.COMPACTION_VERSION)
    assert {o.key[len(prefix) :] for o in store.list(prefix)} == {t.file for t in compacted.TABLES} | {
        compacted.INFO_FILE
    }
    archived = json.loads(store.get(prefix + compacted.INFO_FILE))
    assert compacted.PENDING not in archived and archived["counts"]["log_lines"] == lines


def test_a_deferred_build_that_fails_is_reported_and_tried_again(tmp_path, monkeypatch):
    """An archive that cannot be read while the log-search tables are built: the search that waited for them gets
    ArchiveUnavailable (503), the tables are not written back, and the next search builds them."""
    from archive.errors import StoreError
    from historyserver.compaction import log_tables, publish
    from historyserver.errors import ArchiveUnavailable
    from historyserver.search.log_index import SEARCH_TABLES

    session = make_session(tmp_path)
    store, ref, entry = _archived(session, tmp_path / "archive")
    real_build, calls = log_tables.build, []

    def failing_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise StoreError(store.url, "the archive answered 500")
        return real_build(*args, **kwargs)

    monkeypatch.setattr(log_tables, "build", failing_once)
    warehouse = Warehouse(store, tmp_path / "cache")
    with pytest.raises(ArchiveUnavailable, match="answered 500"):
        warehouse.db(entry, needs=SEARCH_TABLES)
    assert warehouse.wait_for_write_backs(60) and not publish.is_published(store, ref)
    db = warehouse.db(entry, needs=SEARCH_TABLES)
    assert not compacted.pending(db.info) and len(calls) == 2
    assert warehouse.wait_for_write_backs(60) and publish.is_published(store, ref)


def test_tables_left_without_log_search_by_a_stopped_server_are_completed_by_the_next(tmp_path):
    """A server that stopped between a first open and its log-search tables leaves them pending in its cache: the
    next server on that cache builds them, and writes the whole build back."""
    from historyserver.compaction import publish

    session = make_session(tmp_path)
    store, ref, entry = _archived(session, tmp_path / "archive")
    cache = tmp_path / "cache"
    tables = Warehouse(store, cache).root / ref.id
    info = publish.compact_closed(store, ref, tables, entry.end_ms, defer=True)
    assert compacted.pending(info) == ["task_timeline", "log_lines", "log_terms"]
    assert not (tables / compacted.LOG_LINES.file).exists() and not (tables / compacted.TASK_TIMELINE.file).exists()
    with pytest.raises(ValueError, match="not built yet"):
        publish.publish(store, ref, tables)

    warehouse = Warehouse(store, cache)
    assert not warehouse.ready(entry)
    warehouse.db(entry)
    assert warehouse.wait_for_write_backs(60)
    assert publish.is_published(store, ref) and warehouse.ready(entry)
    done = json.loads((tables / compacted.INFO_FILE).read_text())
    assert not compacted.pending(done) and done["counts"]["log_lines"] > 0
    assert all((tables / t.file).exists() for t in (compacted.LOG_LINES, compacted.LOG_TERMS, compacted.TASK_TIMELINE))


def test_tables_written_as_parts_are_written_back_and_downloaded_part_by_part(tmp_path, monkeypatch, reference):
    """A large session's tasks and profile_events are written as parts (one per range of task id): every part
    reaches the archive, info.json lists them, and a second server downloads and reads them as one table."""
    from historyserver.compaction import tasks_sql

    monkeypatch.setattr(tasks_sql, "PARTITION_BYTES", 512)  # the sample's task events become several ranges
    session = make_session(tmp_path)
    sample = (reference / "export_events" / "export_event_samples.jsonl.txt").read_bytes().splitlines()
    tasks = [line for line in sample if b'"EXPORT_TASK"' in line]
    (session / "logs" / "export_events" / "event_EXPORT_TASK.log").write_bytes(b"\n".join(tasks) + b"\n")
    store, ref, entry = _archived(session, tmp_path / "archive")
    warehouse = Warehouse(store, tmp_path / "cache-1")
    first = warehouse.db(entry)
    assert warehouse.wait_for_write_backs(60)
    parted = {t.name: compacted.table_files(first.info, t) for t in (compacted.TASKS, compacted.PROFILE_EVENTS)}
    assert all(len(files) >= 2 for files in parted.values()), parted
    prefix = ref.compacted_prefix(compacted.COMPACTION_VERSION)
    files = {f for t in compacted.TABLES for f in compacted.table_files(first.info, t)} | {compacted.INFO_FILE}
    assert {o.key[len(prefix) :] for o in store.list(prefix)} == files
    assert not any(f in files for f in (compacted.TASKS.file, compacted.PROFILE_EVENTS.file))
    assert all(
        compacted.parse_file_name(f) in (compacted.TASKS, compacted.PROFILE_EVENTS) for f in sum(parted.values(), [])
    )

    monkeypatch.setattr("historyserver.warehouse.compact", lambda *a, **k: pytest.fail("compacted again"))
    second = Warehouse(store, tmp_path / "cache-2").db(entry)
    query = records_sql("SELECT * FROM tasks")
    rows = second.query(query)
    assert len(rows) > 1 and rows == first.query(query)
    assert second.tasks([], 1000).rows == first.tasks([], 1000).rows
    assert second.query("SELECT count(*) FROM profile_events") == first.query("SELECT count(*) FROM profile_events")
    # Log search reads the failed tasks' errors from every part.
    from fastapi.testclient import TestClient

    from historyserver.app import create_app
    from historyserver.settings import ServerSettings

    settings = ServerSettings(archive=store.url, cache_dir=str(tmp_path / "cache-2"), catalog_ttl=0)
    with TestClient(create_app(settings, store)) as client:
        found = client.get(f"/api/v1/sessions/{ref.id}/logs/search", params={"q": '"intentional failure"'}).json()
    failed = first.query("SELECT count(*) FROM tasks WHERE state = 'FAILED'")[0][0]
    assert failed and sum(h["kind"] == "task_error" for h in found["hits"]) == failed, found


@pytest.mark.parametrize(
    "files",
    [
        {"tasks": ["../../../../outside.parquet"]},
        {"tasks": ["jobs.0000.parquet"]},
        {"tasks": "tasks.0000.parquet"},
        ["tasks.0000.parquet"],
    ],
)
def test_an_archived_info_that_names_other_files_is_not_followed(tmp_path, files):
    """info.json in the archive lists the files a server fetches and writes: a name that is not one of the table's
    part names is never fetched or written; the session is compacted again instead."""
    import json

    session = make_session(tmp_path)
    store, ref, entry = _archived(session, tmp_path / "archive")
    first = Warehouse(store, tmp_path / "cache-1")
    first.db(entry)
    assert first.wait_for_write_backs(60)
    key = ref.compacted_key(compacted.COMPACTION_VERSION, compacted.INFO_FILE)
    store.put(key, json.dumps({**json.loads(store.get(key)), compacted.FILES: files}).encode())
    db = Warehouse(store, tmp_path / "cache-2").db(entry)
    assert db.query("SELECT count(*) FROM log_files")[0][0] >= 3
    assert not (tmp_path / "outside.parquet").exists()
    assert not db.info.get(compacted.FILES)  # the tables this server reads are its own build


def test_a_corrupt_segment_still_opens_and_the_overview_says_what_was_damaged(tmp_path, reference):
    session = make_session(tmp_path)
    sample = (reference / "export_events" / "export_event_samples.jsonl.txt").read_bytes().splitlines()
    for kind in ("DRIVER_JOB", "NODE"):
        lines = [line for line in sample if f'"EXPORT_{kind}"'.encode() in line]
        (session / "logs" / "export_events" / f"event_EXPORT_{kind}.log").write_bytes(b"\n".join(lines) + b"\n")
    store = LocalStore(tmp_path / "archive")
    settings = CollectorSettings(session_dir=str(session), archive=store.url, cluster="c", namespace="ns", once=True)
    Collector(settings, store, SessionDir(session)).run()
    ref = SessionRef("ns", "c", SESSION_NAME)
    [node_key] = [o.key for o in store.list(ref.nodes_prefix) if "event_EXPORT_NODE.log/" in o.key]
    store.put(node_key, b"this is not gzip")
    with client_for(store.url, tmp_path / "cache") as client:
        overview = client.get(f"/api/v1/sessions/{ref.id}/overview").json()
        assert overview["damage"]["bad_lines"] >= 1
        assert any("event_EXPORT_NODE.log" in e for e in overview["damage"]["examples"])
        assert [j["status"] for j in overview["jobs"]] == ["SUCCEEDED"]  # the undamaged file still counts
        page = client.get(f"/sessions/{ref.id}/overview")
        assert page.status_code == 200 and "Damaged archive" in page.text


def test_a_session_that_ends_is_compacted_in_the_background(tmp_path):
    from historyserver.app import create_app
    from historyserver.settings import ServerSettings

    session = make_session(tmp_path)
    store = LocalStore(tmp_path / "archive")
    app = create_app(ServerSettings(archive=store.url, cache_dir=str(tmp_path / "cache"), catalog_ttl=0), store)
    settings = CollectorSettings(session_dir=str(session), archive=store.url, cluster="c", namespace="ns", once=True)
    ref = SessionRef("ns", "c", SESSION_NAME)
    m = SessionManifest(
        namespace="ns",
        cluster="c",
        session_name=SESSION_NAME,
        status=RUNNING,
        start_ms=1,
        last_seen_ms=int(time.time() * 1000),
    )
    _publish(store, m)
    assert [e.status for e in app.state.services.catalog.sessions()] == [RUNNING]  # the first listing
    Collector(settings, store, SessionDir(session)).run()  # the session ends
    app.state.services.catalog.sessions()  # the listing that sees it end
    info = ref.compacted_prefix(compacted.COMPACTION_VERSION) + "info.json"
    deadline = time.monotonic() + 30
    while not store.exists(info):  # nobody opened it: the background compactor did
        assert time.monotonic() < deadline, "the ended session was not compacted in the background"
        time.sleep(0.05)
