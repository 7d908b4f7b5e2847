"""The oracle: every panel expression of Ray's 8 dashboards answers the same from our engine as from a real
Prometheus holding the same samples. This is the definition of done for historyserver/promql.

One synthetic dataset (tests/oracle_data.py: two sessions of one cluster, five nodes, two hours, 15 s scrapes) goes
two ways: pushed into Prometheus 2.42 through its remote-write receiver with the staleness markers a live Prometheus
would have written (the generator computes them from the series it drops and the scrapes it fails), and archived in
the collector's format, then compacted by the real compaction (which derives its own markers) into the Parquet
tables our store reads. Each of the 403 targets is sent as Grafana sends it
(tests/promql_panels.py) under two selections, one session's instances and "All", as a range query over the whole
data at a 60 s step and as instant queries at a few times. Results must have the same series (label sets), the same
timestamps, and values within a relative error of 1e-6 (NaN equals NaN). A query Prometheus refuses must be refused
with the same errorType. An empty answer on both sides is equal, so the data must make Prometheus answer most
cases with something (`test_the_data_makes_the_dashboards_answer`), or the comparison would prove little.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import needs, oracle_data
from tests.promql_panels import Case, GrafanaRequest, cases
from tests.servers import prometheus as prom_server

STEP_MS = 60_000
START_MS = oracle_data.T0_MS
END_MS = oracle_data.END_MS
RANGE_MS = END_MS - START_MS
# Instants: between scrapes (a node of session 1 gone just over 5 min before), and just after session 1 ended
# (its series still inside the lookback) when session 2 has begun. Two only: each instant costs as much as the
# range queries on our DuckDB store.
INSTANTS_MS = (START_MS + 61 * 60_000 + 7_123, START_MS + 83 * 60_000)
REL_TOL = 1e-6
MIN_NON_EMPTY = 0.90

_S1 = oracle_data.SESSIONS[0]
SELECTIONS = {
    # One session of the cluster, two of its three instances, a few dashboard variables set to values.
    "session": GrafanaRequest(
        {
            "SessionName": _S1.name,
            "Cluster": oracle_data.CLUSTER,
            "Instance": [f"{n.ip}:{oracle_data.NODE_PORT}" for n in _S1.nodes[:2]],
            "Application": ["app1", "llm"],
            "deployment": ["LLMServer", "SGLangServer"],
        },
        interval_ms=STEP_MS,
        range_ms=RANGE_MS,
    ),
    "all": GrafanaRequest({}, interval_ms=STEP_MS, range_ms=RANGE_MS),
}
CASES = cases(SELECTIONS)


@dataclass
class Answer:
    """One query's outcome: Prometheus's `data` object, or the errorType it failed with."""

    data: dict | None = None
    error: str | None = None


@dataclass
class Expected:
    range: Answer
    instants: list[Answer]


def _prom_answer(fn, *args) -> Answer:
    try:
        return Answer(data=fn(*args))
    except prom_server.PrometheusError as e:
        return Answer(error=str(e).split(":", 1)[0])


@dataclass
class Sides:
    prometheus: prom_server.Prometheus
    compacted: list[Path]  # one folder of compacted tables per session
    dataset: oracle_data.Dataset


@pytest.fixture(scope="session")
def sides(tmp_path_factory):
    """The data generated once, then in parallel (Prometheus is another process): pushed into Prometheus, and
    archived then compacted by the real compaction for our side."""
    needs.prometheus()
    dataset = oracle_data.generate(c.expr for c in CASES if c.scope == "all")
    work = tmp_path_factory.mktemp("prometheus")
    with ExitStack() as stack, ThreadPoolExecutor(1) as pool:
        server = pool.submit(
            stack.enter_context, prom_server.running_prometheus_remote_write(dataset.series_samples, work)
        )
        dirs = oracle_data.compact(dataset, tmp_path_factory.mktemp("oracle-archive"))
        started = server.result()
        yield Sides(started, dirs, dataset)


@pytest.fixture(scope="session")
def expected(sides) -> dict[str, Expected]:
    """Prometheus's answer to every case, asked once (in a few threads: Prometheus answers concurrently)."""
    prometheus = sides.prometheus

    def ask(case: Case) -> tuple[str, Expected]:
        rng = _prom_answer(prometheus.query_range, case.expr, START_MS / 1000, END_MS / 1000, STEP_MS / 1000)
        inst = [_prom_answer(prometheus.query, case.expr, t / 1000) for t in INSTANTS_MS]
        return case.id, Expected(rng, inst)

    with ThreadPoolExecutor(4) as pool:
        return dict(pool.map(ask, CASES))


# --- our side -------------------------------------------------------------------------------------------------------


def _our_store(dirs: list[Path]):
    """The DuckDB store the server queries, over the compacted tables: one (session id, tables folder) per session,
    as oracle_data.compact names them."""
    from historyserver.queries.metrics_store import MetricsStore

    return MetricsStore([(f"{oracle_data.NAMESPACE}~{oracle_data.CLUSTER}~{d.name}", d) for d in dirs])


