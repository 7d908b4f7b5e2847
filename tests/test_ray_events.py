"""Ray's HTTP event path (RayEvents spooled under ray_events/) compacted like the export files, checked against
the real Ray 2.60 samples in ../shared/reference/ray-2.60/ray_events_http/."""

from __future__ import annotations

import base64
import json

import pytest

from archive.layout import LogSegment, SessionRef
from archive.logs import encode
from archive.storage.local import LocalStore
from historyserver.compaction.build import compact
from historyserver.compaction.export_events import Folded, fold_lines
from historyserver.compaction.ray_events import PLACEMENT_GROUP, MalformedEvent, normalize, to_ns
from historyserver.queries.session_db import Filter, SessionDB

SESSION = "session_2026-11-25_19-58-10_578535_6555"
NODE_B64 = "pfmN+H8Rd3HJHKCTSR7l+JHJ5DK/5irIVmq7QA=="
NODE_HEX = "a5f98df87f117771c91ca093491ee5f891c9e432bfe62ac8566abb40"
BOOM_B64 = "gOIq7XcYoSX///////////////8BAAAA"
BOOM_HEX = "80e22aed7718a125ffffffffffffffffffffffff01000000"
BOOM_WORKER_HEX = "bd861563899ab84e4ee6a094b6d5b20b08369bd331f242f6455460a9"

# What each sample type becomes: the export files' source types, one line per definition or transition.
EXPECTED_SOURCES = {
    "NODE_DEFINITION_EVENT": ["EXPORT_NODE"],
    "NODE_LIFECYCLE_EVENT": ["EXPORT_NODE"],
    "WORKER_DEFINITION_EVENT": [],
    "WORKER_LIFECYCLE_EVENT": [],
    "DRIVER_JOB_DEFINITION_EVENT": ["EXPORT_DRIVER_JOB"],
    "DRIVER_JOB_LIFECYCLE_EVENT": ["EXPORT_DRIVER_JOB"],
    "TASK_LIFECYCLE_EVENT": ["EXPORT_TASK"],
    "TASK_PROFILE_EVENT": ["EXPORT_TASK"],
    "TASK_DEFINITION_EVENT": ["EXPORT_TASK"],
    "ACTOR_DEFINITION_EVENT": ["EXPORT_ACTOR"],
    "ACTOR_LIFECYCLE_EVENT": ["EXPORT_ACTOR"] * 4,
    "ACTOR_TASK_DEFINITION_EVENT": ["EXPORT_TASK"],
}


def _http(reference, name):
    return json.loads((reference / "ray_events_http" / name).read_text())


def _all_sample_events(reference) -> list[dict]:
    """Every RayEvent of the three samples, in the order a collector could have spooled them."""
    events = [e["event"] for e in _http(reference, "one_task_all_events.json")["events"]]
    events += list(_http(reference, "one_event_per_type.json")["events"].values())
    events += _http(reference, "one_post_request.json")["body_first_3"]  # repeats the node's two events
    return events


def _archive(root, spool: bytes, export_files: dict[str, bytes] | None = None, end_ms: int | None = None):
    """A local archive holding `spool` as a ray_events file (two segments, split mid-line), compacted."""
    store = LocalStore(root / "archive")
    node = SessionRef("default", "http", SESSION).node(NODE_HEX)
    half = len(spool) // 2
    for start, end in ((0, half), (half, len(spool))):
        seg = LogSegment("events-0001.jsonl", 0, start, end, source="ray_events")
        store.put(node.segment_key(seg), encode(spool[start:end]))
    for name, data in (export_files or {}).items():
        store.put(node.segment_key(LogSegment(f"export_events/{name}", 0, 0, len(data))), encode(data))
    info = compact(store, node.session, root / "tables", end_ms)
    return info, SessionDB(root / "tables")


def _lines(events: list[dict]) -> bytes:
    return b"".join(json.dumps(e).encode() + b"\n" for e in events)


