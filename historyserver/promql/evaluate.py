"""The AST walk: evaluates a promql_parser expression at every step of a grid at once."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import promql_parser as pp

from . import aggregations, binary, functions, ranges
from .errors import ExecutionError
from .limits import Budget, QueryLimits
from .model import FloatArray, IntArray, SeriesStore
from .values import RangeVector, Scalar, String, Value, Vector, drop_name, merge_rows_check_all


@dataclass
class Shared:
    """State shared by an evaluation and its subquery evaluations."""

    counted: set[ranges.FetchKey] = field(default_factory=set)  # selector reads counted against the budget
    query: str = ""  # the whole expression as promql_parser prints it (Engine sets it)

    def repeated(self, key: str) -> bool:
        """Whether a sub-expression's text occurs twice in the query (a/(a+b)): only those values are kept for the
        rest of the evaluation, the others are freed once their parent has used them. A printed expression contains
        its children's printed text, so a repeated node is never missed (a false match only keeps a value)."""
        return not self.query or self.query.count(key) >= 2

    budget: Budget = field(default_factory=lambda: QueryLimits().budget())


class Evaluator:
    def __init__(
        self,
        store: SeriesStore,
        start: int,
        end: int,
        step: int,
        lookback: int,
        query_start: int,
        query_end: int,
        shared: Shared | None = None,
    ) -> None:
        self.store = store
        self.start, self.end, self.step = start, end, step
        self.shared = shared or Shared()
        n = 1 if step <= 0 else (end - start) // step + 1
        self.shared.budget.check_grid(n)  # before allocating it
        self.grid: IntArray = start + np.arange(n, dtype=np.int64) * max(step, 1)
        self.lookback = lookback
        self.query_start, self.query_end = query_start, query_end
        self._memo: dict[str, Value] = {}

    @property
    def steps(self) -> int:
        return len(self.grid)

    def child(self, start: int, end: int, step: int) -> Evaluator:
        return Evaluator(self.store, start, end, step, self.lookback, self.query_start, self.query_end, self.shared)

    # ------------------------------------------------------------------------------------------------ dispatch

    def eval(self, node: pp.Expr) -> Value:
        # Dashboards repeat sub-expressions (a/(a+b+c)); evaluate each distinct one once per grid.
        key = str(node)
        hit = self._memo.get(key)
        if hit is None:
            budget = self.shared.budget
            budget.check_time()
            hit = self._eval(node)
            budget.add(_samples(hit))
            if self.shared.repeated(key):
                self._memo[key] = hit
        return hit

    def _eval(self, node: pp.Expr) -> Value:
        if isinstance(node, pp.ParenExpr):
            return self.eval(node.expr)
        if isinstance(node, pp.NumberLiteral):
            return Scalar(np.full(self.steps, float(node.val)))
        if isinstance(node, pp.StringLiteral):
            return String(node.val)
        if isinstance(node, pp.VectorSelector):
            return ranges.instant_selector(self, node)
        if isinstance(node, pp.MatrixSelector):
            return ranges.matrix_selector(self, node)
        if isinstance(node, pp.SubqueryExpr):
            return ranges.subquery(self, node)
        if isinstance(node, pp.UnaryExpr):
            return self._negate(self.eval(node.expr))
        if isinstance(node, pp.BinaryExpr):
            return binary.evaluate(self, node)
        if isinstance(node, pp.AggregateExpr):
            return aggregations.evaluate(self, node)
        if isinstance(node, pp.Call):
            return functions.evaluate(self, node)
        raise ExecutionError(f"unsupported expression {node}")

    def eval_vector(self, node: pp.Expr) -> Vector:
        v = self.eval(node)
        if isinstance(v, Vector):
            return v
        if isinstance(v, Scalar):  # only reachable through odd parser results; keep the engine total
            return Vector([()], v.vals[None, :], np.ones((1, self.steps), dtype=bool))
        raise ExecutionError(f"expected instant vector, got {type(v).__name__}")

    def eval_scalar(self, node: pp.Expr) -> FloatArray:
        v = self.eval(node)
        if isinstance(v, Scalar):
            return v.vals
        raise ExecutionError(f"expected scalar, got {type(v).__name__}")

    def eval_range(self, node: pp.Expr) -> RangeVector:
        while isinstance(node, pp.ParenExpr):
            node = node.expr
        v = self.eval(node)
        if not isinstance(v, RangeVector):
            raise ExecutionError(f"expected range vector, got {type(v).__name__}")
        return v

    def _negate(self, v: Value) -> Value:
        if isinstance(v, Scalar):
            return Scalar(-v.vals)
        if isinstance(v, Vector):
            # Unary minus drops the metric name, and then series may collide (checked over the whole result).
            return merge_rows_check_all(Vector([drop_name(lb) for lb in v.labels], -v.vals, v.mask))
        raise ExecutionError("unary minus needs a scalar or instant vector")


def _samples(value: Value) -> int:
    """How many samples a computed value holds (what --query-max-samples counts)."""
    if isinstance(value, Vector):
        return value.vals.size
    if isinstance(value, RangeVector):  # a range selector's samples were counted when fetched (ranges.fetch)
        return 0 if value.selector is not None else sum(len(s.ts) for s in value.series)
    if isinstance(value, Scalar):
        return len(value.vals)
    return 0
