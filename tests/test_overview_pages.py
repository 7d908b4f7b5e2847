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
    one = client.get(f"/api/v1/sessions/{sid}/timeline", params={"job_id": driver_job, "width": 600}).json()
    assert 0 < one["total"] < everything["total"] and one["mode"] == "attempts"
    attempts = [dict(zip(one["columns"], a)) for a in one["attempts"]]
    assert len(attempts) == one["total"]
    assert {"square", "flaky"} <= {a["name"] for a in attempts} and "shout" not in {a["name"] for a in attempts}
    # Real Ray records when each attempt was created, waited for a node, went to its worker, ran and ended.
    square = next(a for a in attempts if a["name"] == "square")
    stamps = [square[c] for c in ("creation_ms", "pending_node_ms", "submitted_ms", "start_ms", "end_ms")]
    assert None not in stamps and stamps == sorted(stamps), stamps
    assert one["lanes"][square["lane"]]["pid"] == square["pid"]
    # Zoomed onto that one attempt: the total counts only what overlaps it.
    zoomed = client.get(
        f"/api/v1/sessions/{sid}/timeline",
        params={"job_id": driver_job, "start": square["start_ms"], "end": square["end_ms"]},
    ).json()
    assert 1 <= zoomed["total"] < one["total"] or one["total"] == 1
    assert square["task_id"] in {a[0] for a in zoomed["attempts"]}
    bad = client.get(f"/api/v1/sessions/{sid}/timeline", params={"start": 10, "end": 5})
    assert bad.status_code == 400 and "must be after start" in bad.json()["error"]["message"]
    assert client.get(f"/sessions/{sid}/timeline", params={"job_id": driver_job}).status_code == 200
    assert client.get("/assets/timeline.js").status_code == 200


def _attempt_under_pointer(aimed: dict, attempts: list[dict], tip: str, ms_per_px: float) -> dict:
    """The attempt the tooltip names, when the pointer aimed at `aimed`'s running bar: `aimed` itself, or another
    `square` attempt whose running bar covers the same instant on the same row, within what the page's hit test
    allows (timeline_pointer.js `attemptAt`: 2 px either side; the later attempt wins a tie). Ray's times are whole
    milliseconds, so two ~1 ms tasks run back to back on one lane are drawn on the same pixels."""
    named = [a for a in attempts if a["task_id"] in tip]
    assert len(named) == 1, ("the tooltip names one attempt", tip)
    shown = named[0]
    if shown["task_id"] == aimed["task_id"]:
        return aimed

    def running(a: dict) -> tuple[float, float]:
        begin = a["start_ms"] if a["start_ms"] is not None else a["creation_ms"]
        return begin, a["end_ms"]

    (a0, a1), (s0, s1) = running(aimed), running(shown)
    instant = (a0 + a1) / 2
    slack = 1 + 2 * ms_per_px
    assert shown["lane"] == aimed["lane"] and s0 - slack <= instant <= s1 + slack, (
        "not under the pointer",
        shown,
        aimed,
        slack,
    )
    assert shown["name"] == "square", shown
    return shown


