"""Log search end to end on a real Ray 2.60 cluster's archive (the demo workload): the exception a task printed is
found at its node, file, line and byte offset, inside the task that printed it; the failure Ray kept only in its
events comes back as a task error linking to the task; context, paging, facets, regex, errors, the log view."""

from __future__ import annotations

import re
import urllib.parse

import pytest

from archive import logs as archive_logs
from archive.storage import open_store
from tests.helpers import client_for


@pytest.fixture(scope="module")
def client(finished_cluster, tmp_path_factory):
    return client_for(finished_cluster.local_archive, tmp_path_factory.mktemp("cache"))


def search(client, sid: str, **params) -> dict:
    r = client.get(f"/api/v1/sessions/{sid}/logs/search", params=params)
    assert r.status_code == 200, r.text
    return r.json()


def test_a_printed_exception_is_found_at_its_line_and_offset(client, finished_cluster):
    sid = finished_cluster.ref.id
    answer = search(client, sid, q='"intentional failure 1"')
    assert answer["backend"] == "archive" and answer["complete"]
    logs = [h for h in answer["hits"] if h["kind"] == "log"]
    assert [h["message"] for h in logs if h["message"].startswith("ValueError")] == [
        "ValueError: intentional failure 1"
    ]
    hit = next(h for h in logs if h["message"].startswith("ValueError"))
    assert re.fullmatch(r"worker-[0-9a-f]{56}-[0-9a-f]{8}-\d+\.err", hit["file"])
    assert hit["task_name"] == "flaky" and hit["job_id"] and hit["level"] is None
    assert hit["match"] == [[12, 33]]  # "intentional failure 1"
    # The offset and line point into the archived file, and into the file Ray wrote.
    store = open_store(finished_cluster.local_archive)
    data = archive_logs.read_file(store, finished_cluster.ref.node(hit["node_id"]), hit["file"])
    assert data[hit["offset"] :].startswith(b"ValueError: intentional failure 1\n")
    assert data[: hit["offset"]].count(b"\n") == hit["line"] - 1
    source = (finished_cluster.session_dir / "logs" / hit["file"]).read_bytes()
    assert source[hit["offset"] :].startswith(b"ValueError: intentional failure 1\n")
    # Its context: the traceback lines above it, as in the file.
    r = client.get(
        f"/api/v1/sessions/{sid}/logs/context",
        params={"node_id": hit["node_id"], "file": hit["file"], "line": hit["line"], "before": 4, "after": 1},
    )
    assert r.status_code == 200, r.text
    ctx = r.json()
    file_lines = data.decode().split("\n")
    want = list(range(max(1, hit["line"] - 4), min(len(file_lines), hit["line"] + 1) + 1))
    assert [c["line"] for c in ctx["lines"]] == [n for n in want if n <= data.count(b"\n")]
    assert [c["message"] for c in ctx["lines"]] == [file_lines[n - 1] for n in [c["line"] for c in ctx["lines"]]]
    assert any(c["message"].startswith("Traceback") for c in ctx["lines"])
    # The hit's url opens our log view at that line, naming the task that printed it.
    page = client.get(hit["url"])
    assert page.status_code == 200, page.text
    assert f'id="L{hit["line"]}" class="hit"' in page.text and "printed by task <b>flaky</b>" in page.text
    assert re.search(r'href="/sessions/[^"]+/#/jobs/[0-9a-f]+/tasks/[0-9a-f]+">', page.text)


def test_a_failure_only_ray_kept_comes_back_as_a_task_error(client, finished_cluster):
    sid = finished_cluster.ref.id
    answer = search(client, sid, q='"intentional failure 3"')
    assert [h["kind"] for h in answer["hits"]] == ["task_error"] and answer["total"] == 1
    err = answer["hits"][0]
    assert err["task_name"] == "flaky" and "ValueError: intentional failure 3" in err["message"]
    assert err["url"] == f"/sessions/{urllib.parse.quote(sid)}/#/jobs/{err['job_id']}/tasks/{err['task_id']}"
    tasks = client.get(
        f"/sessions/{sid}/api/v0/tasks",
        params={"filter_keys": "task_id", "filter_predicates": "=", "filter_values": err["task_id"]},
    ).json()
    assert tasks["data"]["result"]["result"][0]["state"] == "FAILED"
    # The actor that failed in __init__ is an actor error (its creation task printed the exception too).
    actors = search(client, sid, q='"fails in __init__"')
    assert "actor_error" in {h["kind"] for h in actors["hits"]}


def test_regex_facets_paging_and_the_search_across_sessions(client, finished_cluster):
    sid = finished_cluster.ref.id
    rx = search(client, sid, q=r"ValueError: intentional failure [13]", mode="regex")
    assert sorted(h["kind"] for h in rx["hits"]) == ["log", "task_error", "task_error"]
    every = search(client, sid, q="square", limit=1000)
    assert every["total"] >= 8 and every["facets"]["file"] and every["facets"]["node_id"]
    assert sum(every["facets"]["node_id"].values()) == every["total"]
    seen, cursor = [], None
    while True:
        page = search(client, sid, q="square", limit=3, **({"cursor": cursor} if cursor else {}))
        seen += [(h["file"], h["line"], h["kind"]) for h in page["hits"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == [(h["file"], h["line"], h["kind"]) for h in every["hits"]]
    across = client.get("/api/v1/logs/search", params={"q": '"intentional failure 1"', "cluster": "e2e"}).json()
    assert across["sessions"] == 1 and {h["session"] for h in across["hits"]} == {sid}
    none = client.get("/api/v1/logs/search", params={"q": "flaky", "cluster": "no-such-cluster"}).json()
    assert none["sessions"] == 0 and none["total"] == 0
    # Hits over time: lines with a timestamp (raw worker output, such as square's prints, has none).
    hist = client.get(f"/api/v1/sessions/{sid}/logs/search/histogram", params={"q": "raylet", "buckets": 10}).json()
    timed = search(client, sid, q="raylet", since=0)["total"] - search(client, sid, q="raylet", since=4e9)["total"]
    assert len(hist["buckets"]) == 10 and sum(b["count"] for b in hist["buckets"]) == timed > 0


def test_bad_input_is_a_400_that_says_what_to_fix(client, finished_cluster):
    base = f"/api/v1/sessions/{finished_cluster.ref.id}/logs"
    bad = client.get(f"{base}/search", params={"q": "a and (b or"})
    assert bad.status_code == 400 and "position" in bad.json()["error"]["message"]
    bad = client.get(f"{base}/search", params={"q": "(unclosed", "mode": "regex"})
    assert bad.status_code == 400 and "RE2" in bad.json()["error"]["message"]
    bad = client.get(f"{base}/search", params={"q": "x", "since": "2026-01-02T00:00:00Z", "until": "2026-01-01"})
    assert bad.status_code == 400 and "after until" in bad.json()["error"]["message"]
    capped = client.get(f"{base}/search", params={"q": "square", "limit": 5000}).json()
    assert any("capped" in w for w in capped["warnings"])
