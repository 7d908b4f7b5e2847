"""Binary operators: arithmetic, comparisons (filtering or `bool`), and/or/unless, with on/ignoring and
group_left/group_right vector matching, evaluated for all steps at once.

Matching is static per pair of series (labels do not change over time); only presence varies by step. So we pair
rows by their matching signature once, then compute values and masks as (pairs x steps) arrays, and check
Prometheus's per-step cardinality errors with mask counts."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import promql_parser as pp

from .errors import ExecutionError
from .model import BoolArray, FloatArray
from .values import (
    NAME,
    Labels,
    Scalar,
    Value,
    Vector,
    compact,
    drop_name,
    keep_only,
    labels_str,
    merge_rows_per_step,
    without,
)

if TYPE_CHECKING:
    from .evaluate import Evaluator

ARITHMETIC = {"+", "-", "*", "/", "%", "^", "atan2"}
# Prometheus 2.42 drops the metric name for these (not for atan2, which it forgot).
DROPS_NAME = {"+", "-", "*", "/", "%", "^"}
COMPARISON = {"==", "!=", ">", "<", ">=", "<="}
SET_OPS = {"and", "or", "unless"}


def apply(op: str, lv: FloatArray, rv: FloatArray) -> tuple[FloatArray, BoolArray | None]:
    """Go's vectorElemBinop: (value, keep); comparisons keep the left value where the comparison holds."""
    with np.errstate(all="ignore"):
        if op == "+":
            return lv + rv, None
        if op == "-":
            return lv - rv, None
        if op == "*":
            return lv * rv, None
        if op == "/":
            return lv / rv, None
        if op == "%":
            return np.fmod(lv, rv), None  # math.Mod: the sign of the dividend, like C fmod
        if op == "^":
            return np.power(lv, rv), None
        if op == "atan2":
            return np.arctan2(lv, rv), None
        if op == "==":
            keep = lv == rv
        elif op == "!=":
            keep = lv != rv
        elif op == ">":
            keep = lv > rv
        elif op == "<":
            keep = lv < rv
        elif op == ">=":
            keep = lv >= rv
        elif op == "<=":
            keep = lv <= rv
        else:
            raise ExecutionError(f"unsupported binary operator {op!r}")
    lv, keep = np.broadcast_arrays(lv, keep)
    return lv, keep


def evaluate(ev: Evaluator, node: pp.BinaryExpr) -> Vector | Scalar:
    op = str(node.op).lower()
    mod = node.modifier
    return_bool = bool(mod.return_bool) if mod is not None else False
    lhs = ev.eval(node.lhs)
    rhs = ev.eval(node.rhs)
    if op in SET_OPS:
        return _set_op(op, lhs, rhs, mod)
    if isinstance(lhs, Scalar) and isinstance(rhs, Scalar):
        value, keep = apply(op, lhs.vals, rhs.vals)
        if keep is not None:
            value = keep.astype(np.float64)  # the parser only allows scalar comparisons with bool
        return Scalar(value)
    if isinstance(lhs, Vector) and isinstance(rhs, Scalar):
        return _vector_scalar(op, lhs, rhs.vals, False, return_bool)
    if isinstance(lhs, Scalar) and isinstance(rhs, Vector):
        return _vector_scalar(op, rhs, lhs.vals, True, return_bool)
    if isinstance(lhs, Vector) and isinstance(rhs, Vector):
        return _vector_vector(op, lhs, rhs, mod, return_bool)
    raise ExecutionError(f"binary operator {op} needs scalars or instant vectors")


def _vector_scalar(op: str, vec: Vector, s: FloatArray, swap: bool, return_bool: bool) -> Vector:
    if len(vec) == 0:
        return vec
    lv, rv = vec.vals, s[None, :]
    if swap:
        lv, rv = rv, lv
    value, keep = apply(op, lv, rv)
    mask = vec.mask
    if keep is not None:
        value = vec.vals  # a comparison always yields the vector's value, even with the scalar on the left
        if return_bool:
            value = keep.astype(np.float64)
        else:
            mask = mask & keep
    labels = vec.labels
    if op in DROPS_NAME or return_bool:
        labels = [drop_name(lb) for lb in labels]
    return merge_rows_per_step(compact(Vector(labels, np.broadcast_to(value, mask.shape).copy(), mask)))


def _signature_fn(mod: pp.BinModifier | None) -> tuple[Callable[[Labels], Labels], bool, list[str]]:
    matching = mod.matching if mod is not None else None
    if matching is not None and str(matching.type).endswith("Include"):
        names = frozenset(matching.labels)
        return (lambda lb: keep_only(lb, names)), True, list(matching.labels)
    names = frozenset(matching.labels if matching is not None else ()) | {NAME}
    return (lambda lb: without(lb, names)), False, list(matching.labels if matching is not None else ())


def _presence_by_sig(sigs: list[Labels], mask: BoolArray) -> dict[Labels, BoolArray]:
    out: dict[Labels, BoolArray] = {}
    for i, sg in enumerate(sigs):
        cur = out.get(sg)
        out[sg] = mask[i] if cur is None else (cur | mask[i])
    return out


