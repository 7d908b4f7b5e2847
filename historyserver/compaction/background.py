"""The server's one background compactor: closed sessions compacted one at a time (compaction's memory is the
server's largest), each queued at most once while it waits or runs. Fed by --compact-on-end (a session that ends)
and by searches across sessions (a session whose tables are not built yet is searched once they are)."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from archive.compacted import TABLES

if TYPE_CHECKING:
    from historyserver.catalog import SessionEntry
    from historyserver.warehouse import Warehouse

log = logging.getLogger("rayhistory.warehouse")


class BackgroundCompactor:
    def __init__(self, warehouse: Warehouse) -> None:
        self.warehouse = warehouse
        self._lock = threading.Lock()
        self._queued: set[str] = set()
        self._errors: dict[str, str] = {}  # the last failure of each session, until it compacts
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

    def error(self, session_id: str) -> str | None:
        """Why the session's last background compaction failed (None: it did not, or it has not run)."""
        with self._lock:
            return self._errors.get(session_id)

    def _run(self, entry: SessionEntry) -> None:
        sid = entry.ref.id
        error = None
        try:
            self.warehouse.db(entry, patient=True, needs=TABLES)
        except Exception as e:  # a visitor's request retries it and reports the error in its API's shape
            log.exception("background compaction of %s failed", sid)
            error = f"{type(e).__name__}: {e}"
        finally:
            with self._lock:
                self._queued.discard(sid)
                if error:
                    self._errors[sid] = error
                else:
                    self._errors.pop(sid, None)