@pytest.fixture(scope="module")
def compacted(reference, tmp_path_factory):
    info, db = _archive(tmp_path_factory.mktemp("http"), _lines(_all_sample_events(reference)))
    assert info["damage"]["bad_lines"] == 0, info["damage"]
    return info, db


def _task(db, task_id):
    [t] = db.tasks([Filter("task_id", "=", task_id)], 10).rows
    return t


# --- normalize: one RayEvent to export-shaped dicts ---------------------------------------------------------


def test_every_sample_type_normalizes_to_export_shapes(reference):
    per_type = _http(reference, "one_event_per_type.json")["events"]
    assert set(per_type) == set(EXPECTED_SOURCES)
    for kind, event in per_type.items():
        out = normalize(event)
        assert [o["source_type"] for o in out] == EXPECTED_SOURCES[kind], kind
        for o in out:
            assert set(o) == {"source_type", "timestamp", "event_data"}
            assert isinstance(o["timestamp"], int) and 1795636700 <= o["timestamp"] <= 1795636860
            assert all(k == k.lower() for k in o["event_data"]), f"{kind}: camelCase left in {list(o['event_data'])}"
    for wrapped in _http(reference, "one_task_all_events.json")["events"]:
        [out] = normalize(wrapped["event"])
        assert out["event_data"]["task_id"] == BOOM_B64 and out["event_data"]["attempt_number"] == 0


def test_task_pieces_use_the_export_encodings(reference):
    per_type = _http(reference, "one_event_per_type.json")["events"]
    [life] = normalize(per_type["TASK_LIFECYCLE_EVENT"])
    su = life["event_data"]["state_updates"]
    # TaskStatus codes as strings, nanoseconds as strings: 1 PENDING_ARGS_AVAIL ... 12 FAILED.
    assert su["state_ts_ns"] == {
        "1": "1795636720383549310",
        "2": "1795636720383751087",
        "5": "1795636720384616963",
        "12": "1795636720388130638",
    }
    assert su["node_id"] == NODE_B64  # ids stay base64: the folds decode them
    assert "worker_pid" not in su  # 0 means unknown to this reporter
    assert su["error_info"]["error_type"] == "TASK_EXECUTION_EXCEPTION"
    assert su["error_info"]["error_message"].startswith("User exception:")

    running = normalize(_http(reference, "one_task_all_events.json")["events"][0]["event"])[0]["event_data"]
    su = running["state_updates"]
    assert su["state_ts_ns"] == {"8": "1795636720384987990"} and su["worker_pid"] == 7475
    assert "node_id" not in su and "worker_id" not in su  # empty in the event
    assert su["task_log_info"]["stdout_start"] == 243 and su["task_log_info"]["stderr_end"] == 191

    [prof] = normalize(per_type["TASK_PROFILE_EVENT"])
    pe = prof["event_data"]["profile_events"]
    assert pe["component_type"] == "worker" and pe["node_ip_address"] == "192.0.2.2"
    assert pe["events"] == [
        {
            "event_name": "task:deserialize_arguments",
            "start_time": "1795636717367599757",
            "end_time": "1795636717674454881",
            "extra_data": "{}",
        }
    ]

    [actor_task] = normalize(per_type["ACTOR_TASK_DEFINITION_EVENT"])
    info = actor_task["event_data"]["task_info"]
    assert info["type"] == "ACTOR_TASK" and info["func_or_class_name"] == "Counter_.inc"
    assert info["actor_id"] == "bm2k4WerF9XkXVKqAQAAAA==" and "placement_group_id" not in info  # nil id dropped


def test_actor_creation_task_names_its_actor():
    actor = bytes.fromhex("76485b1456e9f3d1ff3253ab01000000")
    task_id = base64.b64encode(b"\xff" * 8 + actor).decode()
    [out] = normalize(
        {
            "eventType": "TASK_DEFINITION_EVENT",
            "timestamp": "2026-11-25T19:58:41Z",
            "taskDefinitionEvent": {
                "taskId": task_id,
                "taskType": "ACTOR_CREATION_TASK",
                "taskName": "probe:BadInit.__init__",
                "taskFunc": {
                    "pythonFunctionDescriptor": {
                        "moduleName": "driver",
                        "className": "driver.BadInit",
                        "functionName": "__init__",
                    }
                },
            },
        }
    )
    info = out["event_data"]["task_info"]
    assert base64.b64decode(info["actor_id"]) == actor
    assert info["func_or_class_name"] == "BadInit.__init__" and info["name"] == "probe:BadInit.__init__"


