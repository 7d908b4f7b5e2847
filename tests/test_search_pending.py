"""A search across sessions never compacts inline (historyserver/search/pending.py): sessions whose tables are built
are searched, the others go to the one background compactor and the answer says so; asking again until complete
finds every session's hits. Compaction is held with an event, so "answered without compacting" is a fact, not a
timing."""

from __future__ import annotations

import io
import time

import pytest
from fastapi.testclient import TestClient

from archive.storage import open_store
from historyserver import warehouse
from historyserver.app import create_app
from historyserver.settings import ServerSettings
from rayhistory import logs_search
from tests.browser import served
from tests.search_session import NAMESPACE, archived_session, held_compaction, second_session

ACROSS = {"q": "flaky", "namespace": NAMESPACE}
TIMED = {"q": "setting", "namespace": NAMESPACE}  # raylet.out's first line, with a time, in both sessions


@pytest.fixture
def archive(tmp_path):
    url, ref = archived_session(tmp_path)
    return tmp_path, url, ref.id, second_session(tmp_path, url)


@pytest.fixture
def held(monkeypatch):
    with held_compaction(monkeypatch) as events:
        yield events


def poll(ask, until, seconds: float = 60):
    deadline = time.monotonic() + seconds
    while True:
        got = ask()
        if until(got) or time.monotonic() > deadline:
            return got
        time.sleep(0.05)


def counted(hist) -> int:
    hist = hist if isinstance(hist, dict) else hist.json()
    return sum(b["count"] for b in hist["buckets"])


def sessions_of(answer: dict) -> set[str]:
    return {h["session"] for h in answer["hits"]}


def test_across_sessions_answers_at_once_and_compacts_in_the_background(archive, held):
    tmp, url, compacted, fresh = archive
    started, release = held
    app = create_app(ServerSettings(archive=url, cache_dir=str(tmp / "cache"), catalog_ttl=0), open_store(url))
    svc = app.state.services
    with TestClient(app) as c:
        release.set()  # the first session is opened (compacted) by its own search, as the UI's first open does
        one = c.get(f"/api/v1/sessions/{compacted}/logs/search", params={"q": "flaky"}).json()
        assert one["complete"] and one["pending_sessions"] == 0 and sessions_of(one) == {compacted}
        release.clear()
        started.clear()

        first = c.get("/api/v1/logs/search", params=ACROSS).json()
        assert not release.is_set()  # the answer came while the other session's compaction could not finish
        assert first["complete"] is False and first["pending_sessions"] == 1 and first["sessions"] == 2
        assert sessions_of(first) == {compacted} and first["total"] == one["total"]
        assert any("1 session is still being indexed" in w and fresh in w for w in first["warnings"])
        assert started.wait(30) and svc.compactor.queued() == [fresh]  # handed to the background compactor

        again = c.get("/api/v1/logs/search", params=ACROSS).json()
        assert again["pending_sessions"] == 1 and svc.compactor.queued() == [fresh]  # queued once
        hist = c.get("/api/v1/logs/search/histogram", params=TIMED).json()
        assert (hist["complete"], hist["pending_sessions"]) == (False, 1) and fresh in hist["warnings"][0]
        alone = counted(c.get(f"/api/v1/sessions/{compacted}/logs/search/histogram", params=TIMED))
        assert counted(hist) == alone > 0

        release.set()
        done = poll(lambda: c.get("/api/v1/logs/search", params=ACROSS).json(), lambda a: a["complete"])
        assert done["complete"] and done["pending_sessions"] == 0 and sessions_of(done) == {compacted, fresh}
        assert done["total"] == 2 * one["total"] and not any("indexed" in w for w in done["warnings"])
        hist = c.get("/api/v1/logs/search/histogram", params=TIMED).json()
        assert (hist["complete"], hist["pending_sessions"], hist["warnings"]) == (True, 0, [])
        assert counted(hist) == 2 * alone


def test_tables_the_archive_holds_are_ready_without_compacting(archive, held, monkeypatch):
    """Another server compacted both sessions and wrote the tables back: this one downloads, never compacts."""
    tmp, url, compacted, fresh = archive
    started, release = held
    release.set()
    first = create_app(ServerSettings(archive=url, cache_dir=str(tmp / "c1"), catalog_ttl=0), open_store(url))
    with TestClient(first) as c:
        for sid in (compacted, fresh):
            assert c.get(f"/api/v1/sessions/{sid}/logs/search", params={"q": "flaky"}).json()["complete"]
    started.clear()
    second = create_app(ServerSettings(archive=url, cache_dir=str(tmp / "c2"), catalog_ttl=0), open_store(url))
    with TestClient(second) as c:
        answer = c.get("/api/v1/logs/search", params=ACROSS).json()
    assert answer["complete"] and answer["pending_sessions"] == 0 and sessions_of(answer) == {compacted, fresh}
    assert not started.is_set()


def test_the_cli_prints_the_pending_warning_to_stderr(archive, held):
    tmp, url, _, fresh = archive
    started, release = held
    app = create_app(ServerSettings(archive=url, cache_dir=str(tmp / "cache"), catalog_ttl=0), open_store(url))
    with served(app) as base:
        parser = __import__("argparse").ArgumentParser()
        logs_search.add_arguments(parser)
        out, err = io.StringIO(), io.StringIO()
        code = logs_search.run(parser.parse_args(["--server", base, "--namespace", NAMESPACE, "flaky"]), out, err)
        assert code == 1 and out.getvalue() == ""  # neither session is compacted: no hit yet
        assert "warning: 2 sessions are still being indexed" in err.getvalue() and fresh in err.getvalue()
        release.set()
        svc = app.state.services
        assert poll(svc.compactor.queued, lambda q: not q) == []


def test_a_failed_background_compaction_is_said_and_tried_again(archive, monkeypatch):
    tmp, url, _, fresh = archive
    tries = []

    def broken(*args, **kwargs):
        tries.append(1)
        raise OSError("no space left on device")

    monkeypatch.setattr(warehouse, "compact_closed", broken)
    app = create_app(ServerSettings(archive=url, cache_dir=str(tmp / "cache"), catalog_ttl=0), open_store(url))
    svc = app.state.services
    with TestClient(app) as c:
        first = c.get("/api/v1/logs/search", params=ACROSS).json()
        assert first["pending_sessions"] == 2 and "2 sessions are still being indexed" in first["warnings"][0]
        assert poll(svc.compactor.queued, lambda q: not q) == [] and len(tries) == 2
        again = c.get("/api/v1/logs/search", params=ACROSS).json()
        assert again["complete"] is False and again["pending_sessions"] == 2
        said = [w for w in again["warnings"] if "failed" in w]
        assert len(said) == 2 and any(fresh in w and "no space left on device" in w for w in said)
        assert poll(svc.compactor.queued, lambda q: not q) == [] and len(tries) == 4  # tried again
