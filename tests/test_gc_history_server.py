"""gc and the history server: a session the collector really wrote goes whole, and a server that listed it
before it went answers 404, not 500, and writes nothing back."""

from __future__ import annotations

import time

import pytest

from archive.layout import SessionRef
from archive.manifest import ENDED
from archive.storage.local import LocalStore
from collector.service import Collector
from collector.settings import CollectorSettings
from collector.sources.session_dir import SessionDir
from historyserver.catalog import Catalog
from historyserver.errors import SessionNotFound
from historyserver.warehouse import Warehouse
from rayhistory.cli import main
from tests.fake_session import SESSION_NAME, make_session
from tests.helpers import client_for


def _archived_session(tmp_path) -> tuple[LocalStore, SessionRef]:
    """A session archived by the real collector (--once), and ended 40 days ago as far as gc can tell."""
    session = make_session(tmp_path)
    store = LocalStore(tmp_path / "archive")
    settings = CollectorSettings(session_dir=str(session), archive=store.url, cluster="c", namespace="ns", once=True)
    Collector(settings, store, SessionDir(session)).run()
    ref = SessionRef("ns", "c", SESSION_NAME)
    entry = Catalog(store, ttl=0).get(ref.id)
    assert entry.status == ENDED
    m = entry.manifest
    m.end_ms = m.last_seen_ms = int(time.time() * 1000) - 40 * 86_400_000
    store.put(ref.index_key, m.to_json())
    store.put(ref.manifest_key, m.to_json())
    return store, ref


def test_gc_removes_a_collected_and_compacted_session_with_the_servers_cache(tmp_path, capsys):
    store, ref = _archived_session(tmp_path)
    cache = tmp_path / "cache"
    with client_for(store.url, cache) as client:
        assert client.get(f"/api/v1/sessions/{ref.id}/overview").status_code == 200  # compacts, writes back
        assert client.app.state.services.warehouse.wait_for_write_backs(60)
        assert list(store.list(ref.prefix + "compacted/"))
        assert any(cache.glob(f"compacted-c*/{ref.id}"))
        assert main(["gc", "--archive", store.url, "--older-than", "30d", "--cache-dir", str(cache)]) == 0
        assert ref.id in capsys.readouterr().out
        assert list(store.list("")) == []  # every object the collector and the server wrote
        assert not any(cache.glob(f"compacted-c*/{ref.id}*"))
        for path in (f"/api/v1/sessions/{ref.id}", f"/api/v1/sessions/{ref.id}/overview"):
            answer = client.get(path)
            assert answer.status_code == 404 and answer.json()["error"]["code"] == "SessionNotFound"
        assert client.get(f"/sessions/{ref.id}/api/jobs/").status_code == 404


def test_a_server_whose_listing_predates_the_deletion_answers_not_found_and_writes_nothing_back(tmp_path, capsys):
    store, ref = _archived_session(tmp_path)
    stale = Catalog(store, ttl=0).get(ref.id)  # listed before gc ran
    assert main(["gc", "--archive", store.url, "--older-than", "30d"]) == 0
    with pytest.raises(SessionNotFound, match="deleted"):
        Warehouse(store, tmp_path / "cache").db(stale)
    assert list(store.list("")) == []  # no compacted tables resurrected under the deleted session
    assert not any((tmp_path / "cache").glob(f"compacted-c*/{ref.id}*"))
