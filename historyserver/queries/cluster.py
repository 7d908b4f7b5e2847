"""The cluster as Ray's web UI sees it (/nodes, /api/cluster_status, /events), rebuilt from a finished session.

Live-only data (psutil stats, worker processes, object store usage) has no post-mortem source: those fields are
null or empty in the shapes Ray itself gives for a node it has no stats for, so the UI renders them as blanks.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import OrderedDict
from datetime import datetime, timezone
from typing import Any

from archive import logs as archive_logs
from archive.errors import NotFound, StoreError
from archive.layout import SessionRef
from archive.storage import Store
from historyserver.errors import ArchiveUnavailable
from historyserver.queries.session_db import SessionDB

log = logging.getLogger("rayhistory.queries.cluster")

# A node that died within this long of the last node's death went down with the cluster (ray stop, a deleted
# RayCluster): it was alive for the whole session, so the UI shows it as it was then (its logs stay browsable,
# as Ray's Logs page lists only ALIVE nodes). A node that died earlier failed during the run and is shown DEAD.
SHUTDOWN_WINDOW_MS = 60_000
CLUSTER_EVENTS_DIR = "events/"


def camel(key: str) -> str:
    """Ray's to_camel_case, applied to resource names too (object_store_memory -> objectStoreMemory)."""
    first, *rest = key.split("_")
    return first + "".join(p.title() for p in rest)


def google_style(value: Any) -> Any:
    """Ray's to_google_style: every dict key camelCased, recursively (lists of dicts included)."""
    if isinstance(value, dict):
        return {camel(k): google_style(v) for k, v in value.items()}
    if isinstance(value, list):
        return [google_style(v) for v in value]
    return value


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
    view = _node_view(node, archived, ui_state(node, _shutdown_ms(nodes), session_ended),
                      end_ms / 1000 if end_ms else None)
    view["raylet"].pop("coreWorkersStats")  # Ray drops it from the detail view (workers carry it instead)
    actors = [json.loads(r[0]) for r in db.query("SELECT record FROM actors WHERE node_id = ? ORDER BY actor_id",
                                                  [node_id])]
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
    lines = [f"======== {title}: {when:%Y-%m-%d %H:%M:%S} UTC ========", "Node status",
             "-" * 63, "Active:"]
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


class ClusterEvents:
    """Ray's cluster events (logs/events/event_*.log, JSON lines) of each session, read from the archive once per
    version of those files, grouped by job as Ray's /events groups them."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[tuple, dict[str, list[dict[str, Any]]]]] = {}

    def by_job(self, ref: SessionRef, db: SessionDB) -> dict[str, list[dict[str, Any]]]:
        files = db.query("SELECT node_id, path, size FROM log_files WHERE path LIKE ? AND path LIKE ? "
                         "ORDER BY node_id, path", [CLUSTER_EVENTS_DIR + "event_%", "%.log"])
        signature = tuple(files)
        with self._lock:
            cached = self._cache.get(ref.id)
        if cached and cached[0] == signature:
            return cached[1]
        events: dict[str, OrderedDict[str, dict[str, Any]]] = {}
        for node_id, path, _ in files:
            try:
                data = archive_logs.read_file(self.store, ref.node(node_id), path)
            except (NotFound, archive_logs.CorruptSegment) as e:
                log.warning("cluster events %s of node %s not read: %s", path, node_id, e)
                continue
            except StoreError as e:
                raise ArchiveUnavailable(str(e)) from e
            for line in data.splitlines():
                event = _parse_event(line)
                if event is None:
                    continue
                job = (event.get("custom_fields") or {}).get("job_id") or "global"
                events.setdefault(job, OrderedDict())[event["event_id"]] = event
        grouped = {job: [google_style(e) for e in sorted(evs.values(), key=_event_time)]
                   for job, evs in events.items()}
        with self._lock:
            self._cache[ref.id] = (signature, grouped)
        return grouped


def _parse_event(line: bytes) -> dict[str, Any] | None:
    try:
        event = json.loads(line)
    except ValueError:
        return None  # a line cut by the end of the archive, or not an event
    if not isinstance(event, dict) or "event_id" not in event:
        return None
    if isinstance(event.get("message"), str):
        # As Ray's reader does: the writer escapes newlines to keep one event per line.
        event["message"] = event["message"].replace("\\n", "\n").replace("\\r", "\n")
    return event


def _event_time(event: dict[str, Any]) -> float:
    try:
        return float(event.get("timestamp") or 0)
    except (TypeError, ValueError):
        return 0.0
