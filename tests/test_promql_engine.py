"""PromQL engine semantics with hand-computed expectations (Prometheus 2.42 behaviour). Fast: memory store only."""

from __future__ import annotations

import math

import numpy as np
import pytest

from historyserver.promql.engine import Engine
from historyserver.promql.errors import BadData, ExecutionError
from historyserver.promql.memory_store import MemoryStore
from historyserver.promql.model import STALE_NAN, Matcher, RawSeries
from historyserver.promql.selectors import parse_series_selector
from historyserver.promql.values import format_value, format_values

S = 1000  # ms per second


def series(labels: dict, points: list[tuple[float, float]]) -> RawSeries:
    ts = np.array([int(t * S) for t, _ in points], dtype=np.int64)
    return RawSeries(dict(labels), ts, np.array([v for _, v in points], dtype=np.float64))


def engine(*raw: RawSeries) -> Engine:
    return Engine(MemoryStore(list(raw)))


def vector(result) -> dict[tuple, float]:
    data = result.to_json()
    assert data["resultType"] == "vector"
    return {tuple(sorted(r["metric"].items())): float(r["value"][1]) for r in data["result"]}


def only(result) -> float:
    values = list(vector(result).values())
    assert len(values) == 1, values
    return values[0]


# ------------------------------------------------------------------------------------------------ selection


def test_lookback_includes_exactly_five_minutes_and_then_expires():
    e = engine(series({"__name__": "up", "job": "a"}, [(0, 1.0)]))
    assert only(e.instant("up", 300 * S)) == 1.0  # [t - 5m, t] includes t - 5m in Prometheus 2.x
    assert vector(e.instant("up", 300 * S + 1)) == {}
    assert vector(e.instant("up", -1)) == {}


def test_staleness_marker_ends_the_series_and_is_not_a_range_sample():
    e = engine(series({"__name__": "g"}, [(0, 1.0), (15, STALE_NAN), (30, 3.0)]))
    assert only(e.instant("g", 10 * S)) == 1.0
    assert vector(e.instant("g", 20 * S)) == {}
    assert only(e.instant("g", 31 * S)) == 3.0
    assert only(e.instant("count_over_time(g[1m])", 40 * S)) == 2.0
    # An ordinary NaN sample is a value, not a marker.
    e2 = engine(series({"__name__": "g"}, [(0, math.nan)]))
    assert math.isnan(only(e2.instant("g", 10 * S)))


def test_offset_and_at_modifiers():
    e = engine(series({"__name__": "x"}, [(t, t) for t in range(0, 600, 15)]))
    assert only(e.instant("x offset 1m", 300 * S)) == 240.0
    assert only(e.instant("x @ 100", 300 * S)) == 90.0
    r = e.range("x @ 100", 200 * S, 260 * S, 30 * S).to_json()["result"][0]["values"]
    assert [v for _, v in r] == ["90", "90", "90"]


def test_range_selector_includes_the_left_boundary():
    e = engine(series({"__name__": "x"}, [(t, 1.0) for t in range(0, 120, 15)]))
    # samples at 0, 15, 30, 45, 60 lie in [0, 60]: Prometheus 2.x includes t - range.
    assert only(e.instant("count_over_time(x[1m])", 60 * S)) == 5.0


# ------------------------------------------------------------------------------------------------ rate family


def test_rate_extrapolates_to_the_window_edges():
    e = engine(series({"__name__": "c", "job": "a"}, [(t, t) for t in (10, 20, 30, 40, 50)]))
    # window [0, 60]: first sample 10s after the start, last 10s before the end, both under 1.1 x the 10s
    # spacing, so the 40 increase over 40s is extrapolated to 60s: 60, i.e. 1/s.
    assert only(e.instant("increase(c[1m])", 60 * S)) == pytest.approx(60.0)
    assert only(e.instant("rate(c[1m])", 60 * S)) == pytest.approx(1.0)
    assert vector(e.instant("rate(c[1m])", 60 * S)) == {(("job", "a"),): pytest.approx(1.0)}  # name dropped
    # Far from the edges (window [-40, 80]): extrapolate half a spacing on each side only -> 40 * 50 / 40.
    far = engine(series({"__name__": "c"}, [(t, 100 + t) for t in (10, 20, 30, 40, 50)]))
    assert only(far.instant("increase(c[2m])", 80 * S)) == pytest.approx(50.0)
    # ...unless the counter's zero point is closer: 10 at t=10 rising 1/s reaches 0 at t=0 -> 40 + 10 + 5.
    assert only(e.instant("increase(c[2m])", 80 * S)) == pytest.approx(55.0)


