"""The background folder: every `--fold-interval` seconds, each running session's newly archived task events are
folded (Warehouse.fold, compaction/incremental.py), so that its end leaves only the last batch to fold.

One thread, one session at a time: a fold holds a compaction slot, and its memory is bounded by the batch.
A session whose fold filled its batch is folded again without waiting: it has a backlog. Before and after each fold
the session's index entry is read again: a session that ended is built at once (Warehouse.db), not after the
catalog's next listing (up to its ttl later) nor after one more fold.
"""

from __future__ import annotations

import logging
import threading

from historyserver.catalog import Catalog, SessionEntry
from historyserver.errors import HistoryError
from historyserver.warehouse import Warehouse

log = logging.getLogger("rayhistory.folding")


class LiveFolder:
    def __init__(self, catalog: Catalog, warehouse: Warehouse, interval: float) -> None:
        self.catalog, self.warehouse, self.interval = catalog, warehouse, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="live-folder", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def fold_round(self) -> bool:
        """Fold each running session once; True if one of them has more waiting (its batch was full)."""
        behind = False
        for entry in self.catalog.sessions():
            if entry.closed or self._stop.is_set():
                continue
            if self._build_if_ended(entry):  # it ended while this thread waited: the build folds the rest
                continue
            try:
                result = self.warehouse.fold(entry)
            except HistoryError as e:  # the archive is down: the next round tries again
                log.warning("folding %s failed: %s", entry.ref.id, e)
                continue
            except Exception:
                log.exception("folding %s failed", entry.ref.id)
                continue
            if result is not None and result.behind:
                behind = True
            else:
                self._build_if_ended(entry)
        return behind

    def _build_if_ended(self, entry: SessionEntry) -> bool:
        """If the session has ended since the catalog's last listing, build its tables now (the last batch and the
        end's work, Warehouse.db) and say so: its end is acted on within a fold round, not after the catalog's ttl.
        Asked before each fold as well as after it: an end seen before is built at once, not after one more fold."""
        try:
            fresh = self.catalog.recheck(entry)
            if fresh.closed:
                self.warehouse.db(fresh, patient=True)
            return fresh.closed
        except HistoryError as e:
            log.warning("building the ended session %s failed: %s", entry.ref.id, e)
        except Exception:
            log.exception("building the ended session %s failed", entry.ref.id)
        return False

    def _run(self) -> None:
        while not self._stop.is_set():
            behind = self.fold_round()
            if not behind:
                self._stop.wait(self.interval)
