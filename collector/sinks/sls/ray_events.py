"""Ray's events from both paths, flattened to the same SLS keys (archive/sls_schema.py EVENT_KEYS).

Ray 2.60 hands its events over either as export-event files (`logs/export_events/event_EXPORT_*.log`: snake_case,
ids base64, task states keyed by numeric TaskStatus) or as RayEvents over HTTP (the collector's spool: camelCase,
ids base64, RFC 3339 times), never both (reference section 2). Either way one event becomes one flat record: ids
in lowercase hex as Ray's REST API shows them, every state time the event carries as `ts_<STATE>` (epoch ms), and
`state` the latest of them. Only tasks, actors, jobs, nodes and placement groups are kept; other event types
(workers, platform) give None.

The export files repeat a task's earlier states in later events of the same reporter, so `state` is the event's
latest state, not one row per transition. A task's function name comes with its definition (HTTP) or the owner's
events (files), not with the worker's state updates: the sink fills it in from the definitions it has seen.
"""

from __future__ import annotations

import base64
import binascii
import calendar
import functools
import re
from collections.abc import Callable
from typing import Any

from archive.ray_states import TASK_STATUS

_RFC3339 = re.compile(r"^(\d{4}-\d\d-\d\d)[Tt ](\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?([Zz]|[+-]\d\d:\d\d)$")

Record = tuple[int, dict[str, str]]  # (event time in epoch ns, flat fields)


def hex_id(value: Any) -> str:
    """base64 of a binary id -> lowercase hex ('' for none); a value already in hex is kept."""
    if not value or not isinstance(value, str):
        return ""
    return _hex(value)


_NODE_HEX = re.compile(r"[0-9a-f]{56}")
_HEX = re.compile(r"[0-9a-fA-F]+")


# An event names the same job, node, worker and task ids as the events around it: decode each once.
@functools.lru_cache(maxsize=4096)
def _hex(value: str) -> str:
    if len(value) == 56 and _NODE_HEX.fullmatch(value):
        return value  # a node id the export files already write in hex (no Ray id is 42 bytes, its base64 length)
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return value.lower() if _HEX.fullmatch(value) else value
    return raw.hex()


def to_ns(value: Any) -> int:
    m = _RFC3339.match(value) if isinstance(value, str) else None
    if not m:
        raise ValueError(f"not an RFC 3339 timestamp: {value!r}")
    date, clock, frac, zone = m.groups()
    seconds = _epoch(date, clock)
    if zone not in ("Z", "z"):
        seconds -= (1 if zone[0] == "+" else -1) * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    return seconds * 1_000_000_000 + int((frac or "0").ljust(9, "0"))


@functools.lru_cache(maxsize=1024)
def _epoch(date: str, clock: str) -> int:
    return calendar.timegm(
        (int(date[:4]), int(date[5:7]), int(date[8:10]), int(clock[:2]), int(clock[3:5]), int(clock[6:8]))
    )


def _put(out: dict[str, str], key: str, value: Any) -> None:
    """Absent, empty and zero values are left out: SLS keys only what an event says."""
    if value is None or value == "" or value == 0 or value == "0":
        return
    out[key] = str(value)


def _states(out: dict[str, str], times_ms: dict[str, int]) -> None:
    """ts_<STATE> for each state, and `state` the latest (the last given on a tie, as Ray lists them in order)."""
    latest: tuple[int, str] | None = None
    for state, ms in times_ms.items():
        out[f"ts_{state}"] = str(ms)
        if latest is None or ms >= latest[0]:
            latest = (ms, state)
    if latest is not None:
        out["state"], out["state_ms"] = latest[1], str(latest[0])


def _error(out: dict[str, str], error_type: Any, message: Any) -> None:
    _put(out, "error_type", error_type)
    _put(out, "error_message", message)


# --- the export files --------------------------------------------------------------------------------------------


def from_export(event: dict[str, Any]) -> Record | None:
    """One line of an export-event file (`{"event_id", "source_type", "timestamp" (s), "event_data"}`)."""
    kind = event.get("source_type")
    fn = _EXPORT.get(kind) if isinstance(kind, str) else None
    data = event.get("event_data")
    if fn is None or not isinstance(data, dict):
        return None
    out = {"ray_event_type": kind, "path": "export"}
    _put(out, "event_id", event.get("event_id"))
    fn(data, out)
    return int(event.get("timestamp") or 0) * 1_000_000_000, out


