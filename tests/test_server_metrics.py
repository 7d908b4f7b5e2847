"""The history server's own /metrics: request latency per route family, compactions, cache use, and work refused
by limits, read back through prometheus_client's parser from the real app."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from archive.storage.local import LocalStore
from historyserver.server_metrics import route_family
from tests.metrics_archive import write_session
from tests.prometheus_api_helpers import API, T0, A, B, C, err, make_client, ok, secs

HOUR = 3_600_000


def scrape(client) -> dict[tuple[str, tuple], float]:
    r = client.get("/metrics")
    assert r.status_code == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def value(samples, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    root = tmp_path / "archive"
    for s in (A, B, C):
        write_session(LocalStore(root), s)
    return root


@pytest.mark.parametrize(
    ("path", "family"),
    [
        ("/healthz", "probes"),
        ("/api/v1/sessions", "api"),
        (f"/api/v1/sessions/{A.id}/overview", "api"),
        (f"{API}/query", "prometheus"),
        (f"/sessions/{A.id}/prometheus/api/v1/query_range", "prometheus"),
        ("/clusters/team/alpha/prometheus/api/v1/series", "prometheus"),
        (f"/sessions/{A.id}/", "ray_ui"),
        (f"/sessions/{A.id}/static/js/main.js", "ray_ui"),
        (f"/sessions/{A.id}/api/jobs/", "ray_api"),
        (f"/sessions/{A.id}/nodes", "ray_api"),
        (f"/sessions/{A.id}/api/v0/tasks", "ray_tasks"),
        (f"/sessions/{A.id}/api/v0/logs/file", "ray_logs"),
        (f"/sessions/{A.id}/grafana/d/x", "grafana"),
        (f"/sessions/{A.id}/overview", "pages"),
        ("/", "pages"),
        ("/assets/style.css", "assets"),
        ("/nothing/here", "other"),
    ],
)
def test_route_families_are_a_fixed_set_without_ids(path, family):
    assert route_family(path) == family


def test_requests_are_timed_per_family_and_status_class(archive, tmp_path):
    with make_client(archive, tmp_path / "cache") as c:
        ok(c.get(f"{API}/query", params={"query": "count(up)", "time": secs(T0 + HOUR // 2)}))
        assert c.get("/api/v1/sessions").status_code == 200
        assert c.get("/api/v1/sessions/nope").status_code == 404
        got = scrape(c)
    count = "rayhistory_server_request_duration_seconds_count"
    assert value(got, count, family="prometheus", status="2xx") == 1
    assert value(got, count, family="api", status="2xx") == 1
    assert value(got, count, family="api", status="4xx") == 1
    assert value(got, "rayhistory_server_request_duration_seconds_sum", family="prometheus", status="2xx") > 0
    assert not any("nope" in str(labels) or A.id in str(labels) for _, labels in got)


def test_compactions_and_the_metrics_cache_are_reported(archive, tmp_path):
    with make_client(archive, tmp_path / "cache") as c:
        before = scrape(c)
        assert value(before, "rayhistory_server_compactions_total", outcome="ok") == 0
        ok(c.get(f"{API}/query", params={"query": "count(up)", "time": secs(T0 + HOUR // 2)}))
        ok(c.get(f"{API}/query", params={"query": "count(up)", "time": secs(T0 + HOUR // 2)}))
        got = scrape(c)
    # The query's time holds sessions A and C (B starts an hour in): each compacted once, the second query reuses them.
    assert value(got, "rayhistory_server_compactions_total", outcome="ok") == 2
    assert value(got, "rayhistory_server_compaction_seconds_total") > 0
    assert value(got, "rayhistory_server_open_sessions") == 2
    assert value(got, "rayhistory_server_metrics_cache_bytes") > 0
    assert value(got, "rayhistory_server_metrics_cache_budget_bytes") == 4 * 2**20
    assert value(got, "rayhistory_server_metrics_cache_lookups_total", result="hit") > 0  # the second query
    assert value(got, "rayhistory_server_metrics_cache_lookups_total", result="miss") > 0


def test_a_second_server_counts_downloads_not_compactions(archive, tmp_path):
    with make_client(archive, tmp_path / "first") as c:
        ok(c.get(f"{API}/query", params={"query": "count(up)", "time": secs(T0 + HOUR // 2)}))
    with make_client(archive, tmp_path / "second") as c:  # the first wrote its tables back to the archive
        ok(c.get(f"{API}/query", params={"query": "count(up)", "time": secs(T0 + HOUR // 2)}))
        got = scrape(c)
    assert value(got, "rayhistory_server_compacted_downloads_total") == 2
    assert value(got, "rayhistory_server_compactions_total", outcome="ok") == 0


def test_queries_refused_by_limits_are_counted_by_limit(archive, tmp_path):
    params = {"query": "ray_node_cpu_utilization", "start": secs(T0), "end": secs(T0 + 2 * HOUR), "step": "60"}
    limit = "rayhistory_server_query_limit_refusals_total"
    with make_client(archive, tmp_path / "a", query_max_sessions=2) as c:
        assert value(scrape(c), limit, limit="max_sessions") == 0
        err(c.get(f"{API}/query_range", params=params), 422, "execution", "--query-max-sessions=2")
        assert value(scrape(c), limit, limit="max_sessions") == 1
    with make_client(archive, tmp_path / "b", query_max_samples=100) as c:
        one = {**params, "query": f'ray_node_cpu_utilization{{SessionName="{A.name}"}}', "step": "1"}
        err(c.get(f"{API}/query_range", params=one), 422, "execution", "too many samples")
        got = scrape(c)
        assert value(got, limit, limit="max_samples") == 1 and value(got, limit, limit="max_sessions") == 0
    with make_client(archive, tmp_path / "c", query_timeout="1ms") as c:
        err(c.get(f"{API}/query", params={"query": "up", "time": secs(T0 + HOUR // 2)}), 503, "timeout")
        assert value(scrape(c), limit, limit="timeout") == 1


def test_admission_refusals_per_gate(archive, tmp_path):
    with make_client(archive, tmp_path, max_concurrent_queries=1, queue_wait=0.1) as c:
        params = {"query": "up", "time": secs(T0 + HOUR // 2)}
        with c.app.state.services.gates.queries.slot():
            assert value(scrape(c), "rayhistory_server_admission_running", gate="queries") == 1
            err(c.get(f"{API}/query", params=params), 503, "unavailable")
        got = scrape(c)
    assert value(got, "rayhistory_server_admission_refusals_total", gate="queries") == 1
    assert value(got, "rayhistory_server_admission_refusals_total", gate="compactions") == 0
    assert value(got, "rayhistory_server_admission_slots", gate="queries") == 1
    assert value(got, "rayhistory_server_request_duration_seconds_count", family="prometheus", status="5xx") == 1


def test_every_server_metric_is_in_the_readme(archive, tmp_path):
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    with make_client(archive, tmp_path) as c:
        names = {family.name for family in text_string_to_metric_families(c.get("/metrics").text)}
    ours = {n for n in names if n.startswith("rayhistory_server_") and not n.endswith("_created")}
    assert len(ours) >= 12
    missing = [n for n in ours if f"`{n}" not in readme]  # counters appear as name_total, histograms as name{...}
    assert not missing, f"README.md does not mention {missing}"
