"""Function calls: dispatch, functions of instant vectors and scalars, and the glue that applies the range-vector
functions of range_functions.py to every series."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

import numpy as np
import promql_parser as pp

from . import range_functions as rf
from .errors import BadData, ExecutionError
from .histogram import histogram_quantile
from .model import BoolArray, FloatArray
from .ranges import instant_selector, matrix_series
from .re2 import regex_full_matches
from .values import (
    NAME,
    RangeVector,
    Scalar,
    String,
    Vector,
    compact,
    drop_name,
    get_label,
    merge_rows_check_all,
    merge_rows_per_step,
    set_label,
)

if TYPE_CHECKING:
    from .evaluate import Evaluator

_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")

_MATH = {
    "abs": np.abs,
    "ceil": np.ceil,
    "floor": np.floor,
    "exp": np.exp,
    "sqrt": np.sqrt,
    "ln": np.log,
    "log2": np.log2,
    "log10": np.log10,
    "sgn": np.sign,
    "sin": np.sin,
    "cos": np.cos,
    "tan": np.tan,
    "asin": np.arcsin,
    "acos": np.arccos,
    "atan": np.arctan,
    "sinh": np.sinh,
    "cosh": np.cosh,
    "tanh": np.tanh,
    "asinh": np.arcsinh,
    "acosh": np.arccosh,
    "atanh": np.arctanh,
    "deg": np.degrees,
    "rad": np.radians,
}


def evaluate(ev: Evaluator, node: pp.Call) -> Vector | Scalar:
    name = node.func.name
    args = list(node.args)
    if name in rf.RANGE_FUNCTIONS or name in ("predict_linear", "quantile_over_time", "holt_winters"):
        return _range_call(ev, name, args)
    if name == "absent_over_time":
        rv = ev.eval_range(args[0])
        return _absent(ev, any_present(rv), rv.selector)
    if name == "time":
        return Scalar(ev.grid / 1000.0)
    if name == "pi":
        return Scalar(np.full(ev.steps, np.pi))
    if name == "vector":
        s = ev.eval_scalar(args[0])
        return Vector([()], s[None, :].copy(), np.ones((1, ev.steps), dtype=bool))
    if name == "scalar":
        v = ev.eval_vector(args[0])
        one = v.mask.sum(axis=0) == 1
        val = np.where(v.mask, v.vals, 0.0).sum(axis=0) if len(v) else np.zeros(ev.steps)
        return Scalar(np.where(one, val, np.nan))
    if name == "absent":
        arg = _unparen(args[0])
        v = ev.eval_vector(arg)
        # cast: any(axis=0) of the 2-D mask is an array (numpy's stubs also allow a scalar for a reduction)
        present = cast(BoolArray, v.mask.any(axis=0)) if len(v) else np.zeros(ev.steps, dtype=bool)
        return _absent(ev, present, arg if isinstance(arg, pp.VectorSelector) else None)
    if name == "timestamp":
        return _timestamp(ev, args[0])
    if name == "histogram_quantile":
        q = ev.eval_scalar(args[0])
        return merge_rows_per_step(histogram_quantile(q, ev.eval_vector(args[1])))
    if name in ("sort", "sort_desc"):
        return ev.eval_vector(args[0])  # order only matters for instant queries: the engine applies it
    if name == "label_replace":
        return _label_replace(ev, args)
    if name == "label_join":
        return _label_join(ev, args)
    if name in _DATE_FUNCS:
        if args:
            v = ev.eval_vector(args[0])
        else:
            v = Vector([()], (ev.grid / 1000.0)[None, :], np.ones((1, ev.steps), dtype=bool))
        return _elementwise(v, _DATE_FUNCS[name])
    if name in _MATH:
        return _elementwise(ev.eval_vector(args[0]), _MATH[name])
    if name == "round":
        to = ev.eval_scalar(args[1]) if len(args) > 1 else np.ones(ev.steps)
        inv = 1.0 / to
        return _elementwise(ev.eval_vector(args[0]), lambda x: np.floor(x * inv + 0.5) / inv)
    if name == "clamp":
        lo, hi = ev.eval_scalar(args[1]), ev.eval_scalar(args[2])
        v = _elementwise(ev.eval_vector(args[0]), lambda x: np.maximum(lo, np.minimum(hi, x)))
        v.mask &= ~(hi < lo)[None, :]  # Prometheus returns nothing when max < min
        return compact(v)
    if name == "clamp_min":
        lo = ev.eval_scalar(args[1])
        return _elementwise(ev.eval_vector(args[0]), lambda x: np.maximum(lo, x))
    if name == "clamp_max":
        hi = ev.eval_scalar(args[1])
        return _elementwise(ev.eval_vector(args[0]), lambda x: np.minimum(hi, x))
    raise ExecutionError(f"function {name!r} is not supported")


def _unparen(node: pp.Expr) -> pp.Expr:
    while isinstance(node, pp.ParenExpr):
        node = node.expr
    return node


def _elementwise(v: Vector, fn: Callable[[FloatArray], FloatArray]) -> Vector:
    """A function of each sample's value; the metric name is dropped and series may then merge or collide."""
    if len(v) == 0:
        return v
    with np.errstate(all="ignore"):
        vals = np.broadcast_to(fn(v.vals), v.vals.shape).astype(np.float64)
    return merge_rows_per_step(Vector([drop_name(lb) for lb in v.labels], vals, v.mask.copy()))


