"""A synthetic archived Ray session of N task attempts, written straight into an archive as collectors would.

    python -m benchmarks.synthetic_session --tasks 100000 --archive DIR [--seed 1] [--nodes 8] [--workers-per-node 16]

The keys and documents follow archive/FORMAT.md (built with archive.layout, archive.manifest and archive.logs), and
the bytes follow what Ray 2.60 writes (compare a real run's logs/export_events/): a task's owner (its driver, or the
worker running its parent) writes the definition and state changes to its event_EXPORT_TASK_<pid>.log, one line per
1 s flush; the executing worker writes RUNNING, its log offsets and profile events to its own file and
:task_name: markers to its worker-*.out/.err; the head's GCS writes node, actor and driver-job events, the job
manager submission-job events. Files are cut into gzip segments of a few MB at arbitrary byte offsets, as the
collector ships them. The same arguments always give the same bytes.
"""

from __future__ import annotations

import argparse
import base64
import calendar
import heapq
import json
import multiprocessing
import os
import random
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from archive import logs as segments
from archive.layout import LogSegment, NodeRef, SessionRef
from archive.manifest import ENDED, NodeRecord, SessionManifest, end_marker
from archive.storage import Store, open_store

RAY_VERSION = "2.60.0"
SEC, MS, US = 1_000_000_000, 1_000_000, 1_000
PROFILE_CAP = 1000  # Ray's task_events_max_num_profile_events_per_task: a task's later profile events are dropped
NORMAL, ACTOR_TASK, CREATION, DRIVER = 0, 1, 2, 3
TYPE_NAMES = ("NORMAL_TASK", "ACTOR_TASK", "ACTOR_CREATION_TASK", "DRIVER_TASK")
OWN_ALL, OWN_FIRST, OWN_REST, EXEC, DRV_START, DRV_PROFILE, DRV_END = range(7)
CODE_ORDER = {1: 0, 11: 1, 12: 2, 2: 3, 5: 4, 8: 5}  # protobuf's JSON sorts map keys as strings
ACTORS_PER_JOB = 4
FAIL_RATE = 0.05


@dataclass(frozen=True)
class JobSpec:
    number: int
    kind: str  # "driver", "submission", or "internal" (the dashboard's own driver: owns the JobSupervisor actors)
    entrypoint: str = ""
    share: float = 0.0
    funcs: tuple[str, ...] = ()
    actor_class: str = ""
    methods: tuple[str, ...] = ()
    submission_id: str = ""
    succeeds: bool = True

    @property
    def id(self) -> bytes:
        return self.number.to_bytes(4, "little")


JOBS = (
    JobSpec(
        1,
        "driver",
        "python train.py --epochs 3",
        0.40,
        ("load_shard", "preprocess", "train_step"),
        "ParameterServer",
        ("apply_gradients", "get_weights"),
    ),
    JobSpec(2, "internal"),
    JobSpec(
        3,
        "submission",
        "python etl.py --date 2026-11-19",
        0.25,
        ("extract", "transform", "load"),
        "Writer",
        ("write",),
        "etl_2026_11_19",
    ),
    JobSpec(
        4,
        "submission",
        "python etl.py --date 2026-11-20",
        0.10,
        ("extract", "transform", "load"),
        "Writer",
        ("write",),
        "etl_2026_11_20",
        succeeds=False,
    ),
    JobSpec(5, "driver", "python evaluate.py", 0.25, ("score", "aggregate"), "Evaluator", ("evaluate",)),
)
TASK_JOBS = [j for j, spec in enumerate(JOBS) if spec.share]


class Attempt(NamedTuple):
    task_id: bytes
    attempt: int
    job: int  # index into JOBS
    kind: int
    name: str
    parent: bytes
    actor: bytes | None
    owner: int  # index into procs: who writes the definition and state changes
    worker: int  # index into procs: who ran it
    t1: int  # PENDING_ARGS_AVAIL (ns); 0 for driver tasks
    t2: int  # PENDING_NODE_ASSIGNMENT
    t5: int  # SUBMITTED_TO_WORKER (0: not reported, as for actor creation tasks)
    t8: int  # RUNNING
    tend: int  # FINISHED or FAILED; 0: never reported
    failed: bool


