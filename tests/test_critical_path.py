"""The critical path on a constructed session whose path is known: a chain through an argument, a retry and a
nested submission, beside noise tasks that are longer than any step of it (so the longest task, or the last
sibling to end, would be the wrong answer)."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from archive.compacted import TABLES, TASKS
from historyserver.compaction.task_timeline import build_task_timeline
from historyserver.errors import EntityNotFound
from historyserver.queries import critical_path as cp
from historyserver.queries.session_db import SessionDB

T0 = 1_800_000_000_000.0
JOB = "01000000"
DRIVER = "f" * 40 + JOB


def _db(root: Path, tasks: list[dict]) -> SessionDB:
    root.mkdir(parents=True, exist_ok=True)
    for t in TABLES:
        given = pa.Table.from_pylist(tasks, schema=TASKS.schema) if t is TASKS else t.schema.empty_table()
        pq.write_table(given, root / t.file)
    build_task_timeline(duckdb.connect(), [root / TASKS.file], root)
    (root / "info.json").write_text(json.dumps({"compaction_version": 0, "session_id": "synthetic"}))
    return SessionDB(root)


def _task(tid: str, name: str, created: float, ready: float, start: float, end: float, **kw) -> dict:
    return {
        "task_id": tid,
        "attempt_number": kw.get("attempt", 0),
        "name": name,
        "state": kw.get("state", "FINISHED"),
        "job_id": kw.get("job", JOB),
        "type": kw.get("type", "NORMAL_TASK"),
        "func_or_class_name": name,
        "parent_task_id": kw.get("parent", DRIVER),
        "node_id": "n1",
        "worker_id": kw.get("worker", "w" + tid[-1]),
        "worker_pid": 100,
        "creation_time_ms": T0 + created,
        "pending_node_time_ms": T0 + ready,
        "submitted_time_ms": T0 + start - 1,
        "start_time_ms": T0 + start,
        "end_time_ms": T0 + end,
        "unfinished": False,
        "record": "{}",
    }


def _session(tmp_path: Path) -> SessionDB:
    """a -> b (fails, then its retry) -> c, which submits e; e ends last. All top-level tasks are created at once
    by the driver (b and c wait for their argument); noise runs beside them."""
    return _db(
        tmp_path,
        [
            {**_task(DRIVER, "driver", -100, -100, -100, 4000), "type": "DRIVER_TASK", "parent_task_id": None},
            _task("aa01", "a", 0, 1, 5, 1000),
            _task("bb02", "b", 0, 1002, 1010, 1200, state="FAILED"),
            _task("bb02", "b", 1201, 1202, 1210, 2000, attempt=1),
            _task("cc03", "c", 0, 2003, 2010, 3400),
            _task("ee05", "e", 2500, 2501, 2600, 3500, parent="cc03"),
            # Noise: the longest task of all (2,395 ms), one that ends while c waits, one while b waits, and a
            # sibling of e that ended before e was created (not what e waited for).
            _task("f106", "noise_long", 0, 1, 5, 2400),
            _task("f207", "noise", 0, 1, 600, 1500),
            _task("f308", "noise", 0, 1, 100, 500),
            _task("f409", "noise_child", 2050, 2051, 2060, 2450, parent="cc03"),
            # Another job entirely, ending later: not part of this job's path.
            _task("dd0a", "other_job", 0, 1, 5, 9000, job="02000000", parent="f" * 40 + "02000000"),
        ],
    )


def test_the_path_follows_arguments_retries_and_submissions_not_the_longest_task(tmp_path):
    db = _session(tmp_path)
    path = cp.critical_path(db, JOB)
    got = [(s["name"], s["attempt"], s["via"]) for s in path["steps"]]
    assert got == [
        ("a", 0, "first"),
        ("b", 0, "argument"),
        ("b", 1, "retry"),
        ("c", 0, "argument"),
        ("e", 0, "submitted"),
    ]
    waits_runs = [(s["wait_ms"], s["run_ms"]) for s in path["steps"]]
    # c's step ends when it submitted e (2,500), not at its own end: what came after did not hold e back.
    assert waits_runs == [(5, 995), (10, 190), (10, 790), (10, 490), (100, 900)]
    assert (path["start"], path["end"]) == (T0, T0 + 3500)
    assert path["wait_ms"] + path["run_ms"] == path["end"] - path["start"] == 3500
    assert path["job_end"] == T0 + 3500 and path["attempts"] == 9 and not path["truncated"]
    first = path["steps"][0]
    assert first["task_id"] == "aa01" and first["lane"] is not None and first["function"] == "a"
    assert path["steps"][-1]["until_ms"] == path["steps"][-1]["end_ms"] == T0 + 3500
    longest = max((s for s in db.query("SELECT name, to_ms - from_ms FROM task_timeline")), key=lambda r: r[1])
    assert longest[0] == "other_job" or longest[0] == "noise_long"
    assert "noise_long" not in {s["name"] for s in path["steps"]}


def test_default_job_unknown_job_and_a_job_without_dependencies(tmp_path):
    db = _session(tmp_path)
    assert cp.default_job(db) == "02000000"  # its attempt ended last
    only = cp.critical_path(db)
    assert [(s["name"], s["via"]) for s in only["steps"]] == [("other_job", "first")]
    assert only["steps"][0]["wait_ms"] == 5 and only["steps"][0]["run_ms"] == 8995
    with pytest.raises(EntityNotFound, match="jobs with tasks: 01000000, 02000000"):
        cp.critical_path(db, "09000000")


def test_a_long_chain_is_walked_to_its_start_and_cut_at_the_step_limit(tmp_path, monkeypatch):
    chain = [_task(f"{i:04x}", f"s{i}", 0, 10 * i + 1, 10 * i + 2, 10 * i + 10) for i in range(1, 60)]
    db = _db(tmp_path, chain)
    path = cp.critical_path(db, JOB)
    assert [s["name"] for s in path["steps"]] == [f"s{i}" for i in range(1, 60)]
    assert all(s["via"] == "argument" for s in path["steps"][1:])
    monkeypatch.setattr(cp, "MAX_STEPS", 10)
    cut = cp._compute(db, JOB)
    assert cut["truncated"] and [s["name"] for s in cut["steps"]] == [f"s{i}" for i in range(50, 60)]
