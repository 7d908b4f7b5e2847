"""The plan of a synthetic session (benchmarks/synthetic_session.py): its jobs, processes, actors and task
attempts, who runs what and when, and which lines each process writes. Deterministic in its seed."""

from __future__ import annotations

import base64
import calendar
import heapq
import random
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from archive.layout import SessionRef

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