@dataclass
class Proc:
    """A driver or worker process: it writes export_events/event_EXPORT_TASK_<pid>.log on its node."""

    node: int
    pid: int
    worker_id: bytes
    job: int
    actor_class: str = ""
    prestarted: bool = False
    entries: list[tuple[int, int, int, Any]] = field(default_factory=list)  # (flush second, ns, op, payload)


@dataclass
class Actor:
    actor_id: bytes
    job: int
    class_name: str
    name: str
    namespace: str
    node: int
    pid: int
    owner: bytes  # the owner's worker id
    created_ns: int
    alive_ns: int = 0
    dead_ns: int = 0
    broken: bool = False
    free_ns: int = 0


@dataclass
class Plan:
    tasks: int
    seed: int
    ref: SessionRef
    start_ns: int
    node_ids: list[bytes]
    ips: list[str]
    procs: list[Proc] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)
    actors: list[Actor] = field(default_factory=list)
    drivers: dict[int, int] = field(default_factory=dict)  # job index -> proc index
    job_times: dict[int, tuple[int, int]] = field(default_factory=dict)  # job index -> (driver start, end) ns
    submitted_ns: dict[int, int] = field(default_factory=dict)
    end_ns: int = 0


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


# --- the plan: who runs what, when ----------------------------------------------------------------------------
def make_plan(
    tasks: int,
    seed: int,
    nodes: int = 8,
    workers_per_node: int = 16,
    namespace: str = "default",
    cluster: str = "synthetic",
) -> Plan:
    rng = random.Random(seed)
    fixed = len(JOBS) + ACTORS_PER_JOB * len(TASK_JOBS)  # driver tasks and actor creation tasks
    if tasks < fixed + 50 * len(TASK_JOBS):
        raise ValueError(f"--tasks must be at least {fixed + 50 * len(TASK_JOBS)}")
    start_ms = calendar.timegm((2026, 11, 20, 10, 0, 0)) * 1000
    session = f"session_2026-11-20_10-00-00_{seed % 10**6:06d}_{tasks}"
    plan = Plan(
        tasks,
        seed,
        SessionRef(namespace, cluster, session),
        start_ms * MS,
        [rng.randbytes(28) for _ in range(nodes)],
        [f"10.244.{n}.{11 + n}" for n in range(nodes)],
    )
    pids = [2000 + rng.randrange(500) for _ in range(nodes)]

    def new_proc(node: int, job: int, worker_id: bytes | None = None, **kw: Any) -> int:
        pids[node] += rng.randrange(1, 40)
        plan.procs.append(Proc(node, pids[node], worker_id or rng.randbytes(28), job, **kw))
        return len(plan.procs) - 1

    for j, spec in enumerate(JOBS):
        plan.drivers[j] = new_proc(0, j, spec.id + b"\xff" * 24)
    job_workers = {j: [] for j in TASK_JOBS}
    for n in range(nodes):
        for k in range(workers_per_node):
            j = TASK_JOBS[k % len(TASK_JOBS)]
            job_workers[j].append(new_proc(n, j, prestarted=k == 0))
    rest = tasks - fixed
    budgets = [int(rest * JOBS[j].share / sum(JOBS[i].share for i in TASK_JOBS)) for j in TASK_JOBS]
    budgets[0] += rest - sum(budgets)
    for order, (j, budget) in enumerate(zip(TASK_JOBS, budgets)):
        _plan_job(plan, rng, j, order, budget, job_workers[j], new_proc)
    _plan_internal_driver(plan)
    plan.end_ns = max(end for _, end in plan.job_times.values()) + 3 * SEC
    return plan


