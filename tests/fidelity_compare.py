"""The fidelity harness's comparison: Ray's live answers against the archive's, field by field (issue 12).

Every answer is first normalized into a tree whose lists of records are keyed by the record's id (tasks by
`task_id#attempt`, actors, nodes, jobs, placement groups, events, lineage groups), so that a difference names
the record and the field, and order counts only where Ray defines it (task ids, sorted). The trees are flattened
to `path -> leaf` and compared. What may differ is listed once, with the reasons, in tests/fidelity_rules.py;
everything else must be equal.
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tests.fidelity_rules import (
    ACTOR_ROUTES,
    END_OF_LIFE,
    END_SLACK_MS,
    JOB_END_SLACK_MS,
    KNOWN_GAPS,
    LIVE_ONLY,
    PROMETHEUS_ONLY_SERIES,
    RECORDS,
    SAMPLED_METRICS,
    SERIES_GAPS,
    TASK_ROUTES,
    TERMINAL,
    WORKER_DIED,
    WORKER_DIED_FIELDS,
    Rule,
)

__all__ = ["PROMETHEUS_ONLY_SERIES", "SERIES_GAPS", "Rule"]  # re-exported for the tests

# --- normalization ------------------------------------------------------------------------------------------------


def _keyed(items: list, key) -> dict:
    out: dict[str, Any] = {}
    for item in items:
        k = str(key(item))
        while k in out:  # a duplicate is a difference of its own: keep both
            k += "+"
        out[k] = item
    return out


def _lineage(groups: list) -> dict:
    return {
        str(g.get("key")): {**g, "children": _lineage(g.get("children") or [])} for g in groups if isinstance(g, dict)
    }


def _profile(events: list) -> list:
    """Profile events in a stable order (Ray lists them in arrival order, the archive by start)."""
    return sorted(events, key=lambda e: (e.get("event_name") or "", e.get("start_time") or 0))


def normalize(route: str, body: Any) -> Any:
    """Ray's answer with its record lists keyed by id (see the module docstring)."""
    if not isinstance(body, (dict, list)):
        return body
    if route.startswith("api/v0/tasks?"):
        result = body["data"]["result"]
        tasks = {}
        for t in result.get("result") or []:
            t = dict(t)
            if isinstance(t.get("profiling_data"), dict) and t["profiling_data"].get("events") is not None:
                t["profiling_data"] = {**t["profiling_data"], "events": _profile(t["profiling_data"]["events"])}
            tasks[f"{t['task_id']}#{t.get('attempt_number')}"] = t
        return {**body, "data": {**body["data"], "result": {**result, "result": tasks}}}
    if route.startswith("api/v0/tasks/summarize") and "summary_by=lineage" in route:
        cluster = body["data"]["result"]["result"]["node_id_to_summary"]["cluster"]
        return {**body, "lineage": _lineage(cluster["summary"]), "data": {**body["data"], "result": None}}
    if route == "api/jobs/":
        return _keyed(body, lambda j: j.get("submission_id") or j.get("job_id"))
    if route.startswith("api/v0/nodes") or route.startswith("api/v0/placement_groups"):
        key = "node_id" if "nodes" in route else "placement_group_id"
        result = body["data"]["result"]
        return {
            **body,
            "data": {**body["data"], "result": {**result, "result": _keyed(result["result"], lambda r: r[key])}},
        }
    if route.startswith("nodes?view=summary"):
        return {
            **body,
            "data": {**body["data"], "summary": _keyed(body["data"]["summary"], lambda n: n["raylet"]["nodeId"])},
        }
    if route.startswith("api/v0/logs?"):
        result = body["data"]["result"]
        return {
            **body,
            "data": {**body["data"], "result": {c: {f: True for f in files} for c, files in result.items()}},
        }
    if route == "events":
        events = body["data"]["events"]
        return {**body, "data": {"events": {j: _keyed(es, lambda e: e["eventId"]) for j, es in events.items()}}}
    return body


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """`path -> leaf`; an empty dict or list is a leaf of its own (`{}` / `[]`)."""
    if isinstance(tree, dict) and tree:
        out: dict[str, Any] = {}
        for k, v in tree.items():
            out.update(flatten(v, f"{prefix}/{k}" if prefix else str(k)))
        return out
    if isinstance(tree, list) and tree:
        out = {}
        for i, v in enumerate(tree):
            out.update(flatten(v, f"{prefix}/{i}" if prefix else str(i)))
        return out
    return {prefix: tree}


# --- comparison ---------------------------------------------------------------------------------------------------

MISSING = "<absent>"


