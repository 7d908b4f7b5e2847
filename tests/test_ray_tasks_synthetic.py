"""Task summaries, the Chrome-trace timeline and placement groups on synthetic tables: for scale (200k tasks) and
for the edges of Ray 2.60's algorithms (its lineage tree rules, timeline numbering, names and colours)."""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from archive.compacted import ACTORS, JOBS, LOG_FILES, NODES, TASKS
from archive.compacted import TABLE_NAMES as TABLES
from historyserver.queries.session_db import Filter, SessionDB
from historyserver.queries.summaries import MISSING_DATA_WARNING, RAY_LIST_LIMIT, summarize_tasks
from historyserver.queries.timeline import chrome_trace
from historyserver.routes.ray_tasks import list_placement_groups, summarize

DRIVER_PARENT = "f" * 40


_PROFILE_SCHEMA = pa.schema(
    [
        ("task_id", pa.string()),
        ("attempt_number", pa.int32()),
        ("component_type", pa.string()),
        ("component_id", pa.string()),
        ("node_ip_address", pa.string()),
        ("event_name", pa.string()),
        ("start_time", pa.float64()),
        ("end_time", pa.float64()),
        ("extra_data", pa.string()),
    ]
)
ACTOR_SCHEMA, JOB_SCHEMA, LOG_SCHEMA, NODE_SCHEMA, TASK_SCHEMA = (
    t.schema for t in (ACTORS, JOBS, LOG_FILES, NODES, TASKS)
)
_SCHEMAS = {
    "tasks": TASK_SCHEMA,
    "profile_events": _PROFILE_SCHEMA,
    "actors": ACTOR_SCHEMA,
    "jobs": JOB_SCHEMA,
    "nodes": NODE_SCHEMA,
    "log_files": LOG_SCHEMA,
}


def _session_db(root: Path, **tables: pa.Table) -> SessionDB:
    """A SessionDB over the given tables, every other table of TABLES empty."""
    root.mkdir(parents=True, exist_ok=True)
    for name in TABLES:
        table = tables.get(name)
        if table is None:
            schema = _SCHEMAS.get(name, pa.schema([("placeholder", pa.string())]))
            table = schema.empty_table()
        pq.write_table(table, root / f"{name}.parquet")
    for name, table in tables.items():
        if name not in TABLES:
            pq.write_table(table, root / f"{name}.parquet")
    (root / "info.json").write_text(json.dumps({"compaction_version": 0, "session_id": "synthetic"}))
    return SessionDB(root)


def _task(
    task_id: str,
    name: str,
    type_: str = "NORMAL_TASK",
    state: str = "FINISHED",
    job: str = "01000000",
    parent: str | None = None,
    actor: str | None = None,
    created: float = 1000.0,
    attempt: int = 0,
) -> dict:
    return {
        "task_id": task_id,
        "attempt_number": attempt,
        "name": name,
        "state": state,
        "job_id": job,
        "actor_id": actor,
        "type": type_,
        "func_or_class_name": name,
        "node_id": None,
        "worker_id": None,
        "worker_pid": None,
        "error_type": None,
        "parent_task_id": parent or DRIVER_PARENT + job,
        "creation_time_ms": created,
        "start_time_ms": None,
        "end_time_ms": None,
    }


