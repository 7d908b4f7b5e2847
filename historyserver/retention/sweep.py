"""Deleting one session from the archive, in the order FORMAT.md ("Deleting a session") promises.

The deletion marker goes first and the index entry second, so the session is unlisted before any of its data
goes; a run cut short leaves the marker, and the next run finishes the session from it.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from archive.compacted import INFO_FILE
from archive.errors import ArchiveError
from archive.layout import (
    COMPACTED_DIR,
    DELETING_PREFIX,
    FORMAT_VERSION,
    InvalidName,
    SessionRef,
    parse_compacted_key,
    parse_deleting_key,
)
from archive.storage import ObjectInfo, Store

PASSES = 3  # re-lists after deleting, for objects written meanwhile


class StillBeingWritten(ArchiveError):
    """Objects kept arriving under a session being deleted; its deletion marker stays for the next run."""


def session_objects(store: Store, ref: SessionRef) -> list[ObjectInfo]:
    """Every object of the session, its index entry included, in the order they are deleted."""
    objects = list(store.list(ref.prefix))
    index = [o for o in store.list(ref.index_key) if o.key == ref.index_key]
    return index + sorted(objects, key=lambda o: (_rank(ref, o.key), o.key))


def _rank(ref: SessionRef, key: str) -> int:
    rest = key[len(ref.prefix) :]
    if rest.startswith(COMPACTED_DIR):
        compacted = parse_compacted_key(key, ref)  # info.json vouches for the tables: it goes first
        return 0 if compacted and compacted[1] == INFO_FILE else 1
    if rest.startswith("nodes/"):
        return 2
    return 4 if rest == "ended.json" else 3  # the manifest, then the end marker, last


def pending(store: Store) -> list[SessionRef]:
    """Sessions an earlier run began deleting and did not finish."""
    refs = []
    for o in store.list(DELETING_PREFIX):
        try:
            refs.append(parse_deleting_key(o.key))
        except InvalidName:
            continue  # not ours (a newer format's file): leave it
    return refs


def delete_session(
    store: Store, ref: SessionRef, objects: list[ObjectInfo], reason: str, progress: Callable[[int], None]
) -> int:
    """Delete the session; `progress(n_bytes)` after each batch. Returns the bytes deleted."""
    marker = {"format_version": FORMAT_VERSION, "requested_ms": int(time.time() * 1000), "reason": reason}
    store.put(ref.deleting_key, json.dumps(marker).encode())
    index = [o for o in objects if o.key == ref.index_key]
    store.delete_many([ref.index_key])  # unlisted from here on
    done = _sizes(index)
    progress(done)
    rest = [o for o in objects if o.key != ref.index_key]
    for _ in range(PASSES):
        for start in range(0, len(rest), store.delete_batch):
            batch = rest[start : start + store.delete_batch]
            store.delete_many([o.key for o in batch])
            done += _sizes(batch)
            progress(_sizes(batch))
        # Whatever arrived meanwhile (a history server writing compacted tables back just now) goes too; the
        # index entry as well, should a collector thought dead have rewritten it.
        rest = session_objects(store, ref)
        if not rest:
            store.delete_many([ref.deleting_key])
            return done
    raise StillBeingWritten(
        f"objects keep arriving under {ref.prefix} ({len(rest)} now) while it is deleted; "
        f"is a collector still writing {ref.id}? its deletion marker stays, and the next "
        "gc run finishes it"
    )


def _sizes(objects: list[ObjectInfo]) -> int:
    return sum(o.size for o in objects)


def forget_cached_tables(cache_dir: Path, ref: SessionRef) -> int:
    """Remove a history server's local tables of the session (every compaction version). Returns folders removed."""
    removed = 0
    for folder in sorted(Path(cache_dir).glob("compacted-c*/")):
        for tables in (folder / ref.id, *folder.glob(f"{ref.id}.*")):
            if tables.is_dir():
                shutil.rmtree(tables, ignore_errors=True)
                removed += 1
    return removed