def test_lifecycles_give_one_line_per_transition(reference):
    per_type = _http(reference, "one_event_per_type.json")["events"]
    actor = normalize(per_type["ACTOR_LIFECYCLE_EVENT"])
    assert [a["event_data"]["state"] for a in actor] == ["DEPENDENCIES_UNREADY", "PENDING_CREATION", "ALIVE", "DEAD"]
    alive, dead = actor[2]["event_data"], actor[3]["event_data"]
    assert alive["pid"] == 7657 and alive["node_id"] == NODE_B64
    assert "creation_task_failure_context" in dead["death_cause"]  # the export files' snake_case oneof
    [node] = normalize(per_type["NODE_LIFECYCLE_EVENT"])
    assert node["event_data"]["state"] == "ALIVE" and node["event_data"]["is_head_node"] is True
    assert node["event_data"]["resources_total"]["CPU"] == 2.0
    [job] = normalize(per_type["DRIVER_JOB_LIFECYCLE_EVENT"])
    assert job["event_data"] == {"job_id": "CAAAAA==", "is_dead": True, "end_time": "1795636854621"}


def test_rfc3339_timestamps_to_nanoseconds():
    assert to_ns("2026-11-25T19:58:40.385820765Z") == 1795636720385820765
    assert to_ns("2026-11-25T19:58:20.179Z") == 1795636700179000000
    assert to_ns("2026-11-25T19:58:20Z") == 1795636700000000000
    assert to_ns("2026-11-25T21:58:20.5+02:00") == 1795636700500000000
    for bad in ("2026-11-25 19:58", 1795636700, None, "2026-11-25T19:58:20.1234567890Z"):
        with pytest.raises(ValueError):
            to_ns(bad)


def test_placement_groups_kept_under_their_own_source_type():
    [pg] = normalize(
        {
            "eventType": "PLACEMENT_GROUP_DEFINITION_EVENT",
            "timestamp": "2026-11-25T19:58:41Z",
            "placementGroupDefinitionEvent": {
                "placementGroupId": "AAAAAAAAAAAAAAAAAAAAAAAA",
                "name": "pg",
                "strategy": "PACK",
                "bundles": [{"bundleIndex": 0, "unitResources": {"CPU": 1.0, "myResource": 2.0}}],
            },
        }
    )
    assert pg["source_type"] == PLACEMENT_GROUP == "RAY_PLACEMENT_GROUP"
    data = pg["event_data"]
    assert data["event_type"] == "PLACEMENT_GROUP_DEFINITION_EVENT" and data["placement_group_id"]
    # Map fields keep the user's keys: a resource called myResource is not renamed.
    assert data["bundles"] == [{"bundle_index": 0, "unit_resources": {"CPU": 1.0, "myResource": 2.0}}]
    f = Folded()
    fold_lines([json.dumps(pg).encode()], "pg", f)  # the folds ignore it, without calling it damage
    assert f.damage.bad_lines == 0 and not (f.actors or f.nodes or f.driver_jobs or f.submission_jobs)
    assert normalize({"eventType": "PLATFORM_EVENT", "timestamp": "2026-11-25T19:58:41Z"}) == []