@dataclass(frozen=True)
class Difference:
    route: str
    path: str
    live: Any
    archived: Any

    def __str__(self) -> str:
        return f"{self.route}: {self.path}: live {_short(self.live)} != archived {_short(self.archived)}"


def _short(v: Any) -> str:
    s = repr(v)
    return s if len(s) <= 120 else s[:117] + "..."


@dataclass
class Context:
    """What the rules need to know about the run."""

    recorded_ms: float  # when the live answers were taken
    events: str | None = None  # the event path of the run ("files" or "http"), for path-specific rules
    # From the task lists (see `task_context`): names and ids of tasks not terminal at the recording (their
    # summary counts may shift when they end with the cluster), ids of tasks with several attempts, and how many
    # attempts Ray created after the recording (a retry of a task whose worker was killed at shutdown).
    unfinished: set[str] = field(default_factory=set)
    retried: set[str] = field(default_factory=set)
    late: int = 0
    used: set[Rule] = field(default_factory=set)  # the rules that excused a difference, for unused_rules


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, (int, float)) or isinstance(b, float) and isinstance(a, (int, float)):
        return a == b or (math.isnan(a) and math.isnan(b))
    return type(a) is type(b) and a == b if not isinstance(a, bool) and not isinstance(b, bool) else a is b


def _num(v: Any) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _records(route: str, live: dict[str, Any]) -> list[tuple[str, str, str, str | None]]:
    """(record path, kind, state field, end field) of every record of `route`, found in the flattened live answer."""
    out = []
    for routes, glob, kind, state, end in RECORDS:
        if not re.search(routes, route):
            continue
        for path in live:
            if not path.endswith("/" + state) and path != state:
                continue
            record = path[: -len(state)].rstrip("/")
            if fnmatch.fnmatchcase(record, glob) and record.count("/") == glob.count("/"):
                out.append((record, kind, state, end))
    return out


def _end_of_life(
    route: str, live: dict[str, Any], got: dict[str, Any], ctx: Context
) -> tuple[list[Difference], set[str]]:
    """Apply the END_OF_LIFE rule: (its own violations, the paths it excused)."""
    problems, excused = [], set()
    for record, kind, state_f, end_f in _records(route, live):

        def join(f: str, record: str = record) -> str:
            return f"{record}/{f}" if record else f

        state = live[join(state_f)]
        if state in TERMINAL[kind]:
            continue
        new = got.get(join(state_f), MISSING)
        if end_f is not None:
            # Kept or ended, it ended: not before the recording (when it was still going), and with an end.
            end = _num(got.get(join(end_f)))
            if not end or end < ctx.recorded_ms - 1000:
                problems.append(Difference(route, join(end_f), live.get(join(end_f)), got.get(join(end_f), MISSING)))
        if new != state and new not in TERMINAL[kind]:
            problems.append(Difference(route, join(state_f), state, new))
        for path in set(live) | set(got):
            if path.startswith(record) and any(fnmatch.fnmatchcase(path, join(f)) for f in END_OF_LIFE[kind]):
                excused.add(path)
    return problems, excused


def compare(route: str, live_body: Any, archived_body: Any, ctx: Context) -> list[Difference]:
    """Every difference between Ray's live answer and the archive's that no rule allows."""
    live = flatten(normalize(route, live_body))
    got = flatten(normalize(route, archived_body))
    problems, excused = _end_of_life(route, live, got, ctx)
    problems += _task_order(route, live_body, archived_body)
    for path in sorted(set(live) | set(got)):
        a, b = live.get(path, MISSING), got.get(path, MISSING)
        if path in excused or _same(a, b):
            continue
        if _time_to_the_second(route, path, a, b) or _job_end_stamp(route, path, a, b):
            continue
        if _changed_at_death(route, path, a, b, ctx):
            continue
        if _worker_died_gap(route, path, live):
            continue
        if a is MISSING and _archived_only_allowed(route, path, got, ctx):
            continue
        problems.append(Difference(route, path, a, b))
    kept = []
    for d in problems:
        rule = next((r for r in (*LIVE_ONLY, *KNOWN_GAPS) if r.matches(route, d.path, ctx.events)), None)
        if rule is None:
            kept.append(d)
        else:
            ctx.used.add(rule)
    return kept


def _worker_died_gap(route: str, path: str, live: dict[str, Any]) -> bool:
    if not re.search(TASK_ROUTES, route):
        return False
    m = re.match(r"(data/result/result/[^/]+)/(.*)", path)
    if m is None or not WORKER_DIED.match(str(live.get(f"{m.group(1)}/error_message") or "")):
        return False
    return any(fnmatch.fnmatchcase(m.group(2), f) for f in WORKER_DIED_FIELDS)


