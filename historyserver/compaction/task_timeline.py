"""The task_timeline table: the tasks as the timeline reads them, sorted by time (archive/compacted.py).

The tasks table is sorted by task id, so a time window would read all of it; at a million tasks that is half a
second per zoom step. Sorted by from_ms in small row groups, a window reads the groups it overlaps, and lanes are
small integers instead of two 56-character ids.

A one-shot build writes the table as one file, its lanes numbered in the order the timeline draws them. A session
folded while it runs (incremental.py) writes it as parts, one per final part of the tasks table, each sorted by
from_ms; their lanes are numbered as the workers appear (the folder keeps the numbers), so a part never has to be
rewritten when a worker joins. Readers order lanes by node and worker pid, not by their numbers.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa

from archive.compacted import TASK_TIMELINE
from historyserver.compaction.tasks_sql import sql_list

ROW_GROUP_ROWS = 8192  # a zoomed-in window reads a few groups of this many attempts
ORDER = "from_ms, task_id, attempt_number"


def _sql_path(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _attempts(tasks_parquet: list[Path]) -> str:
    """The tasks' attempts as the timeline has them (drivers, and attempts with no time, left out)."""
    return f"""
        SELECT *, coalesce(node_id, '') AS n, coalesce(worker_id, '') AS w,
               coalesce(creation_time_ms, start_time_ms) AS from_ms,
               greatest(coalesce(end_time_ms, start_time_ms, creation_time_ms),
                        coalesce(creation_time_ms, start_time_ms)) AS to_ms
        FROM read_parquet({sql_list(tasks_parquet)})
        WHERE type IS DISTINCT FROM 'DRIVER_TASK' AND coalesce(creation_time_ms, start_time_ms) IS NOT NULL"""


def _write(con: duckdb.DuckDBPyConnection, attempts: str, lanes: str, out: Path) -> None:
    """COPY the attempts joined to their lanes (n, w, lane, node_rank), sorted by time, to out."""
    columns = ", ".join(TASK_TIMELINE.schema.names)
    con.execute("SET preserve_insertion_order = true")  # the file's order is the point
    try:
        con.execute(f"""
            COPY (
                WITH t AS ({attempts}), lanes AS ({lanes})
                SELECT {columns} FROM t JOIN lanes USING (n, w) ORDER BY {ORDER}
            ) TO {_sql_path(out)} (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE {ROW_GROUP_ROWS})
        """)
    finally:
        con.execute("SET preserve_insertion_order = false")


def build_task_timeline(con: duckdb.DuckDBPyConnection, tasks_parquet: list[Path], out_dir: Path) -> int:
    """task_timeline from the tasks table's files (one, or its parts) into out_dir; returns its rows."""
    lanes = """
        SELECT n, w, (row_number() OVER (ORDER BY n = '', n, w = '', pid, w) - 1)::INTEGER AS lane,
               (dense_rank() OVER (ORDER BY n = '', n) - 1)::INTEGER AS node_rank
        FROM (SELECT n, w, max(worker_pid) AS pid FROM t GROUP BY n, w)"""
    out = out_dir / TASK_TIMELINE.file
    _write(con, _attempts(tasks_parquet), lanes, out)
    return int(con.execute(f"SELECT count(*) FROM read_parquet({_sql_path(out)})").fetchone()[0])


def write_part(
    con: duckdb.DuckDBPyConnection, tasks_part: Path, out: Path, lanes: dict[str, int], nodes: dict[str, int]
) -> None:
    """A part of task_timeline from a part of the tasks table. `lanes` ("node/worker" -> lane) and `nodes` (node ->
    node_rank) are the numbers given so far; the part's new workers and nodes get the next ones (added to them)."""
    attempts = _attempts([tasks_part])
    found = con.execute(f"SELECT DISTINCT n, w FROM ({attempts}) ORDER BY n, w").fetchall()
    for n, w in found:
        nodes.setdefault(n, len(nodes))
        lanes.setdefault(f"{n}/{w}", len(lanes))
    con.register(
        "part_lanes",
        pa.table(
            {
                "n": [n for n, _ in found],
                "w": [w for _, w in found],
                "lane": pa.array([lanes[f"{n}/{w}"] for n, w in found], pa.int32()),
                "node_rank": pa.array([nodes[n] for n, _ in found], pa.int32()),
            },
            schema=pa.schema([("n", pa.string()), ("w", pa.string()), ("lane", pa.int32()), ("node_rank", pa.int32())]),
        ),
    )
    try:
        _write(con, attempts, "SELECT * FROM part_lanes", out)
    finally:
        con.unregister("part_lanes")


def merge_parts(con: duckdb.DuckDBPyConnection, parts: list[Path], out: Path) -> None:
    """Parts of task_timeline as one, sorted by time (their lanes are numbered alike already)."""
    con.execute("SET preserve_insertion_order = true")
    try:
        con.execute(f"""
            COPY (SELECT * FROM read_parquet({sql_list(parts)}) ORDER BY {ORDER})
            TO {_sql_path(out)} (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE {ROW_GROUP_ROWS})
        """)
    finally:
        con.execute("SET preserve_insertion_order = false")
