"""Keeps each session's compacted tables up to date in a local cache, and its DuckDB handle open."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from archive.errors import StoreError
from archive.storage import Store
from historyserver.catalog import SessionEntry
from historyserver.compaction.build import COMPACTION_VERSION, compact
from historyserver.errors import ArchiveUnavailable
from historyserver.queries.session_db import SessionDB


class Warehouse:
    def __init__(self, store: Store, cache_dir: Path, running_refresh: float = 10.0) -> None:
        self.store = store
        self.root = Path(cache_dir) / f"compacted-v{COMPACTION_VERSION}"
        self.root.mkdir(parents=True, exist_ok=True)
        self.running_refresh = running_refresh
        self._lock = threading.Lock()
        self._session_locks: dict[str, threading.Lock] = {}
        self._open: dict[str, tuple[SessionDB, float, bool]] = {}

    def _fresh(self, entry: SessionEntry, tables: Path) -> bool:
        info_file = tables / "info.json"
        if not info_file.exists():
            return False
        info = json.loads(info_file.read_text())
        if info.get("compaction_version") != COMPACTION_VERSION:
            return False
        if entry.ended:
            return bool(info.get("session_ended"))
        return time.time() * 1000 - info["built_at_ms"] < self.running_refresh * 1000

    def db(self, entry: SessionEntry) -> SessionDB:
        sid = entry.ref.id
        with self._lock:
            lock = self._session_locks.setdefault(sid, threading.Lock())
            cached = self._open.get(sid)
        if cached and (cached[2] or time.monotonic() - cached[1] < self.running_refresh) and (cached[2] or not entry.ended):
            return cached[0]
        with lock:
            tables = self.root / sid
            if not self._fresh(entry, tables):
                try:
                    info = compact(self.store, entry.ref, tables, entry.manifest.end_ms)
                except StoreError as e:
                    raise ArchiveUnavailable(str(e)) from e
                info["session_ended"] = entry.ended
                (tables / "info.json").write_text(json.dumps(info, indent=1))
            db = SessionDB(tables)
            with self._lock:
                # The previous handle is left to the garbage collector: a request may still be using it.
                self._open[sid] = (db, time.monotonic(), entry.ended)
            return db
