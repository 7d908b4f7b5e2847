"""Selecting samples: instant vector selectors (lookback, staleness), range selectors and subqueries.

Each selector reads its samples once for the span every step needs, then picks per-step samples with
searchsorted over the whole step grid. Prometheus 2.42 semantics (we compare against that version):
- an instant selector at t takes the latest sample in [t - lookback, t]; a staleness marker there means absent;
- a range selector [d] at t holds the samples in [t - d, t] (both ends included in 2.x), staleness markers dropped;
- offset shifts t back; @ pins t to a fixed time;
- a subquery evaluates its expression at the absolute multiples of its step inside the window
  (default step: the global evaluation interval, 1m)."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterator
from typing import TYPE_CHECKING, Literal, TypeAlias, overload

import numpy as np
import promql_parser as pp

from .errors import BadData
from .model import FloatArray, IntArray, Matcher, is_stale
from .selectors import selector_matchers
from .values import Labels, RangeSeries, RangeVector, Vector, labels_from_dict

if TYPE_CHECKING:
    from .evaluate import Evaluator

DEFAULT_SUBQUERY_STEP_MS = 60_000
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)

# A selector's read (evaluate.Shared counts each once): (matchers, start ms, end ms); one series as read.
FetchKey: TypeAlias = tuple[tuple[Matcher, ...], int, int]
Fetched: TypeAlias = tuple[Labels, IntArray, FloatArray]


def duration_ms(td: _dt.timedelta | None) -> int:
    if td is None:
        return 0
    return td.days * 86_400_000 + td.seconds * 1000 + td.microseconds // 1000


def at_ms(ev: Evaluator, at: pp.AtModifier | None) -> int | None:
    """The time an @ modifier pins evaluation to (start()/end() are the query's), or None."""
    if at is None:
        return None
    kind = str(at.type)
    if kind.endswith("Start"):
        return ev.query_start
    if kind.endswith("End"):
        return ev.query_end
    try:
        pinned = at.at
    except BaseException as e:  # promql_parser panics (a BaseException) reading a time before 1970
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        raise BadData("the @ modifier's time must not be before 1970-01-01 here; give a later time") from None
    assert pinned is not None  # only start()/end() leave it unset
    return (pinned - _EPOCH) // _dt.timedelta(milliseconds=1)


def _ref_times(ev: Evaluator, offset_td: _dt.timedelta | None, at: pp.AtModifier | None) -> IntArray:
    pinned = at_ms(ev, at)
    base = ev.grid if pinned is None else np.full(len(ev.grid), pinned, dtype=np.int64)
    return base - duration_ms(offset_td)


def fetch(ev: Evaluator, vs: pp.VectorSelector, start_ms: int, end_ms: int) -> Iterator[Fetched]:
    """(labels, ts, values) of each matching series in [start_ms, end_ms], one at a time: the callers reduce a
    series to its steps before reading the next, so a selector's samples are never all in memory (issue 16). The
    samples count against --query-max-samples once per selector and span, however often a query reads them."""
    matchers = selector_matchers(vs)
    key = (tuple(matchers), int(start_ms), int(end_ms))
    budget = ev.shared.budget
    count = key not in ev.shared.counted
    ev.shared.counted.add(key)
    for raw in ev.store.select_stream(matchers, int(start_ms), int(end_ms)):
        ts = np.asarray(raw.ts, dtype=np.int64)
        if not len(ts):
            continue
        if count:
            budget.add(len(ts))
        budget.check_time()
        yield labels_from_dict(raw.labels), ts, np.asarray(raw.values, dtype=np.float64)


@overload
def instant_selector(ev: Evaluator, vs: pp.VectorSelector, want_times: Literal[False] = False) -> Vector: ...
@overload
def instant_selector(ev: Evaluator, vs: pp.VectorSelector, want_times: Literal[True]) -> tuple[Vector, IntArray]: ...
def instant_selector(
    ev: Evaluator, vs: pp.VectorSelector, want_times: bool = False
) -> Vector | tuple[Vector, IntArray]:
    """The Vector of a selector at every step; with want_times also the chosen samples' timestamps (n, T)."""
    ref = _ref_times(ev, vs.offset, vs.at)
    series = fetch(ev, vs, int(ref.min()) - ev.lookback, int(ref.max()))
    labels, rows, masks, times = [], [], [], []
    low = ref - ev.lookback
    for lbls, ts, vals in series:
        idx = np.searchsorted(ts, ref, side="right") - 1
        ok = idx >= 0
        idx[~ok] = 0
        sel_ts = ts[idx]
        ok &= sel_ts >= low
        if not ok.any():
            continue
        sel = vals[idx]
        ok &= ~is_stale(sel)
        if not ok.any():
            continue
        labels.append(lbls)
        rows.append(sel)
        masks.append(ok)
        times.append(sel_ts)
    t = len(ev.grid)
    if not labels:
        vec = Vector.empty(t)
        return (vec, np.zeros((0, t), dtype=np.int64)) if want_times else vec
    vec = Vector(labels, np.vstack(rows), np.vstack(masks))
    return (vec, np.vstack(times)) if want_times else vec


def matrix_selector(ev: Evaluator, ms: pp.MatrixSelector) -> RangeVector:
    """The whole range vector (what absent_over_time and an instant query's `x[5m]` need)."""
    rng, ends = duration_ms(ms.range), _ref_times(ev, ms.vector_selector.offset, ms.vector_selector.at)
    return RangeVector([s.series[0] for s in matrix_series(ev, ms)], rng, ends, selector=ms.vector_selector)


def matrix_series(ev: Evaluator, ms: pp.MatrixSelector) -> Iterator[RangeVector]:
    """The range vector of a selector one series at a time (rate() & co. compute series by series)."""
    vs = ms.vector_selector
    rng = duration_ms(ms.range)
    ends = _ref_times(ev, vs.offset, vs.at)
    for lbls, ts, vals in fetch(ev, vs, int(ends.min()) - rng, int(ends.max())):
        stale = is_stale(vals)
        if stale.any():
            ts, vals = ts[~stale], vals[~stale]
        if len(ts):
            yield RangeVector([RangeSeries(lbls, ts, vals)], rng, ends, selector=vs)


def subquery(ev: Evaluator, sq: pp.SubqueryExpr) -> RangeVector:
    step = duration_ms(sq.step) or DEFAULT_SUBQUERY_STEP_MS
    rng = duration_ms(sq.range)
    ends = _ref_times(ev, sq.offset, sq.at)
    first = int(ends.min()) - rng
    # The inner evaluation runs at absolute multiples of the step: the first one at or after the window start.
    start = int(first / step) * step  # Go's integer division truncates toward zero
    if start < first:
        start += step
    end = int(ends.max())
    out = []
    if start <= end:
        inner = ev.child(start, end, step)  # refuses a grid over the sample budget before allocating it
        val = inner.eval_vector(sq.expr)
        grid = inner.grid
        for i, lbls in enumerate(val.labels):
            m = val.mask[i]
            if m.any():
                out.append(RangeSeries(lbls, grid[m], val.vals[i][m]))
    return RangeVector(out, rng, ends)
