"""The export-event fold, checked against real Ray 2.60 output in ../shared/reference/ray-2.60/."""

from __future__ import annotations

import base64
import json

import pytest

from archive.layout import LogSegment, SessionRef
from archive.logs import encode
from archive.storage.local import LocalStore
from historyserver.compaction.build import compact
from historyserver.compaction.export_events import Folded, fold_lines
from historyserver.compaction.records import TASK_SUMMARY_KEYS, actor_record, job_records, node_record
from historyserver.queries.session_db import Filter, SessionDB
from historyserver.queries.summaries import summarize_tasks
from historyserver.queries.task_records import records_sql

NODE_HEX = "92856556e566d03eb409f0bed9b8a7d70d81b923586f0d658dd38908"


SESSION = "session_2026-11-25_19-58-10_578535_6555"


def _sample_files(reference) -> dict[str, bytes]:
    """The sample's lines, put back into the files their headers name (# event_EXPORT_X.log ...)."""
    files: dict[str, bytes] = {}
    name = None
    for line in (reference / "export_events" / "export_event_samples.jsonl.txt").read_bytes().splitlines():
        if line.startswith(b"# "):
            name = line[2:].split()[0].decode().replace("<pid>", "13918")
        elif line.startswith(b"{"):
            files[name] = files.get(name, b"") + line + b"\n"
    return files


@pytest.fixture(scope="module")
def folded(reference) -> Folded:
    f = Folded()
    for name, data in _sample_files(reference).items():
        if "EXPORT_TASK" not in name:
            fold_lines(data.splitlines(), name, f)
    assert f.damage.bad_lines == 0
    return f


@pytest.fixture(scope="module")
def compacted(reference, tmp_path_factory) -> SessionDB:
    """The samples archived as a collector would, then compacted: the whole path, tasks folded in SQL."""
    root = tmp_path_factory.mktemp("sample")
    store = LocalStore(root / "archive")
    node = SessionRef("default", "sample", SESSION).node(NODE_HEX)
    for name, data in _sample_files(reference).items():
        half = len(data) // 2  # two segments, split mid-line, as the collector may split them
        for start, end in ((0, half), (half, len(data))):
            store.put(node.segment_key(LogSegment(f"export_events/{name}", 0, start, end)), encode(data[start:end]))
    info = compact(store, node.session, root / "tables", None)
    assert info["damage"]["bad_lines"] == 0
    return SessionDB(root / "tables")


def _response(reference, name):
    return json.loads((reference / "dashboard_api" / name).read_text())["response"]


def _task(db, name):
    [t] = db.tasks([Filter("func_or_class_name", "=", name)], 10).rows
    return t


def test_task_pieces_are_merged_by_id_and_attempt(compacted):
    sq = _task(compacted, "sq")
    assert sq["task_id"] == "fa31b89f94899135ffffffffffffffffffffffff03000000"
    assert sq["job_id"] == "03000000" and sq["type"] == "NORMAL_TASK"
    assert sq["worker_pid"] == 14408
    assert sq["task_log_info"]["stdout_end"] == 42 and sq["task_log_info"]["stderr_end"] == 31
    names = [e["event_name"] for e in sq["profiling_data"]["events"]]
    assert len(names) == 4 and "task::sq" in names  # the sample repeats one event: kept once
    assert sq["profiling_data"]["events"][0]["start_time"] == pytest.approx(1795637016887.948284)
    assert sq["profiling_data"]["component_id"] == "6237634430339e80151820d8218b4b012429e117478590c1d2b098ab"
    assert sq["required_resources"] == {"CPU": 1.0}
    assert sq["state"] == "RUNNING"  # the samples hold no terminal state for it
    assert sq["creation_time_ms"] == 1795637015522.0 and sq["start_time_ms"] == 1795637016825.0


def test_failed_task_has_error_without_ansi_codes(compacted):
    boom = _task(compacted, "boom")
    assert boom["state"] == "FAILED" and boom["error_type"] == "TASK_EXECUTION_EXCEPTION"
    assert boom["error_message"].startswith("User exception:\nray::boom() (pid=13918")
    assert [e["state"] for e in boom["events"]] == [
        "PENDING_ARGS_AVAIL",
        "PENDING_NODE_ASSIGNMENT",
        "SUBMITTED_TO_WORKER",
        "FAILED",
    ]
    assert boom["end_time_ms"] == 1795636996248.0
    assert boom["node_id"] == NODE_HEX
    # The timeline's phases: the first PENDING_NODE_ASSIGNMENT and SUBMITTED_TO_WORKER are columns of their own.
    phases = compacted.query(
        "SELECT creation_time_ms, pending_node_time_ms, submitted_time_ms FROM tasks WHERE func_or_class_name = 'boom'"
    )
    assert phases == [(1795636996242.0, 1795636996242.0, 1795636996243.0)]


