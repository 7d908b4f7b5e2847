"""Worker processes, as far as a finished session tells them: Ray's /api/v0/workers rows.

No export-event file describes workers, so they are derived: each worker that ran a task (its id, node, pid,
first start and last end), each worker that left a log file (worker-<id>-<job>-<pid>.out), and each driver
(whose worker id is its job id followed by 0xff bytes, as in Ray). Exit types and details are only known to a
live GCS: they are null, and no worker is alive once the session is closed.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import duckdb

from historyserver.compaction.tasks_sql import sql_list

_WORKER_LOG = re.compile(r"^(?:old/)?worker-([0-9a-f]{56})-([0-9a-f]+)-(\d+)\.(?:out|err)$")
NEVER = 18446744073709551615  # what Ray reports for launch times it does not know (uint64 max)


def build_workers(
    con: duckdb.DuckDBPyConnection,
    tasks_parquet: list[Path],
    log_rows: list[dict[str, Any]],
    drivers: list[dict[str, Any]],
    nodes_ip: dict[str, str],
    closed: bool,
) -> list[dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for worker_id, node_id, pid, start, end in con.execute(f"""
            SELECT worker_id, any_value(node_id), any_value(worker_pid), min(start_time_ms), max(end_time_ms)
            FROM read_parquet({sql_list(tasks_parquet)}) WHERE worker_id IS NOT NULL AND type <> 'DRIVER_TASK' GROUP BY worker_id
            """).fetchall():
        found[worker_id] = {
            "worker_id": worker_id,
            "node_id": node_id,
            "pid": pid,
            "start": start,
            "end": end,
            "type": "WORKER",
        }
    for row in log_rows:
        m = _WORKER_LOG.match(row["path"])
        if m and m.group(1) not in found:
            found[m.group(1)] = {
                "worker_id": m.group(1),
                "node_id": row["node_id"],
                "pid": int(m.group(3)),
                "start": None,
                "end": None,
                "type": "WORKER",
            }
    for d in drivers:
        worker_id = d["job_id"] + "ff" * 24
        found[worker_id] = {
            "worker_id": worker_id,
            "node_id": None,
            "pid": d["pid"],
            "start": d["start"],
            "end": d["end"],
            "type": "DRIVER",
            "ip": d["ip"],
        }
    rows = []
    for w in found.values():
        alive = not closed and not w["end"]
        rows.append(
            {
                "worker_id": w["worker_id"],
                "is_alive": alive,
                "worker_type": w["type"],
                "exit_type": None,
                "node_id": w["node_id"],
                "ip": w.get("ip") or nodes_ip.get(w["node_id"] or ""),
                "pid": w["pid"],
                "exit_detail": None,
                "worker_launch_time_ms": NEVER,
                "worker_launched_time_ms": NEVER,
                "start_time_ms": int(w["start"] or 0),
                "end_time_ms": int(w["end"] or 0),
                "debugger_port": None,
                "num_paused_threads": None,
            }
        )
    return sorted(rows, key=lambda r: r["worker_id"])
