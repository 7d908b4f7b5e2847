"""The catalog: which sessions the archive holds, read from its index (never by listing session data)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from archive.errors import NotFound, StoreError
from archive.layout import InvalidName, SessionRef, index_prefix, parse_index_key
from archive.manifest import ENDED, SessionManifest
from archive.storage import Store
from historyserver.errors import ArchiveUnavailable, SessionNotFound


@dataclass
class SessionEntry:
    manifest: SessionManifest
    index_size: int

    @property
    def ref(self) -> SessionRef:
        return self.manifest.ref

    @property
    def ended(self) -> bool:
        return self.manifest.status == ENDED

    def summary(self, base_url: str = "") -> dict[str, Any]:
        m = self.manifest
        return {
            "id": m.ref.id,
            "cluster": m.cluster,
            "namespace": m.namespace,
            "session_name": m.session_name,
            "ray_version": m.ray_version,
            "start": m.start_ms,
            "end": m.end_ms,
            "status": m.status,
            "ended_by": m.ended_by,
            "nodes": len(m.nodes),
            "url": f"{base_url}/sessions/{m.ref.id}/",
        }


class Catalog:
    def __init__(self, store: Store, ttl: float = 5.0) -> None:
        self.store = store
        self.ttl = ttl
        self._lock = threading.Lock()
        self._entries: dict[str, SessionEntry] = {}
        self._listed_at = 0.0

    def _refresh(self) -> None:
        try:
            objects = [o for o in self.store.list(index_prefix()) if o.key.endswith(".json")]
        except StoreError as e:
            raise ArchiveUnavailable(str(e)) from e
        # Re-read only entries that are new or changed size (a session's entry is rewritten when it ends).
        todo = [o for o in objects if self._entries.get(o.key) is None or self._entries[o.key].index_size != o.size]
        with ThreadPoolExecutor(max_workers=16) as pool:
            fetched = list(pool.map(self._fetch, todo))
        entries = {o.key: self._entries[o.key] for o in objects if o.key in self._entries}
        for o, entry in zip(todo, fetched):
            if entry is not None:
                entries[o.key] = entry
            else:
                entries.pop(o.key, None)
        self._entries = entries
        self._listed_at = time.monotonic()

    def _fetch(self, obj: Any) -> SessionEntry | None:
        try:
            parse_index_key(obj.key)
            return SessionEntry(SessionManifest.from_json(self.store.get(obj.key)), obj.size)
        except (NotFound, InvalidName, ValueError, TypeError, KeyError):
            return None  # an index entry being replaced, or written by a newer, unknown format

    def sessions(self) -> list[SessionEntry]:
        with self._lock:
            if time.monotonic() - self._listed_at > self.ttl:
                self._refresh()
            entries = list(self._entries.values())
        return sorted(entries, key=lambda e: (e.manifest.start_ms or 0, e.ref.id), reverse=True)

    def get(self, session_id: str) -> SessionEntry:
        try:
            ref = SessionRef.from_id(session_id)
        except InvalidName as e:
            raise SessionNotFound(f"no session {session_id!r}: {e}") from e
        for entry in self.sessions():
            if entry.ref == ref:
                return entry
        raise SessionNotFound(f"no session {session_id!r} in the archive; GET /api/v1/sessions lists them")
