"""Small archived sessions for fleet commands (`rayhistory compact`, `rayhistory sql`), written as collectors
write them: Ray 2.60's export-event lines (the shapes of ../shared/reference/ray-2.60/export_events/), cut into
gzip segments, a node record and end marker, the manifest, its index entry, the session's end marker last.

Each session holds two driver jobs and `tasks` normal tasks; one task of job 02 fails, with OUT_OF_MEMORY (what
Ray's memory monitor reports when it kills a worker) when `oom` is set, else with TASK_EXECUTION_EXCEPTION. The
same arguments always give the same bytes.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from archive.layout import LogSegment, SessionRef
from archive.logs import encode
from archive.manifest import ENDED, NodeRecord, SessionManifest, end_marker
from archive.storage import Store

RAY_VERSION = "2.60.0"
BASE_MS = 1_795_600_000_000  # 2026-11-25
NS = 1_000_000
JOB_IDS = ("01000000", "02000000")
# Ray's TaskStatus numbers (common.proto), as the export events carry them in state_ts_ns.
PENDING_ARGS_AVAIL, SUBMITTED_TO_WORKER, RUNNING, FINISHED, FAILED = 1, 5, 8, 11, 12
OOM_MESSAGE = (
    "Task was killed due to the node running low on memory.\nMemory on the node (IP: 10.0.0.2) where the task "
    "was running was 7.50GB / 7.77GB (0.965), which exceeds the memory usage threshold of 0.95."
)


@dataclass(frozen=True)
class FleetSession:
    ref: SessionRef
    oom: bool
    failed_job: str  # the job whose task failed (with OOM when `oom`)


def _b64(hex_id: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_id)).decode()


def _hex(seed: str, size: int) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()[: size * 2]


def _line(source: str, data: dict[str, Any], ts_s: int, seed: str) -> str:
    return json.dumps(
        {"event_data": data, "event_id": _hex(seed, 18), "source_type": source, "timestamp": ts_s},
        separators=(",", ":"),
    )


def _task_lines(ref: SessionRef, index: int, job: str, start_ms: int, failure: dict[str, str] | None) -> list[str]:
    task_hex = _hex(f"{ref.id}/{job}/{index}", 12) + "ffffffff" + job  # a normal task: unique bytes, job id
    worker = _b64(_hex(f"{ref.id}/worker/{index % 4}", 28))
    t0 = (start_ms + 1000 + index * 10) * NS
    end_state = FAILED if failure else FINISHED
    states = {PENDING_ARGS_AVAIL: t0, SUBMITTED_TO_WORKER: t0 + NS, RUNNING: t0 + 2 * NS, end_state: t0 + 9 * NS}
    update: dict[str, Any] = {"state_ts_ns": {str(k): str(v) for k, v in states.items()}, "worker_id": worker}
    if failure:
        update["error_info"] = failure
    info = {
        "func_or_class_name": "train_shard" if failure else "preprocess",
        "language": "PYTHON",
        "parent_task_id": _b64("f" * 48 + job),
        "required_resources": {"CPU": 1},
        "task_id": _b64(task_hex),
        "type": "NORMAL_TASK",
    }
    data = {"attempt_number": 0, "job_id": _b64(job), "state_updates": update, "task_id": _b64(task_hex)}
    return [_line("EXPORT_TASK", {**data, "task_info": info}, t0 // NS // 1000, f"{task_hex}/t")]


def _job_line(ref: SessionRef, job: str, start_ms: int, end_ms: int) -> str:
    data = {
        "job_id": _b64(job),
        "is_dead": True,
        "driver_ip_address": "10.0.0.1",
        "driver_pid": str(4000 + int(job[:2], 16)),
        "entrypoint": f"python job_{job[:2]}.py",
        "start_time": str(start_ms),
        "end_time": str(end_ms),
        "config": {"metadata": {}},
    }
    return _line("EXPORT_DRIVER_JOB", data, end_ms // 1000, f"{ref.id}/{job}")


def write_session(store: Store, ref: SessionRef, number: int, tasks: int = 20, oom: bool = False) -> FleetSession:
    """Write one ended session into the archive (overwriting what is there)."""
    start_ms = BASE_MS + number * 3_600_000
    end_ms = start_ms + 60_000
    node_id = _hex(f"{ref.id}/node", 28)
    node = ref.node(node_id)
    failed_job = JOB_IDS[1]
    failure = (
        {"error_type": "OUT_OF_MEMORY", "error_message": OOM_MESSAGE}
        if oom
        else {"error_type": "TASK_EXECUTION_EXCEPTION", "error_message": "User exception:\nValueError: bad shard"}
    )
    task_lines: list[str] = []
    for i in range(tasks):
        job = JOB_IDS[i % 2]
        task_lines += _task_lines(ref, i, job, start_ms, failure if i == 1 else None)
    files = {
        "export_events/event_EXPORT_TASK_4001.log": task_lines,
        "export_events/event_EXPORT_DRIVER_JOB.log": [_job_line(ref, j, start_ms, end_ms - 1000) for j in JOB_IDS],
    }
    for path, lines in files.items():
        data = ("\n".join(lines) + "\n").encode()
        half = len(data) // 2  # two segments split mid-line, as a collector may cut them
        for a, b in ((0, half), (half, len(data))):
            store.put(node.segment_key(LogSegment(path, 0, a, b)), encode(data[a:b]))
    record = NodeRecord(node_id=node_id, is_head=True, ip="10.0.0.1", ray_version=RAY_VERSION, start_ms=start_ms)
    store.put(node.node_key, record.to_json())
    store.put(node.ended_key, end_marker(end_ms, "signal:SIGTERM"))
    manifest = SessionManifest(
        namespace=ref.namespace,
        cluster=ref.cluster,
        session_name=ref.session,
        ray_version=RAY_VERSION,
        start_ms=start_ms,
        end_ms=end_ms,
        status=ENDED,
        ended_by="signal:SIGTERM",
        nodes=[record],
    )
    store.put(ref.manifest_key, manifest.to_json())
    store.put(ref.index_key, manifest.to_json())
    store.put(ref.ended_key, end_marker(end_ms, "signal:SIGTERM"))  # last: the session is complete
    return FleetSession(ref, oom, failed_job)


def session_ref(number: int, namespaces: int = 2, clusters: int = 5) -> SessionRef:
    """The number-th session of a fleet: spread over `namespaces` x `clusters` clusters."""
    ns = f"team-{number % namespaces}"
    cluster = f"train-{(number // namespaces) % clusters}"
    stamp = f"2026-11-{25 + number // 10_000:02d}_{(number // 60) % 24:02d}-{number % 60:02d}-00"
    return SessionRef(ns, cluster, f"session_{stamp}_{number:06d}_{1000 + number % 9000}")


def write_fleet(store: Store, count: int, oom_every: int = 7, tasks: int = 20) -> list[FleetSession]:
    """`count` sessions; every oom_every-th one has a task that failed with OUT_OF_MEMORY."""
    return [write_session(store, session_ref(n), n, tasks, oom=n % oom_every == oom_every - 1) for n in range(count)]
