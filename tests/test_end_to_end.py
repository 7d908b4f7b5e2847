"""A real Ray cluster, archived by the collector into a local directory and into S3, served after Ray stopped."""

from __future__ import annotations

import pytest

from archive import logs as archive_logs
from archive.storage import open_store
from tests.helpers import client_for
from tests.ray_cluster import source_logs


@pytest.fixture(params=["local", "s3"])
def served(request, finished_cluster, tmp_path, monkeypatch):
    if request.param == "s3":
        for k, v in finished_cluster.s3_env.items():
            monkeypatch.setenv(k, v)
        archive = finished_cluster.s3_archive
    else:
        archive = finished_cluster.local_archive
    with client_for(archive, tmp_path / "cache") as client:
        yield client, finished_cluster


def test_collectors_exit_cleanly(finished_cluster):
    assert finished_cluster.collector_exit_codes == (0, 0)


def test_session_is_listed_as_ended(served):
    client, cluster = served
    sessions = client.get("/api/v1/sessions").json()["sessions"]
    [s] = [s for s in sessions if s["id"] == cluster.ref.id]
    assert s["status"] == "ended"
    assert s["ended_by"] == "signal:SIGTERM"
    assert s["ray_version"] == "2.60.0"
    assert s["start"] < s["end"]
    assert s["url"].endswith(f"/sessions/{cluster.ref.id}/")


def test_jobs_have_final_statuses(served):
    client, cluster = served
    jobs = client.get(f"/sessions/{cluster.ref.id}/api/jobs/").json()
    by_submission = {j["submission_id"]: j for j in jobs if j["type"] == "SUBMISSION"}
    assert {k: v["status"] for k, v in by_submission.items()} == cluster.jobs
    drivers = [j for j in jobs if j["type"] == "DRIVER"]
    assert [d["status"] for d in drivers] == ["SUCCEEDED"]
    assert drivers[0]["entrypoint"].endswith("driver.py")
    ok = next(j for j in by_submission.values() if j["status"] == "SUCCEEDED")
    assert ok["driver_info"]["id"] == ok["job_id"] and ok["driver_exit_code"] == 0
    # Detail by submission id and by job id give the same job.
    assert client.get(f"/sessions/{cluster.ref.id}/api/jobs/{ok['submission_id']}").json() == ok
    assert client.get(f"/sessions/{cluster.ref.id}/api/jobs/{ok['job_id']}").json() == ok


def test_tasks_states_and_filters(served):
    client, cluster = served
    base = f"/sessions/{cluster.ref.id}/api/v0/tasks"
    squares = client.get(
        base,
        params={"detail": 1, "limit": 100, "filter_keys": "name", "filter_predicates": "=", "filter_values": "square"},
    ).json()["data"]["result"]
    assert squares["num_filtered"] == 8
    assert {t["state"] for t in squares["result"]} == {"FINISHED"}
    t = squares["result"][0]
    assert t["start_time_ms"] <= t["end_time_ms"] and t["profiling_data"]["events"]
    assert t["task_log_info"]["stdout_file"].endswith(".out")
    failed = client.get(
        base,
        params={
            "filter_keys": ["name", "state"],
            "filter_predicates": ["=", "="],
            "filter_values": ["flaky", "FAILED"],
        },
    ).json()["data"]["result"]
    assert failed["num_filtered"] == 2
    assert all(r["error_type"] == "TASK_EXECUTION_EXCEPTION" for r in failed["result"])
    assert "detail" not in failed and "events" not in failed["result"][0]  # summary rows without detail
    limited = client.get(base, params={"limit": 3}).json()["data"]["result"]
    assert len(limited["result"]) == 3 and limited["total"] >= 16


def test_actors_and_nodes(served):
    client, cluster = served
    actors = client.get(f"/sessions/{cluster.ref.id}/logical/actors").json()["data"]["actors"]
    by_class = {a["className"]: a for a in actors.values()}
    assert by_class["Counter"]["state"] == "DEAD" and by_class["Counter"]["name"] == "demo_counter"
    assert by_class["BrokenInit"]["state"] == "DEAD"
    assert "this actor fails in __init__" in by_class["BrokenInit"]["exitDetail"]  # its creation-task failure
    one = client.get(f"/sessions/{cluster.ref.id}/logical/actors/{by_class['Counter']['actorId']}").json()
    assert one["data"]["detail"]["actorId"] == by_class["Counter"]["actorId"]
    nodes = client.get(f"/sessions/{cluster.ref.id}/api/v0/nodes").json()["data"]["result"]["result"]
    assert len(nodes) == 1 and nodes[0]["is_head_node"] and nodes[0]["state"] == "DEAD"


def test_unknown_things_are_404_json(served):
    client, cluster = served
    r = client.get("/sessions/default~e2e~session_2000-01-01_00-00-00_000000_1/api/jobs/")
    assert r.status_code == 404 and r.json()["result"] is False and "no session" in r.json()["msg"]
    r = client.get(f"/sessions/{cluster.ref.id}/api/jobs/nosuchjob")
    assert r.status_code == 404 and "nosuchjob" in r.json()["msg"]
    r = client.get(f"/sessions/{cluster.ref.id}/logical/actors/ffff")
    assert r.status_code == 404


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_archived_logs_are_byte_identical(finished_cluster, backend, monkeypatch):
    """Every file under logs/ comes back from the archive byte for byte, empty ones included (Ray lists them)."""
    source = source_logs(finished_cluster.session_dir)
    assert any(p.startswith("export_events/") for p in source) and any(p.startswith("events/") for p in source)
    assert any(not d for d in source.values())
    archive = finished_cluster.local_archive
    if backend == "s3":
        for k, v in finished_cluster.s3_env.items():
            monkeypatch.setenv(k, v)
        archive = finished_cluster.s3_archive
    store = open_store(archive)
    [node_id] = store.list_dirs(finished_cluster.ref.nodes_prefix)
    node = finished_cluster.ref.node(node_id)
    assert set(archive_logs.list_segments(store, node)) == set(source)
    for path, data in source.items():
        assert archive_logs.read_file(store, node, path) == data, path


def test_workers_are_derived_from_tasks_logs_and_drivers(served, reference):
    client, cluster = served
    base = f"/sessions/{cluster.ref.id}"
    workers = client.get(f"{base}/api/v0/workers").json()["data"]["result"]["result"]
    import json as _json

    sample = _json.loads((reference / "dashboard_api" / "v0_workers.json").read_text())["response"]
    assert set(workers[0]) == set(sample["data"]["result"]["result"][0])
    drivers = [w for w in workers if w["worker_type"] == "DRIVER"]
    driver_job = next(j for j in client.get(f"{base}/api/jobs/").json() if j["type"] == "DRIVER")
    assert any(
        w["worker_id"].startswith(driver_job["job_id"]) and w["pid"] == int(driver_job["driver_info"]["pid"])
        for w in drivers
    )
    squares = client.get(
        f"{base}/api/v0/tasks", params={"filter_keys": "name", "filter_predicates": "=", "filter_values": "square"}
    ).json()["data"]["result"]
    ran = {t["worker_id"] for t in squares["result"]}
    by_id = {w["worker_id"]: w for w in workers}
    assert ran <= set(by_id) and all(not by_id[w]["is_alive"] and by_id[w]["pid"] for w in ran)