@pytest.mark.parametrize(
    "event",
    [
        [1, 2],
        {"timestamp": "2026-11-25T19:58:41Z"},
        {"eventType": "TASK_DEFINITION_EVENT", "timestamp": "2026-11-25T19:58:41Z"},
        {"eventType": "TASK_LIFECYCLE_EVENT", "timestamp": "2026-11-25T19:58:41Z", "taskLifecycleEvent": {}},
        {"eventType": "TASK_PROFILE_EVENT", "timestamp": "not a time", "taskProfileEvents": {"taskId": BOOM_B64}},
        {
            "eventType": "ACTOR_LIFECYCLE_EVENT",
            "timestamp": "2026-11-25T19:58:41Z",
            "actorLifecycleEvent": {"actorId": "AAAA", "stateTransitions": [{"state": "ALIVE", "timestamp": 5}]},
        },
        {
            "eventType": "NODE_DEFINITION_EVENT",
            "timestamp": "2026-11-25T19:58:41Z",
            "nodeDefinitionEvent": {"labels": 3},
        },
    ],
)
def test_malformed_events_raise_one_typed_error(event):
    with pytest.raises(MalformedEvent):
        normalize(event)


# --- the whole path: a ray_events spool compacted into the same tables as export files -----------------------


def test_task_from_http_events(compacted):
    _, db = compacted
    boom = _task(db, BOOM_HEX)
    assert boom["name"] == "boom" and boom["func_or_class_name"] == "boom" and boom["state"] == "FAILED"
    assert boom["job_id"] == "01000000" and boom["type"] == "NORMAL_TASK"
    assert boom["parent_task_id"] == "ffffffffffffffffffffffffffffffffffffffff01000000"
    assert (boom["creation_time_ms"], boom["start_time_ms"], boom["end_time_ms"]) == (
        1795636720383.0,
        1795636720384.0,
        1795636720388.0,
    )
    assert [e["state"] for e in boom["events"]] == [
        "PENDING_ARGS_AVAIL",
        "PENDING_NODE_ASSIGNMENT",
        "SUBMITTED_TO_WORKER",
        "RUNNING",
        "FAILED",
    ]
    assert boom["node_id"] == NODE_HEX and boom["worker_id"] == BOOM_WORKER_HEX and boom["worker_pid"] == 7475
    assert boom["error_type"] == "TASK_EXECUTION_EXCEPTION"
    assert boom["error_message"].startswith("User exception:\nray::boom() (pid=7475")  # ANSI codes gone
    assert boom["required_resources"] == {"CPU": 1.0} and boom["placement_group_id"] is None
    log = boom["task_log_info"]
    assert log["stdout_file"].endswith(f"worker-{BOOM_WORKER_HEX}-ffffffff-7475.out")
    assert (log["stdout_start"], log["stdout_end"], log["stderr_start"], log["stderr_end"]) == (243, 269, 191, 191)
    prof = boom["profiling_data"]
    assert prof["component_id"] == BOOM_WORKER_HEX and prof["node_ip_address"] == "192.0.2.2"
    assert sorted(e["event_name"] for e in prof["events"]) == [
        "task::boom",
        "task:deserialize_arguments",
        "task:execute",
    ]
    assert prof["events"][0]["start_time"] == pytest.approx(1795636720385.344466)
    [[n]] = db.query("SELECT count(*) FROM profile_events WHERE task_id = ?", [BOOM_HEX])
    assert n == 3


def test_other_tasks_from_http_events(compacted):
    info, db = compacted
    assert info["counts"]["tasks"] == 3 and info["counts"]["failed_tasks"] == 1
    ok = _task(db, base64.b64decode("yO9FzNARJXH///////////////8BAAAA").hex())
    assert ok["name"] == "ok" and ok["state"] == "NIL"  # its definition and profile, no lifecycle in the samples
    assert ok["profiling_data"]["events"][0]["event_name"] == "task:deserialize_arguments"
    inc = _task(db, base64.b64decode("cbEzoR4cRhxubaThZ6sX1eRdUqoBAAAA").hex())
    assert inc["type"] == "ACTOR_TASK" and inc["name"] == "Counter_.inc"
    assert inc["actor_id"] == base64.b64decode("bm2k4WerF9XkXVKqAQAAAA==").hex()