def test_summary_of_200k_tasks_is_fast(tmp_path):
    rng = random.Random(7)
    names = [f"fn_{i}" for i in range(20)] + ["Worker.step"]
    states = ["FINISHED", "FINISHED", "FINISHED", "FAILED", "RUNNING", "PENDING_NODE_ASSIGNMENT"]
    n = 200_000
    cols = {
        "task_id": [f"{rng.getrandbits(64):016x}{'f' * 24}{j % 3 + 1:08x}" for j in range(n)],
        "name": [rng.choice(names) for _ in range(n)],
        "state": [rng.choice(states) for _ in range(n)],
        "job_id": [f"{j % 3 + 1:08x}" for j in range(n)],
    }
    rows = [
        _task(
            cols["task_id"][j],
            cols["name"][j],
            "ACTOR_TASK" if cols["name"][j] == "Worker.step" else "NORMAL_TASK",
            cols["state"][j],
            cols["job_id"][j],
            created=float(j),
        )
        for j in range(n)
    ]
    rows.append(_task("f" * 40 + "00000001", "", "DRIVER_TASK", "RUNNING", "00000001"))
    db = _session_db(tmp_path, tasks=pa.Table.from_pylist(rows, schema=TASK_SCHEMA))

    started = time.perf_counter()
    whole = summarize_tasks(db, [], None)
    job2 = summarize_tasks(
        db,
        [
            Filter("job_id", "=", "00000002"),
            Filter("state", "!=", "running"),
            Filter("func_or_class_name", "!=", "fn_0"),
        ],
        None,
    )
    elapsed = time.perf_counter() - started
    print(f"\nsummaries of {n} tasks by func_name: {elapsed * 1000:.0f} ms for two")
    assert elapsed < 2

    def expected(keep):
        counts = {}
        for r in rows[:n]:
            if keep(r):
                by_state = counts.setdefault(r["name"], {})
                by_state[r["state"]] = by_state.get(r["state"], 0) + 1
        return counts

    def got(result):
        summary = result["result"]["node_id_to_summary"]["cluster"]["summary"]
        return {k: v["state_counts"] for k, v in summary.items()}

    assert got(whole) == expected(lambda r: True)
    assert got(job2) == expected(
        lambda r: r["job_id"] == "00000002" and r["state"] != "RUNNING" and r["name"] != "fn_0"
    )
    assert whole["total"] == whole["num_filtered"] == n  # the driver task is not a task here, as in Ray
    assert job2["num_filtered"] == sum(sum(v.values()) for v in got(job2).values())
    # Ray's total counts what its source returned: job and state are filtered there, the function name is not.
    assert job2["total"] == sum(1 for r in rows[:n] if r["job_id"] == "00000002" and r["state"] != "RUNNING")
    assert job2["total"] > job2["num_filtered"]
    cluster = whole["result"]["node_id_to_summary"]["cluster"]
    assert cluster["total_actor_tasks"] == sum(1 for r in rows[:n] if r["type"] == "ACTOR_TASK")
    assert cluster["summary"]["Worker.step"]["type"] == "ACTOR_TASK"
    # Keys in order of each name's first task by task id, as Ray's dict is built.
    first = {}
    for r in sorted(rows[:n], key=lambda r: r["task_id"]):
        first.setdefault(r["name"], r["task_id"])
    assert list(cluster["summary"]) == sorted(first, key=first.get)

    started = time.perf_counter()
    lineage = summarize_tasks(db, [], "lineage")
    print(
        f"lineage summary of {n} tasks (capped at {RAY_LIST_LIMIT} as Ray): "
        f"{(time.perf_counter() - started) * 1000:.0f} ms"
    )
    lc = lineage["result"]["node_id_to_summary"]["cluster"]
    assert lc["total_tasks"] + lc["total_actor_tasks"] == RAY_LIST_LIMIT
    assert lineage["warnings"] == [MISSING_DATA_WARNING] and lineage["num_filtered"] == n