def _export_task(d: dict[str, Any], out: dict[str, str]) -> None:
    out["event_type"] = "TASK"
    out["task_id"] = hex_id(d.get("task_id"))
    out["attempt"] = str(int(d.get("attempt_number") or 0))
    _put(out, "job_id", hex_id(d.get("job_id")))
    info = d.get("task_info") or {}
    _put(out, "func_name", info.get("func_or_class_name"))
    _put(out, "task_name", info.get("name"))
    _put(out, "task_type", info.get("type"))
    _put(out, "actor_id", hex_id(info.get("actor_id")))
    _put(out, "parent_task_id", hex_id(info.get("parent_task_id")))
    _put(out, "placement_group_id", hex_id(info.get("placement_group_id")))
    su = d.get("state_updates") or {}
    _states(
        out,
        {
            TASK_STATUS.get(int(code), str(code)): int(ns) // 1_000_000
            for code, ns in sorted((su.get("state_ts_ns") or {}).items(), key=lambda kv: int(kv[1]))
        },
    )
    _put(out, "node_id", hex_id(su.get("node_id")))
    _put(out, "worker_id", hex_id(su.get("worker_id")))
    _put(out, "pid", su.get("worker_pid"))
    err = su.get("error_info") or {}
    _error(out, err.get("error_type"), err.get("error_message"))


def _export_actor(d: dict[str, Any], out: dict[str, str]) -> None:
    out["event_type"] = "ACTOR"
    out["actor_id"] = hex_id(d.get("actor_id"))
    _put(out, "job_id", hex_id(d.get("job_id")))
    _put(out, "state", d.get("state") or "DEPENDENCIES_UNREADY")
    _put(out, "actor_class", d.get("class_name"))
    _put(out, "actor_name", d.get("name"))
    _put(out, "node_id", hex_id(d.get("node_id")))
    _put(out, "pid", d.get("pid"))
    _put(out, "placement_group_id", hex_id(d.get("placement_group_id")))
    cause = d.get("death_cause") or {}
    death = cause.get("actor_died_error_context") or cause.get("creation_task_failure_context") or {}
    _error(out, death.get("reason"), death.get("error_message") or death.get("formatted_exception_string"))


def _export_driver_job(d: dict[str, Any], out: dict[str, str]) -> None:
    out["event_type"] = "DRIVER_JOB"
    out["job_id"] = hex_id(d.get("job_id"))
    out["state"] = "FINISHED" if d.get("is_dead") else "CREATED"  # the HTTP path's DriverJobLifecycleEvent states
    _put(out, "pid", d.get("driver_pid"))
    _put(out, "node_ip", d.get("driver_ip_address"))
    _put(out, "submission_id", ((d.get("config") or {}).get("metadata") or {}).get("job_submission_id"))
    _put(out, "start_time_ms", d.get("start_time"))
    _put(out, "end_time_ms", d.get("end_time"))


def _export_submission_job(d: dict[str, Any], out: dict[str, str]) -> None:
    out["event_type"] = "SUBMISSION_JOB"
    out["submission_id"] = str(d.get("submission_job_id") or "")
    _put(out, "state", d.get("status"))
    _put(out, "message", d.get("message"))
    _put(out, "error_type", d.get("error_type"))
    _put(out, "node_id", hex_id(d.get("driver_node_id")))
    _put(out, "start_time_ms", d.get("start_time"))
    _put(out, "end_time_ms", d.get("end_time"))


def _export_node(d: dict[str, Any], out: dict[str, str]) -> None:
    out["event_type"] = "NODE"
    out["node_id"] = hex_id(d.get("node_id"))
    _put(out, "state", d.get("state") or "ALIVE")
    _put(out, "node_ip", d.get("node_manager_address"))
    _put(out, "start_time_ms", d.get("start_time_ms"))
    _put(out, "end_time_ms", d.get("end_time_ms"))
    death = d.get("death_info") or {}
    _error(out, death.get("reason"), death.get("reason_message"))


_EXPORT: dict[str, Callable[[dict[str, Any], dict[str, str]], None]] = {
    "EXPORT_TASK": _export_task,
    "EXPORT_ACTOR": _export_actor,
    "EXPORT_DRIVER_JOB": _export_driver_job,
    "EXPORT_SUBMISSION_JOB": _export_submission_job,
    "EXPORT_NODE": _export_node,
}


# --- Ray's HTTP event export ---------------------------------------------------------------------------------------


def from_http(event: dict[str, Any]) -> Record | None:
    """One RayEvent as Ray's dashboard agent POSTs it (a line of the collector's spool)."""
    kind = event.get("eventType")
    entry = _HTTP.get(kind) if isinstance(kind, str) else None
    if entry is None:
        return None
    payload_key, event_type, fn = entry
    payload = event.get(payload_key)
    if not isinstance(payload, dict):
        return None
    ts_ns = to_ns(event.get("timestamp"))
    out = {"event_type": event_type, "ray_event_type": kind, "path": "http"}
    _put(out, "event_id", hex_id(event.get("eventId")))
    fn(payload, out, ts_ns)
    return ts_ns, out