def test_counter_reset_and_zero_point_limit():
    e = engine(series({"__name__": "c"}, [(0, 5), (15, 10), (30, 2), (45, 6)]))
    # raw increase: (6 - 5) + 10 (the reset adds the value before it) = 11; window [-15, 45]; the zero point
    # (45 * 5/11 = 20.45s before the first sample) is further than the 15s to the window start -> x 60/45.
    assert only(e.instant("increase(c[1m])", 45 * S)) == pytest.approx(11 * 60 / 45)
    assert only(e.instant("resets(c[1m])", 45 * S)) == 1.0
    # delta ignores resets: (6 - 5) * 60 / 45
    assert only(e.instant("delta(c[1m])", 45 * S)) == pytest.approx(60 / 45)
    # Zero point: a counter starting at 1 and rising 10/15s cannot extrapolate below zero.
    z = engine(series({"__name__": "c"}, [(30, 1), (45, 11), (60, 21)]))
    # window [0, 60]: 20 over 30s, 30s to the start (> 1.1 x 15 -> half spacing 7.5s), but zero is 1.5s away.
    assert only(z.instant("increase(c[1m])", 60 * S)) == pytest.approx(20 * (30 + 1.5) / 30)


def test_resets_and_changes_do_not_count_equal_neighbours():
    # 1 1 2 2 0 0 3 3: one reset (2 -> 0), three changes (1 -> 2, 2 -> 0, 0 -> 3).
    e = engine(series({"__name__": "c"}, [(t * 10, v) for t, v in enumerate([1, 1, 2, 2, 0, 0, 3, 3])]))
    assert only(e.instant("resets(c[2m])", 70 * S)) == 1.0
    assert only(e.instant("changes(c[2m])", 70 * S)) == 3.0
    flat = engine(series({"__name__": "c"}, [(0, 5), (10, 5), (20, 5)]))
    assert only(flat.instant("resets(c[1m])", 20 * S)) == 0.0


def test_irate_idelta_and_single_sample_windows():
    e = engine(series({"__name__": "c"}, [(0, 1), (10, 4), (20, 2)]))
    assert only(e.instant("irate(c[1m])", 20 * S)) == pytest.approx(2 / 10)  # reset: the last value counts
    assert only(e.instant("idelta(c[1m])", 20 * S)) == pytest.approx(-2)
    assert vector(e.instant("rate(c[5s])", 20 * S)) == {}  # one sample: no rate


# ------------------------------------------------------------------------------------------------ histograms


def _buckets(counts: dict[str, float], **extra) -> list[RawSeries]:
    return [series({"__name__": "h_bucket", "le": le, **extra}, [(0, c)]) for le, c in counts.items()]


def test_histogram_quantile_interpolates_inside_the_bucket():
    e = engine(*_buckets({"1": 10, "2": 20, "+Inf": 20}, job="a"))
    assert vector(e.instant("histogram_quantile(0.75, h_bucket)", 0)) == {(("job", "a"),): 1.5}
    assert only(e.instant("histogram_quantile(0.25, h_bucket)", 0)) == 0.5  # lowest bucket starts at 0
    assert only(e.instant("histogram_quantile(2, h_bucket)", 0)) == math.inf
    # The rank in the +Inf bucket answers the highest finite bound.
    e2 = engine(*_buckets({"1": 10, "2": 20, "+Inf": 30}))
    assert only(e2.instant("histogram_quantile(0.9, h_bucket)", 0)) == 2.0
    # No +Inf bucket: NaN. Non-monotonic counts are raised to the running maximum.
    assert math.isnan(only(engine(*_buckets({"1": 1, "2": 2})).instant("histogram_quantile(0.5, h_bucket)", 0)))
    e3 = engine(*_buckets({"1": 10, "2": 8, "4": 20, "+Inf": 20}))
    assert only(e3.instant("histogram_quantile(0.75, h_bucket)", 0)) == pytest.approx(2 + 2 * (5 / 10))