def test_node_keeps_its_terminal_state(folded):
    [node] = [node_record(n) for n in folded.nodes.values()]
    assert node["node_id"] == NODE_HEX and node["labels"]["ray.io/node-id"] == NODE_HEX
    assert node["state"] == "DEAD" and node["state_message"] == "received SIGTERM"
    assert (node["start_time_ms"], node["end_time_ms"]) == (1795636991441, 1795637056714)
    assert node["resources_total"]["CPU"] == 2.0


def test_actors_dead_with_cause(folded):
    actors = {a["className"]: a for a in (actor_record(a, {}, None) for a in folded.actors.values())}
    sup = actors["JobSupervisor"]
    assert sup["state"] == "DEAD" and sup["pid"] == 14343
    assert "INTENDED_USER_EXIT" in sup["exitDetail"]
    assert actors["Counter_"]["state"] == "DEAD" and "node has died" in actors["Counter_"]["exitDetail"]
    assert actors["Counter_"]["address"]["ipAddress"] == "192.0.2.2"


def test_actor_left_alive_ends_with_the_session():
    f = Folded()
    fold_lines(
        [
            json.dumps(
                {
                    "source_type": "EXPORT_ACTOR",
                    "timestamp": 100,
                    "event_data": {"actor_id": "AAAA", "class_name": "A", "state": "ALIVE", "job_id": "AQAAAA=="},
                }
            ).encode()
        ],
        "x",
        f,
    )
    [a] = [actor_record(a, {}, 250_000) for a in f.actors.values()]
    assert a["state"] == "ALIVE" and a["startTime"] == 100_000 and a["endTime"] == 250_000


def test_jobs_from_driver_and_submission_events(folded):
    jobs = {(j["type"], j["job_id"] or j["submission_id"]): j for j in job_records(folded)}
    driver = jobs[("DRIVER", "01000000")]
    assert driver["status"] == "SUCCEEDED" and driver["end_time"] == 1795637011011
    assert driver["driver_info"] == {"id": "01000000", "node_ip_address": "192.0.2.2", "pid": "13898"}
    sub = jobs[("SUBMISSION", "probe2_job_ok")]
    assert sub["status"] == "RUNNING" and sub["driver_node_id"] == NODE_HEX
    assert sub["runtime_env"] == {"working_dir": "gcs://_ray_pkg_c3d82379c81bbcce.zip"}


def test_record_shapes_match_ray(folded, compacted, reference):
    task_keys = set(_response(reference, "v0_tasks.json")["data"]["result"]["result"][0])
    assert set(_task(compacted, "boom")) == task_keys
    nodetail = _response(reference, "v0_tasks_nodetail.json")["data"]["result"]["result"][0]
    assert tuple(nodetail) == TASK_SUMMARY_KEYS
    job_keys = set(_response(reference, "jobs.json")[0])
    assert all(set(j) == job_keys for j in job_records(folded))
    node_keys = set(_response(reference, "v0_nodes.json")["data"]["result"]["result"][0])
    assert set(node_record(next(iter(folded.nodes.values())))) == node_keys
    dead_actor = next(
        a for a in _response(reference, "logical_actors.json")["data"]["actors"].values() if a["state"] == "DEAD"
    )
    ours = actor_record(next(iter(folded.actors.values())), {}, None)
    assert set(dead_actor) <= set(ours)


def test_damaged_lines_are_counted_not_fatal():
    f = Folded()
    good = json.dumps(
        {"source_type": "EXPORT_DRIVER_JOB", "timestamp": 1, "event_data": {"job_id": "AQAAAA==", "is_dead": True}}
    ).encode()
    fold_lines([b"{not json", b'{"source_type": "EXPORT_ACTOR", "event_data": {}}', b"\xff\xfe", good], "f", f)
    assert f.damage.bad_lines == 3 and len(f.damage.examples) == 3
    assert list(f.driver_jobs) == ["01000000"]


