"""The Prometheus-compatible API over archived metrics: the DuckDB store, endpoints, parameters and errors as
Prometheus 2.42 answers them, scopes and session pruning, queries and catalog-derived series."""

from __future__ import annotations

import time

import duckdb
import numpy as np
import pytest

from archive.storage.local import LocalStore
from historyserver.promql.errors import BadData
from historyserver.promql.model import Matcher
from historyserver.queries.metrics_store import MetricsStore, SessionTables
from tests.metrics_archive import STEP_MS, FakeSession, write_session
from tests.prometheus_api_helpers import API, HALF_HOUR, T0, A, B, C, Spy, archive, client, err, make_client, ok, secs  # noqa: F401 (fixtures)

# -- the DuckDB store --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def store(client):
    catalog, warehouse = client.app.state.services.catalog, client.app.state.services.warehouse
    tables = [SessionTables.in_dir(s.id, warehouse.db(catalog.get(s.id)).dir) for s in (A, B, C)]
    for t in tables:  # the compacted tables are real and non-empty
        n = duckdb.connect().execute(f"SELECT count(*) FROM read_parquet('{t.samples}')").fetchone()[0]
        assert n == 6 * len(A.scrape_times())
    return MetricsStore(tables)


def test_store_selects_series_with_prometheus_matching(store):
    m = Matcher
    cpu = store.select([m("__name__", "=", "ray_node_cpu_utilization")], T0, T0 + 10 * HALF_HOUR)
    assert sorted(s.labels["SessionName"] for s in cpu) == sorted([A.name, B.name, C.name])
    a = next(s for s in cpu if s.labels["SessionName"] == A.name)
    assert a.labels == {
        "__name__": "ray_node_cpu_utilization",
        "SessionName": A.name,
        "instance": A.instance,
        "job": "ray",
        "ray_io_cluster": "alpha",
    }
    assert a.ts.dtype == np.int64 and a.values.dtype == np.float64
    assert a.ts.tolist() == A.scrape_times() and a.values.tolist() == [10.0 + i for i in range(len(a.ts))]
    # The range is inclusive at both ends.
    few = store.select(
        [m("__name__", "=", "ray_node_cpu_utilization"), m("SessionName", "=", A.name)],
        T0 + 5_000,
        T0 + 5_000 + 2 * STEP_MS,
    )
    assert [s.ts.tolist() for s in few] == [[T0 + 5_000, T0 + 20_000, T0 + 35_000]]
    # An empty-valued label is no label: it is dropped from the set, and `=""` matches it like an absent one.
    mem = store.select([m("__name__", "=", "ray_node_mem_used"), m("empty", "=", "")], T0, T0 + 10 * HALF_HOUR)
    assert len(mem) == 3 and all("empty" not in s.labels for s in mem)
    assert store.select([m("__name__", "=", "up"), m("SessionName", "=", "")], T0, T0 + HALF_HOUR) != []
    # Regexes are anchored; != and !~ as Prometheus.
    assert store.select([m("instance", "=~", "10.0.0")], T0, T0 + HALF_HOUR) == []
    assert {
        s.labels["instance"]
        for s in store.select([m("instance", "=~", "10.0.0.(1|9):.*"), m("__name__", "=", "up")], T0, T0 + HALF_HOUR)
    } == {A.instance, C.instance}
    names = {
        s.labels["__name__"]
        for s in store.select([m("__name__", "!~", "ray_.*|up"), m("job", "!=", "x")], T0, T0 + HALF_HOUR)
    }
    assert names == {"scrape_duration_seconds", "scrape_samples_scraped"}
    with pytest.raises(BadData):
        store.select([m("instance", "=~", "((")], T0, T0 + HALF_HOUR)


def test_store_joins_one_label_set_across_sessions(store):
    # The scraper's `up` has no SessionName: sessions A and B of cluster alpha on the same instance write the same
    # series, which Prometheus would hold as one.
    [up] = store.select(
        [Matcher("__name__", "=", "up"), Matcher("ray_io_cluster", "=", "alpha")], T0, T0 + 10 * HALF_HOUR
    )
    assert up.ts.tolist() == A.scrape_times() + B.scrape_times()


