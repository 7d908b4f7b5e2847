"""The task_timeline table: the tasks as the timeline reads them, sorted by time (archive/compacted.py).

The tasks table is sorted by task id, so a time window would read all of it; at a million tasks that is half a
second per zoom step. Sorted by from_ms in small row groups, a window reads the groups it overlaps, and lanes are
small integers instead of two 56-character ids.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from archive.compacted import TASK_TIMELINE
from historyserver.compaction.tasks_sql import sql_list

ROW_GROUP_ROWS = 8192  # a zoomed-in window reads a few groups of this many attempts


def _sql_path(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def build_task_timeline(con: duckdb.DuckDBPyConnection, tasks_parquet: list[Path], out_dir: Path) -> int:
    """task_timeline from the tasks table's files (one, or its parts) into out_dir; returns its rows."""
    columns = ", ".join(TASK_TIMELINE.schema.names)
    con.execute("SET preserve_insertion_order = true")  # the file's order is the point
    con.execute(f"""
        COPY (
            WITH t AS (
                SELECT *, coalesce(node_id, '') AS n, coalesce(worker_id, '') AS w,
                       coalesce(creation_time_ms, start_time_ms) AS from_ms,
                       greatest(coalesce(end_time_ms, start_time_ms, creation_time_ms),
                                coalesce(creation_time_ms, start_time_ms)) AS to_ms
                FROM read_parquet({sql_list(tasks_parquet)})
                WHERE type IS DISTINCT FROM 'DRIVER_TASK' AND coalesce(creation_time_ms, start_time_ms) IS NOT NULL),
            lanes AS (
                SELECT n, w, (row_number() OVER (ORDER BY n = '', n, w = '', pid, w) - 1)::INTEGER AS lane,
                       (dense_rank() OVER (ORDER BY n = '', n) - 1)::INTEGER AS node_rank
                FROM (SELECT n, w, max(worker_pid) AS pid FROM t GROUP BY n, w))
            SELECT {columns} FROM t JOIN lanes USING (n, w) ORDER BY from_ms, task_id, attempt_number
        ) TO {_sql_path(out_dir / TASK_TIMELINE.file)} (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE {ROW_GROUP_ROWS})
    """)
    con.execute("SET preserve_insertion_order = false")
    return int(
        con.execute(f"SELECT count(*) FROM read_parquet({_sql_path(out_dir / TASK_TIMELINE.file)})").fetchone()[0]
    )
