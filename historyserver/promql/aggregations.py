"""Aggregation operators (sum, avg, min, max, count, group, stddev, stdvar, topk, bottomk, quantile,
count_values) with by/without, over all steps at once: rows are sorted by group and reduced with ufunc.reduceat."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import promql_parser as pp

from .errors import ExecutionError
from .model import BoolArray, FloatArray, IndexArray, IntArray
from .values import NAME, Labels, Vector, compact, format_value, keep_only, set_label, without

if TYPE_CHECKING:
    from .evaluate import Evaluator


_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def _grouping(mod: pp.AggModifier | None) -> Callable[[Labels], Labels]:
    if mod is None:
        return lambda lb: ()
    names = frozenset(mod.labels)
    if str(mod.type).endswith("By"):
        return lambda lb: keep_only(lb, names)
    dropped = names | {NAME}
    return lambda lb: without(lb, dropped)


def evaluate(ev: Evaluator, node: pp.AggregateExpr) -> Vector:
    op = str(node.op).lower()
    vec = ev.eval_vector(node.expr)
    t = ev.steps
    if op == "count_values":
        assert node.param is not None  # the parser requires count_values's label
        label = getattr(ev.eval(node.param), "value", "")
        if not _LABEL_NAME.match(label):
            raise ExecutionError(f"invalid label name {json.dumps(label)}")
        return _count_values(label, vec, _grouping(node.modifier), t)
    param = ev.eval_scalar(node.param) if node.param is not None and op in ("topk", "bottomk", "quantile") else None
    if len(vec) == 0:
        return Vector.empty(t)
    key_of = _grouping(node.modifier)
    ids_map: dict[Labels, int] = {}
    keys: list[Labels] = []
    ids = np.empty(len(vec), dtype=np.int64)
    for i, lb in enumerate(vec.labels):
        k = key_of(lb)
        g = ids_map.get(k)
        if g is None:
            g = ids_map[k] = len(keys)
            keys.append(k)
        ids[i] = g
    if op in ("topk", "bottomk"):
        assert param is not None  # the parser requires topk's and bottomk's parameter
        return _topk(op == "topk", vec, ids, len(keys), param)
    order = np.argsort(ids, kind="stable")
    sids = ids[order]
    starts = np.searchsorted(sids, np.arange(len(keys)))
    vals, mask = vec.vals[order], vec.mask[order]
    cnt = np.add.reduceat(mask.astype(np.int64), starts, axis=0)
    present = cnt > 0
    with np.errstate(all="ignore"):
        if op == "sum":
            out = np.add.reduceat(np.where(mask, vals, 0.0), starts, axis=0)
        elif op == "avg":
            out = np.add.reduceat(np.where(mask, vals, 0.0), starts, axis=0) / cnt
        elif op == "count":
            out = cnt.astype(np.float64)
        elif op == "group":
            out = np.ones(cnt.shape)
        elif op == "max":
            out = np.fmax.reduceat(np.where(mask, vals, np.nan), starts, axis=0)
        elif op == "min":
            out = np.fmin.reduceat(np.where(mask, vals, np.nan), starts, axis=0)
        elif op in ("stddev", "stdvar"):
            mean = np.add.reduceat(np.where(mask, vals, 0.0), starts, axis=0) / cnt
            dev = np.where(mask, vals - mean[sids], 0.0)
            out = np.add.reduceat(dev * dev, starts, axis=0) / cnt
            if op == "stddev":
                out = np.sqrt(out)
        elif op == "quantile":
            assert param is not None  # the parser requires quantile's parameter
            out = _quantile(param, vals, mask, starts, cnt)
        else:
            raise ExecutionError(f"unsupported aggregation {op!r}")
    return compact(Vector(keys, out, present))


def _quantile(q: FloatArray, vals: FloatArray, mask: BoolArray, starts: IndexArray, cnt: IntArray) -> FloatArray:
    """Prometheus's quantile(): linear interpolation between the closest ranks, rank = q * (n - 1)."""
    g, t = cnt.shape
    out = np.full((g, t), np.nan)
    bounds = list(starts) + [len(vals)]
    cols = np.arange(t)
    for gi in range(g):
        seg_v, seg_m = vals[bounds[gi] : bounds[gi + 1]], mask[bounds[gi] : bounds[gi + 1]]
        nan = np.isnan(seg_v) & seg_m
        # Present samples first; among them NaN first (Prometheus's sort puts NaN lowest), then by value.
        order = np.lexsort((np.where(seg_m & ~nan, seg_v, 0.0), ~nan, ~seg_m), axis=0)
        sv = np.take_along_axis(seg_v, order, axis=0)
        n = cnt[gi].astype(np.float64)
        rank = q * (n - 1)
        lower = np.maximum(0, np.floor(rank))
        upper = np.minimum(n - 1, lower + 1)
        weight = rank - np.floor(rank)
        lo_i = np.clip(np.nan_to_num(lower), 0, max(len(sv) - 1, 0)).astype(np.int64)
        up_i = np.clip(np.nan_to_num(upper), 0, max(len(sv) - 1, 0)).astype(np.int64)
        res = sv[lo_i, cols] * (1 - weight) + sv[up_i, cols] * weight
        res = np.where(q < 0, -np.inf, np.where(q > 1, np.inf, res))
        out[gi] = np.where(np.isnan(q), np.nan, res)
    return out


def _topk(top: bool, vec: Vector, ids: IntArray, groups: int, k: FloatArray) -> Vector:
    kk = np.where(np.isnan(k), 0, np.trunc(np.nan_to_num(k, posinf=1e18, neginf=-1e18)))
    selected = np.zeros_like(vec.mask)
    for g in range(groups):
        rows = np.nonzero(ids == g)[0]
        v, m = vec.vals[rows], vec.mask[rows]
        # Sort key per column: present before absent, numbers before NaN, then by value.
        key = -v if top else v
        order = np.lexsort((np.nan_to_num(key, nan=0.0), np.isnan(v), ~m), axis=0)
        rank = np.empty_like(order)
        np.put_along_axis(rank, order, np.arange(len(rows))[:, None].repeat(v.shape[1], axis=1), axis=0)
        selected[rows] = m & (rank < kk[None, :])
    return compact(Vector(vec.labels, vec.vals, selected))


def _count_values(label: str, vec: Vector, key_of: Callable[[Labels], Labels], t: int) -> Vector:
    counts: dict[Labels, FloatArray] = {}
    for i, lb in enumerate(vec.labels):
        base = key_of(lb)
        for c in np.nonzero(vec.mask[i])[0]:
            out = set_label(base, label, format_value(float(vec.vals[i, c])))
            arr = counts.get(out)
            if arr is None:
                arr = counts[out] = np.zeros(t)
            arr[c] += 1
    if not counts:
        return Vector.empty(t)
    labels = list(counts)
    vals = np.vstack([counts[lb] for lb in labels])
    return Vector(labels, vals, vals > 0)