def test_store_runs_two_statements_per_selector_whatever_the_sessions(store):
    before = store.queries
    found = store.select([Matcher("__name__", "=~", "ray_.*")], T0, T0 + 10 * HALF_HOUR)
    assert len(found) == 9 and store.queries - before == 2


def test_store_metadata_respects_the_time_range(store):
    assert store.label_values("SessionName", [], T0 + 2 * HALF_HOUR, T0 + 3 * HALF_HOUR) == [B.name]
    assert store.label_values("SessionName", [], T0 - 10 * HALF_HOUR, T0 - 5 * HALF_HOUR) == []
    assert (
        store.label_values("__name__", [[Matcher("job", "=", "ray")]], T0, T0 + HALF_HOUR)[0]
        == "ray_node_cpu_utilization"
    )
    assert store.label_names([[Matcher("__name__", "=", "up")]], T0, T0 + 10 * HALF_HOUR) == [
        "__name__",
        "instance",
        "job",
        "ray_io_cluster",
    ]
    # Sessions whose samples the range only partly covers are checked sample by sample.
    edge = A.scrape_times()[-1]
    assert store.label_values("SessionName", [], edge, edge + 1) == [A.name, C.name]
    assert len(store.series([[Matcher("__name__", "=", "up")]], edge + 1, edge + 2)) == 0


# -- endpoints ---------------------------------------------------------------------------------------------------


def test_metadata_endpoints_answer_get_and_post(client):
    rng = {"start": secs(T0), "end": secs(T0 + 10 * HALF_HOUR)}
    labels = ok(client.get(f"{API}/labels", params=rng))
    assert {"SessionName", "__name__", "instance", "job", "ray_io_cluster"} <= set(labels)
    assert labels == sorted(labels)
    assert ok(client.post(f"{API}/labels", data=rng)) == labels
    sessions = ok(client.get(f"{API}/label/SessionName/values"))
    assert sessions == sorted([A.name, B.name, C.name])
    only_b = ok(
        client.post(
            f"{API}/label/SessionName/values",
            data={
                "match[]": ['ray_node_cpu_utilization{ray_io_cluster="alpha"}'],
                "start": secs(T0 + 2 * HALF_HOUR),
                "end": secs(T0 + 3 * HALF_HOUR),
            },
        )
    )
    assert only_b == [B.name]
    series = ok(
        client.get(
            f"{API}/series",
            params={"match[]": ['up{ray_io_cluster="alpha"}', 'ray_tasks_finished_total{SessionName="%s"}' % C.name]},
        )
    )
    assert [(s["__name__"], s.get("SessionName", ""), s["instance"]) for s in series] == [
        ("ray_tasks_finished_total", C.name, C.instance),
        ("up", "", A.instance),
    ]
    assert list(series[0]) == sorted(series[0])
    posted = ok(
        client.post(
            f"{API}/series",
            data={"match[]": 'up{ray_io_cluster="alpha"}'},
            params={"match[]": 'ray_tasks_finished_total{SessionName="%s"}' % C.name},
        )
    )
    assert posted == series  # body and URL parameters together, as Go's Request.Form
    assert ok(client.get(f"{API}/metadata")) == {}
    assert ok(client.get(f"{API}/query_exemplars", params={"query": "up"})) == []
    assert ok(client.post(f"{API}/format_query", data={"query": "sum(up)by(job)"})) == "sum by (job) (up)"
    build = ok(client.get(f"{API}/status/buildinfo"))
    assert build["version"] == "2.42.0" and {"revision", "branch", "goVersion"} <= set(build)
    assert ok(client.post(f"{API}/status/buildinfo")) == build
    assert ok(client.get(f"{API}/rules")) == {"groups": []}


