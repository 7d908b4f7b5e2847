"""What our log view shows around one line of an archived file: the lines (the search backend's context) and the
task or actor that printed the line, from Ray's marker lines and the session's task table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb

from archive.compacted import INFO_FILE, TASKS
from archive.layout import SessionRef
from historyserver.queries.session_db import table_paths
from historyserver.search.backend import ContextAnswer, SearchBackend

WINDOW = 100  # lines shown before and after


def log_view(
    backend: SearchBackend, ref: SessionRef, tables: Path, node_id: str, file: str, line: int
) -> dict[str, Any]:
    ctx: ContextAnswer = backend.context(ref, node_id, file, line, WINDOW, WINDOW)
    target = next((c for c in ctx.lines if c.line == line), None)
    worker = _worker_id(file)
    tasks = _tasks(tables, worker, target.task_name) if target and target.task_name and worker else []
    return {
        "session": ref.id,
        "node_id": node_id,
        "file": file,
        "line": line,
        "lines": ctx.lines,
        "target": target,
        "tasks": tasks,
        "warnings": ctx.warnings,
        "first": ctx.lines[0].line if ctx.lines else line,
        "last": ctx.lines[-1].line if ctx.lines else line,
        "more": bool(ctx.lines) and ctx.lines[-1].line >= line + WINDOW,  # else the file ends within the window
    }


def _worker_id(file: str) -> str | None:
    name = file.rsplit("/", 1)[-1]
    if name.startswith("worker-") and name.count("-") >= 3:
        return name.split("-")[1]
    return None


def _tasks(tables: Path, worker_id: str, task_name: str) -> list[dict[str, Any]]:
    """The attempts of tasks named `task_name` that ran on the worker (the marker names the function, so the
    worker's several runs of one function are all candidates), at most 20."""
    if not (tables / INFO_FILE).exists():
        return []
    con = duckdb.connect(":memory:", config={"memory_limit": "256MB", "threads": 1})
    try:
        rows = con.execute(
            "SELECT task_id, attempt_number, name, state, job_id, actor_id, error_type "
            f"FROM read_parquet({table_paths(tables, TASKS)}) "
            "WHERE worker_id = ? AND (name = ? OR func_or_class_name = ? OR func_or_class_name LIKE ?) "
            "ORDER BY start_time_ms NULLS LAST LIMIT 20",
            [worker_id, task_name, task_name, "%." + task_name],
        ).fetchall()
    finally:
        con.close()
    keys = ("task_id", "attempt_number", "name", "state", "job_id", "actor_id", "error_type")
    return [dict(zip(keys, r)) for r in rows]
