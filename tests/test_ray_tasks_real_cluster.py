"""Task summaries, the Chrome-trace timeline and placement groups of the real demo cluster (finished_cluster),
served in Ray 2.60's shapes and compared with its recorded answers (reference/ray-2.60/dashboard_api/)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.helpers import client_for


@pytest.fixture(scope="module")
def served(finished_cluster, tmp_path_factory):
    with client_for(finished_cluster.local_archive, tmp_path_factory.mktemp("cache")) as client:
        base = f"/sessions/{finished_cluster.ref.id}"
        jobs = client.get(f"{base}/api/jobs/").json()
        [driver] = [j for j in jobs if j["type"] == "DRIVER"]
        yield client, base, driver["job_id"]


def _response(reference: Path, name: str) -> dict:
    return json.loads((reference / "dashboard_api" / name).read_text())["response"]


def _job_filter(job_id: str) -> dict:
    return {"filter_keys": "job_id", "filter_predicates": "=", "filter_values": job_id}


def test_summary_by_func_name(served, reference):
    client, base, driver_job = served
    ref = _response(reference, "v0_tasks_summarize.json")
    whole = client.get(f"{base}/api/v0/tasks/summarize").json()
    job = client.get(f"{base}/api/v0/tasks/summarize", params=_job_filter(driver_job)).json()
    for body in (whole, job):
        assert body.keys() == ref.keys() and body["result"] is True
        assert body["data"]["result"].keys() == ref["data"]["result"].keys()
        cluster = body["data"]["result"]["result"]["node_id_to_summary"]["cluster"]
        ref_cluster = ref["data"]["result"]["result"]["node_id_to_summary"]["cluster"]
        assert cluster.keys() == ref_cluster.keys() and cluster["summary_by"] == "func_name"
        for entry in cluster["summary"].values():
            assert entry.keys() == ref_cluster["summary"]["ok"].keys()
        summary = cluster["summary"]
        assert summary["square"] == {
            "func_or_class_name": "square",
            "type": "NORMAL_TASK",
            "state_counts": {"FINISHED": 8},
        }
        assert summary["flaky"]["type"] == "NORMAL_TASK"
        assert dict(sorted(summary["flaky"]["state_counts"].items())) == {"FAILED": 2, "FINISHED": 2}
        # The demo's Counter is named "demo_counter": Ray names its creation task after it (CoreWorker::CreateActor).
        assert summary["demo_counter:Counter.__init__"] == {
            "func_or_class_name": "demo_counter:Counter.__init__",
            "type": "ACTOR_CREATION_TASK",
            "state_counts": {"FINISHED": 1},
        }
        assert "Counter.__init__" not in summary
        assert sum(summary["Counter.incr"]["state_counts"].values()) == 3
        counted = sum(sum(e["state_counts"].values()) for e in summary.values())
        result = body["data"]["result"]
        assert counted == result["num_filtered"] == result["total"]
        assert counted == cluster["total_tasks"] + cluster["total_actor_tasks"] + cluster["total_actor_scheduled"]
        assert result["warnings"] is None and result["partial_failure_warning"] == ""
        assert "" not in summary  # driver tasks (no name) are left out, as Ray's exclude_driver does
    whole_summary = whole["data"]["result"]["result"]["node_id_to_summary"]["cluster"]["summary"]
    job_summary = job["data"]["result"]["result"]["node_id_to_summary"]["cluster"]["summary"]
    assert "shout" in whole_summary and "shout" not in job_summary  # the submitted job's tasks
    # The filter matches Ray's: case-insensitive, and unknown keys are refused in Ray's envelope.
    upper = client.get(f"{base}/api/v0/tasks/summarize", params=_job_filter(driver_job.upper())).json()
    assert upper == job
    bad = client.get(
        f"{base}/api/v0/tasks/summarize",
        params={"filter_keys": "colour", "filter_predicates": "=", "filter_values": "red"},
    )
    assert bad.status_code == 400 and bad.json()["result"] is False


def test_summary_by_lineage(served, reference):
    client, base, driver_job = served
    ref = _response(reference, "v0_tasks_summarize_lineage.json")
    body = client.get(
        f"{base}/api/v0/tasks/summarize", params={**_job_filter(driver_job), "summary_by": "lineage"}
    ).json()
    cluster = body["data"]["result"]["result"]["node_id_to_summary"]["cluster"]
    ref_cluster = ref["data"]["result"]["result"]["node_id_to_summary"]["cluster"]
    assert cluster.keys() == ref_cluster.keys() and cluster["summary_by"] == "lineage"
    node_keys = ref_cluster["summary"][0].keys()

    def walk(nodes):
        for n in nodes:
            assert n.keys() == node_keys
            yield n
            yield from walk(n["children"])

    nodes = list(walk(cluster["summary"]))
    top = {n["name"]: n for n in cluster["summary"]}
    assert top["square"]["type"] == "GROUP" and top["square"]["link"] is None
    assert top["square"]["state_counts"] == {"FINISHED": 8} and len(top["square"]["children"]) == 8
    assert all(
        c["type"] == "NORMAL_TASK" and c["link"] == {"type": "task", "id": c["key"]} for c in top["square"]["children"]
    )
    assert dict(sorted(top["flaky"]["state_counts"].items())) == {"FAILED": 2, "FINISHED": 2}
    # Failed children come first, as Ray sorts them.
    assert [c["state_counts"] for c in top["flaky"]["children"]][:2] == [{"FAILED": 1}, {"FAILED": 1}]
    counter = top["Counter"]
    assert counter["type"] == "ACTOR" and counter["key"] == f"actor:{counter['link']['id']}"
    assert counter["children"][0]["type"] == "ACTOR_CREATION_TASK"  # the creation task sorts first
    assert counter["state_counts"] == {"FINISHED": 4}
    assert top["BrokenInit"]["type"] == "ACTOR" and top["BrokenInit"]["state_counts"].get("FAILED", 0) >= 1
    # Failed groups sort before finished ones.
    failed = [bool(n["state_counts"].get("FAILED")) for n in cluster["summary"]]
    assert failed == sorted(failed, reverse=True)
    leaves = [n for n in nodes if n["link"] and n["link"]["type"] == "task"]
    result = body["data"]["result"]
    assert sum(sum(n["state_counts"].values()) for n in leaves) == result["num_filtered"]
    assert (
        cluster["total_tasks"] + cluster["total_actor_tasks"] + cluster["total_actor_scheduled"]
        == result["num_filtered"]
    )
    assert all(isinstance(n["timestamp"], int) for n in nodes)


def test_timeline_is_ray_chrome_trace(served, reference):
    client, base, driver_job = served
    sample = json.loads((reference / "timeline" / "dashboard_tasks_timeline_sample.json").read_text())
    complete_keys = sample["events_one_per_kind"][0].keys()
    meta_keys = sample["events_one_per_kind"][-1].keys()
    resp = client.get(f"{base}/api/v0/tasks/timeline", params={"download": 1})
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("application/json")
    assert re.fullmatch(
        r'attachment; filename="timeline-None-\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d\.json"',
        resp.headers["content-disposition"],
    )
    events = resp.json()
    complete = [e for e in events if e["ph"] == "X"]
    meta = [e for e in events if e["ph"] == "M"]
    assert complete and meta and len(complete) + len(meta) == len(events)
    assert all(e.keys() == complete_keys for e in complete) and all(e.keys() == meta_keys for e in meta)

    tasks = client.get(f"{base}/api/v0/tasks", params={"detail": 1, "limit": 10000}).json()["data"]["result"]["result"]
    expected = {}
    for t in tasks:
        prof = t["profiling_data"]
        if t["type"] == "DRIVER_TASK" or not prof or prof["component_type"] not in ("worker", "driver"):
            continue
        for e in prof["events"]:
            expected.setdefault((t["task_id"], t["attempt_number"], e["event_name"]), []).append(e)
    got = {}
    for e in complete:
        got.setdefault((e["args"]["task_id"], e["args"]["attempt_number"], e["cat"]), []).append(e)
    assert got.keys() == expected.keys()  # one complete event per profiled phase of every task
    assert sum(len(v) for v in got.values()) == sum(len(v) for v in expected.values())
    for key, phases in expected.items():
        by_start = sorted(got[key], key=lambda e: e["ts"])
        for phase, event in zip(sorted(phases, key=lambda p: p["start_time"]), by_start):
            # ms -> us; at epoch scale a double holds microseconds to a quarter, hence the tolerance.
            assert event["ts"] == pytest.approx(phase["start_time"] * 1000, abs=0.5)
            assert event["dur"] == pytest.approx((phase["end_time"] - phase["start_time"]) * 1000, abs=0.5)
    square = next(e for e in complete if e["cat"] == "task::square")
    assert square["name"] == "__main__.square" and square["cname"] == "generic_work"
    assert square["args"]["func_or_class_name"] == "square" and square["args"]["job_id"] == driver_job
    assert {e["cname"] for e in complete if e["cat"] == "task:execute"} == {"rail_animation"}
    # Metadata names every pid (a node) and every (pid, tid) (a worker) used.
    names = {e["pid"]: e["args"]["name"] for e in meta if e["name"] == "process_name"}
    threads = {(e["pid"], e["tid"]): e["args"]["name"] for e in meta if e["name"] == "thread_name"}
    assert set(names) == {e["pid"] for e in complete} and all(n.startswith("Node ") for n in names.values())
    assert set(threads) == {(e["pid"], e["tid"]) for e in complete}
    assert all(re.fullmatch(r"(worker|driver):[0-9a-f]+", n) for n in threads.values())

    only_job = client.get(f"{base}/api/v0/tasks/timeline", params={"download": 1, "job_id": driver_job})
    assert f'filename="timeline-{driver_job}-' in only_job.headers["content-disposition"]
    job_events = [e for e in only_job.json() if e["ph"] == "X"]
    assert job_events and {e["args"]["job_id"] for e in job_events} == {driver_job}
    # Exactly the job's events (the submitted job's workers may exit before Ray flushes their profile events, so
    # the driver job can hold every event of the session).
    assert len(job_events) == len([e for e in complete if e["args"]["job_id"] == driver_job]) <= len(complete)
    assert "content-disposition" not in client.get(f"{base}/api/v0/tasks/timeline").headers


def test_placement_groups_empty_envelope(served, reference):
    client, base, _ = served
    ref = _response(reference, "v0_pgs.json")
    body = client.get(f"{base}/api/v0/placement_groups", params={"detail": 1, "limit": 10000}).json()
    assert body.keys() == ref.keys() and body["data"]["result"].keys() == ref["data"]["result"].keys()
    assert body == {
        "result": True,
        "msg": "",
        "data": {
            "result": {
                "total": 0,
                "num_after_truncation": 0,
                "num_filtered": 0,
                "result": [],
                "partial_failure_warning": "",
                "warnings": None,
            }
        },
    }
