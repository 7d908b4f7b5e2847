"""What a session's overview page shows, computed in DuckDB so it stays fast at a million tasks."""

from __future__ import annotations

from typing import Any

from historyserver.queries.session_db import SessionDB


def task_counts(db: SessionDB) -> dict[str, int]:
    rows = db.query("SELECT state, count(*) FROM tasks WHERE type <> 'DRIVER_TASK' GROUP BY state ORDER BY 2 DESC")
    return dict(rows)


def unfinished_tasks(db: SessionDB) -> int:
    return db.query("SELECT count(*) FROM tasks WHERE unfinished AND type <> 'DRIVER_TASK'")[0][0]


def failed_task_groups(db: SessionDB, limit: int = 20) -> list[dict[str, Any]]:
    """Failed attempts grouped by Ray's error type and the exception class of their error's last line."""
    rows = db.query(
        r"""
        WITH failed AS (
            SELECT task_id, attempt_number, job_id, func_or_class_name AS func, coalesce(error_type, 'UNKNOWN') AS et,
                   coalesce(list_last(list_filter(string_split(trim(
                       coalesce(error_message, '')), chr(10)), x -> trim(x) <> '')),
                       '') AS last_line
            FROM tasks WHERE state = 'FAILED'),
        keyed AS (
            SELECT *, coalesce(nullif(regexp_extract(trim(last_line), '^([A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\w*)', 1), ''),
                               left(trim(last_line), 120)) AS exception
            FROM failed)
        SELECT et, exception, count(*) AS n, list(DISTINCT func)[1:5] AS funcs,
               arg_min(trim(last_line), task_id) AS example_error,
               arg_min(task_id, task_id) AS example_task, arg_min(job_id, task_id) AS example_job
        FROM keyed GROUP BY et, exception ORDER BY n DESC, et, exception LIMIT ?
        """,
        [limit],
    )
    return [
        {
            "error_type": et,
            "exception": exc,
            "count": n,
            "functions": funcs,
            "example_error": example,
            "example_task_id": task,
            "example_job_id": job,
        }
        for et, exc, n, funcs, example, task, job in rows
    ]