def _plan_job(plan: Plan, rng: random.Random, j: int, order: int, budget: int, workers: list[int], new_proc) -> None:
    spec, drv = JOBS[j], plan.drivers[j]
    driver_task = b"\xff" * 20 + spec.id
    start = plan.start_ns + (6 + 2 * order) * SEC + rng.randrange(SEC)
    if spec.kind == "submission":
        plan.submitted_ns[j] = start - 2 * SEC
    add = plan.attempts.append
    actors = []
    for a in range(ACTORS_PER_JOB):
        node = (order * ACTORS_PER_JOB + a) % len(plan.node_ids)
        proc = new_proc(node, j, actor_class=spec.actor_class)
        actor = Actor(
            rng.randbytes(12) + spec.id,
            j,
            spec.actor_class,
            f"{spec.actor_class.lower()}_{a}",
            "bench",
            node,
            plan.procs[proc].pid,
            plan.procs[drv].worker_id,
            start + 200 * MS + a * MS,
            broken=not spec.succeeds and a == 0,
        )
        t1 = actor.created_ns
        t8 = t1 + rng.randrange(800, 1500) * MS
        actor.alive_ns = actor.free_ns = t8 + 40 * MS
        add(
            Attempt(
                b"\xff" * 8 + actor.actor_id,
                0,
                j,
                CREATION,
                f"{spec.actor_class}.__init__",
                driver_task,
                actor.actor_id,
                drv,
                proc,
                t1,
                t1 + 80 * US,
                0,
                t8,
                actor.alive_ns,
                actor.broken,
            )
        )
        actor.dead_ns = actor.alive_ns + 5 * MS if actor.broken else 0
        actors.append((actor, proc))
        plan.actors.append(actor)
    live = [(a, p) for a, p in actors if not a.broken]
    heap = [(start, w) for w in workers]
    heapq.heapify(heap)
    clock, interval = start + 500 * MS, 250 * MS // len(workers)  # below capacity: queues stay short
    top: Attempt | None = None
    count = 0
    while count < budget:
        clock += interval // 2 + rng.randrange(interval + 1)
        if rng.random() < 0.2:
            actor, proc = live[rng.randrange(len(live))]
            t1 = max(clock, actor.alive_ns)
            t2 = t1 + rng.randrange(40, 200) * US
            t5 = max(t2 + 50 * US, actor.free_ns)
            t8 = t5 + rng.randrange(200, 900) * US
            tend = t8 + rng.randrange(5, 60) * MS
            actor.free_ns = tend + 100 * US
            method = spec.methods[rng.randrange(len(spec.methods))]
            add(
                Attempt(
                    rng.randbytes(8) + actor.actor_id,
                    0,
                    j,
                    ACTOR_TASK,
                    f"{spec.actor_class}.{method}",
                    driver_task,
                    actor.actor_id,
                    drv,
                    proc,
                    t1,
                    t2,
                    t5,
                    t8,
                    tend,
                    rng.random() < FAIL_RATE,
                )
            )
            count += 1
            continue
        nested = top is not None and rng.random() < 0.1
        parent, owner = (top.task_id, top.worker) if nested else (driver_task, drv)
        created = top.t8 + (top.tend - top.t8) // 2 if nested else clock
        task_id, attempt = rng.randbytes(8) + b"\xff" * 12 + spec.id, 0
        name = spec.funcs[rng.randrange(len(spec.funcs))]
        while count < budget:
            free, w = heapq.heappop(heap)
            t2 = created + rng.randrange(50, 300) * US
            t5 = max(t2 + 100 * US, free)
            t8 = t5 + rng.randrange(200, 900) * US
            tend = t8 + rng.randrange(20, 400) * MS
            heapq.heappush(heap, (tend + 100 * US, w))
            failed = rng.random() < FAIL_RATE
            a = Attempt(task_id, attempt, j, NORMAL, name, parent, None, owner, w, created, t2, t5, t8, tend, failed)
            add(a)
            count += 1
            if not failed:
                if not nested:
                    top = a
                break
            if rng.random() < 0.5:
                break  # no retries left: the failure is final
            attempt, created = attempt + 1, tend + MS
    end = max(a.tend for a in plan.attempts if a.job == j) + 300 * MS
    plan.job_times[j] = (start, end)
    for actor, _ in actors:
        actor.dead_ns = actor.dead_ns or end + 100 * MS
    add(Attempt(driver_task, 0, j, DRIVER, "", b"\xff" * 24, None, drv, drv, 0, 0, 0, start, end, False))


