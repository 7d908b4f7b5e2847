"""The rendering of a synthetic session (benchmarks/synthetic_session.py) into the bytes Ray 2.60 writes: each
process's export-event file and worker logs, the head's own event files and the node records, cut into gzip
segments as the collector ships them."""

from __future__ import annotations

import json
import random
from typing import Any

from archive import logs as segments
from archive.layout import LogSegment, NodeRef
from archive.manifest import NodeRecord
from archive.storage import Store, open_store
from benchmarks.synthetic_plan import (
    ACTOR_TASK,
    CODE_ORDER,
    CREATION,
    DRIVER,
    DRV_END,
    DRV_PROFILE,
    DRV_START,
    EXEC,
    JOBS,
    MS,
    OWN_ALL,
    OWN_FIRST,
    OWN_REST,
    RAY_VERSION,
    SEC,
    TYPE_NAMES,
    US,
    Attempt,
    JobSpec,
    Plan,
    Proc,
    b64,
)


# --- rendering: Ray's bytes -----------------------------------------------------------------------------------
class SegmentWriter:
    """Bytes of one file, cut into fixed-size gzip segments wherever the cut falls, as the collector ships them."""

    def __init__(self, store: Store, node: NodeRef, path: str, size: int, progress: Any = None) -> None:
        self.store, self.node, self.path, self.size, self.progress = store, node, path, size, progress
        self.buf, self.offset, self.segments = bytearray(), 0, 0

    def write(self, data: bytes) -> None:
        self.buf += data
        while len(self.buf) >= self.size:
            self._put(self.size)

    def close(self) -> int:
        if self.buf:
            self._put(len(self.buf))
        return self.offset

    def _put(self, n: int) -> None:
        chunk = bytes(self.buf[:n])
        del self.buf[:n]
        seg = LogSegment(self.path, 0, self.offset, self.offset + n)
        self.store.put(self.node.segment_key(seg), segments.encode(chunk))
        self.offset, self.segments = seg.end, self.segments + 1
        if self.progress is not None:
            with self.progress.get_lock():
                self.progress.value += n


def runtime_env_info(spec: JobSpec) -> dict[str, Any]:
    wd = f"gcs://_ray_pkg_{spec.number:04x}5f01f53ecd4c2.zip" if spec.kind == "submission" else ""
    return {
        "runtime_env_config": {"eager_install": True, "log_files": [], "setup_timeout_seconds": 600},
        "serialized_runtime_env": json.dumps({"working_dir": wd}) if wd else "{}",
        "uris": {"py_modules_uris": [], "working_dir_uri": wd},
    }