def test_bad_parameters_answer_as_prometheus(client):
    q = f"{API}/query_range"
    base = {"query": "up", "start": secs(T0), "end": secs(T0 + HALF_HOUR), "step": "15s"}
    err(
        client.get(q, params={**base, "start": "abc"}),
        400,
        "bad_data",
        'invalid parameter "start": cannot parse "abc" to a valid timestamp',
    )
    err(
        client.get(q, params={**base, "end": secs(T0 - 1000)}),
        400,
        "bad_data",
        'invalid parameter "end": end timestamp must not be before start time',
    )
    err(
        client.get(q, params={**base, "step": "x"}),
        400,
        "bad_data",
        'invalid parameter "step": cannot parse "x" to a valid duration',
    )
    err(client.get(q, params={**base, "step": "0"}), 400, "bad_data", "zero or negative query resolution step")
    err(
        client.post(q, data={**base, "step": "0.1"}),
        400,
        "bad_data",
        "exceeded maximum resolution of 11,000 points per timeseries",
    )
    err(
        client.get(f"{API}/query", params={"query": "up", "time": "yesterday"}),
        400,
        "bad_data",
        'invalid parameter "time": Invalid time value for \'time\': cannot parse "yesterday" to a valid timestamp',
    )
    err(
        client.get(f"{API}/query", params={"query": "up", "timeout": "soon"}),
        400,
        "bad_data",
        'invalid parameter "timeout"',
    )
    err(client.get(f"{API}/series"), 400, "bad_data", "no match[] parameter provided")
    err(client.get(f"{API}/series", params={"match[]": "up{"}), 400, "bad_data", 'invalid parameter "match[]"')
    err(
        client.get(f"{API}/series", params={"match[]": '{job=~".*"}'}),
        400,
        "bad_data",
        "must contain at least one non-empty matcher",
    )
    err(client.get(f"{API}/label/not-a-label/values"), 400, "bad_data", 'invalid label name: "not-a-label"')
    err(client.get(f"{API}/labels", params={"start": "x"}), 400, "bad_data", "Invalid time value for 'start'")
    err(client.get(f"{API}/query_exemplars", params={"query": "sum("}), 400, "bad_data", "parse error")


def test_times_as_rfc3339_or_seconds_and_durations_as_prometheus():
    from historyserver.routes.prometheus_params import parse_duration_ms, parse_time

    assert parse_time("2026-01-01T00:00:00Z") == T0
    assert parse_time("2026-01-01T01:00:00.1239+01:00") == T0 + 123
    assert parse_time("1767225600.0006") == T0 + 1 and parse_time("1767225600") == T0
    assert parse_time("-5.5") == -5500
    for bad in ("", "2026-01-01", "0x10", "NaN", "1e400", " 1"):
        with pytest.raises(ValueError):
            parse_time(bad)
    assert [parse_duration_ms(d) for d in ("15", "0.5", "15s", "1m30s", "1d", "1w", "100ms")] == [
        15_000,
        500,
        15_000,
        90_000,
        86_400_000,
        604_800_000,
        100,
    ]
    for bad in ("", "1.5m", "m", "1e30"):
        with pytest.raises(ValueError):
            parse_duration_ms(bad)


def test_scopes_prune_sessions_by_name_cluster_and_time(archive, tmp_path):
    with make_client(archive, tmp_path / "cache") as c:
        spy = Spy(c)
        one = {"match[]": 'ray_node_cpu_utilization{SessionName="%s"}' % B.name}
        assert [s["SessionName"] for s in ok(c.get(f"{API}/series", params=one))] == [B.name]
        assert spy.opened == [B.id]  # the archive scope read one session's tables, not three
        spy.opened.clear()
        grafana_style = {
            "match[]": 'up{ray_io_cluster=~"$Cluster|beta"}'.replace("$Cluster", "(alpha)"),
            "start": secs(T0),
            "end": secs(T0 + HALF_HOUR),
        }
        assert {s["instance"] for s in ok(c.get(f"{API}/series", params=grafana_style))} == {A.instance, C.instance}
        assert sorted(spy.opened) == sorted([A.id, C.id])  # B started after the range
        spy.opened.clear()
        assert ok(c.get(f"{API}/series", params={"match[]": "rayhistory_session_up"})) != []
        assert spy.opened == []  # catalog-derived series read no tables
        spy.opened.clear()
        cluster = ok(c.get("/clusters/team/alpha" + API + "/label/SessionName/values"))
        assert cluster == [A.name, B.name] and sorted(spy.opened) == sorted([A.id, B.id])
        spy.opened.clear()
        assert ok(c.get(f"/sessions/{C.id}{API}/label/instance/values")) == [C.instance]
        assert spy.opened == [C.id]
        # Another session's name through a session's scope: nothing, and nothing read.
        spy.opened.clear()
        assert ok(c.get(f"/sessions/{C.id}{API}/series", params=one)) == []
        assert spy.opened == []


