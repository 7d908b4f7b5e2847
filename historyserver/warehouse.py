"""Each session's compacted tables: found in the local cache, else in the archive, else built (and shared).

A closed session (ended, or unfinished because its collector vanished) is compacted once: the tables are
written back to the archive (FORMAT.md, `compacted/`) so that no other server compacts it again. A running
session is rebuilt locally at most every `running_refresh` seconds and never written back.
A closed session built here opens before our own indexes (compaction/tables.py DEFERRED: the task timeline, log
search) are built: they follow at once, on the write-back thread (a caller that reads them names them in db()'s
`needs` and waits for them), and the tables are written back only once whole.
With `fold_running`, a running session's task events are folded as they are archived (compaction/incremental.py,
driven by folding.py): its tables, while it runs and once it ends, are built from the folds instead of from scratch.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import threading
import time
from collections.abc import Collection
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from archive.compacted import COMPACTION_VERSION, TABLES, Table, pending, table_files
from archive.compacted import INFO_FILE as INFO
from archive.errors import NotFound, StoreError
from archive.storage import Store
from archive.storage.snapshot import ListingSnapshot
from historyserver.admission import Gate
from historyserver.catalog import SessionEntry
from historyserver.compaction import incremental
from historyserver.compaction.build import add_deferred, compact
from historyserver.compaction.incremental import Folder, FoldResult
from historyserver.compaction.incremental_build import compact_folded
from historyserver.compaction.publish import compact_closed, publish
from historyserver.compaction.tables import DEFAULT_MEMORY
from historyserver.errors import ArchiveUnavailable, Overloaded, SessionNotFound
from historyserver.queries.session_db import SessionDB

log = logging.getLogger("rayhistory.warehouse")


@dataclass
class CompactionStats:
    """What this server's compactions did, for /metrics (historyserver/server_metrics.py)."""

    compactions: dict[str, int] = field(default_factory=lambda: {"ok": 0, "failed": 0})
    compaction_seconds: float = 0.0
    downloads: int = 0
    folds: int = 0
    fold_seconds: float = 0.0


