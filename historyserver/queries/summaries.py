"""Ray's task summaries (`api/v0/tasks/summarize`): counts by function name, or the task tree by lineage.

The shapes and ordering follow Ray 2.60's TaskSummaries (ray/util/state/common.py). Two deliberate differences:
by function name we count every task with one DuckDB aggregation (Ray lists at most 10,000 tasks first, so a big
job's counts are silently partial there); by lineage we keep Ray's 10,000-task cap (the first by task id), because
the tree holds one node per task and a million-node answer helps nobody. Ray's "missing data" warning says so.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from historyserver.errors import BadRequest
from historyserver.queries.session_db import RAY_LIST_LIMIT, Filter, SessionDB, task_where
from historyserver.queries.session_db import task_counts as _counts

DRIVER_TASK_ID_PREFIX = "f" * 40
MISSING_DATA_WARNING = (
    "There is missing data in this aggregation. Possibly due to task data being evicted to preserve memory."
)
_TYPE_TOTALS = {
    "NORMAL_TASK": "total_tasks",
    "ACTOR_TASK": "total_actor_tasks",
    "ACTOR_CREATION_TASK": "total_actor_scheduled",
}


def summarize_tasks(db: SessionDB, filters: list[Filter], summary_by: str | None) -> dict[str, Any]:
    """The `data.result` of Ray's summarize answer: SummaryApiResponse as a dict."""
    summary_by = summary_by or "func_name"
    if summary_by in ("func_name", "task_name"):
        summary, num_filtered = _by_func_name(db, filters)
    elif summary_by == "lineage":
        summary, num_filtered = _by_lineage(db, filters)
    else:
        raise BadRequest(f'summary_by must be one of "func_name", "task_name", or "lineage", got {summary_by!r}')
    total, num_filtered = _counts(db, filters, num_filtered)
    counted = summary["total_tasks"] + summary["total_actor_tasks"] + summary["total_actor_scheduled"]
    return {
        "total": total,
        "num_after_truncation": total,
        "num_filtered": num_filtered,
        "result": {"node_id_to_summary": {"cluster": summary}},
        "partial_failure_warning": "",
        "warnings": [MISSING_DATA_WARNING] if counted < num_filtered else None,
    }


def _by_func_name(db: SessionDB, filters: list[Filter]) -> tuple[dict[str, Any], int]:
    where, params = task_where(filters)
    # One row per (name, state, type), with the first task (in Ray's task id order) that has it: Ray's dicts
    # are ordered by first appearance, and a name's type is that of its first task. (A struct min of
    # (task_id, attempt) would be exact for attempts in several states, but costs three times as much.)
    rows = db.query(
        f"""
        SELECT coalesce(nullif(name, ''), func_or_class_name) AS key, state, type, count(*) AS n,
               min(task_id) AS first_task, arg_min(attempt_number, task_id) AS first_attempt
        FROM tasks WHERE {where} GROUP BY ALL
    """,
        params,
    )
    rows.sort(key=lambda r: (r[4], r[5] if r[5] is not None else -1))
    summary: dict[Any, dict[str, Any]] = {}
    totals = dict.fromkeys(_TYPE_TOTALS.values(), 0)
    for key, state, type_, n, _, _ in rows:
        entry = summary.setdefault(key, {"func_or_class_name": key, "type": type_, "state_counts": {}})
        entry["state_counts"][state] = entry["state_counts"].get(state, 0) + n
        if type_ in _TYPE_TOTALS:
            totals[_TYPE_TOTALS[type_]] += n
    return {"summary": summary, **totals, "summary_by": "func_name"}, sum(r[3] for r in rows)


class _Node:
    """NestedTaskSummary: a task, an actor (key actor:<id>) or a GROUP of same-named siblings."""

    __slots__ = ("name", "key", "type", "timestamp", "state_counts", "children", "link", "min_child_ts")

    def __init__(
        self, name: Any, key: str, type_: str, timestamp: float | None = None, link: dict[str, str] | None = None
    ) -> None:
        self.name, self.key, self.type, self.link = name, key, type_, link
        # Ray's pydantic dataclass holds an int: creation times are whole milliseconds.
        self.timestamp = int(timestamp) if timestamp is not None else None
        self.state_counts: dict[str, int] = {}
        self.children: list[_Node] = []
        self.min_child_ts: int | None = None