def test_unfinished_entities_end_with_the_cluster(reference, tmp_path, folded):
    """A task or job without a final state when the cluster ended keeps its last state, and ends with it."""
    store = LocalStore(tmp_path / "archive")
    node = SessionRef("default", "sample", SESSION).node(NODE_HEX)
    for name, data in _sample_files(reference).items():
        store.put(node.segment_key(LogSegment(f"export_events/{name}", 0, 0, len(data))), encode(data))
    end = 1795637060000
    compact(store, node.session, tmp_path / "tables", end)
    db = SessionDB(tmp_path / "tables")
    sq = _task(db, "sq")
    assert sq["state"] == "RUNNING" and sq["end_time_ms"] == end
    assert sq["error_message"].startswith("Unfinished: the cluster ended while this task was RUNNING")
    boom = _task(db, "boom")
    assert boom["end_time_ms"] == 1795636996248.0 and "Unfinished" not in boom["error_message"]
    [running] = db.query("SELECT count(*) FROM tasks WHERE unfinished")[0]
    assert running == 1
    sub = next(j for j in job_records(folded, end) if j["submission_id"] == "probe2_job_ok")
    assert sub["status"] == "RUNNING" and sub["end_time"] == end and sub["message"].startswith("Unfinished")


def test_range_partitioned_fold_gives_the_same_tables(reference, tmp_path, compacted, monkeypatch):
    """Above PARTITION_BYTES the fold runs per task-id range; the tables must not change, and stay sorted."""
    from historyserver.compaction import tasks_sql

    monkeypatch.setattr(tasks_sql, "PARTITION_BYTES", 512)  # the sample's few KB become several ranges
    real_fold, folded = tasks_sql._fold, []

    def counting_fold(con, tasks_out, *args):  # observes each range's fold; the fold itself is the real one
        counts = real_fold(con, tasks_out, *args)
        folded.append(counts["tasks"])
        return counts

    monkeypatch.setattr(tasks_sql, "_fold", counting_fold)
    store = LocalStore(tmp_path / "archive")
    node = SessionRef("default", "sample", SESSION).node(NODE_HEX)
    for name, data in _sample_files(reference).items():
        store.put(node.segment_key(LogSegment(f"export_events/{name}", 0, 0, len(data))), encode(data))
    compact(store, node.session, tmp_path / "tables", None)
    # Several ranges ran, each with some of the tasks, and together with all of them.
    total = compacted.query("SELECT count(*) FROM tasks")[0][0]
    assert len(folded) >= 2 and all(0 < n < total for n in folded) and sum(folded) == total, folded
    db = SessionDB(tmp_path / "tables")
    query = records_sql("SELECT * FROM tasks")
    assert db.query(query) == compacted.query(query)
    assert db.query("SELECT state FROM tasks") == compacted.query(
        "SELECT state FROM tasks ORDER BY task_id, attempt_number"
    )
    ids = [r[0] for r in db.query("SELECT task_id FROM tasks")]
    assert ids == sorted(ids)
    prof = "SELECT * FROM profile_events"
    assert db.query(prof) == compacted.query(prof + " ORDER BY task_id, attempt_number, start_time")
    assert not (tmp_path / "tables" / "ranges").exists()  # the ranges' working files are not left with the tables


# --- rules Ray's GCS and state API apply on top of the events (issue 12) ------------------------------------------

JOB_END = 1795637011011  # the driver job's end_time (ms)


def _b64(hex_id: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_id)).decode()


def _line(source: str, data: dict, ts: int = 1795637000) -> bytes:
    return json.dumps({"source_type": source, "timestamp": ts, "event_data": data}).encode()


def _task_line(task_hex: str, job_hex: str, states: dict[int, int], info: dict | None = None, **extra) -> bytes:
    data = {"task_id": _b64(task_hex), "attempt_number": 0, "job_id": _b64(job_hex)}
    if states:
        data["state_updates"] = {"state_ts_ns": {str(k): str(v) for k, v in states.items()}, **extra}
    if info is not None:
        data["task_info"] = {"language": "PYTHON", "required_resources": {}, **info}
    return _line("EXPORT_TASK", data)


def _compact_lines(tmp_path, files: dict[str, list[bytes]], session_end_ms: int | None) -> SessionDB:
    store = LocalStore(tmp_path / "archive")
    node = SessionRef("default", "rules", SESSION).node(NODE_HEX)
    for name, lines in files.items():
        data = b"\n".join(lines) + b"\n"
        store.put(node.segment_key(LogSegment(f"export_events/{name}", 0, 0, len(data))), encode(data))
    compact(store, node.session, tmp_path / "tables", session_end_ms)
    return SessionDB(tmp_path / "tables")


