"""A small archived session with Ray-shaped logs (C++ headers, a worker's raw output with marker lines and a
traceback), collected by the real collector into a local archive: what the search CLI and pages are tested on."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from archive.layout import SessionRef
from archive.storage.local import LocalStore
from collector.service import Collector
from collector.settings import CollectorSettings
from collector.sources.session_dir import SessionDir
from tests.fake_session import NODE_ID, SESSION_NAME, make_session

WORKER_ID = "ab" * 28
WORKER_ERR = f"worker-{WORKER_ID}-01000000-4242.err"
CLUSTER, NAMESPACE = "searchc", "team-s"

RAYLET = [
    "[2026-11-25 20:59:25,000 I 2288 2288] (raylet) worker_pool.cc:500: Started worker process with pid 4242",
    "[2026-11-25 20:59:26,000 W 2288 2288] (raylet) worker_pool.cc:612: connection refused by 10.0.0.7:6379, retrying",
    "[2026-11-25 20:59:27,000 E 2288 2288] (raylet) node_manager.cc:100: error: worker 4242 died (errors: 1)",
]
ERR = [
    ":job_id:01000000",
    ":task_name:flaky",
    "Traceback (most recent call last):",
    '  File "/tmp/demo.py", line 12, in flaky',
    "ValueError: intentional failure in flaky",
    ":task_name:square",
    "squares are fine; no errors here",
]
FILLER = [f"step {i} ok" for i in range(30)]  # lines around the failure, for context


def archived_session(tmp_path: Path) -> tuple[str, SessionRef]:
    """(archive URL, session ref) of the session, collected once and ended."""
    session = make_session(tmp_path)
    logs = session / "logs"
    with (logs / "raylet.out").open("a") as f:
        f.write("\n".join(RAYLET) + "\n")
    (logs / WORKER_ERR).write_text("\n".join(FILLER[:15] + ERR + FILLER[15:]) + "\n")
    store = LocalStore(tmp_path / "archive")
    settings = CollectorSettings(
        session_dir=str(session), archive=store.url, cluster=CLUSTER, namespace=NAMESPACE, once=True
    )
    Collector(settings, store, SessionDir(session)).run()
    return store.url, SessionRef(NAMESPACE, CLUSTER, SESSION_NAME)


def second_session(tmp_path: Path, archive_url: str, cluster: str = "searchd") -> str:
    """The worker's output collected again, as another cluster's session in the same archive (not compacted):
    its id."""
    from archive.storage import open_store
    from historyserver.catalog import Catalog

    session = make_session(tmp_path / cluster)
    (session / "logs" / WORKER_ERR).write_text("\n".join(FILLER[:15] + ERR + FILLER[15:]) + "\n")
    store = open_store(archive_url)
    settings = CollectorSettings(
        session_dir=str(session), archive=archive_url, cluster=cluster, namespace=NAMESPACE, once=True
    )
    Collector(settings, store, SessionDir(session)).run()
    (entry,) = [e for e in Catalog(store, ttl=0).sessions() if e.manifest.cluster == cluster]
    return entry.ref.id


@contextmanager
def held_compaction(monkeypatch) -> Iterator[tuple[threading.Event, threading.Event]]:
    """(started, release): closed-session compaction waits for `release`; `started` is set when one begins. A
    hook, so that a test knows an answer came without compacting, instead of guessing from timings."""
    from historyserver import warehouse

    started, release = threading.Event(), threading.Event()
    real = warehouse.compact_closed

    def compact_closed(*args, **kwargs):
        started.set()
        if not release.wait(60):
            raise TimeoutError("the test never released the compaction")
        return real(*args, **kwargs)

    monkeypatch.setattr(warehouse, "compact_closed", compact_closed)
    try:
        yield started, release
    finally:
        release.set()


__all__ = ["NODE_ID", "WORKER_ERR", "archived_session", "held_compaction", "second_session"]
