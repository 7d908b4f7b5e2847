"""Read-only queries over one session's compacted tables, with DuckDB."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from historyserver.compaction.build import TABLES
from historyserver.errors import BadRequest

# The filter keys Ray's state API accepts for tasks, and the predicates it knows.
TASK_FILTER_COLUMNS = {
    "task_id", "attempt_number", "name", "state", "job_id", "actor_id", "type", "func_or_class_name",
    "parent_task_id", "node_id", "worker_id", "worker_pid", "error_type",
}
PREDICATES = {"=": "=", "!=": "!="}
INT_COLUMNS = {"attempt_number", "worker_pid"}


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


class SessionDB:
    def __init__(self, tables_dir: Path) -> None:
        self.dir = tables_dir
        self._con = duckdb.connect(":memory:")
        for table in TABLES:
            path = str(tables_dir / f"{table}.parquet").replace("'", "''")
            self._con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{path}')")
        self.info = json.loads((tables_dir / "info.json").read_text())

    def query(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        cur = self._con.cursor()  # one cursor per call: requests run on several threads
        try:
            return cur.execute(sql, params or []).fetchall()
        finally:
            cur.close()

    def tasks(self, filters: list[Filter], limit: int, exclude_driver: bool = True) -> Page:
        """Ray's list_tasks: driver tasks are left out unless asked for, before counting, as the GCS does."""
        where, params = (["type <> 'DRIVER_TASK'"] if exclude_driver else []), []
        for f in filters:
            if f.key not in TASK_FILTER_COLUMNS:
                raise BadRequest(f"filter key {f.key!r} is not supported for tasks; use one of "
                                 f"{sorted(TASK_FILTER_COLUMNS)}")
            if f.predicate not in PREDICATES:
                raise BadRequest(f"filter predicate {f.predicate!r} is not supported; use '=' or '!='")
            if f.key in INT_COLUMNS:
                try:
                    value: Any = int(f.value)
                except ValueError as e:
                    raise BadRequest(f"filter value {f.value!r} for {f.key} must be an integer") from e
            else:
                value = f.value.upper() if f.key in ("state", "type") else f.value
            where.append(f"{f.key} {PREDICATES[f.predicate]} ?" if value is not None else f"{f.key} IS NULL")
            params.append(value)
        clause = ("WHERE " + " AND ".join(where)) if where else ""
        base = "WHERE type <> 'DRIVER_TASK'" if exclude_driver else ""
        total = self.query(f"SELECT count(*) FROM tasks {base}")[0][0]
        filtered = self.query(f"SELECT count(*) FROM tasks {clause}", params)[0][0]
        rows = self.query(
            f"SELECT record FROM tasks {clause} ORDER BY creation_time_ms NULLS LAST, task_id, attempt_number LIMIT ?",
            params + [limit],
        )
        return Page(total, filtered, [json.loads(r[0]) for r in rows])

    def jobs(self) -> list[dict[str, Any]]:
        return [json.loads(r[0]) for r in self.query("SELECT record FROM jobs ORDER BY start_time NULLS LAST")]

    def job(self, job_or_submission_id: str) -> dict[str, Any] | None:
        rows = self.query("SELECT record FROM jobs WHERE submission_id = ? OR job_id = ? "
                           "ORDER BY (submission_id = ?) DESC LIMIT 1", [job_or_submission_id] * 3)
        return json.loads(rows[0][0]) if rows else None

    def actors(self) -> list[dict[str, Any]]:
        return [json.loads(r[0]) for r in self.query("SELECT record FROM actors ORDER BY actor_id")]

    def actor(self, actor_id: str) -> dict[str, Any] | None:
        rows = self.query("SELECT record FROM actors WHERE actor_id = ?", [actor_id])
        return json.loads(rows[0][0]) if rows else None

    def nodes(self) -> list[dict[str, Any]]:
        return [json.loads(r[0]) for r in self.query("SELECT record FROM nodes ORDER BY is_head_node DESC, node_id")]

    def close(self) -> None:
        self._con.close()
