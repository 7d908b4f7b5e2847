"""The search pages: rendered state and entry points in-process, then real Chromium over a served archive: type a
query, see highlighted hits and facets, open context in place, follow a hit to its line in the log view."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from archive.storage import open_store
from historyserver.app import create_app
from historyserver.routes.pages import templates
from historyserver.search.links import search_url, text_query
from historyserver.settings import ServerSettings
from tests.browser import browser, page_watch, served, wait_for_text
from tests.helpers import client_for
from tests.search_session import NAMESPACE, NODE_ID, WORKER_ERR, archived_session, held_compaction, second_session


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    return archived_session(tmp_path_factory.mktemp("search-pages"))


def test_pages_render_their_state_and_escape_it(archive, tmp_path):
    url, ref = archive
    with client_for(url, tmp_path) as c:
        hostile = '"><script>alert(1)</script>'
        html = c.get(f"/sessions/{ref.id}/search", params={"q": hostile, "mode": "regex", "level": "ERROR"}).text
        assert "<script>alert(1)" not in html and "&lt;script&gt;" in html
        assert 'name="mode" value="regex" checked' in html
        assert '<input type="hidden" name="level" value="ERROR">' in html
        assert f'data-api="/api/v1/sessions/{ref.id}/logs/search"' in html
        across = c.get("/search", params={"cluster": "searchc"}).text
        assert "<option selected>searchc</option>" in across and "<option>team-s</option>" in across
        assert 'data-api="/api/v1/logs/search"' in across
        assert 'action="/search"' in c.get("/").text  # the session list's search box
        assert f'action="/sessions/{ref.id}/search"' in c.get(f"/sessions/{ref.id}/overview").text
        assert c.get("/sessions/nope~x~y/search").status_code == 404


def test_links_into_search():
    assert text_query("ValueError") == "valueerror"
    assert (
        text_query("ray.exceptions.RayTaskError(ValueError): boom") == '"ray.exceptions.raytaskerror valueerror boom"'
    )
    assert text_query(":;") == ""
    assert search_url("a~b~c", q="x y", mode=None) == "/sessions/a~b~c/search?q=x+y"
    assert search_url(None) == "/search"
    # The overview's failed-task groups link to a search of their exception.
    html = templates.env.get_template("session.html").render(o=_overview_with_a_failure())
    link = html.split('class="search-errors" href="')[1].split('"')[0].replace("&amp;", "&")
    assert urlsplit(link).path == "/sessions/ns~c~s/search" and parse_qs(urlsplit(link).query)["q"] == ["valueerror"]


def _overview_with_a_failure() -> dict:
    session = {"id": "ns~c~s", "cluster": "c", "namespace": "ns", "session_name": "s", "status": "ended"}
    group = {"count": 2, "error_type": "TASK_EXECUTION_EXCEPTION", "exception": "ValueError", "functions": ["flaky"],
             "example_error": "ValueError: boom", "example_task_id": "t" * 24, "example_job_id": "01000000"}  # fmt: skip
    return {"session": session, "damage": {"bad_lines": 0}, "jobs": [], "tasks": {"by_state": {}},
            "failed_task_groups": [group], "nodes": []}  # fmt: skip


SHOTS = Path(os.environ.get("RAYHISTORY_TEST_SCREENSHOTS", "/tmp/rayhistory-screenshots"))


def test_search_in_chromium(archive, tmp_path, monkeypatch):
    archive_url, ref = archive
    app = create_app(
        ServerSettings(archive=archive_url, cache_dir=str(tmp_path), catalog_ttl=0), open_store(archive_url)
    )
    SHOTS.mkdir(parents=True, exist_ok=True)
    with served(app) as url, browser() as b, page_watch(b) as (page, problems):
        page.goto(f"{url}/sessions/{ref.id}/search")
        page.keyboard.press("/")  # focuses the query box
        assert page.evaluate("document.activeElement.id") == "q"
        page.keyboard.type('"intentional failure" or "connection refused"')
        page.keyboard.press("Enter")
        wait_for_text(page, ["ValueError: intentional failure in flaky", "hits (archive"])
        # The URL holds the state: the same page loads from it alone.
        assert parse_qs(urlsplit(page.url).query)["q"] == ['"intentional failure" or "connection refused"']
        marks = page.eval_on_selector_all("#hits mark", "ms => ms.map(m => m.textContent)")
        assert sorted(set(marks)) == ["connection refused", "intentional failure"]
        facet_files = page.eval_on_selector_all("#facets ul[data-facet=file] a", "as => as.map(a => a.textContent)")
        assert sorted(facet_files) == sorted(["raylet.out", WORKER_ERR])
        page.wait_for_function("document.getElementById('search-chart').dataset.state === 'drawn'", timeout=20000)
        page.screenshot(path=str(SHOTS / "search-hits.png"), full_page=True)

        # Context, in place: the lines around the hit, the hit's own line marked.
        hit = page.locator("#hits li", has_text="intentional failure")
        hit.locator(".ctx-toggle").click()
        wait_for_text(page, ["step 14 ok", "squares are fine", "hide context"])
        at = hit.locator(".context .at").inner_text()
        assert at.split()[0] == "20" and "ValueError: intentional failure in flaky" in at
        page.screenshot(path=str(SHOTS / "search-context.png"), full_page=True)

        # A facet narrows the search (a filter in the URL).
        page.locator("#facets ul[data-facet=file] a", has_text="raylet.out").click()
        page.wait_for_url("**file=raylet.out**")
        wait_for_text(page, ["1 of 1 hits"])
        assert "intentional failure" not in page.inner_text("#hits")
        page.go_back()
        wait_for_text(page, ["2 of 2 hits"])

        # The hit's link opens the file at that line in our log view.
        page.locator("#hits li", has_text="intentional failure").locator(".hit-where a").click()
        page.wait_for_url("**/logs/view?**")
        target = parse_qs(urlsplit(page.url).query)
        assert target["file"] == [WORKER_ERR] and target["line"] == ["20"] and target["node_id"] == [NODE_ID]
        wait_for_text(page, ["ValueError: intentional failure in flaky"])
        page.screenshot(path=str(SHOTS / "search-log-view.png"), full_page=True)

        # Across sessions: the cluster filter in the URL, each hit named by its session.
        page.goto(f"{url}/search?cluster=searchc&q=flaky")
        wait_for_text(page, ["3 of 3 hits in 1 session(s)"])
        assert page.locator("#hits .hit-where a").first.inner_text().startswith(ref.id + "/")
        assert page.eval_on_selector("select[name=cluster]", "s => s.value") == "searchc"
        page.screenshot(path=str(SHOTS / "search-across.png"), full_page=True)

        # Across sessions, one not compacted yet: its compaction is held, so the page shows the compacted
        # session's hits and the warning; released, the page asks again by itself until both sessions answer.
        with held_compaction(monkeypatch) as (started, release):
            fresh = second_session(tmp_path, archive_url)
            page.goto(f"{url}/search?namespace={NAMESPACE}&q=flaky")
            wait_for_text(page, ["3 of 3 hits in 2 session(s)", "1 session(s) still being indexed", "asking again"])
            assert f"1 session is still being indexed ({fresh})" in page.inner_text("#search-warnings")
            assert started.wait(30) and not release.is_set()
            page.screenshot(path=str(SHOTS / "search-pending.png"), full_page=True)
            release.set()
            wait_for_text(page, ["6 of 6 hits in 2 session(s)"])
            assert "indexed" not in page.inner_text("#search-warnings") + page.inner_text("#search-status")

        # A query that does not parse: the message and a caret under the position.
        page.goto(f"{url}/sessions/{ref.id}/search?q=" + "(ValueError%20or")
        wait_for_text(page, ["at position 14", "Could not search"])
        assert page.evaluate("document.activeElement.id") == "q"
        page.screenshot(path=str(SHOTS / "search-error.png"), full_page=True)
        expected_400 = [p for p in problems.all() if "logs/search" in p and "-> 400" in p]
        assert len(expected_400) >= 1
        assert not [p for p in problems.all() if p not in expected_400 and "400" not in p], problems.all()