def test_histogram_quantile_at_a_step_that_lacks_a_bucket_ranks_within_the_present_ones():
    # le="1" has one sample, at 0 s: present at the 0 s and 300 s steps (5 min lookback), gone at 600 s, where
    # the quantile is taken over the three buckets left, as Prometheus does with whatever buckets a step has.
    e = engine(
        series({"__name__": "h_bucket", "le": "1"}, [(0, 10)]),
        series({"__name__": "h_bucket", "le": "2"}, [(0, 20), (600, 20)]),
        series({"__name__": "h_bucket", "le": "4"}, [(0, 30), (600, 36)]),
        series({"__name__": "h_bucket", "le": "+Inf"}, [(0, 40), (600, 40)]),
    )
    data = e.range("histogram_quantile(0.625, h_bucket)", 0, 600 * S, 300 * S).to_json()
    # All four buckets: rank 0.625 * 40 = 25 falls in (2, 4] holding 30 - 20 = 10: 2 + 2 * (25 - 20) / 10 = 3.
    # At 600 s, (2, 20), (4, 36), (+Inf, 40): rank 25 falls in (2, 4] holding 36 - 20 = 16: 2 + 2 * 5 / 16.
    assert data["result"] == [{"metric": {}, "values": [[0, "3"], [300, "3"], [600, "2.625"]]}]
    # The lowest present bucket starts at 0 when a lower one is missing: rank 10 in (0, 2] holding 20 -> 1.
    low = e.range("histogram_quantile(0.25, h_bucket)", 600 * S, 600 * S, 300 * S).to_json()
    assert low["result"] == [{"metric": {}, "values": [[600, "1"]]}]


# ------------------------------------------------------------------------------------------------ operators


def _info_and_values() -> Engine:
    return engine(
        series({"__name__": "v", "job": "a", "x": "1"}, [(0, 2)]),
        series({"__name__": "v", "job": "a", "x": "2"}, [(0, 3)]),
        series({"__name__": "v", "job": "b", "x": "1"}, [(0, 5)]),
        series({"__name__": "info", "job": "a", "version": "1.0"}, [(0, 1)]),
        series({"__name__": "info", "job": "b", "version": "2.0"}, [(0, 1)]),
    )


def test_group_left_copies_labels_from_the_one_side():
    got = vector(_info_and_values().instant("v * on(job) group_left(version) info", 0))
    assert got == {
        (("job", "a"), ("version", "1.0"), ("x", "1")): 2,
        (("job", "a"), ("version", "1.0"), ("x", "2")): 3,
        (("job", "b"), ("version", "2.0"), ("x", "1")): 5,
    }


def test_many_to_many_and_one_to_one_errors():
    e = _info_and_values()
    with pytest.raises(ExecutionError, match="found duplicate series for the match group"):
        e.instant("info * on(job) group_left v", 0)
    with pytest.raises(ExecutionError, match="many-to-one matching must be explicit"):
        e.instant("v * on(job) info", 0)


def test_comparisons_filter_or_return_bool():
    e = _info_and_values()
    assert vector(e.instant("v > 2", 0)) == {
        (("__name__", "v"), ("job", "a"), ("x", "2")): 3,
        (("__name__", "v"), ("job", "b"), ("x", "1")): 5,
    }
    assert vector(e.instant("v > bool 2", 0)) == {
        (("job", "a"), ("x", "1")): 0,
        (("job", "a"), ("x", "2")): 1,
        (("job", "b"), ("x", "1")): 1,
    }
    assert vector(e.instant("1 < v", 0))[(("__name__", "v"), ("job", "b"), ("x", "1"))] == 5  # vector's value
    assert e.instant("2 > bool 1", 0).to_json() == {"resultType": "scalar", "result": [0, "1"]}


def test_set_operators_and_or_vector_zero():
    e = _info_and_values()
    assert set(vector(e.instant("v and on(job) info{job='a'}", 0))) == {
        (("__name__", "v"), ("job", "a"), ("x", "1")),
        (("__name__", "v"), ("job", "a"), ("x", "2")),
    }
    assert vector(e.instant("v unless on(job) info{job='a'}", 0)) == {(("__name__", "v"), ("job", "b"), ("x", "1")): 5}
    assert vector(e.instant("sum(nothing) or vector(0)", 0)) == {(): 0}
    assert vector(e.instant("sum(v) or vector(0)", 0)) == {(): 10}