def _set_op(op: str, lhs: Value, rhs: Value, mod: pp.BinModifier | None) -> Vector:
    if not isinstance(lhs, Vector) or not isinstance(rhs, Vector):
        raise ExecutionError(f"set operator {op} not allowed in binary scalar expression")
    sig, _, _ = _signature_fn(mod)
    lsig = [sig(lb) for lb in lhs.labels]
    rsig = [sig(lb) for lb in rhs.labels]
    if op == "or":
        present = _presence_by_sig(lsig, lhs.mask)
        none = np.zeros(lhs.mask.shape[1], dtype=bool)
        rmask = np.array([rhs.mask[j] & ~present.get(s, none) for j, s in enumerate(rsig)]).reshape(rhs.mask.shape)
        out = Vector(lhs.labels + rhs.labels, np.vstack([lhs.vals, rhs.vals]), np.vstack([lhs.mask, rmask]))
        return merge_rows_per_step(compact(out))
    present = _presence_by_sig(rsig, rhs.mask)
    none = np.zeros(lhs.mask.shape[1], dtype=bool)
    if op == "and":
        lmask = [lhs.mask[i] & present.get(s, none) for i, s in enumerate(lsig)]
    else:  # unless
        lmask = [lhs.mask[i] & ~present.get(s, none) for i, s in enumerate(lsig)]
    mask = np.array(lmask).reshape(lhs.mask.shape)
    return compact(Vector(lhs.labels, lhs.vals, mask))


def _vector_vector(op: str, lhs: Vector, rhs: Vector, mod: pp.BinModifier | None, return_bool: bool) -> Vector:
    t = lhs.mask.shape[1]
    card = str(mod.card) if mod is not None else "OneToOne"
    one_to_many = card.endswith("OneToMany")
    one_to_one = card.endswith("OneToOne")
    include = list(mod.group_labels or []) if (mod is not None and not one_to_one) else []
    sig, on, match_names = _signature_fn(mod)
    many, one = (rhs, lhs) if one_to_many else (lhs, rhs)
    if len(many) == 0 or len(one) == 0:
        return Vector.empty(t)
    msig = [sig(lb) for lb in many.labels]
    osig = [sig(lb) for lb in one.labels]
    many_any = many.mask.any(axis=0)

    groups: dict[Labels, list[int]] = {}
    for j, s in enumerate(osig):
        groups.setdefault(s, []).append(j)
    for s, rows in groups.items():
        if len(rows) > 1:
            m = one.mask[rows]
            bad = (m.sum(axis=0) > 1) & many_any
            if bad.any():
                k = int(np.argmax(bad))
                dup = [one.labels[r] for r in rows if one.mask[r, k]][:2]
                side = "left" if one_to_many else "right"
                raise ExecutionError(
                    f"found duplicate series for the match group {labels_str(s)} on the {side} hand-side of the "
                    f"operation: [{labels_str(dup[1])}, {labels_str(dup[0])}];many-to-many matching not allowed: "
                    "matching labels must be unique on one side"
                )

    li: list[int] = []
    rj: list[int] = []
    for i, s in enumerate(msig):
        for j in groups.get(s, ()):
            li.append(i)
            rj.append(j)
    if not li:
        return Vector.empty(t)
    li_a, rj_a = np.array(li), np.array(rj)
    mv, ov = many.vals[li_a], one.vals[rj_a]
    mask = many.mask[li_a] & one.mask[rj_a]
    vl, vr = (ov, mv) if one_to_many else (mv, ov)
    value, keep = apply(op, vl, vr)
    if keep is not None:
        if return_bool:
            value = keep.astype(np.float64)
        else:
            mask = mask & keep

    drop = op in DROPS_NAME or return_bool
    on_names = frozenset(match_names)
    labels: list[Labels] = []
    for i, j in zip(li, rj):
        lb = many.labels[i]
        if op in DROPS_NAME:
            lb = drop_name(lb)
        if one_to_one:
            lb = keep_only(lb, on_names) if on else without(lb, on_names)
        if include:
            d = dict(lb)
            src = dict(one.labels[j])
            for name in include:
                if src.get(name, ""):
                    d[name] = src[name]
                else:
                    d.pop(name, None)
            lb = tuple(sorted(d.items()))
        if drop:
            lb = drop_name(lb)
        labels.append(lb)

    # Prometheus's per-step cardinality errors.
    if one_to_one:
        by_sig: dict[Labels, list[int]] = {}
        for k, i in enumerate(li):
            by_sig.setdefault(msig[i], []).append(k)
        for rows in by_sig.values():
            if len(rows) > 1 and (mask[rows].sum(axis=0) > 1).any():
                raise ExecutionError(
                    "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)"
                )
    else:
        by_key: dict[tuple[Labels, Labels], list[int]] = {}
        for k, i in enumerate(li):
            by_key.setdefault((msig[i], labels[k]), []).append(k)
        for rows in by_key.values():
            if len(rows) > 1 and (mask[rows].sum(axis=0) > 1).any():
                raise ExecutionError("multiple matches for labels: grouping labels must ensure unique matches")

    value = np.broadcast_to(value, mask.shape)
    return merge_rows_per_step(compact(Vector(labels, np.ascontiguousarray(value), mask)))
