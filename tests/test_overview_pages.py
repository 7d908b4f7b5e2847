"""Our own pages and their JSON, on the real dead cluster: overview, failures by error, timeline data."""

from __future__ import annotations

import pytest

from tests.helpers import client_for


@pytest.fixture(scope="module")
def client(finished_cluster, tmp_path_factory):
    with client_for(finished_cluster.local_archive, tmp_path_factory.mktemp("cache")) as c:
        yield c


def test_overview_json(client, finished_cluster):
    o = client.get(f"/api/v1/sessions/{finished_cluster.ref.id}/overview").json()
    assert o["session"]["status"] == "ended" and o["duration_ms"] > 0
    assert {(j["type"], j["status"]) for j in o["jobs"]} == {
        ("DRIVER", "SUCCEEDED"), ("SUBMISSION", "SUCCEEDED"), ("SUBMISSION", "FAILED")}
    assert not any(j["unfinished"] for j in o["jobs"])
    assert o["tasks"]["by_state"]["FAILED"] >= 2 and "DRIVER_TASK" not in str(o["tasks"])
    groups = {(g["error_type"], g["exception"]): g for g in o["failed_task_groups"]}
    flaky = groups[("TASK_EXECUTION_EXCEPTION", "ValueError")]
    assert flaky["count"] == 2 and flaky["functions"] == ["flaky"]
    assert "intentional failure" in flaky["example_error"]
    assert [n["is_head_node"] for n in o["nodes"]] == [True] and o["nodes"][0]["cpus"] == 2
    assert o["damage"]["bad_lines"] == 0


def test_overview_page_lists_jobs_and_failures(client, finished_cluster):
    html = client.get(f"/sessions/{finished_cluster.ref.id}/overview").text
    for sid in finished_cluster.jobs:
        assert sid in html
    assert "ValueError" in html and "flaky" in html and "Damaged archive" not in html


def test_timeline_data_per_job(client, finished_cluster):
    sid = finished_cluster.ref.id
    everything = client.get(f"/api/v1/sessions/{sid}/timeline").json()
    driver_job = next(j for j in client.get(f"/sessions/{sid}/api/jobs/").json() if j["type"] == "DRIVER")["job_id"]
    one = client.get(f"/api/v1/sessions/{sid}/timeline", params={"job_id": driver_job}).json()
    assert 0 < one["total"] < everything["total"]
    col = {c: i for i, c in enumerate(one["columns"])}
    names = {r[col["name"]] for r in one["rows"]}
    assert {"square", "flaky"} <= names and "shout" not in names
    assert all(r[col["start_ms"]] <= r[col["end_ms"]] for r in one["rows"])
    assert client.get(f"/sessions/{sid}/timeline", params={"job_id": driver_job}).status_code == 200
    assert client.get("/assets/timeline.js").status_code == 200
