"""Ray's HTTP events (RayEvents the dashboard agent POSTs, spooled by the collector) as export-event lines.

Ray 2.60 delivers a session's events either as export-event files or as RayEvents over HTTP (with
RAY_enable_ray_event=1 the export files stay empty). Rather than folding a second format, each RayEvent is
translated into the export-event dicts the file path would have written ({"source_type", "timestamp" (epoch
seconds), "event_data"}, snake_case, ids still base64, int64 values as strings where the files use strings),
and both paths go through the same folds: task lines to tasks_sql.fold_tasks, the rest to
export_events.fold_lines. A task seen by both paths is therefore merged by (task_id, attempt_number) as usual.

What the HTTP path carries that the files do not is dropped, with two exceptions: task_info.name (Ray's own
state API shows a task's given name from it; the fold prefers it over func_or_class_name) and placement groups,
kept under source_type RAY_PLACEMENT_GROUP, which fold_lines ignores. Worker and platform events give nothing.
"""

from __future__ import annotations

import base64
import binascii
import calendar
import functools
import json
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from historyserver.compaction.export_events import TASK_STATUS, Damage, Folded, fold_lines
from historyserver.compaction.ids import hex_id

TASK_STATUS_CODE = {name: code for code, name in TASK_STATUS.items()}
PLACEMENT_GROUP = "RAY_PLACEMENT_GROUP"
_RFC3339 = re.compile(r"^\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d(?:\.(\d{1,9}))?([Zz]|[+-]\d\d:\d\d)$")
_HEAD_RESOURCE = "node:__internal_head__"  # Ray gives this resource to the head node only
_TERMINAL_SUBMISSION = {"STOPPED", "SUCCEEDED", "FAILED"}
# Protobuf map fields: their keys are the user's (resource names, labels), never camelCase to convert.
_MAP_FIELDS = {
    "resources",
    "unitResources",
    "labels",
    "labelSelector",
    "metadata",
    "requiredResources",
    "refIds",
    "customResources",
}


class MalformedEvent(ValueError):
    """A RayEvent this module cannot translate (a field missing or of the wrong type)."""


def normalize(event: dict[str, Any]) -> list[dict[str, Any]]:
    """One RayEvent as the export-event dicts the file path would have written ([] for types with no export)."""
    kind = event.get("eventType") if isinstance(event, dict) else None
    if not isinstance(kind, str):
        raise MalformedEvent("not a RayEvent: no eventType")
    translate = _TRANSLATIONS.get(kind)
    if translate is None:
        return []  # WORKER_*, PLATFORM_EVENT and types newer than this module
    payload_key, fn = translate
    payload = event.get(payload_key)
    if not isinstance(payload, dict):
        raise MalformedEvent(f"{kind} without its {payload_key} object")
    try:
        ts_ns = to_ns(event.get("timestamp"))
        return fn(payload, ts_ns)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise MalformedEvent(f"malformed {kind} ({type(e).__name__}: {e})") from e


def to_ns(value: Any) -> int:
    """An RFC 3339 timestamp as protobuf's JSON writes it (UTC, up to nanoseconds) in epoch nanoseconds."""
    m = _RFC3339.match(value) if isinstance(value, str) else None
    if not m:
        raise ValueError(f"not an RFC 3339 timestamp: {value!r}")
    frac, zone = m.groups()
    seconds = _epoch_seconds(value[:19])
    if zone not in ("Z", "z"):
        sign = 1 if zone[0] == "+" else -1
        seconds -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    return seconds * 1_000_000_000 + int((frac or "0").ljust(9, "0"))


@functools.lru_cache(maxsize=4096)
def _epoch_seconds(date_time: str) -> int:
    """YYYY-MM-DDTHH:MM:SS (UTC) in epoch seconds; cached: a spool's events share few distinct seconds."""
    return calendar.timegm(
        (
            int(date_time[0:4]),
            int(date_time[5:7]),
            int(date_time[8:10]),
            int(date_time[11:13]),
            int(date_time[14:16]),
            int(date_time[17:19]),
        )
    )


# --- tasks: the pieces of ExportTaskEventData ----------------------------------------------------------------


def _nonempty_id(value: Any) -> bool:
    """Absent, empty or Ray's nil id (all 0xff bytes) count as no id."""
    if not value:
        return False
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError, TypeError):
        return True
    return bool(raw) and raw != b"\xff" * len(raw)