def test_aggregations_by_and_without():
    e = _info_and_values()
    assert vector(e.instant("sum by (job) (v)", 0)) == {(("job", "a"),): 5, (("job", "b"),): 5}
    assert vector(e.instant("max without (x) (v)", 0)) == {(("job", "a"),): 3, (("job", "b"),): 5}
    assert vector(e.instant("count(v)", 0)) == {(): 3}
    assert only(e.instant("quantile(0.5, v)", 0)) == 3
    assert vector(e.instant("topk(1, v)", 0)) == {(("__name__", "v"), ("job", "b"), ("x", "1")): 5}


def test_label_replace_and_same_labelset_error():
    e = _info_and_values()
    got = vector(e.instant('label_replace(v{job="b"}, "team", "t-$1", "job", "(.*)")', 0))
    assert got == {(("__name__", "v"), ("job", "b"), ("team", "t-b"), ("x", "1")): 5}
    with pytest.raises(ExecutionError, match="same labelset"):
        e.instant('label_replace(v, "x", "", "x", ".*")', 0)


# ------------------------------------------------------------------------------------------------ subqueries, ranges


def test_subquery_steps_are_aligned_to_absolute_multiples():
    e = engine(series({"__name__": "x"}, [(t, t) for t in range(0, 300, 15)]))
    # window [-30, 90]: the inner query runs at 0 and 60 (multiples of 1m), not at 90.
    assert only(e.instant("max_over_time(x[2m:1m])", 90 * S)) == 60.0
    assert only(e.instant("count_over_time(x[2m:1m])", 90 * S)) == 2.0


def test_range_query_is_an_instant_evaluation_per_step():
    e = engine(
        series({"__name__": "x", "b": "2"}, [(t, t) for t in range(0, 60, 10)]),
        series({"__name__": "x", "b": "1"}, [(100, 7)]),
    )
    data = e.range("x", 0, 120 * S, 30 * S).to_json()
    assert data["resultType"] == "matrix"
    assert [r["metric"]["b"] for r in data["result"]] == ["1", "2"]  # sorted by labels
    assert data["result"][0]["values"] == [[120, "7"]]
    assert data["result"][1]["values"] == [[0, "0"], [30, "30"], [60, "50"], [90, "50"], [120, "50"]]
    assert e.range("1 + 1", 0, 60 * S, 30 * S).to_json() == {
        "resultType": "matrix",
        "result": [{"metric": {}, "values": [[0, "2"], [30, "2"], [60, "2"]]}],
    }


# ------------------------------------------------------------------------------------------------ errors, encoding


def test_resolution_limit_and_bad_queries():
    e = engine()
    e.range("1", 0, 11_000 * S, S)  # exactly 11,000 intervals are allowed
    with pytest.raises(BadData, match="exceeded maximum resolution of 11,000 points"):
        e.range("1", 0, 11_001 * S, S)
    with pytest.raises(BadData, match="parse error"):
        e.instant("sum(", 0)
    with pytest.raises(BadData, match="parse error"):
        e.instant("rate(x)", 0)
    with pytest.raises(BadData, match='invalid expression type "range vector"'):
        e.range("x[5m]", 0, 60 * S, 15 * S)


def test_value_formatting_matches_prometheus():
    # Prometheus 2.42 (util/jsonutil.MarshalValue) switches to Go's exponent form below 1e-6 and from 1e21; the
    # fidelity harness saw a live Prometheus answer "1.0456627379830273e-07" for a Default-dashboard panel.
    vals = [
        1.0,
        0.25,
        math.nan,
        math.inf,
        -math.inf,
        1e20,
        1.5e-7,
        -0.0,
        1e21,
        -2.5e-9,
        1e-6,
        5e-5,
        1.0456627379830273e-07,
    ]
    expected = ["1", "0.25", "NaN", "+Inf", "-Inf", "100000000000000000000", "1.5e-07", "-0", "1e+21", "-2.5e-09"]
    expected += ["0.000001", "0.00005", "1.0456627379830273e-07"]
    assert [format_value(v) for v in vals] == expected
    assert format_values(np.array(vals)) == expected


def test_series_selector_parsing():
    assert parse_series_selector('up{job=~"a.*",x!="1"}') == [
        Matcher("__name__", "=", "up"),
        Matcher("job", "=~", "a.*"),
        Matcher("x", "!=", "1"),
    ]
    with pytest.raises(BadData):
        parse_series_selector("sum(up)")
