"""The server's one background compactor: closed sessions compacted one at a time (compaction's memory is the
server's largest), each queued at most once while it waits or runs. Fed by --compact-on-end (a session that ends)
and by searches across sessions (a session whose tables are not built yet is searched once they are)."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from historyserver.catalog import SessionEntry
    from historyserver.warehouse import Warehouse

log = logging.getLogger("rayhistory.warehouse")


class BackgroundCompactor:
    def __init__(self, warehouse: Warehouse) -> None:
        self.warehouse = warehouse
        self._lock = threading.Lock()
        self._queued: set[str] = set()
        self._executor: ThreadPoolExecutor | None = None  # started on first use: most servers never need it

    def submit(self, entry: SessionEntry) -> bool:
        """Queue the session's compaction; False when it is already queued or running."""
        with self._lock:
            if entry.ref.id in self._queued:
                return False
            self._queued.add(entry.ref.id)
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="compactor")
            self._executor.submit(self._run, entry)
        return True

    def queued(self) -> list[str]:
        """The ids of the sessions waiting or being compacted."""
        with self._lock:
            return sorted(self._queued)

    def _run(self, entry: SessionEntry) -> None:
        try:
            self.warehouse.db(entry, patient=True)
        except Exception:  # a visitor's request retries it and reports the error in its API's shape
            log.exception("background compaction of %s failed", entry.ref.id)
        finally:
            with self._lock:
                self._queued.discard(entry.ref.id)