def _task_event(p: dict[str, Any], ts_ns: int, attempt_key: str, **parts: Any) -> list[dict[str, Any]]:
    task_id = p["taskId"]
    if not isinstance(task_id, str) or not task_id:
        raise ValueError("no taskId")
    data: dict[str, Any] = {"task_id": task_id, "attempt_number": int(p.get(attempt_key) or 0)}
    if p.get("jobId"):
        data["job_id"] = p["jobId"]
    data.update(parts)
    return [{"source_type": "EXPORT_TASK", "timestamp": ts_ns // 1_000_000_000, "event_data": data}]


def _call_string(func: dict[str, Any] | None) -> str:
    """The short name Ray's state API shows as func_or_class_name: Class.method, or function."""
    func = func or {}
    desc = func.get("pythonFunctionDescriptor") or func.get("javaFunctionDescriptor")
    if desc:
        short = (lambda n: n.rsplit(".", 1)[-1]) if "pythonFunctionDescriptor" in func else (lambda n: n)
        fn, cls = desc.get("functionName") or "", desc.get("className") or ""
        return f"{short(cls)}.{short(fn)}" if cls else short(fn)
    return (func.get("cppFunctionDescriptor") or {}).get("functionName") or ""


def _task_info(p: dict[str, Any], task_type: str, name: str, func: dict[str, Any] | None) -> dict[str, Any]:
    info: dict[str, Any] = {
        "task_id": p["taskId"],
        "type": task_type,
        "func_or_class_name": _call_string(func),
        "language": p.get("language") or "PYTHON",
        "required_resources": dict(p.get("requiredResources") or {}),
        "runtime_env_info": {"serialized_runtime_env": p.get("serializedRuntimeEnv") or "{}"},
        "label_selector": dict(p.get("labelSelector") or {}),
    }
    if name:  # Ray's state API shows it (a named actor's creation task is "name:Class.__init__")
        info["name"] = name
    if p.get("parentTaskId"):
        info["parent_task_id"] = p["parentTaskId"]
    if _nonempty_id(p.get("placementGroupId")):
        info["placement_group_id"] = p["placementGroupId"]
    if p.get("callSite"):
        info["call_site"] = p["callSite"]
    return info


def _task_definition(p: dict[str, Any], ts_ns: int) -> list[dict[str, Any]]:
    task_type = p.get("taskType") or "NORMAL_TASK"
    info = _task_info(p, task_type, p.get("taskName") or "", p.get("taskFunc"))
    if task_type == "ACTOR_CREATION_TASK":
        # A TaskID is 8 unique bytes then the ActorID: an actor's creation task names its actor.
        info["actor_id"] = base64.b64encode(base64.b64decode(p["taskId"], validate=True)[8:]).decode()
    return _task_event(p, ts_ns, "taskAttempt", task_info=info)


def _actor_task_definition(p: dict[str, Any], ts_ns: int) -> list[dict[str, Any]]:
    info = _task_info(p, "ACTOR_TASK", p.get("actorTaskName") or "", p.get("actorFunc"))
    if p.get("actorId"):
        info["actor_id"] = p["actorId"]
    return _task_event(p, ts_ns, "taskAttempt", task_info=info)


def _task_lifecycle(p: dict[str, Any], ts_ns: int) -> list[dict[str, Any]]:
    states: dict[str, str] = {}
    for t in p.get("stateTransitions") or []:
        state = t.get("state")
        code = state if isinstance(state, int) else TASK_STATUS_CODE.get(state)
        if code is None:
            continue  # a state newer than this module: the others still count
        states[str(code)] = str(to_ns(t["timestamp"]))
    su: dict[str, Any] = {}
    if states:
        su["state_ts_ns"] = states
    # Empty ids and a zero pid mean "not known by this reporter" (a worker's RUNNING carries no node id).
    for src, dst in (("nodeId", "node_id"), ("workerId", "worker_id")):
        if p.get(src):
            su[dst] = p[src]
    if p.get("workerPid"):
        su["worker_pid"] = int(p["workerPid"])
    if isinstance(p.get("rayErrorInfo"), dict):
        su["error_info"] = _snake(p["rayErrorInfo"])
    if isinstance(p.get("taskLogInfo"), dict):
        su["task_log_info"] = {
            _snake_key(k): (int(v) if k.endswith(("Start", "End")) else v) for k, v in p["taskLogInfo"].items()
        }
    if "isDebuggerPaused" in p:
        su["is_debugger_paused"] = bool(p["isDebuggerPaused"])
    return _task_event(p, ts_ns, "taskAttempt", state_updates=su)


def _task_profile(p: dict[str, Any], ts_ns: int) -> list[dict[str, Any]]:
    pe = p.get("profileEvents") or {}
    events = [
        {
            "event_name": e.get("eventName", ""),
            "start_time": str(e.get("startTime", "0")),
            "end_time": str(e.get("endTime", "0")),
            "extra_data": _json_text(e.get("extraData", "")),
        }
        for e in pe.get("events") or []
    ]
    profile = {
        "component_type": pe.get("componentType", ""),
        "component_id": pe.get("componentId", ""),
        "node_ip_address": pe.get("nodeIpAddress", ""),
        "events": events,
    }
    return _task_event(p, ts_ns, "attemptNumber", profile_events=profile)


def _json_text(text: Any) -> str:
    """extra_data as JSON text; anything else wrapped as {"raw": ...}, as a task's record gives it
    (historyserver/queries/task_records.py).

    Wrapped here because DuckDB 1.5 casts the text to JSON there even where json_valid() is false, and one such
    event (a trimmed or cut-off string) would break every answer that renders its task's record.
    """
    if text in ("", "{}"):
        return text
    try:
        json.loads(text)
        return text
    except (ValueError, TypeError):
        return json.dumps({"raw": text if isinstance(text, str) else repr(text)})


# --- actors, jobs, nodes: one export line per definition and per state transition -----------------------------


def _line(source_type: str, ts_ns: int, data: dict[str, Any]) -> dict[str, Any]:
    return {"source_type": source_type, "timestamp": ts_ns // 1_000_000_000, "event_data": data}


def _ms(ns: int) -> str:
    return str(ns // 1_000_000)


def _transitions(p: dict[str, Any], ts_ns: int) -> list[tuple[int, dict[str, Any]]]:
    """Each transition with its time (the event's when it has none), oldest first."""
    out = [(to_ns(t["timestamp"]) if t.get("timestamp") else ts_ns, t) for t in p.get("stateTransitions") or []]
    return sorted(out, key=lambda x: x[0])


def _actor_definition(p: dict[str, Any], ts_ns: int) -> list[dict[str, Any]]:
    data = {
        "actor_id": _required(p, "actorId"),
        "job_id": p.get("jobId", ""),
        "is_detached": bool(p.get("isDetached")),
        "name": p.get("name", ""),
        "ray_namespace": p.get("rayNamespace", ""),
        "serialized_runtime_env": p.get("serializedRuntimeEnv", ""),
        "class_name": p.get("className", ""),
        "required_resources": dict(p.get("requiredResources") or {}),
        "placement_group_id": p.get("placementGroupId", ""),
        "label_selector": dict(p.get("labelSelector") or {}),
    }
    return [_line("EXPORT_ACTOR", ts_ns, data)]


def _actor_lifecycle(p: dict[str, Any], ts_ns: int) -> list[dict[str, Any]]:
    actor_id = _required(p, "actorId")
    out = []
    for t_ns, t in _transitions(p, ts_ns):
        data: dict[str, Any] = {"actor_id": actor_id, "state": t.get("state") or "DEPENDENCIES_UNREADY"}
        for src, dst in (("nodeId", "node_id"), ("pid", "pid"), ("reprName", "repr_name")):
            if t.get(src):
                data[dst] = t[src]
        if isinstance(t.get("deathCause"), dict):
            data["death_cause"] = _snake(t["deathCause"])
        out.append(_line("EXPORT_ACTOR", t_ns, data))
    return out


def _driver_job_definition(p: dict[str, Any], ts_ns: int) -> list[dict[str, Any]]:
    config = p.get("config") or {}
    data = {
        "job_id": _required(p, "jobId"),
        "is_dead": False,
        "driver_pid": str(p.get("driverPid") or "0"),
        "entrypoint": p.get("entrypoint", ""),
        "config": {
            "metadata": dict(config.get("metadata") or {}),
            "runtime_env_info": {"serialized_runtime_env": config.get("serializedRuntimeEnv") or "{}"},
        },
    }
    if p.get("driverNodeId"):
        data["driver_node_id"] = p["driverNodeId"]  # resolved to driver_ip_address by fold_ray_events
    return [_line("EXPORT_DRIVER_JOB", ts_ns, data)]


def _driver_job_lifecycle(p: dict[str, Any], ts_ns: int) -> list[dict[str, Any]]:
    job_id = _required(p, "jobId")
    out = []
    for t_ns, t in _transitions(p, ts_ns):
        if t.get("state") == "CREATED":
            out.append(_line("EXPORT_DRIVER_JOB", t_ns, {"job_id": job_id, "is_dead": False, "start_time": _ms(t_ns)}))
        elif t.get("state") == "FINISHED":
            out.append(_line("EXPORT_DRIVER_JOB", t_ns, {"job_id": job_id, "is_dead": True, "end_time": _ms(t_ns)}))
    return out


def _node_definition(p: dict[str, Any], ts_ns: int) -> list[dict[str, Any]]:
    data: dict[str, Any] = {
        "node_id": _required(p, "nodeId"),
        "node_manager_address": p.get("nodeIpAddress", ""),
        "node_name": p.get("nodeName") or p.get("nodeIpAddress", ""),
        "labels": dict(p.get("labels") or {}),
    }
    if p.get("startTimestamp"):
        data["start_time_ms"] = _ms(to_ns(p["startTimestamp"]))
    return [_line("EXPORT_NODE", ts_ns, data)]


def _node_lifecycle(p: dict[str, Any], ts_ns: int) -> list[dict[str, Any]]:
    node_id = _required(p, "nodeId")
    out = []
    for t_ns, t in _transitions(p, ts_ns):
        data: dict[str, Any] = {"node_id": node_id, "state": t.get("state") or "ALIVE"}
        if t.get("resources"):
            data["resources_total"] = dict(t["resources"])
            data["is_head_node"] = _HEAD_RESOURCE in t["resources"]
        if data["state"] == "DEAD":
            data["end_time_ms"] = _ms(t_ns)
            if isinstance(t.get("deathInfo"), dict):
                data["death_info"] = _snake(t["deathInfo"])
        out.append(_line("EXPORT_NODE", t_ns, data))
    return out


def _submission_job_definition(p: dict[str, Any], ts_ns: int) -> list[dict[str, Any]]:
    config = p.get("config") or {}
    data = {
        "submission_job_id": _required(p, "submissionId"),
        "entrypoint": p.get("entrypoint", ""),
        "metadata": dict(config.get("metadata") or {}),
        "runtime_env_json": config.get("serializedRuntimeEnv") or "{}",
    }
    return [_line("EXPORT_SUBMISSION_JOB", ts_ns, data)]


def _submission_job_lifecycle(p: dict[str, Any], ts_ns: int) -> list[dict[str, Any]]:
    sid = _required(p, "submissionId")
    out = []
    for t_ns, t in _transitions(p, ts_ns):
        state = t.get("state")
        if not state or state == "UNSPECIFIED":
            continue
        data: dict[str, Any] = {"submission_job_id": sid, "status": state}
        if state == "PENDING":
            data["start_time"] = _ms(t_ns)
        elif state in _TERMINAL_SUBMISSION:
            data["end_time"] = _ms(t_ns)
        for src, dst in (
            ("message", "message"),
            ("errorType", "error_type"),
            ("driverAgentHttpAddress", "driver_agent_http_address"),
        ):
            if t.get(src):
                data[dst] = t[src]
        if t.get("driverNodeId"):
            data["driver_node_id"] = hex_id(t["driverNodeId"])  # the export files write this one in hex
        if "driverExitCode" in t:
            data["driver_exit_code"] = int(t["driverExitCode"])
        out.append(_line("EXPORT_SUBMISSION_JOB", t_ns, data))
    return out


def _placement_group(kind: str) -> Callable[[dict[str, Any], int], list[dict[str, Any]]]:
    """Placement groups have no export file: kept reachable, snake_case, under a source_type of their own."""

    def translate(p: dict[str, Any], ts_ns: int) -> list[dict[str, Any]]:
        return [_line(PLACEMENT_GROUP, ts_ns, {"event_type": kind, **_snake(p)})]

    return translate


_TRANSLATIONS: dict[str, tuple[str, Callable[[dict[str, Any], int], list[dict[str, Any]]]]] = {
    "TASK_DEFINITION_EVENT": ("taskDefinitionEvent", _task_definition),
    "ACTOR_TASK_DEFINITION_EVENT": ("actorTaskDefinitionEvent", _actor_task_definition),
    "TASK_LIFECYCLE_EVENT": ("taskLifecycleEvent", _task_lifecycle),
    "TASK_PROFILE_EVENT": ("taskProfileEvents", _task_profile),
    "ACTOR_DEFINITION_EVENT": ("actorDefinitionEvent", _actor_definition),
    "ACTOR_LIFECYCLE_EVENT": ("actorLifecycleEvent", _actor_lifecycle),
    "DRIVER_JOB_DEFINITION_EVENT": ("driverJobDefinitionEvent", _driver_job_definition),
    "DRIVER_JOB_LIFECYCLE_EVENT": ("driverJobLifecycleEvent", _driver_job_lifecycle),
    "NODE_DEFINITION_EVENT": ("nodeDefinitionEvent", _node_definition),
    "NODE_LIFECYCLE_EVENT": ("nodeLifecycleEvent", _node_lifecycle),
    "SUBMISSION_JOB_DEFINITION_EVENT": ("submissionJobDefinitionEvent", _submission_job_definition),
    "SUBMISSION_JOB_LIFECYCLE_EVENT": ("submissionJobLifecycleEvent", _submission_job_lifecycle),
    "PLACEMENT_GROUP_DEFINITION_EVENT": (
        "placementGroupDefinitionEvent",
        _placement_group("PLACEMENT_GROUP_DEFINITION_EVENT"),
    ),
    "PLACEMENT_GROUP_LIFECYCLE_EVENT": (
        "placementGroupLifecycleEvent",
        _placement_group("PLACEMENT_GROUP_LIFECYCLE_EVENT"),
    ),
}


def _required(p: dict[str, Any], key: str) -> str:
    value = p.get(key)
    if not isinstance(value, str) or not value:
        raise KeyError(key)
    return value


@functools.lru_cache(maxsize=1024)
def _snake_key(key: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", key).lower()


def _snake(value: Any) -> Any:
    """protobuf's camelCase JSON in the export files' snake_case; map fields keep the user's keys."""
    if isinstance(value, dict):
        return {
            _snake_key(k): (dict(v) if k in _MAP_FIELDS and isinstance(v, dict) else _snake(v))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_snake(v) for v in value]
    return value


# --- the spool: JSON lines of RayEvents, as archive/FORMAT.md describes ray_events/ --------------------------


def normalize_spool(
    lines: Iterable[bytes], where: str, damage: Damage, task_out: Path, others: list[dict[str, Any]]
) -> int:
    """Translate a spool's lines: task events are written to task_out (for fold_tasks), the rest appended
    to `others` (for fold_ray_events). Unreadable lines are noted as damage. Returns task lines written."""
    written = 0
    task_out.parent.mkdir(parents=True, exist_ok=True)
    with task_out.open("wb") as out:
        for n, line in enumerate(lines, 1):
            line = line.strip()
            if not line:
                continue
            try:
                exported = normalize(json.loads(line))
            except (ValueError, RecursionError) as e:  # bad JSON or bytes, absurd nesting, MalformedEvent
                damage.note(
                    f"{where}:{n}",
                    str(e) if isinstance(e, MalformedEvent) else f"unreadable event ({type(e).__name__})",
                )
                continue
            for ev in exported:
                if ev["source_type"] == "EXPORT_TASK":
                    out.write(json.dumps(ev, separators=(",", ":")).encode() + b"\n")
                    written += 1
                else:
                    others.append(ev)
    return written


def _is_definition(e: dict[str, Any]) -> bool:
    d = e["event_data"]
    if e["source_type"] == "EXPORT_DRIVER_JOB":
        return "entrypoint" in d
    return "state" not in d and "status" not in d


def fold_ray_events(events: list[dict[str, Any]], into: Folded, where: str = "ray_events") -> None:
    """Fold the non-task events of every node's spool, once all are read.

    The spools interleave (GCS events come through the head's agent, POST batches arrive in any order), so the
    events are put in time order first, definitions before transitions of the same second, as the export files
    would hold them. A driver's IP comes from its node's definition: the HTTP event names only the node.
    """
    ips_by_hex = {k: n["node_manager_address"] for k, n in into.nodes.items() if n.get("node_manager_address")}
    ips_by_hex.update(
        {
            hex_id(e["event_data"]["node_id"]): e["event_data"]["node_manager_address"]
            for e in events
            if e["source_type"] == "EXPORT_NODE" and e["event_data"].get("node_manager_address")
        }
    )
    for e in events:
        d = e["event_data"]
        if e["source_type"] == "EXPORT_DRIVER_JOB" and "driver_node_id" in d:
            ip = ips_by_hex.get(hex_id(d.pop("driver_node_id")))
            if ip:
                d["driver_ip_address"] = ip
    ordered = sorted(events, key=lambda e: (e["timestamp"], not _is_definition(e)))
    fold_lines((json.dumps(e).encode() for e in ordered), where, into)


__all__ = ["MalformedEvent", "normalize", "normalize_spool", "fold_ray_events", "to_ns", "PLACEMENT_GROUP"]