def _by_lineage(db: SessionDB, filters: list[Filter]) -> tuple[dict[str, Any], int]:
    where, params = task_where(filters)
    num_filtered = db.query(f"SELECT count(*) FROM tasks WHERE {where}", params)[0][0]
    tasks = db.query(
        f"""
        SELECT task_id, coalesce(nullif(name, ''), func_or_class_name), type, state, creation_time_ms, actor_id,
               parent_task_id, func_or_class_name
        FROM tasks WHERE {where} ORDER BY task_id, attempt_number LIMIT {RAY_LIST_LIMIT}
    """,
        params,
    )
    actor_names = {
        aid: repr_name or cls
        for aid, cls, repr_name in db.query(
            "SELECT actor_id, class_name, json_extract_string(record, '$.reprName') FROM actors"
        )
    }
    summary = LineageTree(tasks, actor_names).summary()
    return summary, num_filtered


class LineageTree:
    """Ray's to_summary_by_lineage: tasks under the task that submitted them, actor tasks under their actor,
    actors under the task that created them; same-named siblings merged into a GROUP; busiest first.

    Built without recursion, so a long chain of nested tasks cannot exhaust Python's stack."""

    def __init__(self, tasks: list[tuple], actor_names: dict[str, str]) -> None:
        # Each row: task_id, name, type, state, creation_time_ms, actor_id, parent_task_id, func_or_class_name.
        self.tasks = tasks
        self.by_id = {t[0]: t for t in tasks}  # the last attempt of a task names its node, as in Ray
        self.creation_task = {t[5]: t[0] for t in tasks if t[2] == "ACTOR_CREATION_TASK"}
        self.actor_names = actor_names
        self.nodes: dict[str, _Node] = {}
        self.roots: list[_Node] = []

    def summary(self) -> dict[str, Any]:
        totals = dict.fromkeys(_TYPE_TOTALS.values(), 0)
        for task in self.tasks:
            node = self._node_for(("task", task[0]), task)
            if node is None:
                continue
            node.state_counts[task[3]] = node.state_counts.get(task[3], 0) + 1
            if task[2] in _TYPE_TOTALS:
                totals[_TYPE_TOTALS[task[2]]] += 1
        roots = self._merge_all()
        order = _post_order(roots)
        self._total_all(roots, order)
        return {"summary": _to_dicts(roots, order), **totals, "summary_by": "lineage"}

    def _node_for(self, ref: tuple[str, str], current: tuple) -> _Node | None:
        """The node of a task or actor, creating it and its missing ancestors. Ray does this recursively and
        appends each node to its parent after the parent was placed: the same order is kept here."""
        created: list[_Node] = []
        parent: _Node | list[_Node] | None = None  # the roots list stands for "top level"
        first: _Node | None = None
        while True:
            kind, ident = ref
            key = ident if kind == "task" else f"actor:{ident}"
            if key in self.nodes:
                parent = self.nodes[key]
                break
            if kind == "task":
                task = self.by_id.get(ident)
                if task is None:
                    break  # data about an ancestor is missing: Ray drops the branch there
                node = _Node(task[1], ident, task[2], task[4], {"type": "task", "id": ident})
                if task[2] in ("ACTOR_TASK", "ACTOR_CREATION_TASK"):
                    next_ref = ("actor", task[5])
                else:
                    next_ref = ("task", task[6])
                    if not task[6] or task[6].startswith(DRIVER_TASK_ID_PREFIX):
                        next_ref = None
            else:
                creation = self.by_id.get(self.creation_task.get(ident))
                if creation is None:
                    break
                name = self.actor_names.get(ident) or (creation[7] or "").split(".")[0]
                # Ray stamps an actor with the creation time of the task being counted when it first meets it.
                node = _Node(name, key, "ACTOR", current[4], {"type": "actor", "id": ident})
                next_ref = ("task", creation[6])
                if not creation[6] or creation[6].startswith(DRIVER_TASK_ID_PREFIX):
                    next_ref = None
            self.nodes[key] = node
            created.append(node)
            first = first or node
            if next_ref is None:
                parent = self.roots
                break
            ref = next_ref
        for i in range(len(created) - 1, -1, -1):
            above = parent if i == len(created) - 1 else created[i + 1]
            if isinstance(above, list):
                above.append(created[i])
            elif above is not None:
                above.children.append(created[i])
        if first is not None:
            return first
        return self.nodes.get(ref[1] if ref[0] == "task" else f"actor:{ref[1]}")

    def _merge_all(self) -> list[_Node]:
        for node in _post_order(self.roots):
            node.children, node.min_child_ts = _merge_siblings(node.children)
        return _merge_siblings(self.roots)[0]

    @staticmethod
    def _total_all(roots: list[_Node], order: list[_Node]) -> None:
        for node in order:
            if node.children:
                for child in node.children:
                    for state, count in child.state_counts.items():
                        node.state_counts[state] = node.state_counts.get(state, 0) + count
                _sort(node.children)
        _sort(roots)