def _raw_series(dirs: list[Path]):
    import numpy as np
    import pyarrow.parquet as pq

    from historyserver.promql.model import RawSeries

    out = []
    for d in dirs:
        samples = pq.read_table(d / "metric_samples.parquet")  # sorted by (series_id, ts_ms)
        ids = samples.column("series_id").to_numpy()
        ts = samples.column("ts_ms").to_numpy().astype(np.int64)
        values = samples.column("value").to_numpy().astype(np.float64)
        for s in pq.read_table(d / "metric_series.parquet").to_pylist():
            lo, hi = np.searchsorted(ids, s["series_id"], "left"), np.searchsorted(ids, s["series_id"], "right")
            out.append(RawSeries({"__name__": s["name"], **dict(s["labels"])}, ts[lo:hi], values[lo:hi]))
    return out


@pytest.fixture(scope="session")
def engine(sides):
    from historyserver.promql.engine import Engine

    return Engine(_our_store(sides.compacted))


def _our_answer(fn, *args) -> Answer:
    from historyserver.promql.errors import PromQLError

    try:
        return Answer(data=fn(*args).to_json())
    except PromQLError as e:
        return Answer(error=e.error_type)


# --- comparison -----------------------------------------------------------------------------------------------------


def _value(text) -> float:
    return float(text)  # "NaN", "+Inf", "-Inf" parse as Python floats too


def _same(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if math.isinf(a) or math.isinf(b):
        return a == b
    return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=1e-12)


def _points(data: dict) -> dict[frozenset, list[tuple[int, float]]]:
    """Series keyed by label set -> [(ms, value)] for matrix, vector and scalar results alike."""
    kind, result = data["resultType"], data["result"]
    if kind == "scalar":
        return {frozenset(): [(round(float(result[0]) * 1000), _value(result[1]))]}
    out = {}
    for s in result:
        key = frozenset(s["metric"].items())
        if key in out:
            raise AssertionError(f"duplicate series {dict(key)} in one result")
        pts = s["values"] if kind == "matrix" else [s["value"]]
        out[key] = [(round(float(t) * 1000), _value(v)) for t, v in pts]
    return out


def differences(want: Answer, got: Answer, limit: int = 5) -> list[str]:
    """Human-readable differences between Prometheus's answer and ours (empty when they agree)."""
    if want.error or got.error:
        return [] if want.error == got.error else [f"error: prometheus={want.error!r} ours={got.error!r}"]
    assert want.data is not None and got.data is not None
    if want.data["result"] and got.data["resultType"] != want.data["resultType"]:
        return [f"resultType: prometheus={want.data['resultType']} ours={got.data['resultType']}"]
    a, b = _points(want.data), _points(got.data)
    out = []
    for key in a.keys() - b.keys():
        out.append(f"missing series {dict(sorted(key))} ({len(a[key])} points)")
    for key in b.keys() - a.keys():
        out.append(f"extra series {dict(sorted(key))} ({len(b[key])} points)")
    for key in a.keys() & b.keys():
        pa, pb = dict(a[key]), dict(b[key])
        if pa.keys() != pb.keys():
            only_a, only_b = sorted(pa.keys() - pb.keys()), sorted(pb.keys() - pa.keys())
            out.append(
                f"{dict(sorted(key))}: timestamps differ (only prometheus: {len(only_a)} e.g. {only_a[:3]}, "
                f"only ours: {len(only_b)} e.g. {only_b[:3]})"
            )
        bad = [(t, pa[t], pb[t]) for t in sorted(pa.keys() & pb.keys()) if not _same(pa[t], pb[t])]
        if bad:
            out.append(f"{dict(sorted(key))}: {len(bad)} values differ, e.g. (ms, prometheus, ours) {bad[:3]}")
        if len(out) >= limit:
            break
    return out[:limit]


def _non_empty(answer: Answer) -> bool:
    return answer.data is not None and bool(answer.data["result"])


# --- tests ----------------------------------------------------------------------------------------------------------


def test_every_panel_target_is_a_case():
    targets = {c.target.case_id for c in CASES}
    assert len(targets) == 403  # all targets of the 8 dashboards (reference/.../all_dashboards_panels_promql.txt)
    assert len(CASES) == 403 * len(SELECTIONS)
    assert not [c.id for c in CASES if "$" in c.expr.replace('"$1"', "")], "a Grafana variable was left in"


