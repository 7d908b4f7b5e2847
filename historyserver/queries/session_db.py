"""Read-only queries over one session's compacted tables, with DuckDB."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import orjson

from archive.compacted import INFO_FILE, TABLES, Table, pending, table_files
from historyserver.errors import BadRequest, TooLarge
from historyserver.queries.task_records import records_sql

# The filter keys Ray's state API accepts for tasks, and the predicates it knows.
TASK_FILTER_COLUMNS = {
    "task_id",
    "attempt_number",
    "name",
    "state",
    "job_id",
    "actor_id",
    "type",
    "func_or_class_name",
    "parent_task_id",
    "node_id",
    "worker_id",
    "worker_pid",
    "error_type",
}
INT_COLUMNS = {"attempt_number", "worker_pid"}
RAY_LIST_LIMIT = 10000  # RAY_MAX_LIMIT_FROM_API_SERVER: what Ray's summaries and timeline list at most
# Ray asks the GCS for tasks with these filters applied at the source, and without driver tasks; its `total`
# counts what the source returned, the other filters only reduce `num_filtered`.
SOURCE_FILTER_KEYS = {"actor_id", "job_id", "task_id", "name", "state"}
NOT_DRIVER = "type IS DISTINCT FROM 'DRIVER_TASK'"


@dataclass(frozen=True)
class Filter:
    key: str
    predicate: str
    value: str


@dataclass
class Page:
    total: int
    num_filtered: int
    rows: list[dict[str, Any]]


QUERY_MEMORY = "1GB"  # DuckDB's memory for one session's queries (each session has its own connection)


def _loads(text: str) -> Any:
    """A stored record (JSON text): orjson reads them ~10x faster than json; json for what orjson refuses
    (integers beyond 64 bits)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def table_paths(tables_dir: Path, table: Table, info: dict[str, Any] | None = None) -> str:
    """The table's files in a build folder (one, or its parts, as the folder's INFO_FILE lists them), as a DuckDB
    list literal for read_parquet."""
    if info is None:
        info = json.loads((tables_dir / INFO_FILE).read_text())
    return "[" + ", ".join("'" + str(tables_dir / f).replace("'", "''") + "'" for f in table_files(info, table)) + "]"


