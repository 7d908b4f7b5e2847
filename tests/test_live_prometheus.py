"""The live charts' proxy to the cluster's Prometheus (historyserver/live/prometheus.py, routes/live_prometheus.py):
what it sends on and what it refuses, without servers. Against a real Prometheus scraping a real Ray:
tests/test_live_charts.py."""

from __future__ import annotations

import json
import time

import pytest

from archive.settings import SettingsError
from archive.storage.local import LocalStore
from historyserver import panels
from historyserver.live import prometheus as live
from historyserver.promql.errors import BadData
from historyserver.routes.prometheus_params import Params
from historyserver.settings import ServerSettings
from tests.metrics_archive import FakeSession, write_session
from tests.prometheus_api_helpers import A, archive, make_client  # noqa: F401
from tests.promql_panels import DASHBOARDS

NAME = "session_2026-11-25_20-59-21_325155_1996"


@pytest.mark.parametrize("path", sorted(DASHBOARDS.glob("*.json")), ids=lambda p: p.stem)
def test_every_panel_query_of_rays_dashboards_is_about_its_session_only(path):
    board = json.loads(path.read_text())
    ctx = panels.render_context(board, {"SessionName": [NAME], "Cluster": ["e2e"]}, 0, 3_600_000, None)
    queries = [t["query"] for r in ctx["rows"] for p in r["panels"] for t in p["targets"]]
    assert queries
    for q in queries:
        if path.name == "data_llm_grafana_dashboard.json":  # vLLM's own series: no Ray label to pin
            with pytest.raises(BadData, match="pins neither"):
                live.check_session_only(q, NAME, "e2e")
        else:
            live.check_session_only(q, NAME, "e2e")  # raises if a selector could read another session


@pytest.mark.parametrize(
    "query",
    [
        "up",
        'sum(rate(ray_tasks{State="RUNNING"}[5m]))',
        f'ray_tasks{{SessionName="{NAME}"}} / on() group_left ray_node_cpu_count',  # one side unpinned
        'ray_tasks{SessionName="session_2026-01-01_00-00-00_000001_1"}',  # another session
        'ray_tasks{SessionName=~".*"}',
        'ray_tasks{ray_io_cluster="other"}',
        'ray_tasks{ray_io_cluster=~"e2e.*"}',
        f'ray_tasks{{SessionName!="{NAME}"}}',
        f'max_over_time(ray_tasks{{SessionName="x"}}[1h:1m]) or ray_tasks{{SessionName="{NAME}"}}',
    ],
)
def test_a_query_that_could_read_another_session_is_refused(query):
    with pytest.raises(BadData, match=f'pins neither SessionName to "{NAME}" nor ray_io_cluster to "e2e"'):
        live.check_session_only(query, NAME, "e2e")


def test_a_regex_matcher_holding_the_escaped_name_is_pinned():
    live.check_session_only('ray_tasks{ray_io_cluster=~"my\\\\.cluster"}', NAME, "my.cluster")


def test_parameters_are_checked_as_our_api_checks_them_and_the_timeout_is_the_shorter():
    p = Params([("query", "vector(1)"), ("start", "100"), ("end", "200"), ("step", "15s"), ("timeout", "5s")])
    sent = live.forwarded_params("/query_range", p, 0, 120.0)
    assert sent == [
        ("query", "vector(1)"),
        ("start", "100.000"),
        ("end", "200.000"),
        ("step", "15.000"),
        ("timeout", "5s"),
    ]
    p = Params([("query", "vector(1)")])
    assert live.forwarded_params("/query", p, 1_700_000_000_500, 30.0) == [
        ("query", "vector(1)"),
        ("time", "1700000000.500"),
        ("timeout", "30s"),
    ]
    too_many = Params([("query", "vector(1)"), ("start", "0"), ("end", "200000"), ("step", "1")])
    with pytest.raises(BadData, match="11,000 points"):
        live.forwarded_params("/query_range", too_many, 0, 30.0)
    with pytest.raises(BadData, match="no query"):
        live.forwarded_params("/query", Params([]), 0, 30.0)


def test_prometheus_url_must_be_a_url(tmp_path):
    with pytest.raises(SettingsError, match="--prometheus-url: 'prometheus:9090' is not an http"):
        ServerSettings(archive=str(tmp_path), prometheus_url="prometheus:9090").check()
    ServerSettings(archive=str(tmp_path), prometheus_url="http://prometheus:9090").check()