def test_the_comparison_sees_differences():
    """The comparison itself: it must not pass what differs, or the oracle would prove nothing."""

    def matrix(*series):
        return Answer(
            data={
                "resultType": "matrix",
                "result": [{"metric": m, "values": [[t, v] for t, v in pts]} for m, pts in series],
            }
        )

    base = matrix(({"a": "1"}, [(1.0, "1"), (2.5, "NaN")]), ({"a": "2"}, [(1.0, "+Inf")]))
    assert differences(base, matrix(({"a": "2"}, [(1, "+Inf")]), ({"a": "1"}, [(1, "1.0000001"), (2.5, "NaN")]))) == []
    assert differences(base, matrix(({"a": "1"}, [(1.0, "1.00001"), (2.5, "NaN")]), ({"a": "2"}, [(1.0, "+Inf")])))
    assert differences(base, matrix(({"a": "1"}, [(1.0, "1"), (2.5, "0")]), ({"a": "2"}, [(1.0, "+Inf")])))
    assert differences(base, matrix(({"a": "1"}, [(1.0, "1"), (2.5, "NaN")])))  # a series missing
    assert differences(base, matrix(({"a": "1"}, [(1.0, "1")]), ({"a": "2"}, [(1.0, "+Inf")])))  # a point missing
    assert differences(base, matrix(({"a": "1", "b": ""}, [(1.0, "1"), (2.5, "NaN")]), ({"a": "2"}, [(1.0, "+Inf")])))
    assert differences(base, Answer(error="execution"))
    assert differences(Answer(error="execution"), Answer(error="execution")) == []
    vector = Answer(data={"resultType": "vector", "result": [{"metric": {}, "value": [1.0, "2"]}]})
    assert differences(vector, Answer(data={"resultType": "vector", "result": []}))
    assert differences(vector, Answer(data={"resultType": "scalar", "result": [1.0, "2"]}))


def test_the_data_makes_the_dashboards_answer(expected):
    """Most cases must return series on Prometheus, or agreeing on empty answers would prove nothing."""
    errors = {cid: e.range.error for cid, e in expected.items() if e.range.error}
    assert not errors, f"Prometheus refused: {errors}"
    empty = sorted(cid for cid, e in expected.items() if not _non_empty(e.range))
    share = 1 - len(empty) / len(expected)
    print(f"\noracle: {len(expected) - len(empty)}/{len(expected)} cases non-empty on Prometheus ({share:.1%})")
    assert share >= MIN_NON_EMPTY, f"only {share:.1%} of cases answer on Prometheus; empty: {empty}"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_engine_matches_prometheus(case: Case, expected, engine):
    want = expected[case.id]
    problems = []
    got = _our_answer(engine.range, case.expr, START_MS, END_MS, STEP_MS)
    problems += [f"range: {d}" for d in differences(want.range, got)]
    for t, want_i in zip(INSTANTS_MS, want.instants):
        got_i = _our_answer(engine.instant, case.expr, t)
        problems += [f"instant @{t}: {d}" for d in differences(want_i, got_i)]
    assert not problems, f"{case.expr}\n" + "\n".join(problems)


def _vanishing_series(dataset: oracle_data.Dataset) -> tuple[str, int]:
    """A selector for a series that vanishes mid-range while its target keeps being scraped (its last sample is
    followed by a staleness marker well inside the data), a driver's ray_tasks if there is one; and the marker's
    time."""
    import json

    from historyserver.promql.model import is_stale

    found = []
    for (name, labels), (ts, values) in dataset.series_samples.items():
        stale = is_stale(values)
        if stale[-1] and not stale[:-1].any() and START_MS + 20 * 60_000 < ts[-1] < END_MS - 20 * 60_000:
            found.append((name != "ray_tasks", name, labels, int(ts[-1])))
    assert found, "the data has no series that vanishes mid-range"
    _, name, labels, stale_ms = min(found)
    matchers = ",".join(f"{k}={json.dumps(v)}" for k, v in labels)
    return f"{name}{{{matchers}}}", stale_ms


def test_a_series_that_vanishes_ends_at_its_staleness_marker_on_both_sides(sides, engine):
    """Both sides hold the marker: the series ends at the scrape that lacked it, not 5 minutes of lookback later;
    and without the markers our answer would differ (so the oracle catches a compaction that writes none)."""
    from historyserver.promql.engine import Engine
    from historyserver.promql.memory_store import MemoryStore
    from historyserver.promql.model import RawSeries, is_stale

    expr, stale_ms = _vanishing_series(sides.dataset)
    want = _prom_answer(sides.prometheus.query_range, expr, START_MS / 1000, END_MS / 1000, STEP_MS / 1000)
    got = _our_answer(engine.range, expr, START_MS, END_MS, STEP_MS)
    assert _non_empty(want) and differences(want, got) == [], expr
    (points,) = _points(want.data).values()
    assert max(t for t, _ in points) < stale_ms  # nothing from the marker on

    # The same compacted samples without their markers: the lookback carries the last value past the marker.
    bare = [
        RawSeries(s.labels, s.ts[~is_stale(s.values)], s.values[~is_stale(s.values)])
        for s in _raw_series(sides.compacted)
    ]
    unmarked = _our_answer(Engine(MemoryStore(bare)).range, expr, START_MS, END_MS, STEP_MS)
    (longer,) = _points(unmarked.data).values()
    assert max(t for t, _ in longer) >= stale_ms and differences(want, unmarked)
    for t in (stale_ms + STEP_MS,):  # an instant just after the marker: empty on both sides, not without markers
        assert (
            differences(_prom_answer(sides.prometheus.query, expr, t / 1000), _our_answer(engine.instant, expr, t))
            == []
        )
        assert not _non_empty(_prom_answer(sides.prometheus.query, expr, t / 1000))
        assert _non_empty(_our_answer(Engine(MemoryStore(bare)).instant, expr, t))
