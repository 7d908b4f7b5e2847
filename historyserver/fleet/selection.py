"""Which archived sessions a fleet command works on: the catalog's, narrowed by namespace, cluster and age."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from archive.storage import Store
from historyserver.catalog import Catalog, SessionEntry
from historyserver.compaction.publish import is_published
from historyserver.fleet.settings import FleetSettings


@dataclass(frozen=True)
class Selected:
    """A session as a fleet task needs it: plain values, cheap to send to a Ray task."""

    session_id: str
    namespace: str
    cluster: str
    end_ms: int | None


def select(store: Store, settings: FleetSettings) -> tuple[list[SessionEntry], int]:
    """The closed sessions the settings pick, oldest first, and how many running ones they also pick (skipped)."""
    since = settings.since_s
    now_ms = time.time() * 1000
    picked = [
        e
        for e in Catalog(store, ttl=0).sessions()
        if (not settings.namespace or e.manifest.namespace == settings.namespace)
        and (not settings.cluster or e.manifest.cluster == settings.cluster)
        and (since is None or (e.manifest.start_ms or 0) >= now_ms - since * 1000)
    ]
    picked.reverse()
    closed = [e for e in picked if e.closed]
    return closed, len(picked) - len(closed)


def nothing_hint(store: Store, settings: FleetSettings) -> str:
    """Why a selection is empty, for stderr: a mistyped --archive or filter looks like an empty fleet."""
    narrowed = [f"--{n} {getattr(settings, n)}" for n in ("namespace", "cluster", "since") if getattr(settings, n)]
    where = f" matching {' '.join(narrowed)}" if narrowed else ""
    return f"no sessions{where} in the archive at {store.url}; check --archive and the filters"


def published(store: Store, entries: list[SessionEntry]) -> list[bool]:
    """Whether each session's tables of this COMPACTION_VERSION are in the archive (checked in parallel)."""
    with ThreadPoolExecutor(max_workers=16) as pool:
        return list(pool.map(lambda e: is_published(store, e.ref), entries))


def selected(entry: SessionEntry) -> Selected:
    m = entry.manifest
    return Selected(entry.ref.id, m.namespace, m.cluster, entry.end_ms)