def test_lineage_follows_ray_tree_rules(tmp_path):
    job = "01000000"
    rows = [
        _task("a1", "parent", created=10),
        _task("c1", "child", parent="a1", created=12, state="FAILED"),
        _task("c2", "child", parent="a1", created=11),
        _task("c3", "other", parent="a1", created=13, state="RUNNING"),
        _task("orphan", "lost", parent="missing-parent", created=5),
        _task("ff01", "Counter.__init__", "ACTOR_CREATION_TASK", parent="a1", actor="act1", created=14),
        _task("m1", "Counter.incr", "ACTOR_TASK", actor="act1", created=15),
        _task("m2", "Counter.incr", "ACTOR_TASK", actor="act1", created=16, state="FAILED", attempt=0),
        _task("m2", "Counter.incr", "ACTOR_TASK", actor="act1", created=16, state="FINISHED", attempt=1),
        _task("n1", "nested", parent="m1", created=17),
        _task("x1", "Ghost.ping", "ACTOR_TASK", actor="ghost", created=18),  # its actor's creation is unknown
        _task("z1", "late", created=20, state="PENDING_NODE_ASSIGNMENT"),
    ]
    # A chain deeper than Python's recursion limit: the tree is built without recursion.
    rows += [_task(f"d{i:05d}", "deep", parent=f"d{i - 1:05d}" if i else None, created=30 + i) for i in range(1500)]
    actors = pa.Table.from_pylist(
        [
            {
                "actor_id": "act1",
                "job_id": job,
                "state": "DEAD",
                "class_name": "Counter",
                "name": "",
                "node_id": None,
                "pid": 1,
                "record": json.dumps({"reprName": "Counter(named)"}),
            }
        ],
        schema=ACTOR_SCHEMA,
    )
    db = _session_db(tmp_path, tasks=pa.Table.from_pylist(rows, schema=TASK_SCHEMA), actors=actors)
    answer = summarize_tasks(db, [Filter("name", "!=", "deep")], "lineage")
    cluster, num_filtered = answer["result"]["node_id_to_summary"]["cluster"], answer["num_filtered"]
    top = cluster["summary"]
    # Running first, then pending, then failed, then by time: "parent" holds a running task, "late" is pending.
    assert [n["name"] for n in top] == ["parent", "late"]
    parent = top[0]
    assert parent["state_counts"] == {"FINISHED": 6, "FAILED": 2, "RUNNING": 1}
    kids = parent["children"]
    assert [k["name"] for k in kids] == ["other", "child", "Counter(named)"]
    child_group = kids[1]
    assert child_group["type"] == "GROUP" and child_group["key"] == "child"
    assert [c["key"] for c in child_group["children"]] == ["c1", "c2"]  # failed first
    assert child_group["timestamp"] == 11  # the earliest child
    actor = kids[2]
    assert actor["type"] == "ACTOR" and actor["link"] == {"type": "actor", "id": "act1"}
    assert [c["type"] for c in actor["children"]] == ["GROUP", "ACTOR_CREATION_TASK"]  # the group has a failure
    assert actor["timestamp"] == 14  # its creation task's
    incr = actor["children"][0]
    assert [c["key"] for c in incr["children"]] == ["m2", "m1"]  # m2 has a failed attempt
    assert incr["children"][0]["state_counts"] == {"FAILED": 1, "FINISHED": 1}
    m1 = incr["children"][1]
    assert [c["key"] for c in m1["children"]] == ["n1"] and m1["state_counts"] == {"FINISHED": 2}
    # Tasks whose ancestors are unknown are counted but not placed, as in Ray.
    keys = json.dumps(top)
    assert '"orphan"' not in keys and '"x1"' not in keys
    assert (
        cluster["total_tasks"] + cluster["total_actor_tasks"] + cluster["total_actor_scheduled"]
        == num_filtered
        == len(rows) - 1500
    )

    # Deeper than json.dumps can recurse, and still served.
    resp = summarize(summary_by="lineage", filter_keys=["name"], filter_predicates=["="], filter_values=["deep"], db=db)
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(10_000)  # json.loads recurses too
    try:
        deep = json.loads(resp.body)["data"]["result"]["result"]["node_id_to_summary"]["cluster"]
    finally:
        sys.setrecursionlimit(limit)
    node, depth = deep["summary"][0], 1
    while node["children"]:
        node, depth = node["children"][0], depth + 1
    assert depth == 1500


