"""The search API with `--sls-*` settings, through the real app: SLS answers when it can (scripted by the SLS test
server), its refusals come back in our error shape (502 with SLS's code, 503 with Retry-After), and when SLS cannot
be reached the archive answers, saying so."""

from __future__ import annotations

import socket

import pytest
from fastapi.testclient import TestClient

from archive.storage import open_store
from historyserver.app import create_app
from historyserver.settings import ServerSettings
from tests.search_session import NODE_ID, WORKER_ERR, archived_session
from tests.servers.sls import running_sls
from tests.test_search_sls import SINCE, UNTIL, body

VALUE_ERROR_LINE = 20  # tests/search_session.py: 15 filler lines, the marker lines, then the traceback


@pytest.fixture(scope="module")
def archived(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("search-sls-routes")
    archive, ref = archived_session(tmp)
    return tmp, archive, ref


@pytest.fixture
def sls(monkeypatch):
    with running_sls() as server:
        monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", server.access_key_id)
        monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", server.access_key_secret)
        yield server


def client(archived, proxy: str, endpoint: str = "sls.test") -> TestClient:
    tmp, archive, _ = archived
    settings = ServerSettings(
        archive=archive,
        cache_dir=str(tmp / "cache"),
        catalog_ttl=0,
        sls_endpoint=endpoint,
        sls_project="rayhistory",
        sls_logstore="ray-logs",
        sls_proxy=proxy,
    )
    return TestClient(create_app(settings, open_store(archive)))


def scope(ref) -> str:
    return (
        f'(__tag__:namespace: "{ref.namespace}" and __tag__:cluster: "{ref.cluster}" and '
        f'__tag__:session: "{ref.session}")'
    )


def test_sls_answers_the_api(archived, sls):
    _, _, ref = archived
    search = f'{scope(ref)} and (message: "valueerror")'
    row = {
        "__time__": SINCE + 5,
        "__tag__:namespace": ref.namespace,
        "__tag__:cluster": ref.cluster,
        "__tag__:session": ref.session,
        "__tag__:node_id": NODE_ID,
        "__tag__:file": WORKER_ERR,
        "message": "ValueError: intentional failure in flaky",
        "line": VALUE_ERROR_LINE,
        "offset": 321,
        "task_name": "flaky",
        "job_id": "01000000",
    }
    sls.expect_logs(body(search), [row])
    sls.expect_logs(body(f"{search} | SELECT count(*) AS n"), [{"n": 1}])
    for key in ('"__tag__:node_id"', '"__tag__:file"', '"level"', '"job_id"'):
        sql = f"{search} | SELECT {key} AS value, count(*) AS n GROUP BY value ORDER BY n DESC LIMIT 20"
        sls.expect_logs(body(sql), [{"value": "x", "n": 1}])
    got = client(archived, sls.proxy).get(
        f"/api/v1/sessions/{ref.id}/logs/search", params={"q": "ValueError", "since": SINCE, "until": UNTIL}
    )
    assert got.status_code == 200, got.text
    answer = got.json()
    assert sls.unexpected == []
    assert (answer["backend"], answer["total"], answer["complete"]) == ("sls", 1, True)
    hit = answer["hits"][0]
    assert (hit["session"], hit["node_id"], hit["file"], hit["line"]) == (ref.id, NODE_ID, WORKER_ERR, 20)
    assert hit["match"] == [[0, 10]] and hit["task_name"] == "flaky"
    assert answer["facets"]["level"] == {"x": 1}


def test_sls_searches_across_sessions_that_are_not_compacted(archived, sls):
    """SLS reads none of our tables: the across-sessions rule (search/pending.py) leaves nothing out and queues
    nothing; the archive, answering when SLS cannot be reached, does."""
    _, _, ref = archived
    app = client(archived, sls.proxy)
    svc = app.app.state.services  # type: ignore[attr-defined]
    since = (svc.catalog.get(ref.id).manifest.start_ms or 0) // 1000 - 60  # the catalog keeps the session
    until = since + 3600
    search = f'{scope(ref)} and (message: "boom")'
    sls.expect_logs(body(search, start=since, end=until), [])
    sls.expect_logs(body(f"{search} | SELECT count(*) AS n", start=since, end=until), [{"n": 0}])
    for key in ('"__tag__:node_id"', '"__tag__:file"', '"level"', '"job_id"'):
        sql = f"{search} | SELECT {key} AS value, count(*) AS n GROUP BY value ORDER BY n DESC LIMIT 20"
        sls.expect_logs(body(sql, start=since, end=until), [])
    params = {"q": "boom", "cluster": ref.cluster, "since": since, "until": until}
    got = app.get("/api/v1/logs/search", params=params)
    assert got.status_code == 200, (got.text, sls.unexpected)
    answer = got.json()
    assert sls.unexpected == []
    assert (answer["backend"], answer["complete"], answer["pending_sessions"]) == ("sls", True, 0)
    assert svc.compactor.queued() == [] and not svc.warehouse.ready(svc.catalog.get(ref.id))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = client(archived, f"http://127.0.0.1:{s.getsockname()[1]}")
    fallback = dead.get("/api/v1/logs/search", params=params).json()
    assert (fallback["backend"], fallback["complete"], fallback["pending_sessions"]) == ("archive", False, 1)
    assert "unavailable" in fallback["warnings"][0] and "still being indexed" in fallback["warnings"][1]


def test_sls_refusals_in_our_error_shape(archived, sls):
    _, _, ref = archived
    search = f'{scope(ref)} and (message: "boom")'
    sls.expect_logs(body(search), status=403, error=("ReadQuotaExceed", "project read quota exceeded"))
    sls.expect_logs(body(search), status=401, error=("Unauthorized", "the AccessKey is disabled"))
    app = client(archived, sls.proxy)
    url = f"/api/v1/sessions/{ref.id}/logs/search"
    params = {"q": "boom", "since": SINCE, "until": UNTIL}
    quota = app.get(url, params=params)
    assert quota.status_code == 503 and int(quota.headers["Retry-After"]) > 0
    assert "ReadQuotaExceed" in quota.json()["error"]["message"]
    auth = app.get(url, params=params)
    assert auth.status_code == 502
    assert "Unauthorized" in auth.json()["error"]["message"] and "disabled" in auth.json()["error"]["message"]
    assert sls.unexpected == []


def test_the_archive_answers_when_sls_cannot_be_reached(archived, sls):
    _, _, ref = archived
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    app = client(archived, dead)
    got = app.get(f"/api/v1/sessions/{ref.id}/logs/search", params={"q": "ValueError"})
    assert got.status_code == 200, got.text
    answer = got.json()
    assert answer["backend"] == "archive" and "unavailable" in answer["warnings"][0]
    assert "cannot be reached" in answer["warnings"][0]
    assert [(h["file"], h["line"]) for h in answer["hits"] if h["kind"] == "log"] == [(WORKER_ERR, VALUE_ERROR_LINE)]
    context = app.get(
        f"/api/v1/sessions/{ref.id}/logs/context",
        params={"node_id": NODE_ID, "file": WORKER_ERR, "line": VALUE_ERROR_LINE, "before": 1, "after": 1},
    )
    assert context.status_code == 200 and "unavailable" in context.json()["warnings"][0]
    assert [c["line"] for c in context.json()["lines"]] == [19, 20, 21]
    histogram = app.get(f"/api/v1/sessions/{ref.id}/logs/search/histogram", params={"q": "ValueError"})
    assert histogram.status_code == 200 and histogram.json()["backend"] == "archive"  # who counted, not who was asked


def test_serve_stops_at_start_without_the_sls_credentials(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALIBABA_CLOUD_", "RAYHISTORY_"))}
    env["PYTHONPATH"] = str(root)
    flags = ["--sls-endpoint", "cn-hangzhou.log.aliyuncs.com", "--sls-project", "p", "--sls-logstore", "l"]
    done = subprocess.run(
        [sys.executable, "-m", "rayhistory.cli", "serve", "--archive", str(tmp_path), "--port", "0", *flags],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "ALIBABA_CLOUD_ACCESS_KEY_ID" in done.stderr.strip().splitlines()[-1]
