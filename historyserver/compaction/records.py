"""Folded export events turned into the records Ray's REST API returns, field for field (../shared/reference)."""

from __future__ import annotations

import json
from typing import Any

from historyserver.compaction.export_events import Folded
from historyserver.compaction.ids import hex_id, ms

TASK_SUMMARY_KEYS = (
    "task_id",
    "attempt_number",
    "name",
    "state",
    "job_id",
    "actor_id",
    "type",
    "func_or_class_name",
    "parent_task_id",
    "node_id",
    "worker_id",
    "worker_pid",
    "error_type",
)
INTERNAL_NAMESPACE_PREFIX = "_ray_internal"


def _floats(resources: dict[str, Any] | None) -> dict[str, float]:
    return {k: float(v) for k, v in (resources or {}).items()}


def _json_or_empty(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value) if value else {}
        except ValueError:
            return {"raw": value}
    return value or {}


def actor_record(a: dict[str, Any], nodes_ip: dict[str, str], session_end_ms: int | None) -> dict[str, Any]:
    """The camelCase shape of /logical/actors; processStats and other live-only fields are null or empty."""
    state = a.get("state", "DEPENDENCIES_UNREADY")
    node_id = hex_id(a.get("node_id"))
    cause = a.get("death_cause") or {}
    # An actor that failed in __init__ carries its error as a creation-task failure, not as a death context.
    death = cause.get("actor_died_error_context") or cause.get("creation_task_failure_context") or {}
    start = a["state_ts"].get("ALIVE")
    end = a["state_ts"].get("DEAD")
    if state != "DEAD" and session_end_ms:
        end = session_end_ms  # the cluster ended: the actor ended with it, not "running forever"
    ip = death.get("node_ip_address") or nodes_ip.get(node_id or "")
    return {
        "actorId": a["actor_id"],
        "jobId": hex_id(a.get("job_id")),
        "address": {"nodeId": node_id, "ipAddress": ip, "port": None, "workerId": None},
        "name": a.get("name") or "",
        "className": a.get("class_name"),
        "state": state,
        "numRestarts": str(a.get("num_restarts") or 0),
        "timestamp": float(a.get("last_ts") or 0),
        "pid": int(a["pid"]) if a.get("pid") else None,
        "startTime": start or 0,
        "endTime": end or 0,
        "reprName": a.get("repr_name") or "",
        "labelSelector": a.get("label_selector") or {},
        "actorClass": a.get("class_name"),
        # As Ray's actor table shows it, colour codes included (the fidelity harness compares with a live cluster).
        "exitDetail": death.get("error_message") or death.get("formatted_exception_string") or "-",
        "requiredResources": _floats(a.get("required_resources")),
        "placementGroupId": hex_id(a.get("placement_group_id")),
        "isDetached": bool(a.get("is_detached")),
        "rayNamespace": a.get("ray_namespace"),
        "gpus": [],
        "processStats": None,
        "mem": None,
        "tpus": [],
    }


def node_record(n: dict[str, Any]) -> dict[str, Any]:
    """The snake_case shape of /api/v0/nodes."""
    death = n.get("death_info") or {}
    return {
        "node_id": n["node_id"],
        "node_ip": n.get("node_manager_address"),
        "is_head_node": bool(n.get("is_head_node")),
        "state": n.get("state", "ALIVE"),
        "state_message": death.get("reason_message") or None,
        "node_name": n.get("node_name") or n.get("node_manager_address"),
        "resources_total": _floats(n.get("resources_total")),
        "labels": n.get("labels") or {},
        "start_time_ms": ms(n.get("start_time_ms")) or 0,
        "end_time_ms": ms(n.get("end_time_ms")) or 0,
    }


TERMINAL_JOB_STATUSES = {"SUCCEEDED", "FAILED", "STOPPED"}
UNFINISHED_JOB_NOTE = "Unfinished: the cluster ended while this job was {status}; it never reported a final status."


def _ended_with_cluster(job: dict[str, Any], session_end_ms: int | None) -> dict[str, Any]:
    """A job without a final status in a closed session ends with the cluster, keeping its last known status."""
    if session_end_ms is None or job["status"] in TERMINAL_JOB_STATUSES:
        return job
    note = UNFINISHED_JOB_NOTE.format(status=job["status"])
    return {
        **job,
        "end_time": job["end_time"] or session_end_ms,
        "message": f"{note} {job['message']}" if job["message"] else note,
    }


def job_records(f: Folded, session_end_ms: int | None = None) -> list[dict[str, Any]]:
    """The shape of /api/jobs/: submission jobs joined to their drivers, then plain driver jobs."""
    drivers_by_submission: dict[str, dict[str, Any]] = {}
    plain: list[dict[str, Any]] = []
    for j in f.driver_jobs.values():
        meta = (j.get("config") or {}).get("metadata") or {}
        namespace = (j.get("config") or {}).get("ray_namespace") or ""
        if namespace.startswith(INTERNAL_NAMESPACE_PREFIX):
            continue
        if meta.get("job_submission_id"):
            drivers_by_submission[meta["job_submission_id"]] = j
        else:
            plain.append(j)
    out = []
    for sid, s in f.submission_jobs.items():
        driver = drivers_by_submission.get(sid)
        out.append(
            {
                "type": "SUBMISSION",
                "job_id": driver["job_id"] if driver else None,
                "submission_id": sid,
                "driver_info": _driver_info(driver),
                "status": s.get("status", "PENDING"),
                "entrypoint": s.get("entrypoint"),
                "message": s.get("message"),
                "error_type": s.get("error_type"),
                "start_time": ms(s.get("start_time")),
                "end_time": ms(s.get("end_time")),
                "metadata": s.get("metadata") or {},
                "runtime_env": _json_or_empty(s.get("runtime_env_json")),
                "driver_agent_http_address": s.get("driver_agent_http_address"),
                "driver_node_id": s.get("driver_node_id"),
                "driver_exit_code": s.get("driver_exit_code"),
            }
        )
    for j in plain:
        out.append(
            {
                "type": "DRIVER",
                "job_id": j["job_id"],
                "submission_id": None,
                "driver_info": _driver_info(j),
                "status": "SUCCEEDED" if j.get("is_dead") else "RUNNING",
                "entrypoint": j.get("entrypoint"),
                "message": None,
                "error_type": None,
                "start_time": ms(j.get("start_time")),
                "end_time": ms(j.get("end_time")),
                "metadata": ((j.get("config") or {}).get("metadata")) or {},
                "runtime_env": {},
                "driver_agent_http_address": None,
                "driver_node_id": None,
                "driver_exit_code": None,
            }
        )
    return [_ended_with_cluster(j, session_end_ms) for j in out]


def _driver_info(j: dict[str, Any] | None) -> dict[str, Any] | None:
    if not j:
        return None
    return {"id": j["job_id"], "node_ip_address": j.get("driver_ip_address"), "pid": str(j.get("driver_pid") or "")}