def test_a_dead_session_has_no_live_endpoint_even_with_a_prometheus(archive, tmp_path):  # noqa: F811
    url = f"/sessions/{A.id}/live/prometheus/api/v1/query"
    # The live Prometheus is never reached (nothing listens on port 9): an ended session reads the archive.
    with make_client(archive, tmp_path / "cache", prometheus_url="http://127.0.0.1:9") as c:
        r = c.post(url, data={"query": f'ray_tasks{{SessionName="{A.name}"}}'})
        assert r.status_code == 404 and r.json()["errorType"] == "not_found", r.text
        assert "the session is ended" in r.json()["error"] and f"/sessions/{A.id}/prometheus/api/v1/" in r.text
    with make_client(archive, tmp_path / "cache2") as c:
        r = c.get(url, params={"query": "vector(1)"})
        assert r.status_code == 404 and "no --prometheus-url is set" in r.json()["error"]


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    """An archive with one session still running (heard from just now)."""
    now = int(time.time() * 1000)
    session = FakeSession(
        "team", "gamma", "session_2026-12-01_00-00-00_000004_1", now - 600_000, None, last_seen_ms=now
    )
    root = tmp_path_factory.mktemp("running-archive")
    write_session(LocalStore(root), session)
    return root, session


def test_a_running_sessions_grafana_panels_use_the_live_datasource(running, tmp_path):
    root, session = running
    path = f"/sessions/{session.id}/grafana/d/rayDefaultDashboard/?from=now-5m&to=now&var-datasource=x"
    grafana = {"grafana_url": "http://grafana.example:3000", "grafana_live_datasource": "ACK Prometheus"}
    with make_client(root, tmp_path / "c1", prometheus_url="http://127.0.0.1:9", **grafana) as c:
        r = c.get(path, follow_redirects=False)
        assert r.status_code == 307 and "var-datasource=ACK+Prometheus" in r.headers["location"]
        assert "to=now" in r.headers["location"]
    with make_client(root, tmp_path / "c2", **grafana) as c:  # no live Prometheus: the archive's datasource
        r = c.get(path, follow_redirects=False)
        assert "var-datasource=Rayhistory+archive" in r.headers["location"]


def test_a_running_session_whose_prometheus_is_down_says_which_setting(running, tmp_path):
    root, session = running
    url = f"/sessions/{session.id}/live/prometheus/api/v1/query"
    with make_client(root, tmp_path / "cache", prometheus_url="http://127.0.0.1:9") as c:
        r = c.post(url, data={"query": f'up{{SessionName="{session.name}"}}'})
        assert r.status_code == 503 and r.json()["errorType"] == "unavailable", r.text
        assert "--prometheus-url" in r.json()["error"]
        r = c.post(url, data={"query": 'up{SessionName="session_2026-01-01_00-00-00_000001_1"}'})
        assert r.status_code == 400 and "pins neither" in r.json()["error"]


def test_a_pin_by_cluster_name_alone_is_reported():
    assert live.check_session_only('ray_tasks{ray_io_cluster="e2e"}', NAME, "e2e") is True
    assert live.check_session_only(f'ray_tasks{{SessionName="{NAME}"}}', NAME, "e2e") is False
    assert live.check_session_only(f'ray_tasks{{SessionName="{NAME}", ray_io_cluster="e2e"}}', NAME, "e2e") is False


def test_a_cluster_name_shared_across_namespaces_is_not_a_pin(tmp_path):
    """KubeRay's ray_io_cluster has no namespace: with a cluster "gamma" in team-a and in team-b, a query about
    team-a's session pinned only by that name would read team-b's series too."""
    now = int(time.time() * 1000)
    ours, other = (
        FakeSession(ns, "gamma", f"session_2026-12-06_00-00-00_00000{i}_1", now - 600_000, None, last_seen_ms=now)
        for i, ns in ((1, "team-a"), (2, "team-b"))
    )
    root = tmp_path / "archive"
    write_session(LocalStore(root), ours)
    url = f"/sessions/{ours.id}/live/prometheus/api/v1/query"
    by_name = {"query": 'sum(ray_serve_num_http_requests_total{ray_io_cluster=~"gamma"})'}
    by_session = {"query": f'up{{SessionName="{ours.name}"}}'}
    # Alone with its name, the pin holds: the query goes on (nothing listens on port 9: 503).
    with make_client(root, tmp_path / "c1", prometheus_url="http://127.0.0.1:9") as c:
        assert c.post(url, data=by_name).status_code == 503
    write_session(LocalStore(root), other)
    with make_client(root, tmp_path / "c2", prometheus_url="http://127.0.0.1:9") as c:
        r = c.post(url, data=by_name)
        assert r.status_code == 400 and r.json()["errorType"] == "bad_data", r.text
        assert 'only by ray_io_cluster="gamma"' in r.json()["error"] and "team-b" not in r.json()["error"]
        assert c.post(url, data=by_session).status_code == 503  # pinned to the session: still asked