def _transitions(p: dict[str, Any], ts_ns: int) -> dict[str, int]:
    """state -> epoch ms, in the order given (a transition without a time has the event's)."""
    out: dict[str, int] = {}
    for t in p.get("stateTransitions") or []:
        state = t.get("state")
        if isinstance(state, int):
            state = TASK_STATUS.get(state, str(state))
        if state:
            out[str(state)] = (to_ns(t["timestamp"]) if t.get("timestamp") else ts_ns) // 1_000_000
    return out


def _last(p: dict[str, Any]) -> dict[str, Any]:
    ts = p.get("stateTransitions") or []
    return ts[-1] if ts and isinstance(ts[-1], dict) else {}


def _call_name(func: dict[str, Any] | None) -> str:
    """Ray's func_or_class_name: Class.method, or function."""
    func = func or {}
    desc = func.get("pythonFunctionDescriptor") or func.get("javaFunctionDescriptor")
    if desc:
        fn, cls = desc.get("functionName") or "", desc.get("className") or ""
        if "pythonFunctionDescriptor" in func:
            fn, cls = fn.rsplit(".", 1)[-1], cls.rsplit(".", 1)[-1]
        return f"{cls}.{fn}" if cls else fn
    return str((func.get("cppFunctionDescriptor") or {}).get("functionName") or "")


def _task_common(p: dict[str, Any], out: dict[str, str], attempt_key: str) -> None:
    out["task_id"] = hex_id(p.get("taskId"))
    out["attempt"] = str(int(p.get(attempt_key) or 0))
    _put(out, "job_id", hex_id(p.get("jobId")))


def _task_definition(p: dict[str, Any], out: dict[str, str], ts_ns: int) -> None:
    _task_common(p, out, "taskAttempt")
    task_type = p.get("taskType") or ("ACTOR_TASK" if "actorTaskName" in p or "actorFunc" in p else "NORMAL_TASK")
    out["task_type"] = task_type
    _put(out, "func_name", _call_name(p.get("taskFunc") or p.get("actorFunc")))
    _put(out, "task_name", p.get("taskName") or p.get("actorTaskName"))
    actor_id = hex_id(p.get("actorId"))
    if not actor_id and task_type == "ACTOR_CREATION_TASK":
        actor_id = out["task_id"][16:]  # a TaskID is 8 unique bytes, then the ActorID it creates
    _put(out, "actor_id", actor_id)
    _put(out, "parent_task_id", hex_id(p.get("parentTaskId")))
    pg = hex_id(p.get("placementGroupId"))
    _put(out, "placement_group_id", "" if set(pg) <= {"f"} else pg)


def _task_lifecycle(p: dict[str, Any], out: dict[str, str], ts_ns: int) -> None:
    _task_common(p, out, "taskAttempt")
    _states(out, _transitions(p, ts_ns))
    _put(out, "node_id", hex_id(p.get("nodeId")))
    _put(out, "worker_id", hex_id(p.get("workerId")))
    _put(out, "pid", p.get("workerPid"))
    err = p.get("rayErrorInfo") or {}
    _error(out, err.get("errorType"), err.get("errorMessage"))


def _task_profile(p: dict[str, Any], out: dict[str, str], ts_ns: int) -> None:
    _task_common(p, out, "attemptNumber")
    _put(out, "node_ip", (p.get("profileEvents") or {}).get("nodeIpAddress"))


def _actor_definition(p: dict[str, Any], out: dict[str, str], ts_ns: int) -> None:
    out["actor_id"] = hex_id(p.get("actorId"))
    _put(out, "job_id", hex_id(p.get("jobId")))
    _put(out, "actor_class", p.get("className"))
    _put(out, "actor_name", p.get("name"))
    _put(out, "placement_group_id", hex_id(p.get("placementGroupId")))


def _actor_lifecycle(p: dict[str, Any], out: dict[str, str], ts_ns: int) -> None:
    out["actor_id"] = hex_id(p.get("actorId"))
    _states(out, _transitions(p, ts_ns))
    last = _last(p)
    _put(out, "node_id", hex_id(last.get("nodeId")))
    _put(out, "pid", last.get("pid"))
    cause = last.get("deathCause") or {}
    death = cause.get("actorDiedErrorContext") or cause.get("creationTaskFailureContext") or {}
    _error(out, death.get("reason"), death.get("errorMessage") or death.get("formattedExceptionString"))