def test_nodes_actors_jobs_from_http_events(compacted):
    _, db = compacted
    [node] = db.nodes()
    assert node["node_id"] == NODE_HEX and node["state"] == "ALIVE" and node["is_head_node"] is True
    assert node["node_ip"] == "192.0.2.2" and node["start_time_ms"] == 1795636700179
    assert node["resources_total"]["CPU"] == 2.0 and node["labels"] == {"ray.io/node-id": NODE_HEX}

    actors = {a["actorId"]: a for a in db.actors()}
    bad = actors["76485b1456e9f3d1ff3253ab01000000"]
    assert bad["state"] == "DEAD" and bad["pid"] == 7657 and bad["address"]["nodeId"] == NODE_HEX
    assert (bad["startTime"], bad["endTime"]) == (1795636722000, 1795636722000)  # seconds, as export files
    counter = actors[base64.b64decode("bm2k4WerF9XkXVKqAQAAAA==").hex()]
    assert counter["name"] == "probe_counter" and counter["className"] == "Counter_"
    assert counter["state"] == "DEPENDENCIES_UNREADY" and counter["isDetached"] and counter["rayNamespace"] == "probe"

    jobs = {j["job_id"]: j for j in db.jobs()}
    driver = jobs["01000000"]
    assert driver["type"] == "DRIVER" and driver["status"] == "RUNNING" and driver["entrypoint"] == "python driver.py"
    assert driver["driver_info"] == {"id": "01000000", "node_ip_address": "192.0.2.2", "pid": "7424"}
    finished = jobs["08000000"]
    assert finished["status"] == "SUCCEEDED" and finished["end_time"] == 1795636854621


def test_submission_jobs_from_http_events(tmp_path):
    ts = "2026-11-25T19:59:0{}.5Z"
    events = [
        {
            "eventType": "SUBMISSION_JOB_DEFINITION_EVENT",
            "timestamp": ts.format(0),
            "submissionJobDefinitionEvent": {
                "submissionId": "sub_ok",
                "entrypoint": "python job.py",
                "config": {"serializedRuntimeEnv": '{"working_dir": "gcs://pkg.zip"}', "metadata": {"team": "a"}},
            },
        },
        {
            "eventType": "SUBMISSION_JOB_LIFECYCLE_EVENT",
            "timestamp": ts.format(5),
            "submissionJobLifecycleEvent": {
                "submissionId": "sub_ok",
                "stateTransitions": [
                    {
                        "state": "SUCCEEDED",
                        "timestamp": ts.format(5),
                        "message": "Job finished successfully.",
                        "driverExitCode": 0,
                    },
                    {"state": "PENDING", "timestamp": ts.format(0)},
                    {
                        "state": "RUNNING",
                        "timestamp": ts.format(2),
                        "driverNodeId": NODE_B64,
                        "driverAgentHttpAddress": "http://192.0.2.2:52365",
                    },
                ],
            },
        },
    ]
    info, db = _archive(tmp_path, _lines(events))
    assert info["damage"]["bad_lines"] == 0
    job = db.job("sub_ok")
    assert job["type"] == "SUBMISSION" and job["status"] == "SUCCEEDED" and job["entrypoint"] == "python job.py"
    assert (job["start_time"], job["end_time"]) == (1795636740500, 1795636745500)
    assert job["message"] == "Job finished successfully." and job["driver_exit_code"] == 0
    assert job["driver_node_id"] == NODE_HEX and job["driver_agent_http_address"] == "http://192.0.2.2:52365"
    assert job["metadata"] == {"team": "a"} and job["runtime_env"] == {"working_dir": "gcs://pkg.zip"}


def test_unfinished_entities_end_with_the_cluster(reference, tmp_path):
    """The HTTP path stops at `ray stop` (the agent dies first): what it left running ends with the session."""
    end = 1795636900000
    _, db = _archive(tmp_path, _lines(_all_sample_events(reference)), end_ms=end)
    actors = {a["name"]: a for a in db.actors()}
    assert actors["probe_counter"]["endTime"] == end
    driver = db.job("01000000")
    assert driver["end_time"] == end and driver["message"].startswith("Unfinished")
    ok = _task(db, base64.b64decode("yO9FzNARJXH///////////////8BAAAA").hex())
    assert ok["end_time_ms"] == end and ok["error_message"].startswith("Unfinished")


