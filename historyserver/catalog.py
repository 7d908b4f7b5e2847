"""The catalog: which sessions the archive holds, read from its index (never by listing session data)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from archive.errors import NotFound, StoreError
from archive.layout import InvalidName, SessionRef, index_prefix, parse_index_key
from archive.manifest import ENDED, RUNNING, SessionManifest
from archive.storage import Store
from historyserver.errors import ArchiveUnavailable, SessionNotFound

log = logging.getLogger("rayhistory.catalog")
UNFINISHED = "unfinished"
STALE_AFTER_MS = 15 * 60 * 1000  # several missed heartbeats of the head's collector


@dataclass
class SessionEntry:
    manifest: SessionManifest
    index_tag: str

    @property
    def ref(self) -> SessionRef:
        return self.manifest.ref

    @property
    def ended(self) -> bool:
        return self.manifest.status == ENDED

    @property
    def status(self) -> str:
        """running, ended, or unfinished: running by its manifest but not seen for long (its collector died)."""
        m = self.manifest
        if m.status == ENDED:
            return ENDED
        last = m.last_seen_ms or m.start_ms or 0
        return UNFINISHED if time.time() * 1000 - last > STALE_AFTER_MS else m.status

    @property
    def end_ms(self) -> int | None:
        """When the session ended; for an unfinished one, the last time its collector was heard from."""
        m = self.manifest
        return m.end_ms or (m.last_seen_ms or m.start_ms if self.status == UNFINISHED else None)

    @property
    def closed(self) -> bool:
        """Nothing more will arrive: its tables can be built once and kept."""
        return self.status != RUNNING

    def summary(self, base_url: str = "") -> dict[str, Any]:
        m = self.manifest
        return {
            "id": m.ref.id,
            "cluster": m.cluster,
            "namespace": m.namespace,
            "session_name": m.session_name,
            "ray_version": m.ray_version,
            "start": m.start_ms,
            "end": self.end_ms,
            "status": self.status,
            "ended_by": m.ended_by,
            "nodes": len(m.nodes),
            "url": f"{base_url}/sessions/{m.ref.id}/",
        }


def _tag(obj: Any) -> str:
    return f"{obj.size}:{obj.tag}"


class Catalog:
    """Sessions from the archive's index. With ttl > 0 a background thread re-lists every ttl seconds, so a
    request never waits on a listing (except the first); ttl 0 re-lists on every call (tests)."""

    def __init__(self, store: Store, ttl: float = 5.0) -> None:
        self.store = store
        self.ttl = ttl
        self._lock = threading.Lock()
        self._entries: dict[str, SessionEntry] = {}
        self._listed_at = 0.0
        self._poller: threading.Thread | None = None
        self.last_error: str | None = None
        self.on_closed: list = []  # called with each entry seen closing (ended or unfinished) after the first listing

    def _refresh(self) -> None:
        try:
            objects = [o for o in self.store.list(index_prefix()) if o.key.endswith(".json")]
        except StoreError as e:
            raise ArchiveUnavailable(str(e)) from e
        # Re-read only entries that are new or rewritten (heartbeats and the end rewrite a session's entry).
        todo = [o for o in objects if o.key not in self._entries or self._entries[o.key].index_tag != _tag(o)]
        with ThreadPoolExecutor(max_workers=16) as pool:
            fetched = list(pool.map(self._fetch, todo))
        entries = {o.key: self._entries[o.key] for o in objects if o.key in self._entries}
        for o, entry in zip(todo, fetched):
            if entry is not None:
                entries[o.key] = entry
            else:
                entries.pop(o.key, None)
        closed_before = {k for k, e in self._entries.items() if e.closed}
        first = not self._listed_at
        self._entries = entries  # one assignment: readers see the old listing or the new one
        self._listed_at = time.monotonic()
        if not first:
            for key, entry in entries.items():
                if entry.closed and key not in closed_before:
                    for callback in self.on_closed:
                        callback(entry)

    def _fetch(self, obj: Any) -> SessionEntry | None:
        try:
            parse_index_key(obj.key)
            return SessionEntry(SessionManifest.from_json(self.store.get(obj.key)), _tag(obj))
        except (NotFound, InvalidName, ValueError, TypeError, KeyError):
            return None  # an index entry being replaced, or written by a newer, unknown format

    def sessions(self) -> list[SessionEntry]:
        with self._lock:
            if self.ttl <= 0 or not self._listed_at:
                self._refresh()
            elif self._poller is None:
                self._poller = threading.Thread(target=self._poll, name="catalog-poller", daemon=True)
                self._poller.start()
            entries = list(self._entries.values())
        return sorted(entries, key=lambda e: (e.manifest.start_ms or 0, e.ref.id), reverse=True)

    def _poll(self) -> None:
        while True:
            time.sleep(self.ttl)
            try:
                self._refresh()  # without the lock: requests keep reading the previous listing meanwhile
                self.last_error = None
            except ArchiveUnavailable as e:  # keep serving what we have; say so in logs and health
                self.last_error = str(e)
                log.warning("catalog refresh failed, serving the previous listing: %s", e)

    def recheck(self, entry: SessionEntry) -> SessionEntry:
        """The session's index entry read again now, not at the next listing (the live folder asks, so that a
        session's end is acted on at once, not up to `ttl` later). One that closed since is installed in the
        listing and announced to on_closed, as a listing would."""
        try:
            fresh = SessionEntry(SessionManifest.from_json(self.store.get(entry.ref.index_key)), entry.index_tag)
        except (NotFound, ValueError, TypeError, KeyError):
            return entry  # being replaced, or deleted: the next listing says which
        except StoreError as e:
            raise ArchiveUnavailable(str(e)) from e
        if not fresh.closed or entry.closed:
            return fresh
        with self._lock:
            key = entry.ref.index_key
            known = self._entries.get(key)
            if known is not None and known.closed:
                return known
            self._entries = {**self._entries, key: fresh}
        for callback in self.on_closed:
            callback(fresh)
        return fresh

    def get(self, session_id: str) -> SessionEntry:
        try:
            ref = SessionRef.from_id(session_id)
        except InvalidName as e:
            raise SessionNotFound(f"no session {session_id!r}: {e}") from e
        for attempt in range(2):
            for entry in self.sessions():
                if entry.ref == ref:
                    return entry
            if attempt or time.monotonic() - self._listed_at < 1.0:
                break
            self._refresh()  # a link to a session that appeared since the last listing
        raise not_in_archive(session_id)

    def visible(
        self, allows: Callable[[str], bool], decide_all: Callable[[set[str]], None] | None = None
    ) -> CatalogView:
        return CatalogView(self, allows, decide_all)


def not_in_archive(session_id: str) -> SessionNotFound:
    return SessionNotFound(f"no session {session_id!r} in the archive; GET /api/v1/sessions lists them")


class CatalogView:
    """The catalog as one request may see it: a session of a namespace it may not see does not exist here (the
    same 404 as an unknown session, so names do not leak)."""

    def __init__(
        self, catalog: Catalog, allows: Callable[[str], bool], decide_all: Callable[[set[str]], None] | None = None
    ) -> None:
        self.catalog = catalog
        self.allows = allows
        self._decide_all = decide_all  # optional: decides a listing's namespaces together (in parallel)

    def sessions(self) -> list[SessionEntry]:
        entries = self.catalog.sessions()
        if self._decide_all is not None:
            self._decide_all({e.manifest.namespace for e in entries})
        return [e for e in entries if self.allows(e.manifest.namespace)]

    def get(self, session_id: str) -> SessionEntry:
        entry = self.catalog.get(session_id)
        if not self.allows(entry.manifest.namespace):
            raise not_in_archive(session_id)
        return entry
