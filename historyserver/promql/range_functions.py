"""Functions of range vectors (rate & co., *_over_time), computed for every step from per-step window bounds.

Window reductions use ufunc.reduceat over interleaved [lo, hi) bounds: exact per-window arithmetic in C, no
prefix-sum cancellation. Rare functions (stddev, quantile, deriv...) loop over the non-empty windows."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeAlias

import numpy as np

from .model import BoolArray, FloatArray, IndexArray, IntArray
from .values import RangeSeries, RangeVector

# Each function: (rv, i) -> (values (T,), present (T,)) or None when the series yields nothing.
RangeResult: TypeAlias = tuple[FloatArray, BoolArray] | None
RangeFunction: TypeAlias = Callable[[RangeVector, int], RangeResult]
# A per-window reducer: (window's ts, window's values, step index) -> value, or None for no sample at that step.
Reducer: TypeAlias = Callable[[IntArray, FloatArray, np.intp], float | None]


def window_reduce(ufunc: np.ufunc, arr: FloatArray, lo: IndexArray, hi: IndexArray, empty: float) -> FloatArray:
    """ufunc over arr[lo:hi] for each step (empty windows give `empty`)."""
    if len(arr) == 0:
        return np.full(len(lo), empty)
    a = np.append(arr, arr[-1])  # lets an index equal to len(arr) stay in bounds
    idx = np.empty(2 * len(lo), dtype=np.int64)
    idx[0::2] = lo
    idx[1::2] = hi
    res = ufunc.reduceat(a, idx)[0::2]
    return np.where(hi > lo, res, empty)


def window_extreme(ufunc: np.ufunc, arr: FloatArray, lo: IndexArray, hi: IndexArray) -> FloatArray:
    """fmax/fmin over arr[lo:hi] per step (NaN when empty). Long windows (max_over_time(x[$__range]) in a range
    query) use a sparse table: O(n log n + T) instead of O(T x window); the result is the same, as max/min
    are idempotent."""
    length = hi - lo
    if len(arr) == 0 or int(length.sum()) <= 8 * len(arr) + len(lo):
        return window_reduce(ufunc, arr, lo, hi, np.nan)
    levels = [arr]
    while (1 << len(levels)) <= int(length.max()):
        prev, half = levels[-1], 1 << (len(levels) - 1)
        levels.append(ufunc(prev[:-half], prev[half:]))  # levels[k][i] = reduce(arr[i : i + 2^k])
    out = np.full(len(lo), np.nan)
    nonempty = length > 0
    k = np.zeros(len(lo), dtype=np.int64)
    k[nonempty] = np.floor(np.log2(length[nonempty])).astype(np.int64)
    for level in np.unique(k[nonempty]).tolist():
        sel = nonempty & (k == level)
        table = levels[level]
        out[sel] = ufunc(table[lo[sel]], table[hi[sel] - (1 << level)])
    return out


def _ends(rv: RangeVector, i: int) -> tuple[RangeSeries, IndexArray, IndexArray, IndexArray, IndexArray, IndexArray]:
    s = rv.series[i]
    lo, hi = rv.window(i)
    n = hi - lo
    last = np.maximum(hi - 1, 0)
    first = np.minimum(lo, len(s.ts) - 1)
    return s, lo, hi, n, first, last


def extrapolated_rate(rv: RangeVector, i: int, is_counter: bool, is_rate: bool) -> RangeResult:
    """Prometheus 2.42 extrapolatedRate: rate/increase/delta with counter resets and edge extrapolation."""
    s, lo, hi, n, first, last = _ends(rv, i)
    ok = n >= 2
    if not ok.any():
        return None
    v, ts = s.vals, s.ts
    first_v, last_v = v[first], v[last]
    with np.errstate(all="ignore"):
        result = last_v - first_v
    if is_counter and len(v) > 1:
        drops = v[1:] < v[:-1]
        if drops.any():
            # A reset adds the value before it back: correction over sample pairs inside the window.
            corr = np.zeros(len(v))
            corr[1:] = np.where(drops, v[:-1], 0.0)
            with np.errstate(all="ignore"):
                result = result + window_reduce(np.add, corr, np.minimum(lo + 1, hi), hi, 0.0)
    with np.errstate(all="ignore"):
        range_start = (rv.ends - rv.range_ms).astype(np.float64)
        range_end = rv.ends.astype(np.float64)
        to_start = (ts[first] - range_start) / 1000
        to_end = (range_end - ts[last]) / 1000
        sampled = (ts[last] - ts[first]) / 1000
        avg_gap = sampled / (n - 1)
        if is_counter:
            to_zero = sampled * (first_v / result)
            use_zero = (result > 0) & (first_v >= 0) & (to_zero < to_start)
            to_start = np.where(use_zero, to_zero, to_start)
        threshold = avg_gap * 1.1
        interval = sampled + np.where(to_start < threshold, to_start, avg_gap / 2)
        interval = interval + np.where(to_end < threshold, to_end, avg_gap / 2)
        factor = interval / sampled
        if is_rate:
            factor = factor / (rv.range_ms / 1000)
        return result * factor, ok


def instant_value(rv: RangeVector, i: int, is_rate: bool) -> RangeResult:
    """irate/idelta: the last two samples of the window."""
    s, lo, hi, n, first, last = _ends(rv, i)
    prev = np.maximum(hi - 2, 0)
    lv, pv = s.vals[last], s.vals[prev]
    dt = s.ts[last] - s.ts[prev]
    ok = (n >= 2) & (dt != 0)
    if not ok.any():
        return None
    with np.errstate(all="ignore"):
        if is_rate:
            value = np.where(lv < pv, lv, lv - pv) / (dt / 1000)
        else:
            value = lv - pv
    return value, ok


def _pair_count(rv: RangeVector, i: int, flags_fn: Callable[[FloatArray, FloatArray], BoolArray]) -> RangeResult:
    """Count of adjacent sample pairs inside each window for which flags_fn(prev, cur) holds (changes, resets)."""
    s, lo, hi, n, first, last = _ends(rv, i)
    ok = n >= 1
    if not ok.any():
        return None
    flags = np.zeros(len(s.vals) + 1, dtype=np.int64)
    if len(s.vals) > 1:
        flags[2:] = flags_fn(s.vals[:-1], s.vals[1:])
    cs = np.cumsum(flags)  # cs[k] = pairs ending at index < k
    value = (cs[hi] - cs[np.minimum(lo + 1, hi)]).astype(np.float64)
    return value, ok


def changes(rv: RangeVector, i: int) -> RangeResult:
    return _pair_count(rv, i, lambda p, c: (p != c) & ~(np.isnan(p) & np.isnan(c)))


def resets(rv: RangeVector, i: int) -> RangeResult:
    return _pair_count(rv, i, lambda p, c: c < p)


def over_time(kind: str) -> RangeFunction:
    def fn(rv: RangeVector, i: int) -> RangeResult:
        s, lo, hi, n, first, last = _ends(rv, i)
        ok = n >= 1
        if not ok.any():
            return None
        v = s.vals
        with np.errstate(all="ignore"):
            if kind == "sum":
                value = window_reduce(np.add, v, lo, hi, 0.0)
            elif kind == "avg":
                value = window_reduce(np.add, v, lo, hi, 0.0) / n
            elif kind == "max":
                value = window_extreme(np.fmax, v, lo, hi)
            elif kind == "min":
                value = window_extreme(np.fmin, v, lo, hi)
            elif kind == "count":
                value = n.astype(np.float64)
            elif kind == "last":
                value = v[last]
            else:  # present
                value = np.ones(len(n))
        return value, ok

    return fn


def per_window(reducer: Reducer) -> RangeFunction:
    """A function evaluated window by window (for the rarely used ones); reducer(ts, vals, step_index) -> float
    or None."""

    def fn(rv: RangeVector, i: int) -> RangeResult:
        s, lo, hi, n, first, last = _ends(rv, i)
        value = np.full(len(n), np.nan)
        ok = np.zeros(len(n), dtype=bool)
        for c in np.nonzero(n >= 1)[0]:
            r = reducer(s.ts[lo[c] : hi[c]], s.vals[lo[c] : hi[c]], c)
            if r is not None:
                value[c] = r
                ok[c] = True
        return (value, ok) if ok.any() else None

    return fn


def _stdvar(ts: IntArray, v: FloatArray, c: np.intp) -> float:
    with np.errstate(all="ignore"):
        return float(np.mean((v - np.mean(v)) ** 2))


def _stddev(ts: IntArray, v: FloatArray, c: np.intp) -> float:
    return float(np.sqrt(_stdvar(ts, v, c)))


def quantile_value(q: float, v: FloatArray) -> float:
    if np.isnan(q):
        return float("nan")
    if q < 0:
        return float("-inf")
    if q > 1:
        return float("inf")
    nan = np.isnan(v)
    sv = np.concatenate([v[nan], np.sort(v[~nan])])  # Prometheus's sort puts NaN lowest
    n = len(sv)
    rank = q * (n - 1)
    lower = max(0, int(np.floor(rank)))
    upper = min(n - 1, lower + 1)
    weight = rank - np.floor(rank)
    return float(sv[lower] * (1 - weight) + sv[upper] * weight)


def linear_regression(ts: IntArray, v: FloatArray, intercept_ms: int) -> tuple[float, float]:
    if np.all(v == v[0]):
        if np.isinf(v[0]):
            return float("nan"), float("nan")
        return 0.0, float(v[0])
    x = (ts - intercept_ms) / 1e3
    n = len(v)
    with np.errstate(all="ignore"):
        sx, sy = x.sum(), v.sum()
        cov = (x * v).sum() - sx * sy / n
        var = (x * x).sum() - sx * sx / n
        slope = cov / var
        return float(slope), float(sy / n - slope * sx / n)


def deriv(rv: RangeVector, i: int) -> RangeResult:
    def red(ts: IntArray, v: FloatArray, c: np.intp) -> float | None:
        if len(v) < 2:
            return None
        return linear_regression(ts, v, int(ts[0]))[0]

    return per_window(red)(rv, i)


def predict_linear(rv: RangeVector, i: int, seconds: FloatArray, at: IntArray) -> RangeResult:
    def red(ts: IntArray, v: FloatArray, c: np.intp) -> float | None:
        if len(v) < 2:
            return None
        slope, intercept = linear_regression(ts, v, int(at[c]))
        return slope * float(seconds[c]) + intercept

    return per_window(red)(rv, i)


def quantile_over_time(rv: RangeVector, i: int, q: FloatArray) -> RangeResult:
    return per_window(lambda ts, v, c: quantile_value(float(q[c]), v))(rv, i)


def holt_winters(rv: RangeVector, i: int, sf: FloatArray, tf: FloatArray) -> RangeResult:
    def red(ts: IntArray, v: FloatArray, c: np.intp) -> float | None:
        if len(v) < 2:
            return None
        return _smooth(v, float(sf[c]), float(tf[c]))

    return per_window(red)(rv, i)


def _smooth(v: FloatArray, sf: float, tf: float) -> float:
    with np.errstate(all="ignore"):
        s1, b = v[0], v[1] - v[0]
        s0 = s1
        for k in range(1, len(v)):
            x = sf * v[k]
            if k > 1:
                b = tf * (s1 - s0) + (1 - tf) * b
            s0, s1 = s1, x + (1 - sf) * (s1 + b)
        return float(s1)


RANGE_FUNCTIONS: dict[str, RangeFunction] = {
    "rate": lambda rv, i: extrapolated_rate(rv, i, True, True),
    "increase": lambda rv, i: extrapolated_rate(rv, i, True, False),
    "delta": lambda rv, i: extrapolated_rate(rv, i, False, False),
    "irate": lambda rv, i: instant_value(rv, i, True),
    "idelta": lambda rv, i: instant_value(rv, i, False),
    "changes": changes,
    "resets": resets,
    "deriv": deriv,
    "sum_over_time": over_time("sum"),
    "avg_over_time": over_time("avg"),
    "max_over_time": over_time("max"),
    "min_over_time": over_time("min"),
    "count_over_time": over_time("count"),
    "last_over_time": over_time("last"),
    "present_over_time": over_time("present"),
    "stddev_over_time": per_window(_stddev),
    "stdvar_over_time": per_window(_stdvar),
}