def test_malformed_lines_are_damage_not_a_crash(reference, tmp_path):
    good = _lines([e["event"] for e in _http(reference, "one_task_all_events.json")["events"]])
    spool = b"".join(
        [
            b"{not json\n",
            b"\xff\xfe\x00garbage\n",
            b"[1, 2, 3]\n",
            json.dumps(
                {
                    "eventType": "TASK_LIFECYCLE_EVENT",
                    "timestamp": "2026-11-25T19:58:40Z",
                    "taskLifecycleEvent": {"stateTransitions": []},
                }
            ).encode()
            + b"\n",  # no taskId
            json.dumps(
                {
                    "eventType": "NODE_LIFECYCLE_EVENT",
                    "timestamp": "yesterday",
                    "nodeLifecycleEvent": {"nodeId": NODE_B64},
                }
            ).encode()
            + b"\n",
            good,
            b'{"eventType": "TASK_DEFINITION_EVENT", "timesta',  # still being written: left for the next compaction
        ]
    )
    info, db = _archive(tmp_path, spool)
    damage = info["damage"]
    assert damage["bad_lines"] == 5, damage
    assert len(damage["examples"]) == 5 and all("ray_events/events-0001.jsonl:" in e for e in damage["examples"])
    assert any("malformed NODE_LIFECYCLE_EVENT" in e for e in damage["examples"])
    assert _task(db, BOOM_HEX)["state"] == "FAILED"  # the good lines still count


def test_both_paths_for_one_task_give_one_row(reference, tmp_path):
    """An export file and the HTTP events for the same task attempt merge by (task_id, attempt_number)."""
    export_task = {
        "source_type": "EXPORT_TASK",
        "timestamp": 1795636720,
        "event_data": {
            "task_id": BOOM_B64,
            "attempt_number": 0,
            "job_id": "AQAAAA==",
            "task_info": {
                "func_or_class_name": "boom",
                "type": "NORMAL_TASK",
                "language": "PYTHON",
                "task_id": BOOM_B64,
                "parent_task_id": "//////////////////////////8BAAAA",
                "required_resources": {"CPU": 1},
            },
            "state_updates": {"state_ts_ns": {"1": "1795636720383549310", "2": "1795636720383751087"}},
        },
    }
    export_node = {
        "source_type": "EXPORT_NODE",
        "timestamp": 1795636700,
        "event_data": {
            "node_id": NODE_B64,
            "node_manager_address": "192.0.2.2",
            "state": "ALIVE",
            "is_head_node": True,
            "start_time_ms": "1795636700179",
            "end_time_ms": "0",
            "resources_total": {"CPU": 2},
        },
    }
    http = [e["event"] for e in _http(reference, "one_task_all_events.json")["events"]]
    http += list(_http(reference, "one_event_per_type.json")["events"].values())
    info, db = _archive(
        tmp_path,
        _lines(http),
        {
            "event_EXPORT_TASK_7424.log": json.dumps(export_task).encode() + b"\n",
            "event_EXPORT_NODE.log": json.dumps(export_node).encode() + b"\n",
        },
    )
    assert info["damage"]["bad_lines"] == 0
    [[rows]] = db.query("SELECT count(*) FROM tasks WHERE task_id = ?", [BOOM_HEX])
    assert rows == 1
    boom = _task(db, BOOM_HEX)
    assert boom["state"] == "FAILED" and boom["worker_pid"] == 7475 and boom["node_id"] == NODE_HEX
    assert [e["state"] for e in boom["events"]] == [
        "PENDING_ARGS_AVAIL",
        "PENDING_NODE_ASSIGNMENT",
        "SUBMITTED_TO_WORKER",
        "RUNNING",
        "FAILED",
    ]
    assert len(boom["profiling_data"]["events"]) == 3
    [node] = db.nodes()
    assert node["node_id"] == NODE_HEX and node["start_time_ms"] == 1795636700179