class SessionDB:
    def __init__(self, tables_dir: Path) -> None:
        self.dir = tables_dir
        # Bounded like every request: a query over one session's tables may use this much, then spills or fails.
        self._con = duckdb.connect(":memory:", config={"memory_limit": QUERY_MEMORY, "threads": 2})
        self.info = json.loads((tables_dir / INFO_FILE).read_text())
        left = pending(self.info)  # the log-search tables of a first open, still being built: searches wait for them
        for table in TABLES:
            if table.name in left:
                continue
            self._con.execute(
                f"CREATE VIEW {table.name} AS SELECT * FROM read_parquet({table_paths(tables_dir, table, self.info)})"
            )
        self._memo: dict[str, Any] = {}

    def memo(self, key: str, compute: Callable[[], Any]) -> Any:
        """An answer derived from the whole tables, computed once per instance: the tables of an instance never
        change (a running session's rebuilt tables get a new SessionDB)."""
        if key not in self._memo:
            self._memo[key] = compute()  # a race computes it twice, with the same result
        return self._memo[key]

    @contextmanager
    def _cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """One cursor per call (requests run on several threads), its query bounded by QUERY_MEMORY."""
        cur = self._con.cursor()
        try:
            yield cur
        except duckdb.OutOfMemoryException as e:
            raise TooLarge(
                f"this request needs more than the {QUERY_MEMORY} one session's queries may use; "
                "narrow it (filters, a smaller limit)"
            ) from e
        finally:
            cur.close()

    def query(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        with self._cursor() as cur:
            return cur.execute(sql, params or []).fetchall()

    def columns(self, sql: str, params: list[Any] | None = None) -> list[list[Any]]:
        """The columns of a query's answer as lists (numbers read in bulk, not row by row as tuples)."""
        with self._cursor() as cur:
            found = cur.execute(sql, params or []).fetchnumpy()
            return [found[name].tolist() for name in found]

    def arrays(self, sql: str, params: list[Any] | None = None) -> dict[str, Any]:
        """The columns of a query's answer as numpy arrays, by name (for numeric work over many rows)."""
        with self._cursor() as cur:
            return dict(cur.execute(sql, params or []).fetchnumpy())

    def stream(self, sql: str, params: list[Any] | None = None, batch: int = 5000) -> Iterator[tuple[Any, ...]]:
        """The rows of a query, fetched `batch` at a time: a large answer is never held whole."""
        cur = self._con.cursor()
        try:
            cur.execute(sql, params or [])
            while rows := cur.fetchmany(batch):
                yield from rows
        finally:
            cur.close()

    def tasks(
        self,
        filters: list[Filter],
        limit: int,
        exclude_driver: bool = True,
        raw: bool = False,
        admit: Callable[[int], AbstractContextManager[Any]] = lambda rows: nullcontext(),
    ) -> Page:
        """Ray's list_tasks, sorted by task id as Ray sorts them. `raw`: the rows as their stored JSON text (to be
        spliced into an answer unparsed); `admit(rows)` is held while the page's records are read."""
        where, params = task_where(filters, exclude_driver)
        total, filtered = task_counts(
            self, filters, self.query(f"SELECT count(*) FROM tasks WHERE {where}", params)[0][0], exclude_driver
        )
        # Two steps, so that only the page's records are rendered: the page's keys from the narrow columns, then
        # their rows (tasks.parquet is sorted by task id in small row groups, so the second read is short).
        with admit(min(limit, filtered)):
            keys = self.query(
                f"SELECT task_id, attempt_number FROM tasks WHERE {where} ORDER BY task_id, attempt_number LIMIT ?",
                params + [limit],
            )
            if not keys:
                return Page(total, filtered, [])
            first, last = keys[0][0], keys[-1][0]
            rows = self.query(
                records_sql(
                    f"SELECT * FROM tasks WHERE {where} AND task_id BETWEEN ? AND ? "
                    "ORDER BY task_id, attempt_number LIMIT ?",
                    profile_where="e.task_id BETWEEN ? AND ?",
                ),
                params + [first, last, limit, first, last],
            )
            return Page(total, filtered, [r[2] for r in rows] if raw else [_loads(r[2]) for r in rows])

    def jobs(self) -> list[dict[str, Any]]:
        return [_loads(r[0]) for r in self.query("SELECT record FROM jobs ORDER BY start_time NULLS LAST")]

    def job(self, job_or_submission_id: str) -> dict[str, Any] | None:
        rows = self.query(
            "SELECT record FROM jobs WHERE submission_id = ? OR job_id = ? ORDER BY (submission_id = ?) DESC LIMIT 1",
            [job_or_submission_id] * 3,
        )
        return _loads(rows[0][0]) if rows else None

    def actors(self) -> list[dict[str, Any]]:
        return [_loads(r[0]) for r in self.query("SELECT record FROM actors ORDER BY actor_id")]

    def actor(self, actor_id: str) -> dict[str, Any] | None:
        rows = self.query("SELECT record FROM actors WHERE actor_id = ?", [actor_id])
        return _loads(rows[0][0]) if rows else None

    def workers(self) -> list[dict[str, Any]]:
        return [_loads(r[0]) for r in self.query("SELECT record FROM workers ORDER BY worker_id")]

    def nodes(self) -> list[dict[str, Any]]:
        return [_loads(r[0]) for r in self.query("SELECT record FROM nodes ORDER BY is_head_node DESC, node_id")]

    def close(self) -> None:
        self._con.close()


def checked_key(f: Filter, allowed: set[str], kind: str) -> str:
    """The filter's key, lowercased as Ray does, once the key and predicate are ones Ray accepts for `kind`."""
    key = f.key.lower()
    if key not in allowed:
        raise BadRequest(f"filter key {f.key!r} is not supported for {kind}; use one of {sorted(allowed)}")
    if f.predicate not in ("=", "!="):
        raise BadRequest(f"filter predicate {f.predicate!r} is not supported; use '=' or '!='")
    return key


def task_where(filters: Iterable[Filter], exclude_driver: bool = True) -> tuple[str, list[Any]]:
    """SQL conditions for Ray's task filters, with Ray's matching rules: keys and string values compare
    case-insensitively, `!=` matches a missing value, and driver tasks are left out unless asked for."""
    where, params = ([NOT_DRIVER] if exclude_driver else ["TRUE"]), []
    for f in filters:
        key = checked_key(f, TASK_FILTER_COLUMNS, "tasks")
        op = "=" if f.predicate == "=" else "IS DISTINCT FROM"
        if key in INT_COLUMNS:
            try:
                params.append(int(f.value))
            except ValueError as e:
                raise BadRequest(f"filter value {f.value!r} for {key} must be an integer") from e
            where.append(f"{key} {op} ?")
        else:
            params.append(f.value)
            where.append(f"lower({key}) {op} lower(?)")
    return " AND ".join(where), params


def task_counts(
    db: SessionDB, filters: list[Filter], num_filtered: int, exclude_driver: bool = True
) -> tuple[int, int]:
    """(total, num_filtered) as Ray reports them: total counts only the source-side filters."""
    source = [f for f in filters if f.key.lower() in SOURCE_FILTER_KEYS]
    if len(source) == len(filters):
        return num_filtered, num_filtered
    where, params = task_where(source, exclude_driver)
    return db.query(f"SELECT count(*) FROM tasks WHERE {where}", params)[0][0], num_filtered
