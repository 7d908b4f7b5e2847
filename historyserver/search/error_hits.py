"""Errors Ray kept in its events rather than in a log (failed tasks', dead actors', failed jobs'), searched as lines:
their message is the error, their level ERROR, and they have no file (so a file filter leaves them out).

They come before the session's log lines, task errors first, then actors', then jobs', each by time. Only a page
of them is ever read whole: the count and facets are one grouped query, and a page is read by its position.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import duckdb
import pyarrow.parquet as pq

from archive.compacted import ACTORS, JOBS, TASKS, Table, table_files
from archive.layout import SessionRef
from historyserver.queries.session_db import table_paths
from historyserver.search.backend import Hit

_COLUMNS = "kind, task_id, task_name, actor_id, actor_name, job_id, node_id, worker_id, pid, time_ms, message"
# kind -> (table, the table's errors as _COLUMNS, FROM t)
_SOURCES: dict[str, tuple[Table, str]] = {
    "task_error": (
        TASKS,
        "SELECT 'task_error' AS kind, task_id, name AS task_name, NULL AS actor_id, NULL AS actor_name, job_id, "
        "node_id, worker_id, worker_pid AS pid, end_time_ms AS time_ms, error_message AS message "
        "FROM t WHERE state = 'FAILED'",
    ),
    "actor_error": (
        ACTORS,
        "SELECT 'actor_error' AS kind, NULL AS task_id, NULL AS task_name, actor_id, name AS actor_name, job_id, "
        "node_id, NULL AS worker_id, pid, NULL AS time_ms, json_extract_string(record, '$.exitDetail') AS message "
        "FROM t WHERE state = 'DEAD' AND json_extract_string(record, '$.exitDetail') NOT IN ('-', '')",
    ),
    "job_error": (
        JOBS,
        "SELECT 'job_error' AS kind, NULL AS task_id, NULL AS task_name, NULL AS actor_id, NULL AS actor_name, "
        "job_id, NULL AS node_id, NULL AS worker_id, NULL AS pid, NULL AS time_ms, "
        "json_extract_string(record, '$.message') AS message FROM t WHERE status = 'FAILED'",
    ),
}


@dataclass
class Errors:
    """One session's matching errors as a query, in hit order."""

    sql: str
    params: list[Any]


def matching(
    tables: Path,
    info: dict[str, Any],
    filters: tuple[str, list[Any]],
    line_where: tuple[str, list[Any]],
    message_regex: str | None,
) -> Errors | None:
    """The errors of a session's tables (`info`: their INFO_FILE, empty if none) that pass the search's filters and
    match its query (`line_where`, over `message`; `message_regex`: the SQL of a regex over the line, to be applied
    to the message instead), or None when the session has none."""
    if not info:
        return None
    where, params = line_where
    if message_regex is not None:
        where = where.replace(message_regex, "regexp_matches(message, ?)")
    selects, all_params = [], []
    for table, select in _SOURCES.values():
        paths = [tables / name for name in table_files(info, table)]
        if not all(p.exists() for p in paths) or sum(pq.ParquetFile(p).metadata.num_rows for p in paths) == 0:
            continue
        base = select.replace(" FROM t", f" FROM read_parquet({table_paths(tables, table, info)})")
        selects.append(
            f"SELECT {_COLUMNS} FROM (SELECT *, 'ERROR' AS level, NULL::VARCHAR AS file, '' AS head, "
            f"NULL::VARCHAR AS component FROM ({base})) "
            f"WHERE message IS NOT NULL AND {filters[0]} AND {where}"
        )
        all_params += [*filters[1], *params]
    if not selects:
        return None
    return Errors(" UNION ALL ".join(f"({s})" for s in selects), all_params)


_ORDER = (
    "CASE kind WHEN 'task_error' THEN 0 WHEN 'actor_error' THEN 1 ELSE 2 END, time_ms NULLS LAST, "
    "task_id, actor_id, job_id"
)


def count(con: duckdb.DuckDBPyConnection, errors: Errors | None, facets: dict[str, Counter[str]]) -> int:
    """How many errors match; their node_id, job_id and level are added to `facets`."""
    if errors is None:
        return 0
    rows = con.execute(
        f"SELECT node_id, job_id, count(*) FROM ({errors.sql}) GROUP BY node_id, job_id", errors.params
    ).fetchall()
    for node, job, n in rows:
        for name, value in (("node_id", node), ("job_id", job), ("level", "ERROR")):
            if value and name in facets:
                facets[name][value] += n
    return sum(n for *_, n in rows)


def page(
    con: duckdb.DuckDBPyConnection,
    errors: Errors | None,
    ref: SessionRef,
    first: int,
    limit: int,
    highlight: Callable[[str], list[tuple[int, int]]],
) -> list[Hit]:
    """At most `limit` errors from the `first`-th on (0-based, in hit order) as hits."""
    if errors is None or limit <= 0:
        return []
    rows = con.execute(
        f"SELECT {_COLUMNS} FROM ({errors.sql}) ORDER BY {_ORDER} LIMIT ? OFFSET ?", [*errors.params, limit, first]
    ).fetchall()
    sid = quote(ref.id, safe="")
    hits = []
    for kind, task_id, task_name, actor_id, actor_name, job, node, worker, pid, time_ms, message in rows:
        if kind == "task_error":
            url = f"/sessions/{sid}/#/jobs/{job}/tasks/{task_id}"
        elif kind == "actor_error":
            url = f"/sessions/{sid}/#/actors/{actor_id}"
        else:
            url = f"/sessions/{sid}/#/jobs/{job}"
        hits.append(
            Hit(
                kind=kind,
                session=ref.id,
                node_id=node,
                file=None,
                line=None,
                offset=None,
                time=None if time_ms is None else time_ms / 1000,
                level="ERROR",
                job_id=job,
                message=message,
                match=highlight(message),
                url=url,
                task_id=task_id,
                actor_id=actor_id,
                task_name=task_name,
                actor_name=actor_name,
                worker_id=worker,
                pid=None if pid is None else int(pid),
            )
        )
    return hits
