"""The head collector's snapshots of Ray's dashboard API (source `api`, format in archive/api_snapshots.py).

They carry what no event stream does: placement groups (Ray 2.60 emits no events for them), the autoscaler's
last cluster status, and the job table's own start and end of each driver job. Only the newest snapshot of each
route matters for a finished session.
"""

from __future__ import annotations

import json
from typing import Any

from archive import api_snapshots as snapshot_format
from archive.api_snapshots import JOBS_ROUTE, PLACEMENT_GROUPS_ROUTE, Snapshot


def latest_by_route(lines: list[bytes], damage, where: str) -> dict[str, Snapshot]:
    """route -> its newest 200 answer; a line that is not a snapshot is noted in `damage`."""
    return snapshot_format.latest_by_route(
        lines, lambda n, e: damage.note(f"{where}:{n}", f"unreadable API snapshot ({type(e).__name__})")
    )


def placement_group_rows(latest: dict[str, Snapshot], session_end_ms: int | None) -> list[dict[str, Any]]:
    """Rows of the placement_groups table from the last snapshot: its records are already in Ray's shape."""
    snap = latest.get(PLACEMENT_GROUPS_ROUTE)
    try:
        groups = snap.body["data"]["result"]["result"] if snap else []
    except (KeyError, TypeError):
        return []
    rows = []
    for g in groups:
        state = g.get("state")
        rows.append(
            {
                "placement_group_id": g.get("placement_group_id"),
                "name": g.get("name"),
                "state": state,
                "creator_job_id": g.get("creator_job_id"),
                "is_detached": g.get("is_detached"),
                "strategy": None,
                "ray_namespace": None,
                "creation_time_ms": None,
                "scheduled_time_ms": None,
                "removal_time_ms": None,
                "unfinished": session_end_ms is not None and state != "REMOVED",
                "record": json.dumps(g),
            }
        )
    return rows


def apply_job_table_times(latest: dict[str, Snapshot], driver_jobs: dict[str, dict[str, Any]]) -> None:
    """Give each folded driver job the job table's start_time and end_time where the last /api/jobs/ snapshot has
    them. Ray's HTTP event path stamps a job's CREATED and FINISHED transitions with its own clock reading
    (RayDriverJobLifecycleEvent reads absl::Now()), taken apart from the job table's times (GcsJobManager), so
    they can be a millisecond or more off what Ray's /api/jobs/ shows; the export files carry the table's times.
    Only DRIVER entries are used: a SUBMISSION entry's times are the submission's, not its driver's."""
    snap = latest.get(JOBS_ROUTE)
    if snap is None or not isinstance(snap.body, list):
        return
    for entry in snap.body:
        if not isinstance(entry, dict) or entry.get("type") != "DRIVER":
            continue
        job = driver_jobs.get(entry.get("job_id") or "")
        if job is None:
            continue
        for key in ("start_time", "end_time"):
            value = entry.get(key)
            if isinstance(value, int) and value > 0 and (key == "start_time" or job.get("is_dead")):
                job[key] = str(value)