def test_timeline_numbering_names_and_colours(tmp_path):
    rows = [
        _task("t2", "g", job="02000000"),
        _task("t1", "f"),
        _task("t3", "f", attempt=1),
        _task("ffffffffffffffffffffffffffffffffffffffff01000000", "", "DRIVER_TASK"),
    ]
    prof = [
        # task t2 on node B, worker w2; t1 on node A, worker w1 (t1 sorts first: node A is pid 0).
        ("t2", 0, "worker", "w2", "10.0.0.2", "task::g", 2000.5, 2001.0, '{"name": "__main__.g"}'),
        ("t1", 0, "worker", "w1", "10.0.0.1", "task:execute", 1000.25, 1000.75, ""),
        ("t1", 0, "worker", "w1", "10.0.0.1", "custom", 1001.0, 1002.0, '{"cname": "ray.get", "k": "v"}'),
        ("t3", 1, "worker", "w3", "10.0.0.1", "task:execute", 1500.0, 1500.5, "not json"),
        ("t3", 1, "raylet", "r", "10.0.0.1", "task:execute", 1500.0, 1500.5, ""),  # not a worker: skipped
        (
            "ffffffffffffffffffffffffffffffffffffffff01000000",
            0,
            "driver",
            "d",
            "10.0.0.1",
            "submit_task",
            900.0,
            901.0,
            "",
        ),  # the driver task: Ray leaves it out
    ]
    profile = pa.Table.from_pylist([dict(zip(_PROFILE_SCHEMA.names, p)) for p in prof], schema=_PROFILE_SCHEMA)
    db = _session_db(tmp_path, tasks=pa.Table.from_pylist(rows, schema=TASK_SCHEMA), profile_events=profile)
    events = chrome_trace(db)
    x = [e for e in events if e["ph"] == "X"]
    assert [(e["args"]["task_id"], e["cat"], e["pid"], e["tid"]) for e in x] == [
        ("t1", "task:execute", 0, 0),
        ("t1", "custom", 0, 0),
        ("t2", "task::g", 1, 1),
        ("t3", "task:execute", 0, 2),
    ]
    assert x[0]["ts"] == 1000250.0 and x[0]["dur"] == 500.0 and x[0]["cname"] == "rail_animation"
    assert x[1]["cname"] == "good" and x[1]["args"] == {
        "cname": "ray.get",
        "k": "v",
        "task_id": "t1",
        "job_id": "01000000",
        "attempt_number": 0,
        "func_or_class_name": "f",
        "actor_id": None,
    }
    assert x[2]["name"] == "__main__.g" and x[2]["cname"] == "generic_work"
    assert x[3]["args"]["raw"] == "not json" and x[3]["args"]["attempt_number"] == 1
    assert [e for e in events if e["ph"] == "M"] == [
        {"name": "process_name", "args": {"name": "Node 10.0.0.1"}, "pid": 0, "tid": None, "ph": "M"},
        {"name": "process_name", "args": {"name": "Node 10.0.0.2"}, "pid": 1, "tid": None, "ph": "M"},
        {"name": "thread_name", "args": {"name": "worker:w1"}, "pid": 0, "tid": 0, "ph": "M"},
        {"name": "thread_name", "args": {"name": "worker:w2"}, "pid": 1, "tid": 1, "ph": "M"},
        {"name": "thread_name", "args": {"name": "worker:w3"}, "pid": 0, "tid": 2, "ph": "M"},
    ]
    assert [e["args"]["task_id"] for e in chrome_trace(db, "02000000") if e["ph"] == "X"] == ["t2"]


def test_placement_groups_table_is_used_when_present(tmp_path):
    def pg(pid, name, state):
        return {
            "placement_group_id": pid,
            "name": name,
            "creator_job_id": "01000000",
            "state": state,
            "bundles": [],
            "is_detached": False,
            "stats": {},
            "topology_strategy": {},
            "topology_assignments": {},
        }

    groups = [pg("bb", "second", "REMOVED"), pg("aa", "first", "CREATED")]
    table = pa.Table.from_pylist(
        [
            {
                "placement_group_id": g["placement_group_id"],
                "name": g["name"],
                "state": g["state"],
                "record": json.dumps(g),
            }
            for g in groups
        ]
    )
    db = _session_db(tmp_path, placement_groups=table)

    def call(**kw):
        args = {"detail": False, "limit": None, "filter_keys": [], "filter_predicates": [], "filter_values": []}
        return json.loads(list_placement_groups(**{**args, **kw}, db=db).body)["data"]["result"]

    full = call(detail=True)
    assert [g["placement_group_id"] for g in full["result"]] == ["aa", "bb"] and full["result"][0] == groups[1]
    assert call()["result"][0] == {
        "placement_group_id": "aa",
        "name": "first",
        "creator_job_id": "01000000",
        "state": "CREATED",
    }
    removed = call(filter_keys=["state"], filter_predicates=["="], filter_values=["removed"])
    assert (removed["total"], removed["num_filtered"], [g["name"] for g in removed["result"]]) == (2, 1, ["second"])
    assert call(filter_keys=["is_detached"], filter_predicates=["="], filter_values=["true"])["num_filtered"] == 0
    assert len(call(limit=1)["result"]) == 1