class Warehouse:
    def __init__(
        self,
        store: Store,
        cache_dir: Path,
        running_refresh: float = 10.0,
        gate: Gate | None = None,
        compaction_memory: str = DEFAULT_MEMORY,
        fold_running: bool = False,
    ) -> None:
        self.store = store
        self.compaction_memory = compaction_memory
        self.gate = gate or Gate("compactions", 1, 3600.0, "max-concurrent-compactions")
        self.root = Path(cache_dir) / f"compacted-c{COMPACTION_VERSION}"
        self.root.mkdir(parents=True, exist_ok=True)
        self.running_refresh = running_refresh
        self.fold_running = fold_running
        self.fold_root = Path(cache_dir) / f"incremental-c{COMPACTION_VERSION}"
        self._lock = threading.Lock()
        self._session_locks: dict[str, threading.Lock] = {}
        self._open: dict[str, tuple[SessionDB, float, bool]] = {}
        self.stats = CompactionStats()
        # Built tables are written back to the archive by one thread of lower priority, after they serve: the
        # first requests for a session need not wait for its upload, nor share the CPU with it.
        # One thread, in order: once the last job submitted is done, every earlier one is.
        self._write_back = ThreadPoolExecutor(1, "write-back", initializer=_background_priority)
        self._last_write_back: Future[None] | None = None
        self._hurry = threading.Event()  # set by wait_for_write_backs: no write-back waits out WRITE_BACK_QUIET_S
        self._deferred: dict[str, Future[None]] = {}  # session id -> the build of its pending tables
        self._built = threading.Condition(self._lock)  # notified as a session's deferred tables come in

    @property
    def open_sessions(self) -> int:
        return len(self._open)

    def db(self, entry: SessionEntry, patient: bool = False, needs: Collection[Table] = ()) -> SessionDB:
        """The session's tables, compacting them first if needed. A request waits at most the gate's wait for
        another compaction of the same session or for a free slot (then Overloaded: 503); `patient` (the
        background compactor) waits as long as it takes. `needs`: the deferred tables the caller reads (the
        timeline's, log search's), which a first open builds after the rest: it waits for them likewise."""
        db = self._open_db(entry, patient)
        waiting = set(pending(db.info)) & {t.name for t in needs}
        if waiting:
            db = self._await_deferred(entry, Path(db.dir), patient, waiting)
        return db

    def _open_db(self, entry: SessionEntry, patient: bool) -> SessionDB:
        sid = entry.ref.id
        with self._lock:
            lock = self._session_locks.setdefault(sid, threading.Lock())
            cached = self._open.get(sid)
        if cached and self._still_good(cached, entry):
            return cached[0]
        if not lock.acquire(timeout=-1 if patient else self.gate.wait_s):
            raise Overloaded(
                f"session {sid} is being compacted by another request; retry in a few seconds",
                retry_after=max(1, math.ceil(self.gate.wait_s)),
            )
        tables = self.root / sid
        try:
            cached = self._open.get(sid)
            if cached and self._still_good(cached, entry):
                return cached[0]
            try:
                built = self._prepare(entry, tables, patient)
            except NotFound as e:
                self._unless_deleted(entry)  # `rayhistory gc` removed it after the catalog listed it
                raise ArchiveUnavailable(str(e)) from e
            except StoreError as e:
                raise ArchiveUnavailable(str(e)) from e
            db = SessionDB(tables)
            # Before the handle is shared, so that a request needing the deferred tables finds their build. The
            # latter case: tables an earlier process left pending.
            if built or (pending(db.info) and sid not in self._deferred):
                self._follow_up(entry, tables)
            with self._lock:
                # The previous handle is left to the garbage collector: a request may still be using it.
                self._open[sid] = (db, time.monotonic(), entry.closed)
        finally:
            lock.release()
        return db

    def _await_deferred(self, entry: SessionEntry, tables: Path, patient: bool, needs: set[str]) -> SessionDB:
        """The session's handle once the deferred tables it `needs` are built: at most the gate's wait (then
        Overloaded: 503), `patient` as long as it takes."""
        sid = entry.ref.id
        with self._lock:
            building = self._deferred.get(sid)
        if building is None or (building.done() and building.exception() is not None):
            building = self._follow_up(entry, tables)  # the last attempt failed: this request tries again
        deadline = None if patient else time.monotonic() + self.gate.wait_s
        busy = Overloaded(
            f"session {sid} is open, but its {' and '.join(sorted(needs))} tables are still being built (they "
            "follow the others); retry in a few seconds",
            retry_after=max(1, math.ceil(self.gate.wait_s)),
        )
        with self._built:
            while (missing := needs & set(pending(_read_info(tables) or {}))) and not building.done():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise busy
                self._built.wait(left)
            cached = self._open.get(sid)
        if missing:  # the build ended without them: its error (a later table's failure does not concern us)
            error = building.exception()
            if isinstance(error, StoreError):
                raise ArchiveUnavailable(str(error)) from error
            raise error or busy
        if cached and not needs & set(pending(cached[0].info)):
            return cached[0]
        fresh = SessionDB(tables)  # the open handle predates them
        with self._lock:
            self._replace_handle(sid, fresh)
        return fresh

    def _replace_handle(self, sid: str, handle: SessionDB) -> None:
        """An open session's handle, replaced by one that sees its deferred tables (hold self._lock)."""
        if sid in self._open:
            _, opened, closed = self._open[sid]
            self._open[sid] = (handle, opened, closed)

    def _follow_up(self, entry: SessionEntry, tables: Path) -> Future[None]:
        """After a build of a closed session: its pending tables, then the write-back, on the write-back thread (in
        order, at low priority: the session's first requests keep the CPU)."""
        with self._lock:
            # The quiet period counts from the build: write-backs queued behind others (a backlog built one after
            # another) do not each wait it again.
            job = self._write_back.submit(self._complete, entry, tables, time.monotonic() + WRITE_BACK_QUIET_S)
            self._last_write_back = job
            if pending(_read_info(tables) or {}):
                self._deferred[entry.ref.id] = job
        return job

    def _complete(self, entry: SessionEntry, tables: Path, quiet_until: float) -> None:
        sid = entry.ref.id

        def built(info: dict) -> None:
            handle = SessionDB(tables)  # the open handle's info lists them pending, and it lacks their views
            with self._built:
                self._replace_handle(sid, handle)
                self._built.notify_all()

        info = _read_info(tables)
        if info is not None and pending(info):
            try:
                info = add_deferred(ListingSnapshot(self.store), entry.ref, tables, self.compaction_memory, built)
            except Exception:  # kept in the future too: the next request that needs them tries again
                log.exception("building the deferred tables of %s failed", sid)
                raise
            finally:
                with self._built:
                    self._built.notify_all()
        if info is not None and info.get("closed"):
            self._hurry.wait(max(0.0, quiet_until - time.monotonic()))
            self._upload(entry, tables)

    def wait_for_write_backs(self, timeout: float | None = None) -> bool:
        """Wait until the tables built so far are written back to the archive (a stopping server, tests); False
        if some were not within `timeout` seconds. Write-backs no longer wait out their quiet period, from now on."""
        self._hurry.set()
        last = self._last_write_back
        return last is None or not wait([last], timeout).not_done

    def folder(self, entry: SessionEntry, store: Store | None = None) -> Folder:
        """The session's incremental fold, reading `store` (the archive unless given)."""
        return Folder(store or self.store, entry.ref, self.fold_root / entry.ref.id, self.compaction_memory)

    def fold(self, entry: SessionEntry) -> FoldResult | None:
        """Fold the next batch of a running session's archived task events (None: the session is busy, being
        compacted or folded by another thread, or closed; the next round folds it)."""
        if entry.closed:
            return None
        with self._lock:
            lock = self._session_locks.setdefault(entry.ref.id, threading.Lock())
        if not lock.acquire(blocking=False):
            return None
        try:
            with self.gate.slot(True):
                started = time.monotonic()
                try:
                    return self.folder(entry).fold()
                except StoreError as e:
                    raise ArchiveUnavailable(str(e)) from e
                finally:
                    with self._lock:
                        self.stats.folds += 1
                        self.stats.fold_seconds += time.monotonic() - started
        finally:
            lock.release()

    def ready(self, entry: SessionEntry) -> bool:
        """Whether db() would answer without building, deferred tables included: this server holds the session's
        tables (closed, or fresh enough while it runs), or the archive holds them at the current COMPACTION_VERSION
        (a download, not a compaction). Cheap: one small read at most; a store that cannot answer counts as not
        ready."""
        cached = self._open.get(entry.ref.id)
        if cached and self._still_good(cached, entry):
            return not pending(cached[0].info)
        local = _read_info(self.root / entry.ref.id)
        if not entry.closed:
            return bool(local) and time.time() * 1000 - local["built_at_ms"] < self.running_refresh * 1000
        if local and local.get("closed"):
            return not pending(local)
        try:
            return self.store.exists(entry.ref.compacted_key(COMPACTION_VERSION, INFO))
        except StoreError:
            return False

    def _still_good(self, cached: tuple[SessionDB, float, bool], entry: SessionEntry) -> bool:
        _, opened, closed = cached
        if closed:
            return True
        return not entry.closed and time.monotonic() - opened < self.running_refresh

    def _prepare(self, entry: SessionEntry, tables: Path, patient: bool = False) -> bool:
        """Make the session's tables ready in `tables`; True if they were built here for a closed session (so
        they are to be written back to the archive)."""
        local = _read_info(tables)
        if entry.closed:
            if local and local.get("closed"):
                return False
            if self._download(entry, tables):
                return False
            self._compact(entry, tables, entry.end_ms, patient, closed=True)
            try:
                self._unless_deleted(entry)  # else its empty tables would be kept, and written back as leftovers
            except SessionNotFound:
                shutil.rmtree(tables, ignore_errors=True)
                raise
            return True
        if local and time.time() * 1000 - local["built_at_ms"] < self.running_refresh * 1000:
            return False
        self._compact(entry, tables, None, patient)
        return False

    def _compact(
        self, entry: SessionEntry, tables: Path, end_ms: int | None, patient: bool, closed: bool = False
    ) -> dict:
        with self.gate.slot(patient):
            start = time.monotonic()
            outcome = "failed"
            # A closed session's archive no longer changes: it is listed once for all of the build's passes.
            store = ListingSnapshot(self.store) if closed else self.store
            try:
                folder = self.folder(entry, store)
                info = None
                if closed and folder.started() and folder.backlog_bytes() > incremental.END_BACKLOG_BYTES:
                    log.info(
                        "building %s whole: its folds are more than %d bytes behind",
                        entry.ref.id,
                        incremental.END_BACKLOG_BYTES,
                    )
                    shutil.rmtree(folder.dir, ignore_errors=True)
                if self.fold_running and (folder.started() or not closed):
                    try:
                        info = compact_folded(folder, tables, end_ms, closed)
                    except duckdb.Error as e:  # the folds cannot finish (memory): the one-shot build can
                        log.warning("building %s from its folds failed, building it whole: %s", entry.ref.id, e)
                        shutil.rmtree(folder.dir, ignore_errors=True)
                if info is not None:
                    if closed:
                        shutil.rmtree(folder.dir, ignore_errors=True)  # the tables hold it all now
                elif closed:
                    # Our own indexes follow (db(), _follow_up): the session's pages need not wait for them.
                    info = compact_closed(store, entry.ref, tables, end_ms, self.compaction_memory, defer=True)
                else:
                    info = compact(self.store, entry.ref, tables, end_ms, self.compaction_memory, closed=False)
                outcome = "ok"
                return info
            finally:
                with self._lock:
                    self.stats.compactions[outcome] += 1
                    self.stats.compaction_seconds += time.monotonic() - start

    def _unless_deleted(self, entry: SessionEntry) -> None:
        """Raise SessionNotFound if the session's index entry is gone: the catalog's listing was older."""
        try:
            present = self.store.exists(entry.ref.index_key)
        except StoreError as e:
            raise ArchiveUnavailable(str(e)) from e
        if not present:
            raise SessionNotFound(
                f"session {entry.ref.id} was deleted from the archive; GET /api/v1/sessions lists the sessions it holds"
            )

    def _download(self, entry: SessionEntry, tables: Path) -> bool:
        ref = entry.ref
        try:
            info = self.store.get(ref.compacted_key(COMPACTION_VERSION, INFO))
        except NotFound:
            return False
        try:
            listing = json.loads(info)
            if not isinstance(listing, dict):
                raise ValueError(f"{INFO} is not a JSON object")
            files = [name for table in TABLES for name in table_files(listing, table)]
            if pending(listing):
                raise ValueError(f"it lists tables still to be built: {pending(listing)}")
        except ValueError as e:
            log.warning("the archive's compacted tables of %s are not usable (%s): compacting it again", ref.id, e)
            return False
        staging = tables.with_name(tables.name + ".download")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        for name in files:
            (staging / name).write_bytes(self.store.get(ref.compacted_key(COMPACTION_VERSION, name)))
        (staging / INFO).write_bytes(info)
        shutil.rmtree(tables, ignore_errors=True)
        staging.rename(tables)
        log.info("using the compacted tables of %s from the archive", entry.ref.id)
        with self._lock:
            self.stats.downloads += 1
        return True

    def _upload(self, entry: SessionEntry, tables: Path) -> None:
        """Best effort: a read-only archive still serves, it only compacts on every server."""
        try:
            publish(self.store, entry.ref, tables)
        except StoreError as e:
            log.warning("could not write the compacted tables of %s back to the archive: %s", entry.ref.id, e)


# A closed session's tables are written back this long after they are built (its deferred tables are not delayed):
# the first requests after its end come meanwhile, and the upload's reads and writes, even at low priority, slowed
# the four first answers after a 1M-task session's end from 0.75 to 1.15 s on 2 cores.
WRITE_BACK_QUIET_S = 5.0


def _background_priority() -> None:
    """The calling thread yields the CPU to the others (Linux: a thread's own nice value); elsewhere, nothing."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
    except (AttributeError, OSError):
        pass


def _read_info(tables: Path) -> dict | None:
    try:
        info = json.loads((tables / INFO).read_text())
    except (FileNotFoundError, ValueError):
        return None
    return info if info.get("compaction_version") == COMPACTION_VERSION else None
