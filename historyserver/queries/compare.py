"""Two sessions side by side: per function and per phase, how many task attempts, their total time, p50 and p95.

The phases are the timeline's (timeline_view.PHASES): each runs from its state time to the next one Ray recorded
(waiting for arguments, waiting for a node, on the worker, running), plus the whole attempt (created to ended).
Functions are ordered by the biggest difference first: the absolute change in their attempts' total time, which a
slower function and a function run more often both show. Driver tasks are left out (the timeline's table).
Optionally both sides are scoped to the jobs of one entrypoint (a job name present in both sessions).

Bounded: one grouped pass over each session's task_timeline table (exact quantiles, within the connection's memory
limit), at most MAX_FUNCTIONS functions per side (those with the most total time), memoized per session and scope.
"""

from __future__ import annotations

from typing import Any

from historyserver.errors import BadRequest
from historyserver.queries.session_db import SessionDB

MAX_FUNCTIONS = 300
TABLE = "task_timeline"
WHOLE = "whole attempt"
# (name, its duration from the table's columns): each phase ends at the next time Ray recorded.
PHASES = (
    (
        "waiting for arguments",
        "coalesce(pending_node_time_ms, submitted_time_ms, start_time_ms, to_ms) - creation_time_ms",
    ),
    ("waiting for a node", "coalesce(submitted_time_ms, start_time_ms, to_ms) - pending_node_time_ms"),
    ("on the worker", "coalesce(start_time_ms, to_ms) - submitted_time_ms"),
    ("running", "to_ms - start_time_ms"),
    (WHOLE, "to_ms - from_ms"),
)
ALL = "(all functions)"


def job_entrypoints(db: SessionDB) -> dict[str, list[str]]:
    """Each entrypoint (the job's command, or its submission id when it has none) -> its job ids."""
    out: dict[str, list[str]] = {}
    for job in db.jobs():
        name = job.get("entrypoint") or job.get("submission_id") or ""
        if name and job.get("job_id"):
            out.setdefault(name, []).append(job["job_id"])
    return out


def function_stats(db: SessionDB, jobs: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """Per function (and ALL): {count, failed, phases: {phase: {count, total_ms, p50_ms, p95_ms}}}."""
    key = "compare-stats " + repr(sorted(jobs) if jobs is not None else None)
    found: dict[str, dict[str, Any]] = db.memo(key, lambda: _stats(db, jobs))
    return found


def _stats(db: SessionDB, jobs: list[str] | None) -> dict[str, dict[str, Any]]:
    where, params = "TRUE", []
    if jobs is not None:
        where = f"lower(job_id) IN ({', '.join('?' * len(jobs))})" if jobs else "FALSE"
        params = [j.lower() for j in jobs]
    durations = ", ".join(f"greatest(0, {expr}) AS d{i}" for i, (_, expr) in enumerate(PHASES))
    aggs = ", ".join(
        f"count(d{i}), coalesce(sum(d{i}), 0), quantile_cont(d{i}, 0.5), quantile_cont(d{i}, 0.95)"
        for i in range(len(PHASES))
    )
    last = len(PHASES) - 1
    rows = db.query(
        f"""
        WITH a AS (SELECT coalesce(func_or_class_name, name, '') AS f, state, {durations} FROM {TABLE} WHERE {where})
        SELECT f, grouping(f) AS whole, count(*), count(*) FILTER (WHERE state = 'FAILED'), {aggs}
        FROM a GROUP BY GROUPING SETS ((f), ())
        ORDER BY whole DESC, sum(d{last}) DESC NULLS LAST, f LIMIT {MAX_FUNCTIONS + 1}
        """,
        params,
    )
    out: dict[str, dict[str, Any]] = {}
    for row in rows:
        f, whole, n, failed, *values = row
        phases = {}
        for i, (name, _) in enumerate(PHASES):
            count, total, p50, p95 = values[4 * i : 4 * i + 4]
            phases[name] = {"count": count, "total_ms": float(total), "p50_ms": p50, "p95_ms": p95}
        out[ALL if whole else f] = {"count": n, "failed": failed, "phases": phases}
    return out


def _scope(db: SessionDB, side: str, entrypoint: str | None) -> list[str] | None:
    if entrypoint is None:
        return None
    known = job_entrypoints(db)
    if entrypoint not in known:
        raise BadRequest(
            f"session {side} has no job with entrypoint {entrypoint!r}; its entrypoints: "
            + (", ".join(repr(k) for k in sorted(known)) or "none")
        )
    return known[entrypoint]


def compare(
    a: SessionDB, b: SessionDB, a_summary: dict[str, Any], b_summary: dict[str, Any], entrypoint: str | None = None
) -> dict[str, Any]:
    """The answer of GET /api/v1/compare: the two sessions, the entrypoints both have, and the rows."""
    sa, sb = function_stats(a, _scope(a, "a", entrypoint)), function_stats(b, _scope(b, "b", entrypoint))
    names = (set(sa) | set(sb)) - {ALL}

    def total(stats: dict[str, Any] | None) -> float:
        return stats["phases"][WHOLE]["total_ms"] if stats else 0.0

    rows = [
        {"function": f, "a": sa.get(f), "b": sb.get(f), "delta_ms": total(sb.get(f)) - total(sa.get(f))} for f in names
    ]
    rows.sort(key=lambda r: (-abs(r["delta_ms"]), r["function"]))
    common = sorted(set(job_entrypoints(a)) & set(job_entrypoints(b)))
    return {
        "a": a_summary,
        "b": b_summary,
        "entrypoint": entrypoint,
        "common_entrypoints": common,
        "phases": [name for name, _ in PHASES],
        "all": {
            "function": ALL,
            "a": sa.get(ALL),
            "b": sb.get(ALL),
            "delta_ms": total(sb.get(ALL)) - total(sa.get(ALL)),
        },
        "functions": rows,
        "limits": {"functions": MAX_FUNCTIONS},
    }
