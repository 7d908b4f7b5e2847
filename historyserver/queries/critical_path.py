"""The critical path of a job: the chain of task attempts that decided when the job finished.

What Ray records, and so what the path can be made of (per attempt, in the task_timeline table): the task that
submitted it (`parent_task_id`: its owner, the driver for top-level tasks), its attempt number, and the first time
of each state, set by its owner's TaskManager (src/ray/core_worker/task_manager.cc) unless said otherwise:
- created (PENDING_ARGS_AVAIL): the owner submitted it (AddPendingTask);
- arguments ready (PENDING_NODE_ASSIGNMENT): the owner's dependency resolver had every argument
  (MarkDependenciesResolved); an argument made by another task is ready when that task's result reached the
  owner, which is when the owner marks that task FINISHED;
- on a worker (SUBMITTED_TO_WORKER), running (RUNNING, recorded by the executing worker), ended (FINISHED/FAILED).
Ray does not record which object a task waited for, so the data dependency is inferred from those times.

The rule. Start from the job's attempt that ended last. For the current attempt X, its predecessor is:
1. retry: the previous attempt of the same task, when X is a retry (attempt > 0): X began when that one failed;
2. argument: else the sibling (another task submitted by X's parent) that ended last while X waited for its
   arguments, between X's creation and its arguments being ready: the result X most plausibly waited for;
3. submitted: else X's parent, when the parent is a task of the job: X could not start before its parent
   submitted it, so the parent is on the path up to X's creation (its step ends there, not at its own end);
4. else X is the first step (submitted by the driver, or by a task outside the job).
Each step says how long it waited (from its predecessor's end, or its parent's submission, or its own creation for
the first step, to its start) and how long it ran (from its start to its own end, or to the creation of the next
step when that step is its child). Waits and runs add up to the path's span: from the first step's creation to the
job's last end. Siblings that ended before X was created are not taken as predecessors: a parent submitting in a
loop would otherwise chain unrelated tasks (the parent's ray.get calls, which would tell, are not in these tables).

Bounded: the job's attempts are read once as numbers (task ids hashed to 64 bits), 56 bytes each, sorted
twice with numpy, and walked with binary searches; a job of more than MAX_ATTEMPTS attempts is refused, and at most
MAX_STEPS steps are listed (the walk stops there and says so).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from historyserver.errors import EntityNotFound, TooLarge
from historyserver.queries.session_db import SessionDB

MAX_ATTEMPTS = 3_000_000  # ~300 MB at this many (~100 MB per million measured): the most one answer reads
MAX_STEPS = 10_000
TABLE = "task_timeline"
DRIVER_PREFIX = "f" * 40  # a driver task's hex id: nil unique bytes, then the job id (TaskID::ForDriverTask)
VIA = {
    "retry": "retry of the previous attempt, which failed",
    "argument": "waited for the previous step's result (an argument)",
    "submitted": "submitted by the previous step (its parent)",
    "first": "the first step",
}


def default_job(db: SessionDB) -> str | None:
    """The job whose attempt ended last: the one a session's timeline most likely asks about."""
    row = db.query(f"SELECT job_id FROM {TABLE} WHERE job_id IS NOT NULL ORDER BY to_ms DESC LIMIT 1")
    return row[0][0] if row else None


def critical_path(db: SessionDB, job_id: str | None = None) -> dict[str, Any]:
    """The answer of GET /api/v1/sessions/{id}/timeline/critical_path (times in epoch ms), memoized per job."""
    job = job_id or default_job(db)
    if job is None:
        raise EntityNotFound("this session has no task attempts, so no job has a critical path")
    key = "critical-path " + job.lower()
    answer: dict[str, Any] = db.memo(key, lambda: _compute(db, job))
    return answer


def _compute(db: SessionDB, job: str) -> dict[str, Any]:
    n = db.query(f"SELECT count(*) FROM {TABLE} WHERE lower(job_id) = lower(?)", [job])[0][0]
    if n == 0:
        jobs = [r[0] for r in db.query(f"SELECT DISTINCT job_id FROM {TABLE} WHERE job_id IS NOT NULL ORDER BY 1")]
        raise EntityNotFound(
            f"job {job!r} has no task attempts in this session; jobs with tasks: {', '.join(jobs) or 'none'}"
        )
    if n > MAX_ATTEMPTS:
        raise TooLarge(
            f"job {job} has {n:,} task attempts; the critical path reads at most {MAX_ATTEMPTS:,} (it would need "
            "more memory than one request may use)"
        )
    cols = db.arrays(
        f"""SELECT hash(task_id) AS t, attempt_number::INTEGER AS a, hash(coalesce(parent_task_id, '')) AS p,
                   from_ms AS c,
                   greatest(from_ms, coalesce(pending_node_time_ms, submitted_time_ms, start_time_ms, to_ms)) AS r,
                   greatest(from_ms, coalesce(start_time_ms, to_ms)) AS s, to_ms AS e
            FROM {TABLE} WHERE lower(job_id) = lower(?)""",
        [job],
    )
    t, a, p = (np.asarray(cols[k], np.uint64 if k != "a" else np.int32) for k in ("t", "a", "p"))
    c, r, s, e = (np.asarray(cols[k], np.float64) for k in ("c", "r", "s", "e"))
    del cols
    walk, truncated = _walk(t, a, p, c, r, s, e)
    steps = _describe(db, job, walk, t, a, c, r, s, e)
    job_start, job_end = float(c.min()), float(e.max())
    return {
        "job_id": job,
        "attempts": int(n),
        "job_start": job_start,
        "job_end": job_end,
        "start": steps[0]["ready_ms"] if steps else None,
        "end": steps[-1]["until_ms"] if steps else None,
        "wait_ms": sum(st["wait_ms"] for st in steps),
        "run_ms": sum(st["run_ms"] for st in steps),
        "truncated": truncated,
        "limits": {"attempts": MAX_ATTEMPTS, "steps": MAX_STEPS},
        "via": VIA,
        "steps": steps,
    }


