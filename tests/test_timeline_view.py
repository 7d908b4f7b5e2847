"""The timeline's level of detail on synthetic tables: exact attempts with their phases when few are in the window,
per-lane density runs (checked against a brute-force count) when many are, the size bound and the filters; and
Ray's Chrome trace without Ray's 10,000-task cap."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from archive.compacted import NODES, PROFILE_EVENTS, TABLES, TASKS
from historyserver.compaction.task_timeline import build_task_timeline
from historyserver.errors import BadRequest
from historyserver.queries import timeline_view as tv
from historyserver.queries.session_db import RAY_LIST_LIMIT, SessionDB
from historyserver.queries.timeline import chrome_trace_events

T0 = 1_800_000_000_000.0


def _db(root: Path, tasks: list[dict], profile: list[dict] | None = None) -> SessionDB:
    root.mkdir(parents=True, exist_ok=True)
    given = {
        "tasks": pa.Table.from_pylist(tasks, schema=TASKS.schema),
        "profile_events": pa.Table.from_pylist(profile or [], schema=PROFILE_EVENTS.schema),
        "nodes": pa.Table.from_pylist(
            [{"node_id": "n1", "state": "DEAD", "is_head_node": True, "node_ip": "10.0.0.1", "record": "{}"}],
            schema=NODES.schema,
        ),
    }
    for t in TABLES:
        pq.write_table(given.get(t.name, t.schema.empty_table()), root / t.file)
    build_task_timeline(duckdb.connect(), [root / TASKS.file], root)  # from the tasks, as compaction builds it
    (root / "info.json").write_text(json.dumps({"compaction_version": 0, "session_id": "synthetic"}))
    return SessionDB(root)


def _task(i: int, start: float, end: float | None, node: str = "n1", worker: str = "w1", **kw) -> dict:
    row = {
        "task_id": f"{i:08x}",
        "attempt_number": 0,
        "name": kw.get("name", "f"),
        "state": kw.get("state", "FINISHED"),
        "job_id": kw.get("job", "01000000"),
        "type": "NORMAL_TASK",
        "func_or_class_name": kw.get("name", "f"),
        "node_id": node,
        "worker_id": worker,
        "worker_pid": 100 + int(worker[1:] or 0) if worker else None,
        "creation_time_ms": start,
        "pending_node_time_ms": kw.get("pending"),
        "submitted_time_ms": kw.get("submitted"),
        "start_time_ms": kw.get("running"),
        "end_time_ms": end,
        "unfinished": False,
        "record": "{}",
    }
    return row


def test_zoomed_in_sends_the_windows_attempts_with_their_phases(tmp_path):
    tasks = [
        _task(1, T0, T0 + 100, pending=T0 + 10, submitted=T0 + 30, running=T0 + 40, name="load"),
        _task(2, T0 + 200, T0 + 300, worker="w2", running=T0 + 250, state="FAILED"),
        _task(3, T0 + 1000, T0 + 1100, worker="w2"),
        {**_task(4, T0, T0 + 5000), "type": "DRIVER_TASK"},  # the driver: never on the timeline
    ]
    db = _db(tmp_path, tasks)
    whole = tv.timeline_view(db, tv.ViewFilter())
    assert (whole["mode"], whole["total"], whole["extent"]) == ("attempts", 3, {"start": T0, "end": T0 + 1100})
    assert [(lane["worker_id"], lane["node_ip"], lane["pid"]) for lane in whole["lanes"]] == [
        ("w1", "10.0.0.1", 101),
        ("w2", "10.0.0.1", 102),
    ]
    first = dict(zip(whole["columns"], whole["attempts"][0]))
    assert first["task_id"] == "00000001" and first["lane"] == 0 and first["name"] == "load"
    phases = [first[c] for c in ("creation_ms", "pending_node_ms", "submitted_ms", "start_ms", "end_ms")]
    assert phases == [T0, T0 + 10, T0 + 30, T0 + 40, T0 + 100]
    assert whole["phases"] == ["waiting for arguments", "waiting for a node", "on the worker", "running"]
    # A window over the second attempt alone: total and attempts count only what overlaps it.
    narrow = tv.timeline_view(db, tv.ViewFilter(), T0 + 150, T0 + 260, 800)
    assert narrow["total"] == 1 and [a[0] for a in narrow["attempts"]] == ["00000002"]
    assert narrow["attempts"][0][narrow["columns"].index("lane")] == 1


def _brute(tasks: list[dict], start: float, end: float, buckets: int, lanes: list[dict]) -> dict:
    """Attempts touching each (lane, state, bucket), counted one by one."""
    index = {(lane["node_id"], lane["worker_id"]): i for i, lane in enumerate(lanes)}
    counts: dict[tuple[int, str, int], int] = {}
    scale = buckets / (end - start)
    for t in tasks:
        a, b = t["creation_time_ms"], max(t["end_time_ms"], t["creation_time_ms"])
        if a > end or b < start:
            continue
        first = max(0, min(buckets - 1, math.floor((a - start) * scale)))
        for k in range(first, min(buckets - 1, math.floor((b - start) * scale)) + 1):
            key = (index[(t["node_id"], t["worker_id"])], t["state"], k)
            counts[key] = counts.get(key, 0) + 1
    return counts


def _expand(view: dict) -> dict:
    d = view["density"]
    counts: dict[tuple[int, str, int], int] = {}
    runs = list(zip(d["lane"], d["key"], d["bucket"], d["count"]))
    for i, (lane, key, bucket, count) in enumerate(runs):
        nxt = runs[i + 1] if i + 1 < len(runs) else None
        stop = nxt[2] if nxt and nxt[:2] == (lane, key) else d["buckets"]
        if d["encoding"] == "cells":
            stop = bucket + 1
        for k in range(bucket, stop):
            if count:
                counts[(lane, d["keys"][key], k)] = count
    return counts


def test_zoomed_out_sends_density_runs_that_count_every_attempt(tmp_path):
    rng = random.Random(3)
    tasks = []
    for i in range(tv.MAX_ATTEMPTS + 500):
        start = T0 + rng.uniform(0, 60_000)
        worker = f"w{rng.randrange(6)}"
        tasks.append(
            _task(
                i,
                start,
                start + rng.choice([0, 5, 300, 4000]),
                node=rng.choice(["n1", "n2"]),
                worker=worker,
                state=rng.choice(["FINISHED", "FAILED"]),
            )
        )
    db = _db(tmp_path, tasks)
    view = tv.timeline_view(db, tv.ViewFilter(), T0, T0 + 60_000, 300)
    assert view["mode"] == "density" and view["total"] == len(tasks) and "attempts" not in view
    assert view["density"]["buckets"] == 300 and view["density"]["encoding"] == "runs"
    assert _expand(view) == _brute(tasks, T0, T0 + 60_000, 300, view["lanes"])
    # Wide buckets (2 s) against the attempts: counted per bucket, the same counts.
    wide = tv.timeline_view(db, tv.ViewFilter(), T0, T0 + 60_000, 30)
    assert wide["density"]["encoding"] == "cells"
    assert _expand(wide) == _brute(tasks, T0, T0 + 60_000, 30, wide["lanes"])
    # A window inside: only the attempts touching it, bucketed over the window.
    inner = tv.timeline_view(db, tv.ViewFilter(), T0 + 20_000, T0 + 26_000, 120)
    in_window = [t for t in tasks if t["creation_time_ms"] <= T0 + 26_000 and t["end_time_ms"] >= T0 + 20_000]
    assert inner["total"] == len(in_window)
    if inner["mode"] == "density":
        assert _expand(inner) == _brute(tasks, T0 + 20_000, T0 + 26_000, 120, inner["lanes"])
    else:
        assert len(inner["attempts"]) == len(in_window)


def test_density_keeps_under_its_run_limit_with_fewer_buckets(tmp_path, monkeypatch):
    tasks = [_task(i, T0 + i * 10, T0 + i * 10 + 5, worker=f"w{i % 4}") for i in range(4000)]
    db = _db(tmp_path, tasks)
    monkeypatch.setattr(tv, "MAX_RUNS", 500)
    view = tv.timeline_view(db, tv.ViewFilter(), width=2000)
    d = view["density"]
    assert len(d["count"]) <= 500 and d["buckets"] < 2000 and view["total"] == 4000
    assert sum(1 for _ in d["count"]) > 0
    size = len(json.dumps(view))
    assert size < 2_000_000


def test_filters_and_colour_keys(tmp_path, monkeypatch):
    tasks = [
        _task(
            i,
            T0 + i,
            T0 + i + 50,
            name=f"fn{i % 3}",
            job="02000000" if i % 4 == 0 else "01000000",
            state="FAILED" if i % 5 == 0 else "FINISHED",
        )
        for i in range(300)
    ]
    db = _db(tmp_path, tasks)
    assert tv.timeline_view(db, tv.ViewFilter(jobs=["02000000"]))["total"] == 75
    assert tv.timeline_view(db, tv.ViewFilter(functions=["fn1"], states=["failed"]))["total"] == sum(
        1 for i in range(300) if i % 3 == 1 and i % 5 == 0
    )
    monkeypatch.setattr(tv, "MAX_ATTEMPTS", 10)
    by_function = tv.timeline_view(db, tv.ViewFilter(), width=100, color_by="function")
    assert by_function["mode"] == "density" and by_function["density"]["keys"] == ["fn0", "fn1", "fn2"]
    monkeypatch.setattr(tv, "MAX_KEYS", 2)
    assert tv.timeline_view(db, tv.ViewFilter(), width=100, color_by="job")["density"]["keys"] == [
        "01000000",
        "other",
    ]
    facets = by_function["facets"]
    assert facets["jobs"] == ["01000000", "02000000"] and set(facets["functions"]) == {"fn0", "fn1", "fn2"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"width": 0}, "width must be between 1 and"),
        ({"start": T0 + 10, "end": T0}, "must be after start"),
        ({"color_by": "colour"}, "color_by 'colour' is not known"),
    ],
)
def test_bad_windows_are_refused_with_what_to_send(tmp_path, args, message):
    db = _db(tmp_path, [_task(1, T0, T0 + 1)])
    with pytest.raises(BadRequest, match=message):
        tv.timeline_view(db, tv.ViewFilter(), **args)


def test_chrome_trace_holds_every_task_beyond_rays_list_limit(tmp_path):
    n = RAY_LIST_LIMIT + 50
    tasks = [_task(i, T0 + i, T0 + i + 1) for i in range(n)]
    profile = [
        {
            "task_id": f"{i:08x}",
            "attempt_number": 0,
            "component_type": "worker",
            "component_id": "w1",
            "node_ip_address": "10.0.0.1",
            "event_name": "task:execute",
            "start_time": T0 + i,
            "end_time": T0 + i + 1,
            "extra_data": "",
        }
        for i in range(n)
    ]
    db = _db(tmp_path, tasks, profile)
    # Ray's own trace stops at its list limit (RAY_LIST_LIMIT tasks); ours holds every task, in task-id order.
    traced = [e["args"]["task_id"] for e in chrome_trace_events(db) if e["ph"] == "X"]
    assert traced == [f"{i:08x}" for i in range(n)]


def test_beyond_the_lane_limit_lanes_are_nodes(tmp_path, monkeypatch):
    tasks = [_task(i, T0 + i * 10, T0 + i * 10 + 5, node=f"n{i % 2 + 1}", worker=f"w{i % 5}") for i in range(40)]
    db = _db(tmp_path, tasks)
    monkeypatch.setattr(tv, "MAX_LANES", 3)
    view = tv.timeline_view(db, tv.ViewFilter())
    assert view["rows"] == "node" and [lane["node_id"] for lane in view["lanes"]] == ["n1", "n2"]
    lanes = [a[view["columns"].index("lane")] for a in view["attempts"]]
    assert lanes == [i % 2 for i in range(40)]
    monkeypatch.setattr(tv, "MAX_ATTEMPTS", 5)
    dense = tv.timeline_view(db, tv.ViewFilter(), width=40)
    assert set(dense["density"]["lane"]) == {0, 1}