def _job_end_stamp(route: str, path: str, a: Any, b: Any) -> bool:
    if not re.search(TASK_ROUTES, route) or not (path.endswith("/end_time_ms") or path.endswith("/created_ms")):
        return False
    x, y = _num(a), _num(b)
    return x is not None and y is not None and abs(x - y) <= JOB_END_SLACK_MS


def _task_order(route: str, live_body: Any, archived_body: Any) -> list[Difference]:
    """Ray's task list is sorted by task id (a stable sort over the GCS's order, so a task's attempts come in the
    order their events reached the GCS, which differs from run to run): the same task ids in the same order."""
    if not route.startswith("api/v0/tasks?"):
        return []

    def keys(body: Any) -> list[str]:
        try:
            ids = [t["task_id"] for t in body["data"]["result"]["result"]]
        except (KeyError, TypeError):
            return []
        return [x for i, x in enumerate(ids) if i == 0 or ids[i - 1] != x]

    a, b = keys(live_body), keys(archived_body)
    if sorted(a) != sorted(b) or a == b:
        return []
    i = next(i for i, (x, y) in enumerate(zip(a, b)) if x != y)
    return [Difference(route, f"data/result/result (order, from position {i})", a[i : i + 2], b[i : i + 2])]


def _time_to_the_second(route: str, path: str, a: Any, b: Any) -> bool:
    """Actor times: export actor events carry seconds, so the archive has the live value truncated."""
    if not re.search(ACTOR_ROUTES, route) or not (path.endswith("Time") or path.endswith("timestamp")):
        return False
    x, y = _num(a), _num(b)
    return x is not None and y is not None and x > 0 and int(x // 1000) == int(y // 1000)


_COUNTS = re.compile(
    r"(^|/)(total|num_filtered|num_after_truncation|total_tasks|total_actor_tasks|total_actor_scheduled)$"
)


def _changed_at_death(route: str, path: str, a: Any, b: Any, ctx: Context) -> bool:
    """What the END_OF_LIFE rule implies beyond single records: summary counts of tasks that were not finished at
    the recording, totals grown by the attempts Ray created after it, and a retried task's lineage time stamp
    (Ray's TaskSummaries keeps the attempt it lists last, in the GCS's order, which is not defined)."""
    if not route.startswith("api/v0/tasks"):
        return False
    if _COUNTS.search(path):
        x, y = _num(a), _num(b)
        return x is not None and y is not None and 0 <= y - x <= ctx.late
    parts = path.split("/")
    if "state_counts" in parts and any(p in ctx.unfinished for p in parts):
        return True
    return "lineage" in parts and parts[-1] == "timestamp" and parts[-2] in ctx.retried


def task_context(live_tasks: list[dict], archived_tasks: list[dict], recorded_ms: float) -> dict[str, Any]:
    """Context fields from Ray's live task list and the archive's (both `data.result.result` of detail=1)."""
    terminal = TERMINAL["task"]
    unfinished = {t["task_id"] for t in live_tasks if t["state"] not in terminal}
    unfinished |= {t.get("name") or "" for t in live_tasks if t["state"] not in terminal}
    unfinished |= {t.get("func_or_class_name") or "" for t in live_tasks if t["state"] not in terminal}
    attempts: dict[str, int] = {}
    for t in (*live_tasks, *archived_tasks):
        attempts[t["task_id"]] = max(attempts.get(t["task_id"], 0), t["attempt_number"] + 1)
    seen = {(t["task_id"], t["attempt_number"]) for t in live_tasks}
    late = [
        t
        for t in archived_tasks
        if (t["task_id"], t["attempt_number"]) not in seen and (t.get("creation_time_ms") or 0) >= recorded_ms - 1000
    ]
    return {"unfinished": unfinished - {""}, "retried": {k for k, n in attempts.items() if n > 1}, "late": len(late)}


def _archived_only_allowed(route: str, path: str, got: dict[str, Any], ctx: Context) -> bool:
    """What the archive may have that the live answer could not yet: files, events and task attempts Ray wrote
    after the recording."""
    t = re.match(r"(data/result/result/[^/]+)/", path)
    if route.startswith("api/v0/tasks?") and t:
        return (_num(got.get(f"{t.group(1)}/creation_time_ms")) or 0) >= ctx.recorded_ms - 1000
    if route.startswith("api/v0/logs?") and path.startswith("data/result/"):
        return True  # a log file created after the recording (a worker started at shutdown, a rotated file)
    m = re.match(r"(data/events/[^/]+/[^/]+)/", path)
    if route == "events" and m:  # a whole event the archive has and the live answer did not: Ray wrote it later
        return (_num(got.get(f"{m.group(1)}/timestamp")) or 0) * 1000 >= ctx.recorded_ms - 1000
    return False


def by_kind(found: list[Difference]) -> list[str]:
    """Differences grouped by route and path with ids masked, most frequent first, one example each."""
    groups: dict[str, list[Difference]] = {}
    for d in found:
        key = re.sub(r"[0-9a-f]{16,}(#\d+)?", "<id>", f"{d.route.split('?')[0]}: {d.path}")
        groups.setdefault(key, []).append(d)
    ranked = sorted(groups.items(), key=lambda kv: -len(kv[1]))
    return [
        f"{len(ds):4d} x {key}  (e.g. live {_short(ds[0].live)}, archived {_short(ds[0].archived)})"
        for key, ds in ranked
    ]


def unused_rules(ctx: Context) -> list[Rule]:
    return [r for r in KNOWN_GAPS if r not in ctx.used]


# --- metrics ------------------------------------------------------------------------------------------------------


def panel_differences(expr: str, live: dict, archived: dict, settled_from_s: float, limit: int = 6) -> list[str]:
    """Prometheus's `data` of a query_range against ours: the same series (label sets); and, unless the panel reads
    sampled statistics, the same value strings at every step from `settled_from_s` on."""
    a = {frozenset(s["metric"].items()): dict((float(t), v) for t, v in s["values"]) for s in live["result"]}
    b = {frozenset(s["metric"].items()): dict((float(t), v) for t, v in s["values"]) for s in archived["result"]}
    out = [f"series only in Prometheus: {dict(sorted(k))}" for k in a.keys() - b.keys()]
    out += [f"series only in the archive: {dict(sorted(k))}" for k in b.keys() - a.keys()]
    if not SAMPLED_METRICS.search(expr):
        for k in a.keys() & b.keys():
            steps = sorted(t for t in a[k].keys() | b[k].keys() if t >= settled_from_s)
            bad = [(t, a[k].get(t), b[k].get(t)) for t in steps if a[k].get(t) != b[k].get(t)]
            if bad:
                out.append(f"{dict(sorted(k))}: {len(bad)} settled steps differ, e.g. (s, prometheus, ours) {bad[:3]}")
    return out[:limit]


def _series_key(s: dict) -> frozenset:
    if "le" in s:
        try:
            return frozenset({**s, "le": repr(float(s["le"]))}.items())
        except ValueError:
            pass
    return frozenset(s.items())


def series_differences(live: Iterable[dict], archived: Iterable[dict], ignore_names: Iterable[str] = ()) -> list[str]:
    """Prometheus's /api/v1/series against ours over the same window: the same label sets (but SERIES_GAPS)."""
    drop = set(ignore_names)

    def keep(s: dict) -> bool:
        return s.get("__name__") not in drop and not s.get("__name__", "").endswith("_created")

    a = {_series_key(s) for s in live if keep(s)}
    b = {_series_key(s) for s in archived if keep(s)}
    return [f"only in Prometheus: {dict(sorted(k))}" for k in a - b] + [
        f"only in the archive: {dict(sorted(k))}" for k in b - a
    ]


# --- the session as a whole -----------------------------------------------------------------------------------------


def session_end_problems(end_ms: float | None, recorded_ms: float, stopped_ms: float) -> list[str]:
    """An archived session's end (item 4): after the cluster was seen running, and no later than `stopped_ms`:
    when Ray had stopped for `collect --once` (its end comes from what Ray wrote, not from the clock at
    collection), when the collectors finished for live collectors."""
    if end_ms is None:
        return ["the session has no end"]
    if end_ms < recorded_ms - END_SLACK_MS:
        return [f"the session ends at {end_ms:.0f}, before it was seen running at {recorded_ms:.0f}"]
    if end_ms > stopped_ms + END_SLACK_MS:
        return [f"the session ends at {end_ms:.0f}, {(end_ms - stopped_ms) / 1000:.1f}s after Ray had stopped"]
    return []


def catalog_problems(entry: dict, live_nodes: list[dict]) -> list[str]:
    """The catalog's entry for the session against Ray's live node list (item 6)."""
    if entry.get("nodes") != len(live_nodes):
        return [f"the catalog counts {entry.get('nodes')} nodes, Ray listed {len(live_nodes)}"]
    return []
