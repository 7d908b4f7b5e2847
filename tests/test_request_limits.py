"""Every request is bounded: PromQL's sample budget and timeout (Prometheus's own limits and answers), the
sessions one query may read, and admission of heavy work (queries, compactions) with 503 + Retry-After."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from archive.layout import LogSegment, SessionRef
from archive.logs import encode
from archive.storage.local import LocalStore
from historyserver.promql.engine import Engine
from historyserver.promql.limits import QueryLimits, TooManySamples
from historyserver.promql.memory_store import MemoryStore
from historyserver.promql.model import RawSeries
from tests.metrics_archive import FakeSession, write_session
from tests.prometheus_api_helpers import API, err, make_client, ok, secs

T0 = 1_767_225_600_000
HOUR = 3_600_000
SESSIONS = [FakeSession("team", f"c{i}", f"session_2026-01-01_00-00-00_00000{i}_1", T0, T0 + HOUR) for i in range(3)]
TOO_MANY = "query processing would load too many samples into memory in query execution"
BOMB = "count_over_time(up[100y:1s])"  # 3 billion subquery steps: the query that took the server down


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    return _fresh_archive(tmp_path_factory.mktemp("limits-archive"))


@pytest.fixture(scope="module")
def client(archive, tmp_path_factory):
    with make_client(archive, tmp_path_factory.mktemp("limits-cache")) as c:
        yield c


def _engine(samples: int = 240, **limits) -> Engine:
    import numpy as np

    ts = np.arange(samples, dtype=np.int64) * 15_000
    series = [RawSeries({"__name__": "up", "instance": str(i)}, ts, np.ones(samples)) for i in range(4)]
    return Engine(MemoryStore(series), limits=QueryLimits(**limits))


# -- the engine -------------------------------------------------------------------------------------------------


def test_a_huge_subquery_is_refused_before_its_grid_is_allocated():
    started = time.monotonic()
    with pytest.raises(TooManySamples) as e:
        _engine().instant(BOMB, 3_600_000)
    assert time.monotonic() - started < 1.0
    assert str(e.value) == TOO_MANY and e.value.status == 422 and e.value.error_type == "execution"


def test_samples_are_counted_through_range_selectors_and_subqueries():
    # 4 series x 240 samples = 960 raw samples: a range selector over all of them needs at least that many.
    assert _engine(max_samples=2000).instant("count_over_time(up[1h])", 3_600_000).result
    with pytest.raises(TooManySamples):
        _engine(max_samples=900).instant("count_over_time(up[1h])", 3_600_000)
    # A subquery at 1s steps over an hour evaluates 3,601 steps of 4 series (14,404 samples), then holds them as
    # a range vector (14,404 more), beside the 960 raw samples read: 29,768, and 4 for the result.
    assert _engine(max_samples=29_772).instant("max_over_time(up[1h:1s])", 3_600_000).result
    with pytest.raises(TooManySamples):
        _engine(max_samples=29_771).instant("max_over_time(up[1h:1s])", 3_600_000)
    # A range query's own vectors count: 4 series x 241 steps.
    assert _engine(max_samples=5000).range("up", 0, 3_600_000, 15_000).result
    with pytest.raises(TooManySamples):
        _engine(max_samples=1500).range("up * 2", 0, 3_600_000, 15_000)


def test_the_timeout_is_checked_while_evaluating(monkeypatch):
    from historyserver.promql import limits

    now = [1000.0]
    monkeypatch.setattr(limits.time, "monotonic", lambda: now[0])
    engine = _engine(timeout_s=5)
    calls = []
    real = engine.store.select

    def slow_select(*args):  # each selector read takes 3 s of the fake clock
        calls.append(args)
        now[0] += 3
        return real(*args)

    engine.store.select = slow_select
    assert engine.instant("up", 3_600_000).result  # one read: 3 s, within 5
    with pytest.raises(limits.QueryTimeout) as e:
        engine.instant("up + on(instance) (up offset 1m) + on(instance) (up offset 2m)", 3_600_000)
    assert str(e.value) == "query timed out in query execution" and e.value.status == 503
    assert len(calls) == 1 + 2  # stopped after the second read, not after all three
    # A request's own timeout only shortens the server's.
    assert QueryLimits(timeout_s=5).budget(60).deadline == now[0] + 5
    assert QueryLimits(timeout_s=5).budget(1).deadline == now[0] + 1


# -- the HTTP API -----------------------------------------------------------------------------------------------


def test_the_bomb_answers_422_as_prometheus_and_the_server_keeps_answering(client):
    started = time.monotonic()
    err(client.get(f"{API}/query", params={"query": BOMB, "time": secs(T0 + HOUR)}), 422, "execution", TOO_MANY)
    assert time.monotonic() - started < 10
    assert ok(client.get(f"{API}/query", params={"query": "count(up)", "time": secs(T0 + HOUR // 2)}))["result"]


def test_max_samples_and_timeout_settings(archive, tmp_path):
    with make_client(archive, tmp_path / "a", query_max_samples=100) as c:
        err(
            c.get(
                f"{API}/query_range", params={"query": "up", "start": secs(T0), "end": secs(T0 + HOUR), "step": "60"}
            ),
            422,
            "execution",
            TOO_MANY,
        )
        ok(c.get(f"{API}/query", params={"query": "up", "time": secs(T0 + HOUR // 2)}))
    with make_client(archive, tmp_path / "b", query_timeout="1ms") as c:
        # The first read of the archive (it compacts three sessions) takes far longer than a millisecond.
        err(
            c.get(f"{API}/query", params={"query": "up", "time": secs(T0 + HOUR // 2)}),
            503,
            "timeout",
            "query timed out in query execution",
        )
    with make_client(archive, tmp_path / "c") as c:  # the request's own, shorter timeout
        err(
            c.get(f"{API}/query", params={"query": "up", "time": secs(T0 + HOUR // 2), "timeout": "1ms"}),
            503,
            "timeout",
        )


def test_a_query_over_too_many_sessions_names_the_limit_and_how_to_narrow_it(archive, tmp_path):
    with make_client(archive, tmp_path, query_max_sessions=2) as c:
        msg = err(c.get(f"{API}/query", params={"query": "up", "time": secs(T0 + HOUR // 2)}), 422, "execution")
        assert "3 sessions" in msg and "--query-max-sessions=2" in msg and "SessionName" in msg
        one = SESSIONS[0]
        data = ok(
            c.get(
                f"{API}/query",
                params={"query": f'ray_node_cpu_utilization{{SessionName="{one.name}"}}', "time": secs(T0 + HOUR // 2)},
            )
        )
        assert [r["metric"]["SessionName"] for r in data["result"]] == [one.name]


def test_busy_query_slots_answer_503_with_retry_after(archive, tmp_path):
    with make_client(archive, tmp_path, max_concurrent_queries=1, queue_wait=0.2) as c:
        params = {"query": "up", "time": secs(T0 + HOUR // 2)}
        ok(c.get(f"{API}/query", params=params))
        with c.app.state.services.gates.queries.slot():  # another query holds the only slot
            r = c.get(f"{API}/query", params=params)
            err(r, 503, "unavailable", "--max-concurrent-queries")
            assert r.headers["Retry-After"] == "1"
        ok(c.get(f"{API}/query", params=params))
        assert c.app.state.services.gates.queries.refused == 1


def _fresh_archive(root: Path) -> Path:
    """An archive no server compacted yet (servers write their tables back into the archive)."""
    for s in SESSIONS:
        write_session(LocalStore(root), s)
    return root


def test_busy_compaction_slots_answer_503_in_each_family_shape(tmp_path):
    sid = SESSIONS[1].id
    archive = _fresh_archive(tmp_path / "archive")
    with make_client(archive, tmp_path / "cache", max_concurrent_compactions=1, queue_wait=0.2) as c:
        with c.app.state.services.gates.compactions.slot():
            r = c.get(f"/sessions/{sid}/api/v0/tasks")
            assert r.status_code == 503 and r.headers["Retry-After"] == "1"
            body = r.json()
            assert body["result"] is False and "--max-concurrent-compactions" in body["msg"]
            r = c.get(f"/api/v1/sessions/{sid}/overview")
            assert r.status_code == 503 and r.json()["error"]["code"] == "Overloaded"
        assert c.get(f"/sessions/{sid}/api/v0/tasks").status_code == 200


def test_a_request_waiting_on_a_sessions_compaction_is_bounded(tmp_path):
    sid = SESSIONS[2].id
    archive = _fresh_archive(tmp_path / "archive")
    with make_client(archive, tmp_path / "cache", queue_wait=0.2) as c:
        entry = c.app.state.services.catalog.get(sid)
        release = threading.Event()
        started = threading.Event()
        real = c.app.state.services.warehouse._prepare

        def slow_prepare(*args):  # the background compactor, still at work
            started.set()
            release.wait(30)
            return real(*args)

        c.app.state.services.warehouse._prepare = slow_prepare
        worker = threading.Thread(target=c.app.state.services.warehouse.db, args=(entry,), kwargs={"patient": True})
        worker.start()
        assert started.wait(10)
        r = c.get(f"/sessions/{sid}/api/v0/tasks")
        assert r.status_code == 503 and "being compacted" in r.json()["msg"]
        release.set()
        worker.join(30)
        assert c.get(f"/sessions/{sid}/api/v0/tasks").status_code == 200


def test_bad_limit_settings_are_refused_with_a_message(archive):
    from historyserver.errors import SettingsError
    from historyserver.settings import ServerSettings

    for bad, words in [
        ({"query_timeout": "soon"}, "--query-timeout"),
        ({"query_max_samples": 0}, "at least 1"),
        ({"queue_wait": -1}, "--queue-wait"),
    ]:
        with pytest.raises(SettingsError, match=words):
            ServerSettings(archive=str(archive), **bad)


# -- the real server process ------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_the_bomb_against_a_served_process_stays_small_and_fast(archive, tmp_path):
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rayhistory.cli",
            "serve",
            "--archive",
            str(archive),
            "--port",
            str(port),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--no-compact-on-end",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{base}/api/v1/sessions", timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, "the server did not start"
                time.sleep(0.2)
        started = time.monotonic()
        r = httpx.get(f"{base}{API}/query", params={"query": BOMB, "time": secs(T0 + HOUR)}, timeout=30)
        assert r.status_code == 422 and r.json()["error"] == TOO_MANY
        assert time.monotonic() - started < 10
        r = httpx.get(
            f"{base}{API}/query_range",
            params={
                "query": "sum_over_time(up[100y:1ms])",
                "start": secs(T0 - 30 * 24 * HOUR),
                "end": secs(T0 + HOUR),
                "step": "1d",
            },
            timeout=30,
        )
        assert r.status_code == 422, r.text
        assert _peak_rss_mb(proc.pid) < 2048
        r = httpx.get(f"{base}{API}/query", params={"query": "count(up)", "time": secs(T0 + HOUR // 2)}, timeout=30)
        assert r.status_code == 200 and r.json()["data"]["result"][0]["value"][1] == "3"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


# -- large answers of the Ray API --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def task_session(tmp_path_factory):
    """A 3,000-task synthetic session (Ray 2.60's export events and worker logs) in small segments."""
    from benchmarks import synthetic_session

    root = tmp_path_factory.mktemp("tasks-archive")
    info = synthetic_session.generate(
        str(root), 3000, nodes=2, workers_per_node=8, segment_mb=0.05, procs=1, log=lambda msg: None
    )
    return root, info["session_id"]


def test_large_task_pages_and_traces_wait_for_a_slot(task_session, tmp_path):
    root, sid = task_session
    with make_client(root, tmp_path, max_concurrent_large=1, queue_wait=0.2) as c:
        s = f"/sessions/{sid}"
        assert c.get(f"{s}/api/v0/tasks?limit=5000").status_code == 200
        gate = c.app.state.services.gates.large
        with gate.slot():
            r = c.get(f"{s}/api/v0/tasks?limit=5000")
            assert r.status_code == 503 and r.headers["Retry-After"] == "1"
            assert "--max-concurrent-large" in r.json()["msg"]
            assert c.get(f"{s}/api/v0/tasks?limit=1000").status_code == 200  # an ordinary page is not held up
            assert c.get(f"{s}/api/v0/tasks/timeline?download=1").status_code == 503
            assert c.get(f"/api/v1/sessions/{sid}/timeline").json()["error"]["code"] == "Overloaded"
        # A streamed trace gives its slot back once sent.
        events = c.get(f"{s}/api/v0/tasks/timeline?download=1").json()
        assert gate.running == 0
        assert len([e for e in events if e["ph"] == "X"]) > 1000


def test_a_held_slot_lasts_as_long_as_its_stream_and_is_released_once():
    from historyserver.admission import Gate

    gate = Gate("large answers", 1, 0, "max-concurrent-large")
    ticket = gate.hold()
    stream = ticket.stream(iter([b"a", b"b"]))
    assert next(stream) == b"a" and gate.running == 1
    assert list(stream) == [b"b"] and gate.running == 0
    ticket.release()  # the response's background task, after the stream released it: no double release
    assert gate.running == 0
    with gate.slot():
        pass
    never_started = gate.hold()  # a client that went away before the first byte: the background task frees it
    never_started.release()
    assert gate.running == 0 and gate.hold() is not None


def test_a_huge_tail_keeps_a_bounded_number_of_segments(task_session, tmp_path, monkeypatch):
    from historyserver.queries import logs

    root, sid = task_session
    monkeypatch.setattr(logs, "CACHE_BYTES", 120_000)
    held = []
    real = logs.ArchivedLog._remember

    def remember(self, seg, data):
        real(self, seg, data)
        held.append(self._cached_bytes)

    monkeypatch.setattr(logs.ArchivedLog, "_remember", remember)
    with make_client(root, tmp_path) as c:
        s = f"/sessions/{sid}"
        node = c.get(f"{s}/api/v0/nodes").json()["data"]["result"]["result"][0]["node_id"]
        # A 1 MB file archived in twenty 50 kB segments, as the collector ships a growing file.
        whole = b"".join(b"line %07d of a long raylet.out\n" % i for i in range(32_000))
        ref = SessionRef.from_id(sid).node(node)
        for start in range(0, len(whole), 50_000):
            end = min(start + 50_000, len(whole))
            LocalStore(root).put(ref.segment_key(LogSegment("big.out", 0, start, end)), encode(whole[start:end]))
        name = "big.out"
        assert (
            c.get(f"{s}/api/v0/logs/file", params={"node_id": node, "filename": name, "lines": "-1"}).content == whole
        )
        held.clear()
        tail = c.get(f"{s}/api/v0/logs/file", params={"node_id": node, "filename": name, "lines": "100000000"})
        assert tail.content == whole
        assert held and max(held) <= 120_000


def test_the_streamed_trace_is_the_bytes_of_the_whole_list(monkeypatch):
    from historyserver.queries import timeline

    for n in (0, 1, 7, 500):
        events = [{"ph": "X", "pid": i % 3, "args": {"name": "f" * (i % 40)}} for i in range(n)]
        monkeypatch.setattr(timeline, "chrome_trace_events", lambda db, job_id, e=events: iter(e))
        for chunk in (1, 300, 1 << 20):
            pieces = list(timeline.chrome_trace_json(None, None, chunk))
            assert b"".join(pieces) == json.dumps(events).encode()
            assert len(pieces) <= max(2, n + 1) and (chunk > 1 or n < 2 or len(pieces) > 2)


def test_a_session_query_over_its_memory_limit_is_a_clear_422(task_session, tmp_path, monkeypatch):
    from historyserver.queries import session_db

    root, sid = task_session
    monkeypatch.setattr(session_db, "QUERY_MEMORY", "1MB")
    with make_client(root, tmp_path) as c:
        r = c.get(f"/sessions/{sid}/api/v0/tasks/summarize", params={"summary_by": "lineage"})
        assert r.status_code == 422, r.text[:300]
        assert "1MB" in r.json()["msg"] and "narrow it" in r.json()["msg"]


def test_an_at_time_before_1970_is_bad_data_not_a_crash(client):
    # promql_parser panics (a BaseException) reading such a time; the API still answers in its shape.
    err(client.get(f"{API}/query", params={"query": "up @ -1.5", "time": secs(T0)}), 400, "bad_data", "1970")


def test_the_served_config_outlives_a_load_balancers_idle_timeout(archive, tmp_path):
    # A server that closes idle keep-alive connections before the proxy in front does races its next request
    # (the load test saw resets with uvicorn's default of 5 s).
    from historyserver.app import create_app
    from historyserver.cli import server_config
    from historyserver.settings import ServerSettings

    s = ServerSettings(archive=str(archive), cache_dir=str(tmp_path))
    assert server_config(create_app(s, LocalStore(archive)), s).timeout_keep_alive > 60
