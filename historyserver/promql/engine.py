"""The PromQL engine: parse with promql_parser, evaluate every step at once (evaluate.py), shape the result like
Prometheus's HTTP API."""

from __future__ import annotations

import numpy as np
import promql_parser as pp

from .errors import BadData
from .evaluate import Evaluator, Shared
from .limits import QueryLimits
from .model import FloatArray, IntArray, SeriesStore
from .parser import parse
from .values import Labels, QueryResult, RangeVector, Scalar, String, Value, Vector

__all__ = ["Engine", "QueryResult", "parse"]

# Prometheus 2.42 still has holt_winters (later renamed double_exponential_smoothing); promql_parser 0.12 does not.
pp.register_extra_functions(
    [pp.Function("holt_winters", [pp.ValueType.Matrix, pp.ValueType.Scalar, pp.ValueType.Scalar], pp.ValueType.Vector)]
)


def _type_name(v: Value) -> str:
    if isinstance(v, RangeVector):
        return "range vector"
    if isinstance(v, String):
        return "string"
    return "instant vector" if isinstance(v, Vector) else "scalar"


def _static_type(node: pp.Expr) -> str:
    while isinstance(node, pp.ParenExpr):
        node = node.expr
    if isinstance(node, (pp.MatrixSelector, pp.SubqueryExpr)):
        return "range vector"
    if isinstance(node, pp.StringLiteral):
        return "string"
    return ""


class Engine:
    def __init__(
        self,
        store: SeriesStore,
        lookback_ms: int = 300_000,
        max_points: int = 11_000,
        limits: QueryLimits | None = None,
        timeout_s: float | None = None,
    ) -> None:
        self.store = store
        self.lookback_ms = lookback_ms
        self.max_points = max_points
        self.limits = limits or QueryLimits()
        self.timeout_s = timeout_s  # the request's own `timeout`, if shorter than the server's

    def _shared(self, node: pp.Expr) -> Shared:
        return Shared(budget=self.limits.budget(self.timeout_s), query=str(node))

    def instant(self, expr: str, time_ms: int) -> QueryResult:
        node = parse(expr)
        ev = Evaluator(self.store, time_ms, time_ms, 0, self.lookback_ms, time_ms, time_ms, self._shared(node))
        val = ev.eval(node)
        if isinstance(val, Scalar):
            return QueryResult("scalar", (time_ms, float(val.vals[0])))
        if isinstance(val, String):
            return QueryResult("string", (time_ms, val.value))
        if isinstance(val, RangeVector):
            out: list[tuple[Labels, IntArray, FloatArray]] = []
            for s in val.series:
                lo = np.searchsorted(s.ts, val.ends[0] - val.range_ms, "left")
                hi = np.searchsorted(s.ts, val.ends[0], "right")
                if hi > lo:
                    out.append((s.labels, s.ts[lo:hi], s.vals[lo:hi]))
            out.sort(key=lambda r: r[0])
            return QueryResult("matrix", out)
        rows = [(val.labels[i], time_ms, float(val.vals[i, 0])) for i in range(len(val)) if val.mask[i, 0]]
        inner = node
        while isinstance(inner, pp.ParenExpr):
            inner = inner.expr
        fn = inner.func.name if isinstance(inner, pp.Call) else ""
        if fn == "sort":
            rows.sort(key=lambda r: (r[2] != r[2], r[2]))  # NaN last, as Prometheus's sort()
        elif fn == "sort_desc":
            rows.sort(key=lambda r: (r[2] != r[2], -r[2]))  # NaN last too
        else:
            rows.sort(key=lambda r: r[0])
        return QueryResult("vector", rows)

    def range(self, expr: str, start_ms: int, end_ms: int, step_ms: int) -> QueryResult:
        if step_ms <= 0:
            raise BadData(
                'invalid parameter "step": zero or negative query resolution step widths are not accepted. '
                "Try a positive integer"
            )
        if end_ms < start_ms:
            raise BadData('invalid parameter "end": end timestamp must not be before start time')
        if (end_ms - start_ms) // step_ms > self.max_points:
            # Prometheus 2.42 answers this with 400 bad_data (web/api/v1), not 422.
            raise BadData(
                "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution "
                "(?step=XX)"
            )
        node = parse(expr)
        kind = _static_type(node)
        if kind:
            raise BadData(f'invalid expression type "{kind}" for range query, must be Scalar or instant Vector')
        ev = Evaluator(self.store, start_ms, end_ms, step_ms, self.lookback_ms, start_ms, end_ms, self._shared(node))
        val = ev.eval(node)
        if isinstance(val, (RangeVector, String)):
            raise BadData(
                f'invalid expression type "{_type_name(val)}" for range query, must be Scalar or instant Vector'
            )
        grid = ev.grid
        if isinstance(val, Scalar):
            return QueryResult("matrix", [((), grid, val.vals)])
        out: list[tuple[Labels, IntArray, FloatArray]] = []
        for i in range(len(val)):
            m = val.mask[i]
            if m.any():
                out.append((val.labels[i], grid[m], val.vals[i][m]))
        out.sort(key=lambda r: r[0])
        return QueryResult("matrix", out)