PENDING_HEX = "aa" * 8 + "f" * 32 + "01000000"  # a task of job 01 that never left the pending states
DONE_HEX = "bb" * 8 + "f" * 32 + "01000000"
NO_STATE_HEX = "dd" * 8 + "f" * 32 + "01000000"
OTHER_JOB_HEX = "cc" * 8 + "f" * 32 + "02000000"  # job 02's driver is still running
NS = 1_000_000


def _job_end_files() -> dict[str, list[bytes]]:
    driver = {"driver_ip_address": "192.0.2.2", "driver_pid": "13898", "entrypoint": "python driver.py"}
    return {
        "event_EXPORT_DRIVER_JOB.log": [
            _line(
                "EXPORT_DRIVER_JOB",
                {**driver, "job_id": "AQAAAA==", "is_dead": False, "start_time": "1795636993300", "end_time": "0"},
            ),
            _line(
                "EXPORT_DRIVER_JOB",
                {
                    **driver,
                    "job_id": "AQAAAA==",
                    "is_dead": True,
                    "start_time": "1795636993300",
                    "end_time": str(JOB_END),
                },
            ),
            _line(
                "EXPORT_DRIVER_JOB", {**driver, "job_id": "AgAAAA==", "is_dead": False, "start_time": "1795637000000"}
            ),
        ],
        "event_EXPORT_TASK_13918.log": [
            _task_line(
                PENDING_HEX,
                "01000000",
                {1: 1795637001000 * NS, 2: 1795637001001 * NS},
                {"type": "NORMAL_TASK", "func_or_class_name": "stuck"},
            ),
            _task_line(
                DONE_HEX,
                "01000000",
                {1: 1795637001000 * NS, 11: 1795637002000 * NS},
                {"type": "NORMAL_TASK", "func_or_class_name": "done"},
            ),
            # Defined, no state reported yet: "not terminated" too (the GCS marks tasks without state updates).
            _task_line(NO_STATE_HEX, "01000000", {}, {"type": "NORMAL_TASK", "func_or_class_name": "unseen"}),
            _task_line(
                OTHER_JOB_HEX,
                "02000000",
                {1: 1795637003000 * NS, 2: 1795637003001 * NS},
                {"type": "NORMAL_TASK", "func_or_class_name": "waiting"},
            ),
        ],
    }


def test_pending_tasks_of_a_finished_job_failed_with_it(tmp_path):
    """GcsTaskManager::OnJobFinished -> MarkTasksFailedOnJobEnds: a non-terminal task of a job whose driver exited
    is FAILED at the job's end, WORKER_DIED; a job still running when the cluster died keeps the unfinished rule."""
    end = JOB_END + 60_000
    db = _compact_lines(tmp_path, _job_end_files(), end)
    stuck = _task(db, "stuck")
    assert stuck["state"] == "FAILED" and stuck["error_type"] == "WORKER_DIED"
    assert stuck["error_message"] == (
        "Job finishes (01000000) as driver exits. Marking all non-terminal tasks as failed."
    )
    assert stuck["end_time_ms"] == JOB_END
    assert stuck["events"] == [
        {"state": "PENDING_ARGS_AVAIL", "created_ms": 1795637001000.0},
        {"state": "PENDING_NODE_ASSIGNMENT", "created_ms": 1795637001001.0},
        {"state": "FAILED", "created_ms": float(JOB_END)},
    ]
    unseen = _task(db, "unseen")
    assert unseen["state"] == "FAILED" and unseen["events"] == [{"state": "FAILED", "created_ms": float(JOB_END)}]
    assert unseen["end_time_ms"] == JOB_END and unseen["error_type"] == "WORKER_DIED"
    done = _task(db, "done")
    assert done["state"] == "FINISHED" and done["error_type"] is None and done["end_time_ms"] == 1795637002000.0
    waiting = _task(db, "waiting")
    assert waiting["state"] == "PENDING_NODE_ASSIGNMENT" and waiting["end_time_ms"] == end
    assert waiting["error_message"].startswith("Unfinished: the cluster ended while this task was PENDING")
    assert db.query("SELECT task_id FROM tasks WHERE unfinished") == [(OTHER_JOB_HEX,)]
    summary = summarize_tasks(db, [Filter("job_id", "=", "01000000")], None)
    counts = {k: v["state_counts"] for k, v in summary["result"]["node_id_to_summary"]["cluster"]["summary"].items()}
    assert counts == {"stuck": {"FAILED": 1}, "done": {"FINISHED": 1}, "unseen": {"FAILED": 1}}