def test_unknown_sessions_clusters_and_endpoints_answer_in_prometheus_shape(client):
    missing = "team~alpha~session_2000-01-01_00-00-00_000000_1"
    err(client.get(f"/sessions/{missing}{API}/labels"), 404, "not_found", "no session")
    err(client.post(f"/sessions/{missing}{API}/query", data={"query": "up"}), 404, "not_found", "no session")
    err(client.get(f"/sessions/not-an-id{API}/query_range"), 404, "not_found")
    err(client.get("/clusters/team/nowhere" + API + "/labels"), 404, "not_found", "nowhere")
    err(client.get(f"/sessions/{A.id}{API}/targets"), 404, "not_found", "/query_range")
    err(client.get(f"{API}/nothing/here"), 404, "not_found")


# -- queries (the engine) ----------------------------------------------------------------------------------------


def test_instant_and_range_queries(client):
    cpu_a = 'ray_node_cpu_utilization{SessionName="%s"}' % A.name
    t = A.scrape_times()[4]
    data = ok(client.get(f"{API}/query", params={"query": cpu_a, "time": secs(t)}))
    assert data["resultType"] == "vector"
    [sample] = data["result"]
    assert sample["metric"]["SessionName"] == A.name and sample["value"] == [t / 1000, "14"]
    posted = ok(client.post(f"{API}/query", data={"query": cpu_a, "time": secs(t)}))
    assert posted == data
    rng = {
        "query": "sum by (ray_io_cluster) (ray_node_cpu_utilization)",
        "start": secs(T0),
        "end": secs(T0 + 4 * HALF_HOUR),
        "step": "60",
    }
    matrix = ok(client.post(f"{API}/query_range", data=rng))
    assert matrix["resultType"] == "matrix"
    by_cluster = {r["metric"]["ray_io_cluster"]: r["values"] for r in matrix["result"]}
    assert set(by_cluster) == {"alpha", "beta"}
    alpha = dict((int(t), float(v)) for t, v in by_cluster["alpha"])
    assert alpha[T0 // 1000 + 60] == 10 + 3 and alpha[(T0 + 2 * HALF_HOUR) // 1000 + 60] == 50 + 3
    assert (T0 + HALF_HOUR) // 1000 + 600 not in alpha  # between the sessions: nothing (beyond the lookback)
    rate = ok(
        client.get(
            f"{API}/query",
            params={
                "query": 'rate(ray_tasks_finished_total{SessionName="%s"}[1m])' % A.name,
                "time": secs(A.scrape_times()[10]),
            },
        )
    )
    assert float(rate["result"][0]["value"][1]) == pytest.approx(2 / 15)
    assert ok(client.get(f"{API}/query", params={"query": "1+1", "time": "5"})) == {
        "resultType": "scalar",
        "result": [5, "2"],
    }


def test_a_range_outside_every_session_is_empty_not_an_error(client):
    rng = {"query": "up", "start": secs(T0 - 100 * HALF_HOUR), "end": secs(T0 - 90 * HALF_HOUR), "step": "60"}
    assert ok(client.get(f"/sessions/{A.id}{API}/query_range", params=rng)) == {"resultType": "matrix", "result": []}
    assert ok(client.get(f"{API}/query", params={"query": "up", "time": secs(T0 + 100 * HALF_HOUR)})) == {
        "resultType": "vector",
        "result": [],
    }


def test_query_errors_bad_data_and_execution(client):
    e = err(client.get(f"{API}/query", params={"query": "sum(up"}), 400, "bad_data", 'invalid parameter "query"')
    assert "parse error" in e
    err(
        client.post(f"{API}/query_range", data={"query": "", "start": "0", "end": "1", "step": "1"}),
        400,
        "bad_data",
        'invalid parameter "query"',
    )
    # Two sessions' `up` share `job`: a one-to-one match on it finds duplicates, which Prometheus refuses at
    # execution (422).
    err(client.get(f"{API}/query", params={"query": "up * on(job) up", "time": secs(T0 + 60_000)}), 422, "execution")


def test_catalog_derived_session_series(client):
    rng = {"start": secs(T0), "end": secs(T0 + 4 * HALF_HOUR), "step": "60"}
    up = ok(client.get(f"{API}/query_range", params={**rng, "query": 'rayhistory_session_up{ray_io_cluster="alpha"}'}))
    by_session = {r["metric"]["SessionName"]: r for r in up["result"]}
    assert set(by_session) == {A.name, B.name}
    a = by_session[A.name]
    assert {k: v for k, v in a["metric"].items()} == {
        "__name__": "rayhistory_session_up",
        "namespace": "team",
        "ray_io_cluster": "alpha",
        "SessionName": A.name,
        "status": "ended",
    }
    times = [t for t, _ in a["values"]]
    assert times[0] == T0 // 1000 and {v for _, v in a["values"]} == {"1"}
    # Samples every 60 s up to the end, then the 5-minute lookback.
    assert times[-1] == (T0 + HALF_HOUR) // 1000 + 300
    dur = ok(
        client.get(
            f"{API}/query",
            params={
                "query": 'rayhistory_session_duration_seconds{SessionName="%s"}' % B.name,
                "time": secs(T0 + 2 * HALF_HOUR + 600_000),
            },
        )
    )
    assert dur["result"][0]["value"][1] == "600"
    count = ok(
        client.get(
            f"{API}/query",
            params={"query": "count(rayhistory_session_up) by (ray_io_cluster)", "time": secs(T0 + 60_000)},
        )
    )
    assert {r["metric"]["ray_io_cluster"]: r["value"][1] for r in count["result"]} == {"alpha": "1", "beta": "1"}
    # Failure counts come from compacted tables (these sessions ran no jobs).
    failed = ok(
        client.get(
            f"/sessions/{A.id}{API}/query",
            params={"query": "rayhistory_session_failed_jobs", "time": secs(T0 + 60_000)},
        )
    )
    assert [r["value"][1] for r in failed["result"]] == ["0"]


def test_session_series_points_include_the_end():
    """Boundaries every 60 s plus the end itself: a 30 s session inside one minute still has a point, at its end,
    where an instant query at the end (what Ray's panels and the tests ask) finds its final values."""
    from historyserver.queries.session_series import grid

    t = 1_800_000_000_000  # a whole minute
    assert grid(t + 10_000, t + 40_000, 0, 2 * t).tolist() == [t + 40_000]
    assert grid(t, t + 150_000, 0, 2 * t).tolist() == [t, t + 60_000, t + 120_000, t + 150_000]
    assert grid(t, t + 120_000, 0, 2 * t).tolist() == [t, t + 60_000, t + 120_000]
    assert grid(t, t + 150_000, t + 1, t + 149_000).tolist() == [t + 60_000, t + 120_000]


def test_a_running_session_is_served_from_its_provisional_tables(tmp_path):
    now = int(time.time() * 1000)
    live = FakeSession(
        "team", "gamma", "session_2026-01-02_00-00-00_000004_1", now - 600_000, None, last_seen_ms=now - 1000
    )
    write_session(LocalStore(tmp_path / "archive"), live)
    with make_client(tmp_path / "archive", tmp_path / "cache") as c:
        data = ok(c.get(f"/sessions/{live.id}{API}/query", params={"query": "ray_node_cpu_utilization"}))
        assert [r["metric"]["SessionName"] for r in data["result"]] == [live.name]
        status = ok(c.get(f"{API}/label/status/values"))
        assert status == ["running"]
