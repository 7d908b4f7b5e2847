"""Ray's task timeline (`api/v0/tasks/timeline`): a Chrome trace built from the tasks' profile events.

Follows Ray 2.60's chrome_tracing_dump (ray/_private/profiling.py) over the tasks Ray's state API would list for
it (driver tasks excluded, sorted by task id, optionally one job's): one complete event ("X") per profile event,
ts/dur in microseconds, pid numbering the nodes and tid the workers in order of first appearance, then the
metadata events ("M") that name them.

A deliberate difference: Ray lists at most 10,000 tasks (RAY_MAX_LIMIT_FROM_API_SERVER) and silently traces only
those, so a large session's trace misses most of it. Ours holds every task: it is streamed from DuckDB in batches
and written in pieces, so its size costs time, never memory. The first 10,000 tasks give the same events, pids and
tids as Ray's (both number in task-id order); the rest follow in the same order.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from historyserver.queries.session_db import NOT_DRIVER, SessionDB

# Ray's _default_color_mapping: trace viewer colour names by event name; anything else is "generic_work".
COLORS = {
    "worker_idle": "cq_build_abandoned",
    "task": "rail_response",
    "task:deserialize_arguments": "rail_load",
    "task:execute": "rail_animation",
    "task:store_outputs": "rail_idle",
    "wait_for_function": "detailed_memory_dump",
    "ray.get": "good",
    "ray.put": "terrible",
    "ray.wait": "vsync_highlight_color",
    "submit_task": "background_memory_dump",
    "fetch_and_run_function": "detailed_memory_dump",
    "register_remote_function": "detailed_memory_dump",
}
TRACED_COMPONENTS = ("worker", "driver")


def _color(name: Any) -> str:
    return COLORS.get(name, "generic_work") if isinstance(name, str) else "generic_work"


def _extra(raw: str | None) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return {"raw": raw}
    return value if isinstance(value, dict) else {"raw": raw}


def chrome_trace(db: SessionDB, job_id: str | None = None) -> list[dict[str, Any]]:
    return list(chrome_trace_events(db, job_id))


def chrome_trace_json(db: SessionDB, job_id: str | None = None, chunk: int = 256 << 10) -> Iterator[bytes]:
    """The trace as a JSON array (the bytes json.dumps of the whole list gives), written as its events are read,
    in pieces of about `chunk` bytes: the download is streamed, never held whole."""
    parts: list[str] = []
    size = 0
    prefix = "["
    for event in chrome_trace_events(db, job_id):
        text = json.dumps(event)
        parts.append(text)
        size += len(text) + 2
        if size >= chunk:
            yield (prefix + ", ".join(parts)).encode()
            prefix, parts, size = ", ", [], 0
    if parts:
        yield (prefix + ", ".join(parts) + "]").encode()
    else:
        yield b"[]" if prefix == "[" else b"]"


def chrome_trace_events(db: SessionDB, job_id: str | None = None) -> Iterator[dict[str, Any]]:
    where, params = NOT_DRIVER, []
    if job_id:
        where += " AND lower(job_id) = lower(?)"
        params.append(job_id)
    rows = db.stream(
        f"""
        WITH listed AS (
            SELECT task_id, attempt_number, job_id, func_or_class_name, actor_id FROM tasks WHERE {where})
        SELECT l.task_id, l.job_id, l.attempt_number, l.func_or_class_name, l.actor_id,
               p.component_type, p.component_id, p.node_ip_address, p.event_name, p.start_time, p.end_time,
               p.extra_data
        FROM listed l JOIN profile_events p USING (task_id, attempt_number)
        WHERE p.component_type IN {TRACED_COMPONENTS} AND p.start_time IS NOT NULL AND p.end_time IS NOT NULL
        ORDER BY l.task_id, l.attempt_number, p.start_time
    """,
        params,
    )
    nodes: dict[Any, int] = {}
    workers: dict[tuple[int, str], int] = {}
    for task_id, job, attempt, func, actor_id, ctype, cid, node_ip, name, start, end, extra_raw in rows:
        extra = _extra(extra_raw)
        extra.update(task_id=task_id, job_id=job, attempt_number=attempt, func_or_class_name=func, actor_id=actor_id)
        pid = nodes.setdefault(node_ip, len(nodes))
        tid = workers.setdefault((pid, f"{ctype}:{cid}"), len(workers))
        yield {
            "cat": name,
            "name": extra["name"] if "name" in extra else name,
            "pid": pid,
            "tid": tid,
            "ts": start * 1e3,  # profile times are in milliseconds; Chrome traces count microseconds
            "dur": end * 1e3 - start * 1e3,
            "cname": _color(extra["cname"]) if "cname" in extra else _color(name),
            "args": extra,
            "ph": "X",
        }
    for node_ip, pid in nodes.items():
        yield {"name": "process_name", "args": {"name": f"Node {node_ip}"}, "pid": pid, "tid": None, "ph": "M"}
    for (pid, worker), tid in workers.items():
        yield {"name": "thread_name", "args": {"name": worker}, "pid": pid, "tid": tid, "ph": "M"}