def _post_order(roots: list[_Node]) -> list[_Node]:
    """Every node below roots, children before parents (a cycle in corrupt data is visited once)."""
    out: list[_Node] = []
    seen: set[int] = set()
    stack: list[tuple[_Node, bool]] = [(n, False) for n in reversed(roots)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            out.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        stack.extend((c, False) for c in reversed(node.children))
    return out


def _merge_siblings(siblings: list[_Node]) -> tuple[list[_Node], int | None]:
    """One level of Ray's merge: siblings sharing a name become a GROUP (when more than one); returns the level
    and its smallest timestamp. Each sibling's own children were merged before (min_child_ts)."""
    groups: dict[Any, _Node] = {}
    min_ts = None
    for child in siblings:
        if child.min_child_ts and child.min_child_ts < (child.timestamp or sys.maxsize):
            child.timestamp = child.min_child_ts
        group = groups.get(child.name)
        if group is None:
            group = groups[child.name] = _Node(child.name, child.name, "GROUP")
        group.children.append(child)
        if child.timestamp and child.timestamp < (group.timestamp or sys.maxsize):
            group.timestamp = child.timestamp
            if child.timestamp < (min_ts or sys.maxsize):
                min_ts = child.timestamp
    return [g if len(g.children) > 1 else g.children[0] for g in groups.values()], min_ts


def _sort(nodes: list[_Node]) -> None:
    """Running first, then pending, then failed, then oldest; an actor's creation task before its calls."""

    def count(n: _Node, *states: str) -> int:
        return sum(n.state_counts.get(s, 0) for s in states)

    nodes.sort(
        key=lambda n: (
            -count(n, "RUNNING", "RUNNING_IN_RAY_GET", "RUNNING_IN_RAY_WAIT"),
            -count(
                n, "PENDING_ARGS_AVAIL", "PENDING_NODE_ASSIGNMENT", "PENDING_OBJ_STORE_MEM_AVAIL", "PENDING_ARGS_FETCH"
            ),
            -count(n, "FAILED"),
            n.timestamp or sys.maxsize,
            0 if n.type == "ACTOR_CREATION_TASK" else 1,
        )
    )


def _to_dicts(roots: list[_Node], order: list[_Node]) -> list[dict[str, Any]]:
    done: dict[int, dict[str, Any]] = {}
    for node in order:
        done[id(node)] = {
            "name": node.name,
            "key": node.key,
            "type": node.type,
            "timestamp": node.timestamp,
            "state_counts": node.state_counts,
            "children": [done[id(c)] for c in node.children if id(c) in done],
            "link": node.link,
        }
    return [done[id(n)] for n in roots]


def summary_json(result: dict[str, Any]) -> str:
    """JSON text of a summarize answer. A lineage tree is written without recursion: json.dumps gives up on a
    chain of nested tasks a few hundred deep, which a recursive workload reaches."""
    cluster = result["result"]["node_id_to_summary"]["cluster"]
    if cluster["summary_by"] != "lineage":
        return json.dumps(result)
    marker = "\u0000lineage\u0000"  # cannot occur elsewhere in the answer: only the tree holds user strings
    shell = {**result, "result": {"node_id_to_summary": {"cluster": {**cluster, "summary": marker}}}}
    return json.dumps(shell).replace(json.dumps(marker), _tree_json(cluster["summary"]), 1)


def _tree_json(nodes: list[dict[str, Any]]) -> str:
    out: list[str] = []
    pending: list[str | dict[str, Any]] = ["]"]
    pending.extend(_with_commas(nodes))
    out.append("[")
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            out.append(item)
            continue
        head = {k: item[k] for k in ("name", "key", "type", "timestamp", "state_counts")}
        out.append(json.dumps(head)[:-1] + ', "children": [')
        pending.append('], "link": ' + json.dumps(item["link"]) + "}")
        pending.extend(_with_commas(item["children"]))
    return "".join(out)


def _with_commas(nodes: list[dict[str, Any]]) -> list[str | dict[str, Any]]:
    """Nodes interleaved with separators, reversed for a stack."""
    items: list[str | dict[str, Any]] = []
    for i, node in enumerate(reversed(nodes)):
        if i:
            items.append(", ")
        items.append(node)
    return items
