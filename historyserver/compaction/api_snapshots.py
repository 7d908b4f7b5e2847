"""The head collector's snapshots of Ray's dashboard API (source `api`: JSON lines {time_ms, route, status, body}).

They carry what no event stream does: placement groups (Ray 2.60 emits no events for them), and the autoscaler's
last cluster status. Only the newest snapshot of each route matters for a finished session.
"""

from __future__ import annotations

import json
from typing import Any

PLACEMENT_GROUPS_ROUTE = "/api/v0/placement_groups?detail=1&limit=10000"
CLUSTER_STATUS_ROUTES = ("/api/cluster_status?format=0", "/api/cluster_status?format=1")


def latest_by_route(lines: list[bytes], damage, where: str) -> dict[str, dict[str, Any]]:
    latest: dict[str, dict[str, Any]] = {}
    for n, line in enumerate(lines, 1):
        try:
            snap = json.loads(line)
            route, at = snap["route"], int(snap["time_ms"])
        except (ValueError, KeyError, TypeError) as e:
            damage.note(f"{where}:{n}", f"unreadable API snapshot ({type(e).__name__})")
            continue
        if snap.get("status") == 200 and (route not in latest or at >= latest[route]["time_ms"]):
            latest[route] = snap
    return latest


def placement_group_rows(latest: dict[str, dict[str, Any]], session_end_ms: int | None) -> list[dict[str, Any]]:
    """Rows of the placement_groups table from the last snapshot: its records are already in Ray's shape."""
    snap = latest.get(PLACEMENT_GROUPS_ROUTE)
    try:
        groups = snap["body"]["data"]["result"]["result"] if snap else []
    except (KeyError, TypeError):
        return []
    rows = []
    for g in groups:
        state = g.get("state")
        rows.append({
            "placement_group_id": g.get("placement_group_id"), "name": g.get("name"), "state": state,
            "creator_job_id": g.get("creator_job_id"), "is_detached": g.get("is_detached"),
            "strategy": None, "ray_namespace": None, "creation_time_ms": None, "scheduled_time_ms": None,
            "removal_time_ms": None, "unfinished": session_end_ms is not None and state != "REMOVED",
            "record": json.dumps(g),
        })
    return rows