def test_job_end_marks_only_after_the_gcs_delay(tmp_path):
    """The GCS marks them gcs_mark_task_failed_on_job_done_delay_ms (15 s) after the job ended: a cluster that
    died sooner never did, and the task is unfinished, ended with the cluster."""
    end = JOB_END + 10_000
    stuck = _task(_compact_lines(tmp_path, _job_end_files(), end), "stuck")
    assert stuck["state"] == "PENDING_NODE_ASSIGNMENT" and stuck["end_time_ms"] == end
    assert stuck["error_message"].startswith("Unfinished") and stuck["error_type"] is None


ACTOR_HEX = "6e6da4e167ab17d5e45d52aa01000000"
CREATION_HEX = "ff" * 8 + ACTOR_HEX  # TaskID::ForActorCreationTask: nil unique bytes, then the actor id
PLAIN_ACTOR_HEX = "76485b1456e9f3d1ff3253ab01000000"
DRIVER_HEX = "f" * 40 + "01000000"


def test_named_actor_creation_task_is_named_after_the_actor(tmp_path):
    """CoreWorker::CreateActor names a named actor's creation task "<name>:<Class>.__init__" (its spec's name,
    the task list's `name` and the summary's key); func_or_class_name stays the CallString."""
    actor = {"job_id": "AQAAAA==", "state": "ALIVE", "class_name": "Accumulator"}
    files = {
        "event_EXPORT_ACTOR.log": [
            _line("EXPORT_ACTOR", {**actor, "actor_id": _b64(ACTOR_HEX), "name": "my_acc"}),
            _line("EXPORT_ACTOR", {**actor, "actor_id": _b64(PLAIN_ACTOR_HEX), "name": ""}),
        ],
        "event_EXPORT_TASK_13918.log": [
            _task_line(
                CREATION_HEX,
                "01000000",
                {1: 1795637001000 * NS, 11: 1795637002000 * NS},
                {
                    "type": "ACTOR_CREATION_TASK",
                    "func_or_class_name": "Accumulator.__init__",
                    "actor_id": _b64(ACTOR_HEX),
                },
            ),
            _task_line(
                "ff" * 8 + PLAIN_ACTOR_HEX,
                "01000000",
                {1: 1795637001000 * NS, 11: 1795637002000 * NS},
                {
                    "type": "ACTOR_CREATION_TASK",
                    "func_or_class_name": "Accumulator.__init__",
                    "actor_id": _b64(PLAIN_ACTOR_HEX),
                },
            ),
        ],
    }
    db = _compact_lines(tmp_path, files, None)
    [named] = db.tasks([Filter("task_id", "=", CREATION_HEX)], 10).rows
    assert named["name"] == "my_acc:Accumulator.__init__"
    assert named["func_or_class_name"] == "Accumulator.__init__" and named["actor_id"] == ACTOR_HEX
    assert [t["task_id"] for t in db.tasks([Filter("name", "=", "my_acc:Accumulator.__init__")], 10).rows] == [
        CREATION_HEX
    ]
    summary = summarize_tasks(db, [], None)["result"]["node_id_to_summary"]["cluster"]
    assert summary["summary"] == {
        "my_acc:Accumulator.__init__": {
            "func_or_class_name": "my_acc:Accumulator.__init__",
            "type": "ACTOR_CREATION_TASK",
            "state_counts": {"FINISHED": 1},
        },
        "Accumulator.__init__": {
            "func_or_class_name": "Accumulator.__init__",
            "type": "ACTOR_CREATION_TASK",
            "state_counts": {"FINISHED": 1},
        },
    }
    assert summary["total_actor_scheduled"] == 2


