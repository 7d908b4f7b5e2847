"""log_lines rows read back as the files' lines (archive/compacted.py LOG_LINES): heads with their time stamps
written back (LOG_HEAD_SQL)."""

from __future__ import annotations

import duckdb

from archive.compacted import LOG_HEAD_SQL

HEAD = f"({LOG_HEAD_SQL})"
LINE = f"({HEAD} || message)"  # the line as grep sees it (ANSI escapes removed)


def around(con: duckdb.DuckDBPyConnection, files: str, node_id: str, file: str, first: int, last: int) -> list[tuple]:
    """(line, offset, text, time_ms, level, task_name, actor_name) of the file's lines first..last (`files`: the
    log_lines table's files as a DuckDB list, LogIndex.lines_sql)."""
    return con.execute(
        f'SELECT line, "offset", {LINE}, time_ms, level, task_name, actor_name FROM read_parquet({files}) '
        "WHERE node_id = ? AND file = ? AND line BETWEEN ? AND ? ORDER BY line",
        [node_id, file, first, last],
    ).fetchall()