def _walk(
    t: np.ndarray, a: np.ndarray, p: np.ndarray, c: np.ndarray, r: np.ndarray, s: np.ndarray, e: np.ndarray
) -> tuple[list[tuple[int, str, float]], bool]:
    """The path from its first step to the job's last attempt: (row, via, until) each, and whether it was cut."""
    by_task = np.lexsort((a, t))  # attempts of a task together, in attempt order
    t_sorted = t[by_task]
    by_parent = np.lexsort((e, p))  # a parent's children together, by end
    p_sorted, e_by_parent = p[by_parent], e[by_parent]

    def attempts_of(task: np.uint64) -> np.ndarray:
        lo, hi = np.searchsorted(t_sorted, task, "left"), np.searchsorted(t_sorted, task, "right")
        return by_task[lo:hi]

    def last_sibling_ending_within(x: int, lo_ms: float, hi_ms: float) -> int | None:
        lo, hi = np.searchsorted(p_sorted, p[x], "left"), np.searchsorted(p_sorted, p[x], "right")
        j = lo + int(np.searchsorted(e_by_parent[lo:hi], hi_ms, "right")) - 1
        while j >= lo and e_by_parent[j] >= lo_ms:
            k = int(by_parent[j])
            if t[k] != t[x]:
                return k
            j -= 1
        return None

    x = int(np.lexsort((c, e))[-1])  # the last to end (of those, the last created)
    until = float(e[x])
    path: list[tuple[int, str, float]] = []
    seen: set[int] = set()
    while len(path) < MAX_STEPS:
        seen.add(x)
        pred: int | None = None
        via = "first"
        if a[x] > 0:
            earlier = [int(k) for k in attempts_of(t[x]) if a[k] < a[x]]
            if earlier:
                pred, via = earlier[-1], "retry"
        if pred is None:
            pred = last_sibling_ending_within(x, c[x], r[x])
            via = "argument" if pred is not None else via
        if pred is None:
            parents = attempts_of(p[x])
            if len(parents):
                running = [int(k) for k in parents if s[k] <= c[x]]
                pred, via = (running[-1] if running else int(parents[-1])), "submitted"
        path.append((x, via, until))
        if pred is None or pred in seen:
            path.reverse()
            return path, False
        until = float(c[x]) if via == "submitted" else float(e[pred])
        x = pred
    path.reverse()
    return path, True


def _describe(
    db: SessionDB,
    job: str,
    walk: list[tuple[int, str, float]],
    t: np.ndarray,
    a: np.ndarray,
    c: np.ndarray,
    r: np.ndarray,
    s: np.ndarray,
    e: np.ndarray,
) -> list[dict[str, Any]]:
    """Each step with its task's facts (read for the path's tasks only) and its wait and run."""
    wanted = sorted({int(t[i]) for i, _, _ in walk})
    created = sorted({float(c[i]) for i, _, _ in walk})
    facts: dict[tuple[int, int], tuple[Any, ...]] = {}
    if wanted:
        # By creation time first: the table is sorted by it, so only the row groups holding the steps are read.
        for row in db.query(
            f"""SELECT hash(task_id), attempt_number, task_id, name, func_or_class_name, state, unfinished, node_id,
                       worker_id, worker_pid, lane, node_rank, parent_task_id, actor_id, error_type
                FROM {TABLE} WHERE from_ms IN (SELECT unnest(?::DOUBLE[])) AND lower(job_id) = lower(?)
                                   AND hash(task_id) IN (SELECT unnest(?::UBIGINT[]))""",
            [created, job, wanted],
        ):
            facts[(int(row[0]), int(row[1]))] = row[2:]
    steps = []
    ready = None
    for i, via, until in walk:
        f = facts.get((int(t[i]), int(a[i])), (None,) * 13)
        start = float(s[i])
        # The first step waited from its creation; each later one from when its predecessor released it.
        ready = float(c[i]) if ready is None else ready
        steps.append(
            {
                "task_id": f[0],
                "attempt": int(a[i]),
                "name": f[1],
                "function": f[2],
                "state": f[3],
                "unfinished": f[4],
                "node_id": f[5],
                "worker_id": f[6],
                "pid": f[7],
                "lane": f[8],
                "node_rank": f[9],
                "parent_task_id": f[10],
                "actor_id": f[11],
                "error_type": f[12],
                "via": via,
                "ready_ms": ready,
                "created_ms": float(c[i]),
                "args_ready_ms": float(r[i]),
                "start_ms": start,
                "until_ms": until,
                "end_ms": float(e[i]),
                "wait_ms": max(0.0, start - ready),
                "run_ms": max(0.0, until - start),
            }
        )
        ready = until
    return steps