def test_driver_task_without_task_info_is_left_out_of_summaries(tmp_path):
    """A driver's export events may hold only its profile events and FINISHED, no task_info: its id is still
    TaskID::ForDriverTask, and Ray's summary (list_tasks with exclude_driver=True) leaves it out."""
    profile = {
        "component_id": _b64("01000000" + "ff" * 24),
        "component_type": "driver",
        "node_ip_address": "192.0.2.2",
        "events": [
            {
                "event_name": "submit_task",
                "start_time": "1795637001000000000",
                "end_time": "1795637001000100000",
                "extra_data": "{}",
            }
        ],
    }
    files = {
        "event_EXPORT_TASK_13898.log": [
            _line(
                "EXPORT_TASK",
                {"task_id": _b64(DRIVER_HEX), "attempt_number": 0, "job_id": "AQAAAA==", "profile_events": profile},
            ),
            _task_line(DRIVER_HEX, "01000000", {11: 1795637011000 * NS}),
            _task_line(
                DONE_HEX,
                "01000000",
                {1: 1795637001000 * NS, 11: 1795637002000 * NS},
                {"type": "NORMAL_TASK", "func_or_class_name": "done"},
            ),
        ],
    }
    db = _compact_lines(tmp_path, files, JOB_END + 60_000)
    result = summarize_tasks(db, [Filter("job_id", "=", "01000000")], None)
    cluster = result["result"]["node_id_to_summary"]["cluster"]
    assert cluster["summary"] == {
        "done": {"func_or_class_name": "done", "type": "NORMAL_TASK", "state_counts": {"FINISHED": 1}}
    }
    assert (result["total"], result["num_filtered"], cluster["total_tasks"]) == (1, 1, 1)
    assert [t["task_id"] for t in db.tasks([], 10).rows] == [DONE_HEX]
    [driver] = db.tasks([Filter("task_id", "=", DRIVER_HEX)], 10, exclude_driver=False).rows
    assert driver["type"] == "DRIVER_TASK" and driver["state"] == "FINISHED"


def test_a_state_reported_twice_keeps_its_later_stamp(tmp_path):
    """Ray's task store keeps one timestamp per state: each report's transitions are assigned into the attempt's
    state_ts_ns map and merged into what is stored (ray/dashboard/modules/task_events: ray_event_converter.py
    `_convert_task_lifecycle_event`, task_event_storage.py `_update_existing` MergeFrom), so the later report
    wins. Here PENDING_ARGS_AVAIL is reported twice, across a millisecond: Ray answers 2 ms, not 1."""
    first, later = 1795637001_001_900_000, 1795637001_002_100_000
    files = {
        "event_EXPORT_TASK_13918.log": [
            _task_line(DONE_HEX, "01000000", {1: first}, {"type": "NORMAL_TASK", "func_or_class_name": "f"}),
            _task_line(DONE_HEX, "01000000", {1: later, 8: later + NS}),
            _task_line(DONE_HEX, "01000000", {8: later + NS, 11: later + 2 * NS}),
        ],
    }
    db = _compact_lines(tmp_path, files, None)
    [task] = db.tasks([Filter("task_id", "=", DONE_HEX)], 10).rows
    assert task["creation_time_ms"] == later // NS
    assert [e["created_ms"] for e in task["events"]] == [later // NS, later // NS + 1, later // NS + 2]
    assert task["state"] == "FINISHED"


def test_log_info_is_merged_field_by_field_and_unset_offsets_stay_absent(tmp_path):
    """Ray copies only the log-info fields a report sets and merges them into the stored attempt
    (ray_event_converter.py `_convert_task_log_info`; TaskLogInfo's fields all have presence, so the state API
    leaves out the ones never set): paths and start offsets come when the task starts, end offsets later. A task
    whose end offsets were never reported has none in its answer, not 0."""
    t0 = 1795637001_000_000_000
    started = {
        "stdout_file": "/tmp/ray/w.out",
        "stderr_file": "/tmp/ray/w.err",
        "stdout_start": "5",
        "stderr_start": "7",
    }
    files = {
        "event_EXPORT_TASK_1.log": [
            _task_line(DONE_HEX, "01000000", {1: t0}, {"type": "NORMAL_TASK", "func_or_class_name": "f"}),
            _task_line(DONE_HEX, "01000000", {8: t0 + NS}, task_log_info=started),
            _task_line(DONE_HEX, "01000000", {11: t0 + 2 * NS}, task_log_info={"stdout_end": "50", "stderr_end": "9"}),
            _task_line(PENDING_HEX, "01000000", {1: t0}, {"type": "NORMAL_TASK", "func_or_class_name": "g"}),
            _task_line(PENDING_HEX, "01000000", {8: t0 + NS}, task_log_info=started),
        ],
    }
    db = _compact_lines(tmp_path, files, None)
    at_start = {"stdout_file": "/tmp/ray/w.out", "stderr_file": "/tmp/ray/w.err", "stdout_start": 5, "stderr_start": 7}
    [done] = db.tasks([Filter("task_id", "=", DONE_HEX)], 10).rows
    assert done["task_log_info"] == {**at_start, "stdout_end": 50, "stderr_end": 9}
    [running] = db.tasks([Filter("task_id", "=", PENDING_HEX)], 10).rows
    assert running["task_log_info"] == at_start  # no end offsets reported: none answered (Ray's dict has no key)