def _driver_job_definition(p: dict[str, Any], out: dict[str, str], ts_ns: int) -> None:
    out["job_id"] = hex_id(p.get("jobId"))
    _put(out, "pid", p.get("driverPid"))
    _put(out, "node_id", hex_id(p.get("driverNodeId")))
    _put(out, "submission_id", ((p.get("config") or {}).get("metadata") or {}).get("job_submission_id"))


def _driver_job_lifecycle(p: dict[str, Any], out: dict[str, str], ts_ns: int) -> None:
    out["job_id"] = hex_id(p.get("jobId"))
    _states(out, _transitions(p, ts_ns))


def _node_definition(p: dict[str, Any], out: dict[str, str], ts_ns: int) -> None:
    out["node_id"] = hex_id(p.get("nodeId"))
    _put(out, "node_ip", p.get("nodeIpAddress"))
    if p.get("startTimestamp"):
        out["start_time_ms"] = str(to_ns(p["startTimestamp"]) // 1_000_000)


def _node_lifecycle(p: dict[str, Any], out: dict[str, str], ts_ns: int) -> None:
    out["node_id"] = hex_id(p.get("nodeId"))
    _states(out, _transitions(p, ts_ns))
    death = _last(p).get("deathInfo") or {}
    _error(out, death.get("reason"), death.get("reasonMessage"))


def _submission_job_definition(p: dict[str, Any], out: dict[str, str], ts_ns: int) -> None:
    out["submission_id"] = str(p.get("submissionId") or "")


def _submission_job_lifecycle(p: dict[str, Any], out: dict[str, str], ts_ns: int) -> None:
    out["submission_id"] = str(p.get("submissionId") or "")
    _states(out, {s: ms for s, ms in _transitions(p, ts_ns).items() if s != "UNSPECIFIED"})
    last = _last(p)
    _put(out, "message", last.get("message"))
    _put(out, "error_type", last.get("errorType"))
    _put(out, "node_id", hex_id(last.get("driverNodeId")))


def _placement_group(p: dict[str, Any], out: dict[str, str], ts_ns: int) -> None:
    out["placement_group_id"] = hex_id(p.get("placementGroupId"))
    _put(out, "job_id", hex_id(p.get("creatorJobId") or p.get("jobId")))
    _put(out, "placement_group_name", p.get("name"))
    _states(out, _transitions(p, ts_ns))
    if "state" not in out:
        _put(out, "state", p.get("state"))


_HTTP: dict[str, tuple[str, str, Callable[[dict[str, Any], dict[str, str], int], None]]] = {
    "TASK_DEFINITION_EVENT": ("taskDefinitionEvent", "TASK", _task_definition),
    "ACTOR_TASK_DEFINITION_EVENT": ("actorTaskDefinitionEvent", "TASK", _task_definition),
    "TASK_LIFECYCLE_EVENT": ("taskLifecycleEvent", "TASK", _task_lifecycle),
    "TASK_PROFILE_EVENT": ("taskProfileEvents", "TASK", _task_profile),
    "ACTOR_DEFINITION_EVENT": ("actorDefinitionEvent", "ACTOR", _actor_definition),
    "ACTOR_LIFECYCLE_EVENT": ("actorLifecycleEvent", "ACTOR", _actor_lifecycle),
    "DRIVER_JOB_DEFINITION_EVENT": ("driverJobDefinitionEvent", "DRIVER_JOB", _driver_job_definition),
    "DRIVER_JOB_LIFECYCLE_EVENT": ("driverJobLifecycleEvent", "DRIVER_JOB", _driver_job_lifecycle),
    "NODE_DEFINITION_EVENT": ("nodeDefinitionEvent", "NODE", _node_definition),
    "NODE_LIFECYCLE_EVENT": ("nodeLifecycleEvent", "NODE", _node_lifecycle),
    "SUBMISSION_JOB_DEFINITION_EVENT": ("submissionJobDefinitionEvent", "SUBMISSION_JOB", _submission_job_definition),
    "SUBMISSION_JOB_LIFECYCLE_EVENT": ("submissionJobLifecycleEvent", "SUBMISSION_JOB", _submission_job_lifecycle),
    "PLACEMENT_GROUP_DEFINITION_EVENT": ("placementGroupDefinitionEvent", "PLACEMENT_GROUP", _placement_group),
    "PLACEMENT_GROUP_LIFECYCLE_EVENT": ("placementGroupLifecycleEvent", "PLACEMENT_GROUP", _placement_group),
}

__all__ = ["Record", "TASK_STATUS", "from_export", "from_http", "hex_id"]
