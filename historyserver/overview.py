"""A session's overview as one dict: served as JSON (/api/v1/sessions/{id}/overview) and as the HTML page."""

from __future__ import annotations

from typing import Any

from historyserver.catalog import SessionEntry
from historyserver.compaction.records import TERMINAL_JOB_STATUSES
from historyserver.queries import overview as q
from historyserver.queries.session_db import SessionDB


def session_overview(entry: SessionEntry, db: SessionDB) -> dict[str, Any]:
    summary = entry.summary("")
    start, end = summary["start"], summary["end"]
    jobs = []
    for j in db.jobs():
        finished = j["status"] in TERMINAL_JOB_STATUSES
        jobs.append(
            {
                **{
                    k: j[k]
                    for k in (
                        "type",
                        "job_id",
                        "submission_id",
                        "status",
                        "entrypoint",
                        "start_time",
                        "end_time",
                        "message",
                        "error_type",
                    )
                },
                "unfinished": not finished and entry.closed,
                "duration_ms": (j["end_time"] - j["start_time"]) if j["start_time"] and j["end_time"] else None,
            }
        )
    nodes = [
        {
            **{
                k: n[k]
                for k in (
                    "node_id",
                    "node_ip",
                    "is_head_node",
                    "state",
                    "state_message",
                    "start_time_ms",
                    "end_time_ms",
                )
            },
            "cpus": n["resources_total"].get("CPU"),
            "gpus": n["resources_total"].get("GPU"),
            "memory_bytes": n["resources_total"].get("memory"),
        }
        for n in db.nodes()
    ]
    return {
        "session": summary,
        "duration_ms": (end - start) if start and end else None,
        "nodes": nodes,
        "jobs": jobs,
        "tasks": {
            "by_state": db.memo("task_counts", lambda: q.task_counts(db)),
            "unfinished": db.memo("unfinished_tasks", lambda: q.unfinished_tasks(db)),
        },
        "failed_task_groups": db.memo("failed_task_groups", lambda: q.failed_task_groups(db)),
        "damage": db.info.get("damage", {}),
        "compaction": {k: db.info.get(k) for k in ("compaction_version", "seconds", "counts")},
    }