def _plan_internal_driver(plan: Plan) -> None:
    """The dashboard's driver: it submits the JobSupervisor actors and never reports an end (as in a real run)."""
    j = next(i for i, s in enumerate(JOBS) if s.kind == "internal")
    drv = plan.drivers[j]
    first = min(plan.submitted_ns.values())
    plan.job_times[j] = (first - SEC, first - SEC)
    for k, (job, submitted) in enumerate(sorted(plan.submitted_ns.items())):
        spec = JOBS[job]
        plan.actors.append(
            Actor(
                random.Random(plan.seed + k).randbytes(12) + JOBS[j].id,
                j,
                "JobSupervisor",
                f"_ray_internal_job_actor_{spec.submission_id}",
                "SUPERVISOR_ACTOR_RAY_NAMESPACE",
                0,
                plan.procs[plan.drivers[job]].pid - 3,
                plan.procs[drv].worker_id,
                submitted,
                alive_ns=submitted + SEC,
                dead_ns=plan.job_times[job][1] + 200 * MS,
            )
        )
    plan.attempts.append(
        Attempt(
            b"\xff" * 20 + JOBS[j].id, 0, j, DRIVER, "", b"\xff" * 24, None, drv, drv, 0, 0, 0, first - SEC, 0, False
        )
    )