class Renderer:
    """Lines of one process's export-event file; task_info templates are built once per function."""

    def __init__(self, plan: Plan, proc: Proc, rng: random.Random) -> None:
        self.plan, self.proc, self.rng = plan, proc, rng
        self.info: dict[tuple[int, int, str], tuple[str, str, str]] = {}
        header = f":job_id:{JOBS[proc.job].id.hex()}\n"
        header += f":actor_name:{proc.actor_class}\n" if proc.actor_class else ""
        self.out, self.err = [header], [header]
        self.stdout = self.stderr = len(header)

    def log_lines(self, a: Attempt) -> None:
        """What the task leaves in its worker's .out/.err: Ray's :task_name: marker, then its own output."""
        marker = "" if a.kind == ACTOR_TASK else f":task_name:{a.name}\n"
        output = "" if a.failed else f"{a.name} ok\n"
        self.out.append(marker + output)
        self.err.append(marker)
        self.stdout += len(marker) + len(output)
        self.stderr += len(marker)

    def event_id(self) -> str:
        return "%036x" % self.rng.getrandbits(144)

    def task_info(self, a: Attempt) -> str:
        key = (a.job, a.kind, a.name)
        parts = self.info.get(key)
        if parts is None:
            d = {
                "func_or_class_name": a.name,
                "label_selector": {},
                "labels": {},
                "language": "PYTHON",
                "parent_task_id": "@P@",
                "required_resources": {} if a.kind in (CREATION, DRIVER) else {"CPU": 1},
                "runtime_env_info": runtime_env_info(JOBS[a.job]),
                "task_id": "@T@",
                "type": TYPE_NAMES[a.kind],
            }
            if a.actor:
                d["actor_id"] = b64(a.actor)
            pre, _, rest = json.dumps(d, separators=(",", ":"), sort_keys=True).partition("@P@")
            parts = self.info[key] = (pre, *rest.partition("@T@")[::2])
        return parts[0] + b64(a.parent) + parts[1] + b64(a.task_id) + parts[2]

    def line(self, sec: int, ns: int, op: int, payload: Any) -> str:
        if op in (OWN_ALL, OWN_FIRST, OWN_REST):
            return self.owner(self.plan.attempts[payload], op, sec)
        if op == EXEC:
            return self.execution(self.plan.attempts[payload], sec)
        return self.driver(op, payload, sec)

    def owner(self, a: Attempt, op: int, sec: int) -> str:
        states = [(1, a.t1), (2, a.t2)] + ([(5, a.t5)] if a.t5 else []) + [(12 if a.failed else 11, a.tend)]
        cut = (a.t1 // SEC + 1) * SEC
        if op == OWN_FIRST:
            states = [s for s in states if s[1] < cut]
        elif op == OWN_REST:
            states = [s for s in states if s[1] >= cut]
        codes = {c for c, _ in states}
        su = ""
        if a.failed and 12 in codes:
            su = '"error_info":%s,' % self.error_info(a)
        if 5 in codes:
            w = self.plan.procs[a.worker]
            su += '"node_id":"%s",' % b64(self.plan.node_ids[w.node])
        su += '"state_ts_ns":{%s}' % ",".join('"%d":"%d"' % s for s in sorted(states, key=lambda s: CODE_ORDER[s[0]]))
        if 5 in codes:
            su += ',"worker_id":"%s"' % b64(w.worker_id)
        info = ',"task_info":' + self.task_info(a) if op != OWN_REST else ""
        return (
            '{"event_data":{"attempt_number":%d,"job_id":"%s","state_updates":{%s},"task_id":"%s"%s},'
            '"event_id":"%s","source_type":"EXPORT_TASK","timestamp":%d}\n'
            % (a.attempt, b64(JOBS[a.job].id), su, b64(a.task_id), info, self.event_id(), sec)
        )

    def error_info(self, a: Attempt) -> str:
        w = self.plan.procs[a.worker]
        kind = "CreationTaskError: " if a.kind == CREATION else ""
        msg = (
            f"{kind}User exception:\n\x1b[36mray::{a.name}()\x1b[39m (pid={w.pid}, ip={self.plan.ips[w.node]})\n"
            f'  File "/app/{a.name.split(".")[0].lower()}.py", line 42, in {a.name.split(".")[-1]}\n'
            f'    raise ValueError(f"bad record {{i}}")\nValueError: bad record {a.t1 % 100000}'
        )
        return json.dumps({"error_message": msg, "error_type": "TASK_EXECUTION_EXCEPTION"}, separators=(",", ":"))

    def execution(self, a: Attempt, sec: int) -> str:
        w = self.plan.procs[a.worker]
        d = a.tend - a.t8
        s0, end = a.t8 + d // 50, a.tend - d // 50
        ex_end = a.tend - d // 20
        events = [
            '{"end_time":"%d","event_name":"task:deserialize_arguments","extra_data":"{}","start_time":"%d"}'
            % (s0 + 60 * US, s0 + 20 * US)
        ]
        if a.failed:
            tb = json.dumps(
                json.dumps(
                    {
                        "type": "<class 'ValueError'>",
                        "value": f"bad record {a.t1 % 100000}",
                        "traceback": 'Traceback (most recent call last):\n  File "python/ray/'
                        f'_raylet.pyx", line 2306, in ray._raylet.execute_task\nValueError: '
                        f"bad record {a.t1 % 100000}\n",
                    }
                )
            )[1:-1]
            events.append(
                '{"end_time":"%d","event_name":"task:execute","extra_data":"%s","start_time":"%d"}'
                % (ex_end, tb, s0 + 80 * US)
            )
        else:
            events.append(
                '{"end_time":"%d","event_name":"task:execute","extra_data":"{}","start_time":"%d"}'
                % (ex_end, s0 + 80 * US)
            )
            events.append(
                '{"end_time":"%d","event_name":"task:store_outputs","extra_data":"{}","start_time":"%d"}'
                % (end - 5 * US, ex_end + 3 * US)
            )
        events.append(
            '{"end_time":"%d","event_name":"task::%s","extra_data":"{\\"name\\": \\"__main__.%s\\", '
            '\\"task_id\\": \\"%s\\"}","start_time":"%d"}' % (end, a.name, a.name, a.task_id.hex(), s0)
        )
        log_info = ""
        if a.kind != CREATION:
            self.log_lines(a)
            log_info = (
                '"task_log_info":{"stderr_end":%d,"stderr_file":"","stderr_start":0,"stdout_end":%d,'
                '"stdout_file":"","stdout_start":0},' % (self.stderr, self.stdout)
            )
        return (
            '{"event_data":{"attempt_number":%d,"job_id":"%s","profile_events":{"component_id":"%s",'
            '"component_type":"worker","events":[%s],"node_ip_address":"%s"},"state_updates":{"state_ts_ns":'
            '{"8":"%d"},%s"worker_pid":%d},"task_id":"%s"},"event_id":"%s","source_type":"EXPORT_TASK",'
            '"timestamp":%d}\n'
            % (
                a.attempt,
                b64(JOBS[a.job].id),
                b64(w.worker_id),
                ",".join(events),
                self.plan.ips[w.node],
                a.t8,
                log_info,
                w.pid,
                b64(a.task_id),
                self.event_id(),
                sec,
            )
        )

    def driver(self, op: int, payload: Any, sec: int) -> str:
        p = self.proc
        job = JOBS[p.job]
        body: dict[str, Any] = {"attempt_number": 0, "job_id": b64(job.id)}
        if op == DRV_PROFILE:
            body["profile_events"] = {
                "component_id": b64(p.worker_id),
                "component_type": "driver",
                "events": [
                    {
                        "end_time": str(t + 40 * US + t % (60 * US)),
                        "event_name": "submit_task",
                        "extra_data": "{}",
                        "start_time": str(t - 30 * US),
                    }
                    for t in payload
                ],
                "node_ip_address": self.plan.ips[p.node],
            }
        a = self.plan.attempts[payload] if op != DRV_PROFILE else None
        if op == DRV_START:
            body["state_updates"] = {"state_ts_ns": {"8": str(a.t8)}}
        elif op == DRV_END:
            body["state_updates"] = {"state_ts_ns": {"11": str(a.tend)}}
        body["task_id"] = b64(b"\xff" * 20 + job.id)
        if op == DRV_START:
            body["task_info"] = json.loads(self.task_info(a))
        event = {"event_data": body, "event_id": self.event_id(), "source_type": "EXPORT_TASK", "timestamp": sec}
        return json.dumps(event, separators=(",", ":")) + "\n"


# set by synthetic_session.generate before its pool forks: the children share the plan instead of pickling it
_PLAN: Plan = None  # type: ignore[assignment]
_STORE_URL = ""
_SEGMENT_BYTES = 4 << 20
_PROGRESS: Any = None


def render_proc(index: int) -> tuple[int, int]:
    """Write one process's export-event file (and a worker's .out/.err); returns (bytes, segments)."""
    plan, proc = _PLAN, _PLAN.procs[index]
    store = open_store(_STORE_URL)
    node = plan.ref.node(plan.node_ids[proc.node].hex())
    r = Renderer(plan, proc, random.Random(plan.seed * 1_000_003 + index))
    w = SegmentWriter(store, node, f"export_events/event_EXPORT_TASK_{proc.pid}.log", _SEGMENT_BYTES, _PROGRESS)
    chunk: list[str] = []
    for entry in sorted(proc.entries):
        chunk.append(r.line(*entry))
        if len(chunk) >= 2000:
            w.write("".join(chunk).encode())
            chunk = []
    w.write("".join(chunk).encode())
    size, segs = w.close(), w.segments
    if index not in plan.drivers.values():
        wid, job = proc.worker_id.hex(), "ffffffff" if proc.prestarted else JOBS[proc.job].id.hex()
        for ext, parts in (("out", r.out), ("err", r.err)):
            f = SegmentWriter(store, node, f"worker-{wid}-{job}-{proc.pid}.{ext}", _SEGMENT_BYTES)
            f.write("".join(parts).encode())
            size, segs = size + f.close(), segs + f.segments
    return size, segs


# --- the head's own event files and the documents -------------------------------------------------------------
def _compact(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True)


def head_files(plan: Plan) -> dict[str, str]:
    rng = random.Random(plan.seed - 1)
    eid = lambda: "%036x" % rng.getrandbits(144)  # noqa: E731
    lines: dict[str, list[tuple[int, str]]] = {k: [] for k in ("NODE", "ACTOR", "DRIVER_JOB", "SUBMISSION_JOB")}

    def gcs(kind: str, ns: int, data: dict[str, Any]) -> None:
        lines[kind].append(
            (
                ns,
                '{"event_data":%s,"event_id":"%s","source_type":"EXPORT_%s","timestamp":%d}\n'
                % (_compact(data), eid(), kind, ns // SEC),
            )
        )

    for n, (node_id, ip) in enumerate(zip(plan.node_ids, plan.ips)):
        up, down = plan.start_ns + SEC + n * 300 * MS, plan.end_ns - SEC
        res = {"CPU": 16, "memory": 64 << 30, f"node:{ip}": 1, "object_store_memory": 16 << 30}
        if n == 0:
            res["node:__internal_head__"] = 1
        node = {
            "end_time_ms": "0",
            "is_head_node": n == 0,
            "labels": {"ray.io/node-id": node_id.hex()},
            "node_id": b64(node_id),
            "node_manager_address": ip,
            "node_name": ip,
            "resources_total": res,
            "start_time_ms": str(up // MS),
            "state": "ALIVE",
        }
        gcs("NODE", up, node)
        gcs(
            "NODE",
            down,
            {
                **node,
                "state": "DEAD",
                "end_time_ms": str(down // MS),
                "death_info": {"reason": "EXPECTED_TERMINATION", "reason_message": "received SIGTERM"},
            },
        )
    for a in plan.actors:
        base = {
            "actor_id": b64(a.actor_id),
            "class_name": a.class_name,
            "death_cause": {},
            "is_detached": a.class_name == "JobSupervisor",
            "job_id": b64(JOBS[a.job].id),
            "label_selector": {},
            "labels": {},
            "name": a.name,
            "node_id": "",
            "pid": 0,
            "placement_group_id": "",
            "ray_namespace": a.namespace,
            "repr_name": "",
            "required_resources": {},
            "serialized_runtime_env": "{}",
            "state": "DEPENDENCIES_UNREADY",
        }
        gcs("ACTOR", a.created_ns, base)
        gcs("ACTOR", a.created_ns + MS, {**base, "state": "PENDING_CREATION"})
        placed = {**base, "node_id": b64(plan.node_ids[a.node]), "pid": a.pid}
        gcs("ACTOR", a.alive_ns, {**placed, "state": "ALIVE"})
        if a.broken:
            cause = {
                "creation_task_failure_context": {
                    "formatted_exception_string": "Traceback (most recent call "
                    'last):\n  File "/app/etl.py", line 12, in __init__\nRuntimeError: cannot open sink'
                }
            }
        else:
            cause = {
                "actor_died_error_context": {
                    "actor_id": b64(a.actor_id),
                    "class_name": a.class_name,
                    "name": a.name,
                    "never_started": False,
                    "error_message": "The actor is dead because its owner has died. Owner Id: "
                    f"{a.owner.hex()} Owner Ip address: {plan.ips[0]} Owner worker exit type: "
                    "INTENDED_USER_EXIT Worker exit detail: Owner's worker process has crashed.",
                    "node_ip_address": plan.ips[a.node],
                    "owner_id": b64(a.owner),
                    "owner_ip_address": plan.ips[0],
                    "pid": a.pid,
                    "ray_namespace": a.namespace,
                    "reason": "OWNER_DIED",
                }
            }
        gcs("ACTOR", a.dead_ns, {**placed, "state": "DEAD", "death_cause": cause})
    for j, spec in enumerate(JOBS):
        if spec.kind == "internal":
            continue
        start, end = plan.job_times[j]
        meta = {"job_name": spec.submission_id, "job_submission_id": spec.submission_id} if spec.submission_id else {}
        pid = plan.procs[plan.drivers[j]].pid
        job = {
            "config": {"metadata": meta, "runtime_env_info": runtime_env_info(spec)},
            "driver_ip_address": plan.ips[0],
            "driver_pid": str(pid),
            "end_time": "0",
            "entrypoint": f"/home/ray/anaconda3/bin/{spec.entrypoint}",
            "is_dead": False,
            "job_id": b64(spec.id),
            "start_time": str(start // MS),
        }
        gcs("DRIVER_JOB", start, job)
        gcs("DRIVER_JOB", end, {**job, "is_dead": True, "end_time": str(end // MS)})
        if spec.kind != "submission":
            continue
        sub = plan.submitted_ns[j]
        common = {
            "submission_job_id": spec.submission_id,
            "entrypoint": spec.entrypoint,
            "start_time": str(sub // MS),
            "runtime_env_json": job["config"]["runtime_env_info"]["serialized_runtime_env"],
            "metadata": {},
        }
        live = {"driver_agent_http_address": f"http://{plan.ips[0]}:52365", "driver_node_id": plan.node_ids[0].hex()}
        final = (
            {"status": "SUCCEEDED", "message": "Job finished successfully.", "driver_exit_code": 0}
            if spec.succeeds
            else {
                "status": "FAILED",
                "message": "Job entrypoint command failed with exit code "
                "1, last available logs (truncated to 20,000 chars):\nValueError: bad record",
                "error_type": "JOB_ENTRYPOINT_COMMAND_ERROR",
                "driver_exit_code": 1,
            }
        )
        for ns, data in (
            (sub, {"status": "PENDING", "message": "Job has not started yet."}),
            (sub + SEC, {"status": "RUNNING", "message": "Job is currently running.", **live}),
            (end + 200 * MS, {**final, "end_time": str((end + 200 * MS) // MS), **live}),
        ):
            event = {
                "event_id": "%018X" % rng.getrandbits(72),
                "timestamp": ns // SEC,
                "source_type": "EXPORT_SUBMISSION_JOB",
                "event_data": {**common, **data},
            }
            lines["SUBMISSION_JOB"].append((ns, json.dumps(event) + "\n"))
    files = {f"export_events/event_EXPORT_{k}.log": "".join(t for _, t in sorted(v)) for k, v in lines.items()}
    files["gcs_server.out"] = (
        f"[2026-11-20 10:00:01,342 I 1998 1998] (gcs_server) gcs_server_main.cc:98: Ray cluster "
        f"metadata ray_version={RAY_VERSION} ray_commit=b7f4259e\n"
    )
    return files


def node_files(plan: Plan, n: int) -> dict[str, str]:
    return {
        "raylet.out": f"[2026-11-20 10:00:02,783 I 2288 2288] (raylet) main.cc:711: Setting node ID "
        f"node_id={plan.node_ids[n].hex()}\n"
    }


def node_record(plan: Plan, n: int) -> NodeRecord:
    return NodeRecord(
        node_id=plan.node_ids[n].hex(),
        is_head=n == 0,
        ip=plan.ips[n],
        hostname=f"{plan.ref.cluster}-{'head' if n == 0 else f'worker-{n}'}",
        session_dir=f"/tmp/ray/{plan.ref.session}",
        ray_version=RAY_VERSION,
        start_ms=plan.start_ns // MS,
        end_ms=plan.end_ns // MS + 2000,
    )
