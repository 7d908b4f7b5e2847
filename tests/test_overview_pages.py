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
        ("DRIVER", "SUCCEEDED"),
        ("SUBMISSION", "SUCCEEDED"),
        ("SUBMISSION", "FAILED"),
    }
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
    # "search these errors" beside the ValueError group finds the failures (their task errors and printed lines).
    link = next(a for a in html.split('class="search-errors" href="')[1:] if "q=valueerror" in a).split('"')[0]
    assert link == f"/sessions/{finished_cluster.ref.id}/search?q=valueerror"
    found = client.get(f"/api/v1/sessions/{finished_cluster.ref.id}/logs/search", params={"q": "valueerror"}).json()
    assert any("intentional failure" in h["message"] for h in found["hits"]), found


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


def test_timeline_page_draws_the_tasks_and_opens_a_tasks_logs(finished_cluster, tmp_path):
    """Real Chromium: the canvas draws every attempt of the job, and clicking a bar shows that task's output."""
    from archive.storage import open_store
    from historyserver.app import create_app
    from historyserver.settings import ServerSettings
    from tests.browser import browser, page_watch, served, wait_for_text

    app = create_app(
        ServerSettings(archive=finished_cluster.local_archive, cache_dir=str(tmp_path), catalog_ttl=0),
        open_store(finished_cluster.local_archive),
    )
    sid = finished_cluster.ref.id
    with served(app) as url, browser() as b, page_watch(b) as (page, problems):
        jobs = app.state.services.warehouse.db(app.state.services.catalog.get(sid)).jobs()
        driver_job = next(j["job_id"] for j in jobs if j["type"] == "DRIVER")
        page.goto(f"{url}/sessions/{sid}/timeline?job_id={driver_job}")
        wait_for_text(page, ["task attempts on"])
        data = page.evaluate(f"fetch('/api/v1/sessions/{sid}/timeline?job_id={driver_job}').then(r => r.json())")
        assert int(page.get_attribute("#timeline", "data-tasks-drawn")) == data["shown"] > 0
        # Click the middle of the first `square` bar: the page must show its stdout, "square(N)".
        col = {c: i for i, c in enumerate(data["columns"])}
        box = page.locator("#timeline").bounding_box()
        squares = [r for r in data["rows"] if r[col["name"]] == "square"]
        assert squares
        found = page.evaluate("id => window.__rayhistoryTimeline.locate(id)", squares[0][col["task_id"]])
        page.mouse.click(box["x"] + found["x"], box["y"] + found["y"])
        wait_for_text(page, ["square(", "open in Ray's dashboard"])
        assert "square(" in page.inner_text("#task-out")
        # "this task's logs": the search page, scoped to the task's worker and name, shows what it printed.
        page.click("#task-logs")
        page.wait_for_url("**/search?**")
        wait_for_text(page, ["square(", "hits (archive"])
        page.wait_for_load_state("networkidle")
        assert not problems.all(), problems.all()
