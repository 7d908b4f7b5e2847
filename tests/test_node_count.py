"""A session archived by several collectors (one per node) counts all their nodes in the catalog: the head's
collector writes the manifest, and lists in it every node whose collector registered under nodes/."""

from __future__ import annotations

import threading
import time

from archive.layout import SessionRef
from archive.manifest import ENDED, RUNNING, SessionManifest
from archive.storage.local import LocalStore
from collector.service import Collector
from collector.settings import CollectorSettings
from collector.sources.session_dir import SessionDir
from tests.fake_session import NODE_ID, SESSION_NAME, make_session
from tests.helpers import client_for

WORKER_ID = "a0" * 28
REF = SessionRef("ns", "c", SESSION_NAME)


def _two_nodes(tmp_path):
    """The same Ray session as seen on the head and on a worker node (each node has its own session dir)."""
    head = make_session(tmp_path / "head")
    worker = make_session(tmp_path / "worker", head=False)
    (worker / f"metrics_export_port_{NODE_ID}").rename(worker / f"metrics_export_port_{WORKER_ID}")
    raylet = worker / "logs" / "raylet.out"
    raylet.write_bytes(raylet.read_bytes().replace(NODE_ID.encode(), WORKER_ID.encode()))
    return head, worker


def _collector(session, store, **kw) -> Collector:
    # No scrapes or API snapshots: the fake sessions have no Ray to ask.
    kw = {"metrics_interval": 0, "api_interval": 0, **kw}
    settings = CollectorSettings(session_dir=str(session), archive=store.url, cluster="c", namespace="ns", **kw)
    return Collector(settings, store, SessionDir(session))


def _manifest(store) -> SessionManifest:
    return SessionManifest.from_json(store.get(REF.manifest_key))


def _wait(check, what, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _listed_nodes(store, tmp_path) -> int:
    with client_for(store.url, tmp_path / "cache") as client:
        [session] = client.get("/api/v1/sessions").json()["sessions"]
        return session["nodes"]


def test_live_collectors_on_two_nodes_count_two(tmp_path):
    head_dir, worker_dir = _two_nodes(tmp_path)
    store = LocalStore(tmp_path / "archive")
    head = _collector(head_dir, store, interval=0.1, heartbeat=0.1)
    worker = _collector(worker_dir, store, interval=0.1, heartbeat=0.1)
    threads = [threading.Thread(target=c.run, daemon=True) for c in (head, worker)]
    try:
        threads[0].start()
        _wait(lambda: store.exists(REF.manifest_key), "the head's manifest")
        threads[1].start()
        # The head's heartbeat picks up a node that joined later.
        _wait(lambda: len(_manifest(store).nodes) == 2, "the head's manifest to list the worker")
        assert _manifest(store).status == RUNNING
        worker.stop_event.set()
        threads[1].join(30)
        head.stop_event.set()
        threads[0].join(30)
    finally:
        for c in (head, worker):
            c.stop_event.set()
    assert not any(t.is_alive() for t in threads)
    manifest = _manifest(store)
    assert manifest.status == ENDED
    by_id = {n.node_id: n for n in manifest.nodes}
    assert set(by_id) == {NODE_ID, WORKER_ID} and by_id[NODE_ID].is_head and not by_id[WORKER_ID].is_head
    assert by_id[WORKER_ID].end_ms is not None  # read again at the end: the worker had ended by then
    assert _listed_nodes(store, tmp_path) == 2


def test_once_on_each_node_counts_every_node_archived_before_the_head(tmp_path):
    head_dir, worker_dir = _two_nodes(tmp_path)
    store = LocalStore(tmp_path / "archive")
    _collector(worker_dir, store, once=True).run()
    _collector(head_dir, store, once=True).run()
    assert {n.node_id for n in _manifest(store).nodes} == {NODE_ID, WORKER_ID}
    assert _listed_nodes(store, tmp_path) == 2