def assign_lines(plan: Plan) -> None:
    """Which line of which file each event lands in, and at which 1 s flush."""
    submits: dict[int, list[int]] = {}
    for i, a in enumerate(plan.attempts):
        if a.kind == DRIVER:
            procs = plan.procs[a.owner].entries
            procs.append((a.t8 // SEC + 1, a.t8, DRV_START, i))
            if a.tend:
                procs.append((a.tend // SEC + 1, a.tend, DRV_END, i))
            continue
        if a.owner in plan.drivers.values() and a.attempt == 0:
            submits.setdefault(a.owner, []).append(a.t1)
        first = a.t1 // SEC + 1
        own = plan.procs[a.owner].entries
        if a.tend < first * SEC:
            own.append((first, a.tend, OWN_ALL, i))
        else:
            own.append((first, a.t1, OWN_FIRST, i))
            own.append((a.tend // SEC + 1, a.tend, OWN_REST, i))
        plan.procs[a.worker].entries.append((a.tend // SEC + 1, a.tend, EXEC, i))
    internal = plan.drivers[next(i for i, s in enumerate(JOBS) if s.kind == "internal")]
    for first in plan.submitted_ns.values():  # the dashboard's driver creates each JobSupervisor and calls it
        submits.setdefault(internal, []).extend([first, first + 2 * MS, first + 900 * MS])
    for p, times in submits.items():
        batches: dict[int, list[int]] = {}
        for t in sorted(times)[:PROFILE_CAP]:
            batches.setdefault(t // SEC + 1, []).append(t)
        for sec, batch in sorted(batches.items()):
            plan.procs[p].entries.append((sec, batch[0], DRV_PROFILE, batch))


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


_PLAN: Plan
_STORE_URL = ""
_SEGMENT_BYTES = 4 << 20
_PROGRESS: Any = None


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


# --- the whole session ----------------------------------------------------------------------------------------
def summary(plan: Plan) -> dict[str, Any]:
    """What a reader of this session must find: the counts the smoke test and the benchmark check."""
    return {
        "session_id": plan.ref.id,
        "tasks": len(plan.attempts),
        "failed_tasks": sum(1 for a in plan.attempts if a.failed),
        "driver_tasks": sum(1 for a in plan.attempts if a.kind == DRIVER),
        "jobs": sum(1 for s in JOBS if s.kind != "internal"),
        "nodes": len(plan.node_ids),
        "actors": len(plan.actors),
    }


def generate(
    archive: str,
    tasks: int,
    seed: int = 1,
    nodes: int = 8,
    workers_per_node: int = 16,
    segment_mb: float = 4.0,
    procs: int | None = None,
    log: Any = None,
) -> dict[str, Any]:
    """Write the session into the archive (unless it is already there, complete) and return its summary."""
    global _PLAN, _STORE_URL, _SEGMENT_BYTES, _PROGRESS
    say = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    started = time.monotonic()
    plan = make_plan(tasks, seed, nodes, workers_per_node)
    info = summary(plan)
    store = open_store(archive)
    if store.exists(plan.ref.ended_key):
        say(f"{plan.ref.id} is already in {store.url}; not rewritten")
        return {**info, "written": False}
    assign_lines(plan)
    say(
        f"planned {len(plan.attempts):,} task attempts on {nodes} nodes, {len(plan.procs)} processes "
        f"in {time.monotonic() - started:.1f}s"
    )
    ctx = multiprocessing.get_context("fork")  # the children share the plan instead of pickling it
    _PLAN, _STORE_URL, _SEGMENT_BYTES, _PROGRESS = plan, store.url, int(segment_mb * (1 << 20)), ctx.Value("q", 0)
    order = sorted(range(len(plan.procs)), key=lambda i: -len(plan.procs[i].entries))
    done = threading.Event()

    def report() -> None:
        while not done.wait(2.0):
            say(f"  {_PROGRESS.value / 1e6:,.0f} MB of export events written ({time.monotonic() - started:.0f}s)")

    threading.Thread(target=report, daemon=True).start()
    total_bytes = total_segs = 0
    try:
        with ctx.Pool(procs or min(os.cpu_count() or 1, 4)) as pool:
            for size, segs in pool.imap_unordered(render_proc, order):
                total_bytes, total_segs = total_bytes + size, total_segs + segs
    finally:
        done.set()
        _PLAN = _PROGRESS = None  # type: ignore[assignment]  # a caller that goes on should not carry the plan
    for n in range(nodes):
        node = plan.ref.node(plan.node_ids[n].hex())
        files = {**(head_files(plan) if n == 0 else {}), **node_files(plan, n)}
        for path, text in files.items():
            w = SegmentWriter(store, node, path, _SEGMENT_BYTES)
            w.write(text.encode())
            total_bytes, total_segs = total_bytes + w.close(), total_segs + w.segments
    end_ms = plan.end_ns // MS + 2000
    for n in range(nodes):  # each node's collector: its record, then its end marker
        node = plan.ref.node(plan.node_ids[n].hex())
        store.put(node.node_key, node_record(plan, n).to_json())
        store.put(node.ended_key, end_marker(end_ms, "signal:SIGTERM"))
    manifest = SessionManifest(
        namespace=plan.ref.namespace,
        cluster=plan.ref.cluster,
        session_name=plan.ref.session,
        ray_version=RAY_VERSION,
        start_ms=plan.start_ns // MS,
        end_ms=end_ms,
        status=ENDED,
        ended_by="signal:SIGTERM",
        nodes=[node_record(plan, 0)],
    )
    store.put(plan.ref.manifest_key, manifest.to_json())
    store.put(plan.ref.index_key, manifest.to_json())
    store.put(plan.ref.ended_key, end_marker(end_ms, "signal:SIGTERM"))  # last: the session is complete
    seconds = time.monotonic() - started
    say(f"wrote {plan.ref.id}: {total_bytes / 1e6:,.0f} MB in {total_segs:,} segments in {seconds:.1f}s")
    return {**info, "written": True, "bytes": total_bytes, "segments": total_segs, "seconds": round(seconds, 1)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.synthetic_session", description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", type=int, required=True, help="task attempts in the session (driver tasks included)")
    p.add_argument("--archive", required=True, help="archive: a directory (or file://, s3://)")
    p.add_argument("--seed", type=int, default=1, help="same seed, same bytes")
    p.add_argument("--nodes", type=int, default=8)
    p.add_argument("--workers-per-node", type=int, default=16)
    p.add_argument("--segment-mb", type=float, default=4.0, help="size of the archived segments")
    p.add_argument("--procs", type=int, default=None, help="processes that render files (default: CPUs, at most 4)")
    args = p.parse_args(argv)
    try:
        info = generate(
            args.archive, args.tasks, args.seed, args.nodes, args.workers_per_node, args.segment_mb, args.procs
        )
    except ValueError as e:
        p.error(str(e))
    print(json.dumps(info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