# What Prometheus answers for NaN and infinite timestamps (Go converts them to the minimum int64 time).
_NON_FINITE = {
    "minute": 30,
    "hour": 15,
    "day_of_week": 0,
    "day_of_month": 4,
    "day_of_year": 339,
    "month": 12,
    "year": 292277026596,
    "days_in_month": 31,
}


def _dt_field(x: FloatArray, field: str) -> FloatArray:
    out = np.full(x.shape, float(_NON_FINITE[field]))
    ok = np.isfinite(x)
    secs = np.trunc(x[ok]).astype(np.int64)  # Go's int64(float) truncates toward zero
    d = secs.astype("datetime64[s]")
    days = d.astype("datetime64[D]")
    if field == "minute":
        r = (secs // 60) % 60
    elif field == "hour":
        r = (secs // 3600) % 24
    elif field == "day_of_week":
        r = (days.astype(np.int64) + 4) % 7  # 1970-01-01 was a Thursday
    elif field == "day_of_month":
        r = (days - days.astype("datetime64[M]")).astype(np.int64) + 1
    elif field == "day_of_year":
        r = (days - days.astype("datetime64[Y]")).astype(np.int64) + 1
    elif field == "month":
        r = days.astype("datetime64[M]").astype(np.int64) % 12 + 1
    elif field == "year":
        r = days.astype("datetime64[Y]").astype(np.int64) + 1970
    else:  # days_in_month
        m = days.astype("datetime64[M]")
        r = ((m + 1).astype("datetime64[D]") - m.astype("datetime64[D]")).astype(np.int64)
    out[ok] = r
    return out


_DATE_FUNCS = {
    f: (lambda f: lambda x: _dt_field(x, f))(f)  # noqa: B023 - bound by the outer lambda's argument
    for f in ("minute", "hour", "day_of_week", "day_of_month", "day_of_year", "month", "year", "days_in_month")
}


def any_present(rv: RangeVector) -> BoolArray:
    present = np.zeros(len(rv.ends), dtype=bool)
    for i in range(len(rv.series)):
        lo, hi = rv.window(i)
        present |= hi > lo
    return present


def _absent(ev: Evaluator, present: BoolArray, selector: pp.VectorSelector | None) -> Vector:
    """1 with labels from the selector's equality matchers where nothing is present (absent, absent_over_time)."""
    lbls: dict[str, str] = {}
    dropped: set[str] = set()
    if selector is not None:
        for m in selector.matchers.matchers:
            if m.name == NAME:
                continue
            if str(m.op).endswith("Equal") and not str(m.op).endswith("NotEqual") and m.name not in lbls:
                lbls[m.name] = m.value
            else:
                dropped.add(m.name)
    for name in dropped:
        lbls.pop(name, None)
    lb = tuple(sorted((k, v) for k, v in lbls.items() if v != ""))
    mask = ~present
    if not mask.any():
        return Vector.empty(ev.steps)
    return Vector([lb], np.ones((1, ev.steps)), mask[None, :].copy())


def _timestamp(ev: Evaluator, arg: pp.Expr) -> Vector:
    node = _unparen(arg)
    if isinstance(node, pp.VectorSelector):
        v, times = instant_selector(ev, node, want_times=True)
        vals = times / 1000.0
    else:
        v = ev.eval_vector(node)
        vals = np.broadcast_to(ev.grid / 1000.0, v.vals.shape)
    return merge_rows_per_step(Vector([drop_name(lb) for lb in v.labels], np.array(vals, dtype=np.float64), v.mask))


def _range_call(ev: Evaluator, name: str, args: list[pp.Expr]) -> Vector:
    arg = _unparen(args[0] if name != "quantile_over_time" else args[1])
    # A selector's series are read one at a time and reduced to their steps (only a subquery is held whole).
    parts = matrix_series(ev, arg) if isinstance(arg, pp.MatrixSelector) else [ev.eval_range(arg)]
    fn: rf.RangeFunction
    if name == "predict_linear":
        secs = ev.eval_scalar(args[1])
        fn = lambda rv, i: rf.predict_linear(rv, i, secs, ev.grid)  # noqa: E731
    elif name == "quantile_over_time":
        q = ev.eval_scalar(args[0])
        fn = lambda rv, i: rf.quantile_over_time(rv, i, q)  # noqa: E731
    elif name == "holt_winters":
        sf, tf = ev.eval_scalar(args[1]), ev.eval_scalar(args[2])
        for name_, f in (("smoothing", sf), ("trend", tf)):
            bad = ~((f > 0) & (f < 1))
            if bad.any():
                raise ExecutionError(f"invalid {name_} factor. Expected: 0 < {name_[0]}f < 1, got: {f[bad][0]:f}")
        fn = lambda rv, i: rf.holt_winters(rv, i, sf, tf)  # noqa: E731
    else:
        fn = rf.RANGE_FUNCTIONS[name]
    keep_name = name == "last_over_time"
    labels, rows, masks = [], [], []
    for rv in parts:
        for i, s in enumerate(rv.series):
            res = fn(rv, i)
            if res is None:
                continue
            value, ok = res
            if not ok.any():
                continue
            labels.append(s.labels if keep_name else drop_name(s.labels))
            rows.append(np.where(ok, value, 0.0))
            masks.append(ok)
    if not labels:
        return Vector.empty(ev.steps)
    return merge_rows_check_all(Vector(labels, np.vstack(rows), np.vstack(masks)))


def _go_expand(template: str, m: re.Match[str]) -> str:
    """Go's Regexp.ExpandString: $1, ${1}, $name, ${name}, $$; unknown groups expand to ''."""

    def sub(mm: re.Match[str]) -> str:
        if mm.group(0) == "$$":
            return "$"
        ref = mm.group(1) or mm.group(2)
        try:
            g = m.group(int(ref)) if ref.isdigit() else m.group(ref)
        except (IndexError, KeyError):
            return ""
        return g or ""

    return re.sub(r"\$\$|\$\{(\w+)\}|\$(\w+)", sub, template)


def _compile(regex: str, fn: str) -> re.Pattern[str]:
    try:
        return re.compile(regex)
    except re.error as e:
        raise ExecutionError(f"invalid regular expression in {fn}(): {regex}: {e}") from None


def _string_arg(ev: Evaluator, node: pp.Expr) -> str:
    v = ev.eval(node)
    if not isinstance(v, String):
        raise ExecutionError("expected a string argument")
    return v.value


def _label_replace(ev: Evaluator, args: list[pp.Expr]) -> Vector:
    v = ev.eval_vector(args[0])
    dst, repl, src, regex = (_string_arg(ev, a) for a in args[1:5])
    pat = _compile(regex, "label_replace")
    if not _LABEL_NAME.match(dst):
        raise ExecutionError(f"invalid destination label name in label_replace(): {dst}")
    values = sorted({get_label(lb, src) for lb in v.labels})
    try:  # RE2 first: Python's re would backtrack exponentially on a value that a bomb fails to match
        matched = {value for value, hit in zip(values, regex_full_matches(regex, values)) if hit}
    except BadData as e:
        raise ExecutionError(f"invalid regular expression in label_replace(): {regex}: {e}") from None
    labels = []
    for lb in v.labels:
        value = get_label(lb, src)
        m = pat.fullmatch(value) if value in matched else None
        if m is not None:
            lb = set_label(lb, dst, _go_expand(repl, m))
        labels.append(lb)
    return merge_rows_per_step(Vector(labels, v.vals, v.mask))


def _label_join(ev: Evaluator, args: list[pp.Expr]) -> Vector:
    v = ev.eval_vector(args[0])
    dst, sep = _string_arg(ev, args[1]), _string_arg(ev, args[2])
    srcs = [_string_arg(ev, a) for a in args[3:]]
    if not _LABEL_NAME.match(dst):
        raise ExecutionError(f"invalid destination label name in label_join(): {dst}")
    labels = [set_label(lb, dst, sep.join(get_label(lb, s) for s in srcs)) for lb in v.labels]
    return merge_rows_per_step(Vector(labels, v.vals, v.mask))
