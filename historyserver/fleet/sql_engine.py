"""DuckDB over the compacted tables of many sessions: one view per table the query reads, over those sessions'
Parquet files, with session_id, namespace and cluster added to each row.

A local archive's files are read where they lie; an S3 archive's are fetched through our Store (the same
credentials as the server: RRSA, OSS, boto3's chain) into a temporary directory, only the tables the query
reads. DuckDB's memory is bounded (`memory_limit`), spilling to that directory.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pyarrow as pa

from archive.compacted import COMPACTION_VERSION, INFO_FILE, table, table_files
from archive.errors import NotFound
from archive.layout import SessionRef
from archive.storage import Store, open_store
from archive.storage.local import LocalStore
from historyserver.fleet.selection import Selected
from historyserver.fleet.sql_plan import Plan, QueryError

BATCH_ROWS = 8192


def _listing(store: Store, ref: SessionRef) -> dict:
    """The session's compacted INFO_FILE (which names the parts of a table written as several files)."""
    try:
        info = json.loads(store.get(ref.compacted_key(COMPACTION_VERSION, INFO_FILE)))
    except (NotFound, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def _stage(
    store: Store, sessions: list[Selected], tables: frozenset[str], work: Path
) -> dict[str, list[tuple[str, Selected]]]:
    """table -> the local Parquet files of the sessions (each with its session), in the sessions' order."""
    refs = [SessionRef.from_id(s.session_id) for s in sessions]
    with ThreadPoolExecutor(max_workers=8) as pool:
        infos = list(pool.map(lambda ref: _listing(store, ref), refs))
    try:
        keys = [
            (name, s, ref.compacted_key(COMPACTION_VERSION, f), f)
            for name in sorted(tables)
            for s, ref, info in zip(sessions, refs, infos)
            for f in table_files(info, table(name))
        ]
    except ValueError as e:
        raise QueryError(f"a session's compacted tables are not usable ({e}); `rayhistory compact` it again") from None
    if isinstance(store, LocalStore):
        paths = [str(store.root / key) for _, _, key, _ in keys]
    else:

        def fetch(item: tuple[str, Selected, str, str]) -> str:
            _, s, key, name = item
            path = work / "files" / s.session_id / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(store.get(key))
            return str(path)

        with ThreadPoolExecutor(max_workers=8) as pool:
            paths = list(pool.map(fetch, keys))
    files: dict[str, list[tuple[str, Selected]]] = {name: [] for name in tables}
    for (name, s, _, _), path in zip(keys, paths):
        files[name].append((path, s))
    return files


def _connect(memory: str, work: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(config={"memory_limit": memory, "temp_directory": str(work / "spill")})
    con.execute("SET enable_progress_bar = false")
    return con


def _views(con: duckdb.DuckDBPyConnection, files: dict[str, list[tuple[str, Selected]]]) -> None:
    staged = [pair for name in sorted(files) for pair in files[name]]
    origin = pa.table(
        {
            "filename": [path for path, _ in staged],
            "session_id": [s.session_id for _, s in staged],
            "namespace": [s.namespace for _, s in staged],
            "cluster": [s.cluster for _, s in staged],
        }
    )
    con.register("_origin_arrow", origin)
    con.execute("CREATE TEMP TABLE _origin AS SELECT * FROM _origin_arrow")
    con.unregister("_origin_arrow")
    for name, pairs in files.items():
        paths = [path for path, _ in pairs]
        # The files' own filename column joins each row to its session; an empty selection is an empty view.
        if not paths:
            cols = ", ".join(
                f"NULL::{_duck(t)} AS {f}" for f, t in zip(table(name).schema.names, table(name).schema.types)
            )
            con.execute(
                f"CREATE TEMP VIEW {name} AS SELECT {cols}, '' AS session_id, '' AS namespace, '' AS cluster LIMIT 0"
            )
            continue
        con.execute(
            f"CREATE TEMP VIEW {name} AS SELECT t.* EXCLUDE (filename), o.session_id, o.namespace, o.cluster "
            f"FROM read_parquet(?, filename = true, union_by_name = true) t JOIN _origin o USING (filename)".replace(
                "?", "[" + ", ".join("'" + p.replace("'", "''") + "'" for p in paths) + "]"
            )
        )


def _duck(t: pa.DataType) -> str:
    return {"string": "VARCHAR", "int64": "BIGINT", "int32": "INTEGER", "double": "DOUBLE", "bool": "BOOLEAN"}.get(
        str(t), "VARCHAR"
    )


@contextmanager
def answer(archive_url: str, sessions: list[Selected], p: Plan, memory: str) -> Iterator[pa.RecordBatchReader]:
    """The query's answer over these sessions, streamed in record batches (bounded memory)."""
    with tempfile.TemporaryDirectory(prefix="rh-sql-") as tmp:
        work = Path(tmp)
        files = _stage(open_store(archive_url), sessions, p.tables, work)
        con = _connect(memory, work)
        try:
            _views(con, files)
            try:
                reader = con.execute(p.sql).to_arrow_reader(BATCH_ROWS)
            except duckdb.Error as e:
                raise QueryError(str(e)) from None
            yield reader
        finally:
            con.close()


def answer_table(archive_url: str, sessions: list[Selected], p: Plan, memory: str, max_rows: int) -> pa.Table:
    """A chunk's answer as one table, at most max_rows + 1 rows (a Ray task's work; the +1 tells 'cut')."""
    with answer(archive_url, sessions, p, memory) as reader:
        batches, rows = [], 0
        for batch in reader:
            batches.append(batch)
            rows += batch.num_rows
            if rows > max_rows:
                break
        return pa.Table.from_batches(batches, schema=reader.schema).slice(0, max_rows + 1)