def test_timeline_page_tooltip_legend_zoom_to_a_task_and_its_logs(finished_cluster, tmp_path):
    """Real Chromium on the real dead cluster: every attempt of the job drawn, a legend naming the states and phases
    on screen, a tooltip with the task's facts, a click that shows its stdout and links its row in Ray's UI, and
    a zoom onto that single task that fetches only its window."""
    from archive.storage import open_store
    from historyserver.app import create_app
    from historyserver.settings import ServerSettings
    from tests.browser import browser, page_watch, poll, served, wait_for_text

    app = create_app(
        ServerSettings(archive=finished_cluster.local_archive, cache_dir=str(tmp_path), catalog_ttl=0),
        open_store(finished_cluster.local_archive),
    )
    sid = finished_cluster.ref.id
    with served(app) as url, browser() as b, page_watch(b) as (page, problems):
        jobs = app.state.services.warehouse.db(app.state.services.catalog.get(sid)).jobs()
        driver_job = next(j["job_id"] for j in jobs if j["type"] == "DRIVER")
        page.goto(f"{url}/sessions/{sid}/timeline?job_id={driver_job}")
        page.wait_for_function("document.getElementById('timeline').dataset.ready")
        data = page.evaluate(f"fetch('/api/v1/sessions/{sid}/timeline?job_id={driver_job}').then(r => r.json())")
        attempts = [dict(zip(data["columns"], a)) for a in data["attempts"]]
        state = page.evaluate("window.__rayhistoryTimeline.state()")
        assert state["mode"] == "attempts" and state["total"] == data["total"] == len(attempts) == state["drawn"]
        assert f"{data['total']} task attempts in view" in page.inner_text("#status")
        legend = page.inner_text("#legend")
        for words in {a["state"] for a in attempts} | {"waiting for a node", "on the worker", "thick: running"}:
            assert words in legend, (words, legend)

        square = next(a for a in attempts if a["name"] == "square")
        # Zoomed out, a 1 ms task shares its pixels with its lane's neighbours: hover it in its own window.
        pad = max((square["end_ms"] - square["creation_ms"]) * 0.05, 0.5)
        page.evaluate(
            "([a, b]) => window.__rayhistoryTimeline.zoomTo(a, b)",
            [square["creation_ms"] - pad, square["end_ms"] + pad],
        )
        window = page.evaluate("window.__rayhistoryTimeline.view()")
        poll(
            lambda: page.evaluate("window.__rayhistoryTimeline.state()")["start"] == window["from"],
            10,
            "the task's window answered",
        )
        box = page.locator("#timeline").bounding_box()
        at = page.evaluate("id => window.__rayhistoryTimeline.locate(id)", square["task_id"])
        page.mouse.move(box["x"] + at["x"], box["y"] + at["y"])
        page.wait_for_selector("#tooltip:not([hidden])")
        tip = page.inner_text("#tooltip")
        ms_per_px = (window["to"] - window["from"]) / at["plot"]
        square = _attempt_under_pointer(square, attempts, tip, ms_per_px)
        for fact in ("square", "state: FINISHED", square["task_id"], f"pid {square['pid']}", "duration", "running"):
            assert fact in tip, (fact, tip)
        page.mouse.click(box["x"] + at["x"], box["y"] + at["y"])
        wait_for_text(page, ["square(", "open in Ray's dashboard"])
        assert "square(" in page.inner_text("#task-out")
        link = page.get_attribute("#task-meta a", "href")
        assert link == f"/sessions/{sid}/#/jobs/{square['job_id']}/tasks/{square['task_id']}"

        # Zoom onto that task: the next answer covers its window only, and its bar fills most of the plot.
        answered = page.evaluate("window.__rayhistoryTimeline.stats.requests.length")
        page.click("#zoom-task")
        view = page.evaluate("window.__rayhistoryTimeline.view()")
        assert view["from"] <= square["creation_ms"] and view["to"] >= square["end_ms"]
        zoomed = poll(
            lambda: (
                page.evaluate("window.__rayhistoryTimeline.stats.requests.length") > answered
                and (s := page.evaluate("window.__rayhistoryTimeline.state()"))["start"] == view["from"]
                and s
            ),
            10,
            "the zoomed window's answer",
        )
        assert 1 <= zoomed["total"] <= state["total"] and zoomed["end"] == view["to"]
        at = page.evaluate("id => window.__rayhistoryTimeline.locate(id)", square["task_id"])
        assert at["width"] > 0.8 * at["plot"], at

        # "this task's logs": the search page, scoped to the task's worker and name, shows what it printed.
        page.click("#task-logs")
        page.wait_for_url("**/search?**")
        wait_for_text(page, ["square(", "hits (archive"])
        page.wait_for_load_state("networkidle")
        assert not problems.all(), problems.all()
