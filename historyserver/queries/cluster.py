"""The cluster as Ray's web UI sees it (/nodes, /api/cluster_status, /events), rebuilt from a finished session.

Live-only data (psutil stats, worker processes, object store usage) has no post-mortem source: those fields are
null or empty in the shapes Ray itself gives for a node it has no stats for, so the UI renders them as blanks.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from historyserver.compaction.cluster_events import camel
from historyserver.queries.session_db import SessionDB

# A node that died within this long of the last node's death went down with the cluster (ray stop, a deleted
# RayCluster): it was alive for the whole session, so the UI shows it as it was then (its logs stay browsable,
# as Ray's Logs page lists only ALIVE nodes). A node that died earlier failed during the run and is shown DEAD.
SHUTDOWN_WINDOW_MS = 60_000


def _shutdown_ms(nodes: list[dict[str, Any]]) -> int:
    return max((n.get("end_time_ms") or 0 for n in nodes), default=0)


def ui_state(node: dict[str, Any], shutdown_ms: int, session_ended: bool) -> str:
    state = node.get("state") or "ALIVE"
    if state != "DEAD" or not session_ended:
        return state
    end = node.get("end_time_ms") or 0
    return "ALIVE" if end and end >= shutdown_ms - SHUTDOWN_WINDOW_MS else "DEAD"


def _raylet(node: dict[str, Any], archived: dict[str, Any], state: str) -> dict[str, Any]:
    """The raylet part: Ray's GcsNodeInfo fields, camelCased; store usage 0/0 as Ray gives for a node without stats."""
    session_dir = archived.get("session_dir")
    return {
        "coreWorkersStats": [],
        "numWorkers": 0,
        "storeStats": {},
        "objectStoreUsedMemory": 0,
        "objectStoreAvailableMemory": 0,
        "nodeId": node["node_id"],
        "nodeManagerAddress": node.get("node_ip"),
        "rayletSocketName": f"{session_dir}/sockets/raylet" if session_dir else None,
        "objectStoreSocketName": f"{session_dir}/sockets/plasma_store" if session_dir else None,
        "nodeManagerHostname": archived.get("hostname"),
        # Ports of processes that are gone: not archived.
        "nodeManagerPort": None,
        "objectManagerPort": None,
        "metricsExportPort": None,
        "runtimeEnvAgentPort": None,
        "metricsAgentPort": None,
        "dashboardAgentListenPort": None,
        "resourcesTotal": {camel(k): v for k, v in (node.get("resources_total") or {}).items()},
        "nodeName": node.get("node_name"),
        "startTimeMs": str(node.get("start_time_ms") or 0),
        "endTimeMs": str(node.get("end_time_ms") or 0),
        "isHeadNode": bool(node.get("is_head_node")),
        "labels": node.get("labels") or {},
        "stateSnapshot": None,  # the autoscaler's live view (idle time, activity)
        "tempDir": session_dir.rsplit("/", 1)[0] if session_dir else None,
        "sessionDir": session_dir,
        "state": state,
        "stateMessage": node.get("state_message"),
        "instanceId": "",
        "nodeTypeName": "",
        "instanceTypeName": "",
    }


def _node_view(node: dict[str, Any], archived: dict[str, Any], state: str, now_s: float | None) -> dict[str, Any]:
    return {
        "now": now_s,
        "hostname": archived.get("hostname") or node.get("node_name") or node.get("node_ip"),
        "ip": node.get("node_ip") or archived.get("ip"),
        # psutil's view of a machine that no longer exists: unknown. Lists stay lists (the UI indexes them).
        "cpu": None,
        "cpus": None,
        "mem": None,
        "hostMem": None,
        "cgroupMem": None,
        "shm": None,
        "raylet": _raylet(node, archived, state),
        "agent": None,
        "bootTime": None,
        "loadAvg": [],
        "disk": None,
        "diskIo": [],
        "diskIoSpeed": [],
        "gpus": [],
        "tpus": [],
        "network": [],
        "networkSpeed": [],
        "cmdline": [],
        "gcs": None,
    }


