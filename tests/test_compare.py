"""Comparing two sessions of one cluster (two synthetic sessions written as collectors write them): the numbers per
function and phase against a count of the attempts themselves, biggest differences first, the entrypoint scope,
errors, the cluster page's link, and the page in Chromium (light and dark)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from benchmarks.synthetic_session import generate
from historyserver.queries import compare as cmp
from tests.helpers import client_for

TASKS = 1500
ETL = "python etl.py --date 2026-11-19"


@pytest.fixture(scope="module")
def sessions(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    archive = str(root / "archive")
    a = generate(archive, TASKS, seed=1, log=lambda _msg: None)["session_id"]
    b = generate(archive, TASKS * 2, seed=2, log=lambda _msg: None)["session_id"]
    with client_for(archive, root / "cache") as client:
        yield client, a, b


def _db(client, sid: str):
    svc = client.app.state.services
    return svc.warehouse.db(svc.catalog.get(sid))


def _by_hand(db, function: str | None, jobs: list[str] | None = None) -> dict:
    """The running phase of a function's attempts, counted from the rows."""
    rows = db.query(
        "SELECT coalesce(func_or_class_name, name, ''), job_id, to_ms - start_time_ms FROM task_timeline "
        "WHERE start_time_ms IS NOT NULL"
    )
    runs = [max(0.0, r[2]) for r in rows if (function is None or r[0] == function) and (jobs is None or r[1] in jobs)]
    return {
        "count": len(runs),
        "total_ms": float(sum(runs)),
        "p50_ms": float(np.percentile(runs, 50)),
        "p95_ms": float(np.percentile(runs, 95)),
    }


def test_per_function_and_phase_side_by_side_biggest_difference_first(sessions):
    client, a, b = sessions
    body = client.get("/api/v1/compare", params={"a": a, "b": b}).json()
    assert (body["a"]["id"], body["b"]["id"]) == (a, b) and body["a"]["url"].endswith(f"/sessions/{a}/")
    assert body["phases"] == ["waiting for arguments", "waiting for a node", "on the worker", "running", cmp.WHOLE]
    deltas = [abs(r["delta_ms"]) for r in body["functions"]]
    assert deltas == sorted(deltas, reverse=True) and deltas[0] > 0
    row = next(r for r in body["functions"] if r["function"] == "train_step")
    for side, sid in (("a", a), ("b", b)):
        got = row[side]["phases"]["running"]
        want = _by_hand(_db(client, sid), "train_step")
        assert got["count"] == want["count"] and got["total_ms"] == pytest.approx(want["total_ms"])
        assert (got["p50_ms"], got["p95_ms"]) == pytest.approx((want["p50_ms"], want["p95_ms"]))
    whole = body["all"]
    assert whole["a"]["count"] == _db(client, a).query("SELECT count(*) FROM task_timeline")[0][0]
    assert whole["b"]["phases"]["running"]["total_ms"] == pytest.approx(_by_hand(_db(client, b), None)["total_ms"])
    # B ran about twice the tasks: its functions' totals grew, and the delta says by how much.
    assert row["delta_ms"] == pytest.approx(
        row["b"]["phases"][cmp.WHOLE]["total_ms"] - row["a"]["phases"][cmp.WHOLE]["total_ms"]
    )
    assert ETL in body["common_entrypoints"]


def test_scoped_to_one_entrypoint_and_errors(sessions):
    client, a, b = sessions
    body = client.get("/api/v1/compare", params={"a": a, "b": b, "entrypoint": ETL}).json()
    assert {r["function"] for r in body["functions"]} <= {
        "extract",
        "transform",
        "load",
        "Writer.write",
        "Writer.__init__",
    }
    jobs = cmp.job_entrypoints(_db(client, a))[ETL]
    assert body["all"]["a"]["phases"]["running"]["count"] == _by_hand(_db(client, a), None, jobs)["count"]
    bad = client.get("/api/v1/compare", params={"a": a, "b": b, "entrypoint": "python nope.py"})
    assert bad.status_code == 400 and "its entrypoints:" in bad.json()["error"]["message"]
    assert ETL in bad.json()["error"]["message"]
    missing = client.get("/api/v1/compare", params={"a": a})
    assert missing.status_code == 400 and "?a=<session id>&b=<session id>" in missing.json()["error"]["message"]
    unknown = client.get("/api/v1/compare", params={"a": a, "b": "default~synthetic~session_nope"})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "SessionNotFound"


def test_the_cluster_page_links_each_session_to_the_previous_one(sessions):
    client, a, b = sessions
    html = client.get("/clusters/default/synthetic").text
    newest, previous = [s["id"] for s in client.get("/api/v1/clusters/default/synthetic").json()["sessions"]]
    assert {newest, previous} == {a, b}
    # One link: the newest session against the one before it (the oldest has none).
    assert re.findall(r'class="compare"\s+href="([^"]+)"', html) == [f"/compare?a={previous}&b={newest}"]
    page = client.get("/compare", params={"a": a, "b": b})
    assert page.status_code == 200 and "train_step" in page.text and "swap A and B" in page.text


def test_compare_page_in_chromium_light_and_dark(sessions, tmp_path):
    from tests.browser import browser, page_watch, served

    client, a, b = sessions
    body = client.get("/api/v1/compare", params={"a": a, "b": b}).json()
    with served(client.app) as url, browser() as br, page_watch(br) as (page, problems):
        for scheme in ("light", "dark"):
            page.emulate_media(color_scheme=scheme)
            page.goto(f"{url}/compare?a={a}&b={b}")
            first = page.locator("tbody.fn").first.get_attribute("data-function")
            assert first == body["functions"][0]["function"]
            text = page.inner_text("table.compare")
            assert "running" in text and "p95 A" in text and " ms" in text and "%" in text
            bg = page.evaluate("getComputedStyle(document.body).backgroundColor")
            assert (bg == "rgb(22, 24, 28)") == (scheme == "dark"), (scheme, bg)
            page.screenshot(path=str(tmp_path / f"compare-{scheme}.png"))
        # The scope form keeps both sessions and narrows to the chosen entrypoint.
        page.select_option("select[name=entrypoint]", ETL)
        page.click("#scope button")
        page.wait_for_url("**entrypoint=**")
        shown = {f for f in page.eval_on_selector_all("tbody.fn", "els => els.map(e => e.dataset.function)")}
        assert shown and shown <= {"extract", "transform", "load", "Writer.write", "Writer.__init__"}, shown
        assert not problems.all(), problems.all()
