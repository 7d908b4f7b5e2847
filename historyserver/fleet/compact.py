"""`rayhistory compact`: compact many closed sessions and write their tables to the archive, as a history server
would (historyserver/compaction/publish.py), on this machine or as Ray tasks. Servers then only download them.
Exit 0 all done, 1 some sessions failed (run again: done ones are skipped), 2 bad settings, archive or Ray."""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import tempfile
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any, TextIO

from archive.errors import ArchiveError
from archive.layout import SessionRef
from archive.settings import SettingsError
from archive.storage import open_store
from historyserver.compaction.publish import compact_closed, publish
from historyserver.errors import ArchiveUnavailable
from historyserver.fleet import on_ray
from historyserver.fleet.progress import Progress
from historyserver.fleet.selection import Selected, nothing_hint, published, select, selected
from historyserver.fleet.settings import CompactSettings

OK, SOME_FAILED, UNUSABLE = 0, 1, 2


def compact_one(archive_url: str, session: Selected, memory: str) -> dict[str, Any]:
    """Compact one session into a temporary directory and publish its tables (a process's or a Ray task's work)."""
    store = open_store(archive_url)
    ref = SessionRef.from_id(session.session_id)
    with tempfile.TemporaryDirectory(prefix="rh-compact-") as tmp:
        tables = Path(tmp) / "tables"
        info = compact_closed(store, ref, tables, session.end_ms, memory)
        publish(store, ref, tables)
    return {"session_id": ref.id, "seconds": info["seconds"], "tasks": info["counts"].get("tasks", 0)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    CompactSettings.add_arguments(parser)


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    try:
        settings = CompactSettings.load(args)
        store = open_store(settings.archive)
        store.check()
        entries, running = select(store, settings)
        done_before = [False] * len(entries) if settings.force else published(store, entries)
    except (SettingsError, ArchiveError, ArchiveUnavailable) as e:
        print(f"rayhistory compact: {e}", file=err)
        return UNUSABLE
    todo = [selected(e) for e, done in zip(entries, done_before) if not done]
    if not entries and not running:
        print(f"rayhistory compact: {nothing_hint(store, settings)}", file=err)
    print(
        f"rayhistory compact: {len(entries)} closed session(s) selected, {len(entries) - len(todo)} already "
        f"compacted, {running} running skipped; compacting {len(todo)} "
        f"{'as Ray tasks on ' + settings.ray_address if settings.ray_address else 'on this machine'}",
        file=err,
    )
    progress = Progress(err, "compact", len(todo))
    failures: list[str] = []

    def finished(session: Selected, result: dict[str, Any] | None, error: BaseException | None) -> None:
        if error is not None:
            failures.append(session.session_id)
            progress.note(f"failed  {session.session_id}: {error}")
        else:
            print(f"compacted  {session.session_id}  {result['tasks'] if result else 0} tasks", file=out)
        progress.step(error is not None)

    started = time.monotonic()
    try:
        if settings.ray_address:
            ray = on_ray.connect(settings.ray_address)
            try:
                task = ray.remote(num_cpus=1, max_retries=1)(compact_one)
                calls = ((settings.archive, s, settings.compaction_memory) for s in todo)
                on_ray.bounded(ray, task, calls, settings.parallel, lambda c, r, e: finished(c[1], r, e))
            finally:
                ray.shutdown()
        else:
            _on_this_machine(settings, todo, finished)
    except on_ray.RayUnavailable as e:
        print(f"rayhistory compact: {e}", file=err)
        return UNUSABLE
    print(
        f"rayhistory compact: {len(todo) - len(failures)} compacted, {len(failures)} failed in "
        f"{time.monotonic() - started:.1f}s",
        file=err,
    )
    if failures:
        print("rayhistory compact: run again to retry the failed sessions (compacted ones are skipped)", file=err)
    return SOME_FAILED if failures else OK


def _on_this_machine(settings: CompactSettings, todo: list[Selected], finished: Any) -> None:
    """At most --parallel processes (compaction is mostly Python: threads would share one core)."""
    ctx = multiprocessing.get_context("spawn")  # a clean interpreter: no inherited DuckDB, threads or sockets
    with ProcessPoolExecutor(max_workers=settings.parallel, mp_context=ctx) as pool:
        pending: dict[Future[dict[str, Any]], Selected] = {}
        queue = iter(todo)
        while True:
            for session in queue:
                pending[pool.submit(compact_one, settings.archive, session, settings.compaction_memory)] = session
                if len(pending) >= settings.parallel * 2:  # a short queue keeps every process busy
                    break
            if not pending:
                return
            ready, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in ready:
                session = pending.pop(fut)
                error = fut.exception()
                finished(session, None if error else fut.result(), error)