def node_summaries(db: SessionDB, session_ended: bool, end_ms: int | None) -> list[dict[str, Any]]:
    """The items of /nodes?view=summary."""
    nodes = db.nodes()
    archived = db.info.get("archived_nodes", {})
    shutdown = _shutdown_ms(nodes)
    now_s = end_ms / 1000 if end_ms else None
    return [_node_view(n, archived.get(n["node_id"], {}), ui_state(n, shutdown, session_ended), now_s) for n in nodes]


def node_detail(db: SessionDB, node_id: str, session_ended: bool, end_ms: int | None) -> dict[str, Any] | None:
    """/nodes/{id}: the summary plus the node's actors; no workers (none of its processes is left)."""
    nodes = db.nodes()
    node = next((n for n in nodes if n["node_id"] == node_id), None)
    if node is None:
        return None
    archived = db.info.get("archived_nodes", {}).get(node_id, {})
    view = _node_view(
        node, archived, ui_state(node, _shutdown_ms(nodes), session_ended), end_ms / 1000 if end_ms else None
    )
    view["raylet"].pop("coreWorkersStats")  # Ray drops it from the detail view (workers carry it instead)
    actors = [
        json.loads(r[0]) for r in db.query("SELECT record FROM actors WHERE node_id = ? ORDER BY actor_id", [node_id])
    ]
    view["workers"] = []
    view["actors"] = {a["actorId"]: a for a in actors}
    return view


def _gib(value: float) -> str:
    return f"{value / 2**30:.2f}GiB"


def formatted_status(db: SessionDB, session_ended: bool, end_ms: int | None) -> str:
    """The text of /api/cluster_status?format=1, in the layout of Ray's `ray status` (which the UI splits on
    "Node status" and "Resources"). No autoscaler snapshot is archived: usage is not shown, only what is known."""
    nodes = db.nodes()
    shutdown = _shutdown_ms(nodes)
    when = datetime.fromtimestamp(end_ms / 1000, timezone.utc) if end_ms else datetime.now(timezone.utc)
    active = [n for n in nodes if ui_state(n, shutdown, session_ended) == "ALIVE"]
    failed = [n for n in nodes if ui_state(n, shutdown, session_ended) == "DEAD"]
    title = "Cluster status at the end of the session" if session_ended else "Cluster status (archived)"
    lines = [f"======== {title}: {when:%Y-%m-%d %H:%M:%S} UTC ========", "Node status", "-" * 63, "Active:"]
    lines += [f" 1 node_{n['node_id']}" for n in active] or [" (no active nodes)"]
    lines += ["Pending:", " (no pending nodes)", "Recent failures:"]
    lines += [f" node_{n['node_id']}: NodeTerminated (ip: {n.get('node_ip')})" for n in failed] or [" (no failures)"]
    totals: dict[str, float] = {}
    for n in active:
        for k, v in (n.get("resources_total") or {}).items():
            if not k.startswith("node:"):
                totals[k] = totals.get(k, 0.0) + v
    lines += ["", "Resources", "-" * 63, "Total resources (usage is not archived):"]
    for k in sorted(totals):
        shown = _gib(totals[k]) if k in ("memory", "object_store_memory") else f"{totals[k]:.1f}"
        lines.append(f" {shown} {k}")
    if not totals:
        lines.append(" (no resources)")
    return "\n".join(lines) + "\n"


def cluster_events(db: SessionDB) -> dict[str, list[dict[str, Any]]]:
    """Ray's /events: the session's cluster events grouped by job, oldest first."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for job_id, record in db.query("SELECT job_id, record FROM cluster_events ORDER BY timestamp, event_id"):
        grouped.setdefault(job_id, []).append(json.loads(record))
    return grouped
