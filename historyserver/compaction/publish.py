"""A closed session's tables, compacted and written back to the archive: the one path by which tables reach
`compacted/c{COMPACTION_VERSION}/`, whether a history server or `rayhistory compact` (on this machine or in Ray
tasks) built them, so a server that later opens the session only downloads them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from archive.compacted import COMPACTION_VERSION, INFO_FILE, TABLES, pending, table_files
from archive.layout import SessionRef
from archive.storage import Store
from historyserver.compaction.build import compact
from historyserver.compaction.tables import DEFAULT_MEMORY


def compact_closed(
    store: Store,
    ref: SessionRef,
    tables: Path,
    end_ms: int | None,
    memory_limit: str = DEFAULT_MEMORY,
    defer: bool = False,
) -> dict[str, Any]:
    """Build the tables of a session that will not change any more into `tables`, its info marked closed (with
    `defer`: our own indexes left pending, for build.add_deferred)."""
    return compact(store, ref, tables, end_ms, memory_limit, closed=True, defer=defer)


def publish(store: Store, ref: SessionRef, tables: Path) -> None:
    """Write the tables to the archive, INFO_FILE last: it vouches for the rest (raises StoreError)."""
    info = json.loads((tables / INFO_FILE).read_text())
    if pending(info):
        raise ValueError(f"{ref.id}: its tables {pending(info)} are not built yet; the archive gets complete builds")
    for table in TABLES:
        for name in table_files(info, table):
            store.put(ref.compacted_key(COMPACTION_VERSION, name), (tables / name).read_bytes())
    store.put(ref.compacted_key(COMPACTION_VERSION, INFO_FILE), (tables / INFO_FILE).read_bytes())


def is_published(store: Store, ref: SessionRef) -> bool:
    return store.exists(ref.compacted_key(COMPACTION_VERSION, INFO_FILE))
