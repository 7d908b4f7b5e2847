"""The critical path on a real Ray 2.60 session (the demo workload's submitted job: stage_a -> stage_b -> stage_c
through object refs, beside noise tasks of which one runs longer than any stage): the API lists the chain, and in
Chromium the timeline's toggle outlines it on the canvas, lists it, and zooms to a step when its row is clicked."""

from __future__ import annotations

import pytest

from tests.helpers import client_for

CHAIN = ["stage_a", "stage_b", "stage_c"]
PATH_RGB = (0xC2, 0x18, 0x5B)  # --path in light mode (timeline.css)


@pytest.fixture(scope="module")
def client(finished_cluster, tmp_path_factory):
    with client_for(finished_cluster.local_archive, tmp_path_factory.mktemp("cache")) as c:
        yield c


def _chain_job(client, sid: str) -> str:
    jobs = client.get(f"/sessions/{sid}/api/jobs/").json()
    return next(j["job_id"] for j in jobs if (j.get("submission_id") or "").startswith("demo_ok_"))


def test_the_api_lists_the_chain_not_the_longest_task(client, finished_cluster):
    sid = finished_cluster.ref.id
    job = _chain_job(client, sid)
    body = client.get(f"/api/v1/sessions/{sid}/timeline/critical_path", params={"job_id": job}).json()
    steps = body["steps"]
    assert [s["name"] for s in steps] == CHAIN, [(s["name"], s["via"]) for s in steps]
    assert [s["via"] for s in steps] == ["first", "argument", "argument"]
    assert all(s["run_ms"] >= 1000 and s["state"] == "FINISHED" for s in steps), steps
    # Each stage waited for the one before it: its arguments were ready when that one ended (same owner's clock).
    for before, after in zip(steps, steps[1:]):
        assert before["end_ms"] <= after["args_ready_ms"] and after["ready_ms"] == before["end_ms"]
    assert body["wait_ms"] + body["run_ms"] == pytest.approx(body["end"] - body["start"])
    assert body["end"] == body["job_end"]
    # The longest task of the job is a noise task, and it is not on the path.
    timeline = client.get(f"/api/v1/sessions/{sid}/timeline", params={"job_id": job}).json()
    attempts = [dict(zip(timeline["columns"], a)) for a in timeline["attempts"]]
    longest = max(attempts, key=lambda a: a["end_ms"] - (a["start_ms"] or a["end_ms"]))
    assert longest["name"] == "noise_long" and longest["task_id"] not in {s["task_id"] for s in steps}
    missing = client.get(f"/api/v1/sessions/{sid}/timeline/critical_path", params={"job_id": "7f000000"})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "EntityNotFound"
    assert job in missing.json()["error"]["message"]


def test_the_timeline_highlights_and_lists_the_critical_path(client, finished_cluster, tmp_path):
    from tests.browser import browser, page_watch, poll, served

    sid = finished_cluster.ref.id
    job = _chain_job(client, sid)
    pixel = """([t, lane, rank]) => {
        const T = window.__rayhistoryTimeline, c = document.getElementById('timeline');
        const r = window.devicePixelRatio || 1, y = T.laneY(lane, rank) + 9, x = T.x(t);
        const data = c.getContext('2d').getImageData(Math.round((x - 3) * r), Math.round(y * r), Math.round(6 * r), 1).data;
        const out = []; for (let i = 0; i < data.length; i += 4) out.push([data[i], data[i + 1], data[i + 2]]);
        return out; }"""

    def outlined(step) -> bool:
        found = page.evaluate(pixel, [step["start_ms"], step["lane"], step["node_rank"]])
        return any(sum(abs(p - q) for p, q in zip(rgb, PATH_RGB)) < 40 for rgb in found)

    with served(client.app) as url, browser() as b, page_watch(b) as (page, problems):
        page.goto(f"{url}/sessions/{sid}/timeline?job_id={job}")
        page.wait_for_function("document.getElementById('timeline').dataset.ready")
        assert page.is_hidden("#path-panel")
        page.check("#f-path")
        page.wait_for_function("document.getElementById('path-panel').dataset.ready")
        steps = page.evaluate("window.__rayhistoryPath.steps()")
        assert [s["name"] for s in steps] == CHAIN
        listed = page.inner_text("#path-steps")
        for name in CHAIN:
            assert name in listed, listed
        assert "argument" in listed and "3 steps" in page.inner_text("#path-summary")
        # The path's frames are drawn on the canvas at each step's start, and gone with the toggle.
        assert all(outlined(s) for s in steps)
        page.screenshot(path=str(tmp_path / "critical-path.png"), full_page=True)
        page.uncheck("#f-path")
        assert page.is_hidden("#path-panel") and not any(outlined(s) for s in steps)
        page.check("#f-path")
        page.wait_for_function("document.getElementById('path-panel').dataset.ready")

        # A step's row zooms the timeline to it.
        whole = page.evaluate("window.__rayhistoryTimeline.view()")
        b_step = steps[1]
        page.click(f"tr.path-step[data-task='{b_step['task_id']}']")
        view = page.evaluate("window.__rayhistoryTimeline.view()")
        assert view["from"] <= b_step["ready_ms"] and view["to"] >= b_step["until_ms"]
        assert view["to"] - view["from"] < (whole["to"] - whole["from"]) * 0.8
        poll(
            lambda: page.evaluate("window.__rayhistoryTimeline.state()")["start"] == view["from"],
            10,
            "the step's window answered",
        )
        at = page.evaluate("id => window.__rayhistoryTimeline.locate(id)", b_step["task_id"])
        assert at and at["width"] > 0.5 * at["plot"], at
        assert outlined(b_step)
        page.screenshot(path=str(tmp_path / "critical-path-zoomed.png"), full_page=True)
        assert not problems.all(), problems.all()
    print("screenshots in", tmp_path)
