"""histogram_quantile over classic buckets (`le` label), as Prometheus 2.42's bucketQuantile: buckets sorted by
upper bound, equal bounds coalesced, counts forced monotonic, linear interpolation inside the bucket, the lowest
bucket starting at 0 (unless its bound is <= 0), NaN without a +Inf bucket or with fewer than two buckets.

Vectorized over steps for each label group; steps where only some of the group's buckets are present fall back to
a per-step computation over the present ones."""

from __future__ import annotations

import math

import numpy as np

from .model import FloatArray
from .values import NAME, Labels, Vector, compact, get_label, without

_EXCLUDED = frozenset({NAME, "le"})


def _parse_le(text: str) -> float | None:
    # Go's strconv.ParseFloat accepts "+Inf", "Inf", "inf", "NaN" and the usual forms.
    try:
        return float(text)
    except ValueError:
        low = text.lower().lstrip("+-")
        if low in ("inf", "infinity"):
            return -math.inf if text.startswith("-") else math.inf
        return None


def bucket_quantile(q: float, bounds: list[float], counts: list[float]) -> float:
    """One step, present buckets only (bounds sorted ascending, may repeat)."""
    if math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    if not bounds or bounds[-1] != math.inf:
        return math.nan
    b2: list[float] = []
    c2: list[float] = []
    for b, c in zip(bounds, counts):
        if b2 and b2[-1] == b:
            c2[-1] += c
        else:
            b2.append(b)
            c2.append(c)
    mx = -math.inf
    for k, c in enumerate(c2):
        if c > mx:
            mx = c
        elif c < mx:
            c2[k] = mx
    if len(b2) < 2:
        return math.nan
    obs = c2[-1]
    if obs == 0:
        return math.nan
    rank = q * obs
    b = len(b2) - 1
    for k in range(len(b2) - 1):
        if c2[k] >= rank:
            b = k
            break
    if b == len(b2) - 1:
        return b2[-2]
    if b == 0 and b2[0] <= 0:
        return b2[0]
    start, end, count = 0.0, b2[b], c2[b]
    if b > 0:
        start = b2[b - 1]
        count -= c2[b - 1]
        rank -= c2[b - 1]
    return start + (end - start) * (rank / count)


def _vectorized(q: FloatArray, bounds: FloatArray, counts: FloatArray) -> FloatArray:
    """bucketQuantile for steps where all of the group's buckets are present; counts (nb, T) sorted by bound."""
    nb, t = counts.shape
    # Coalesce equal bounds.
    uniq, first = np.unique(bounds, return_index=True)
    if len(uniq) != nb:
        counts = np.add.reduceat(counts, first, axis=0)
        bounds = uniq
        nb = len(uniq)
    out = np.full(t, np.nan)
    if nb >= 2 and bounds[-1] == math.inf:
        nan = np.isnan(counts)
        counts = np.where(nan, np.nan, np.fmax.accumulate(np.where(nan, -np.inf, counts), axis=0))
        obs = counts[-1]
        with np.errstate(all="ignore"):
            rank = q * obs
            hit = counts[:-1] >= rank[None, :]
            b = np.where(hit.any(axis=0), np.argmax(hit, axis=0), nb - 1)
            cols = np.arange(t)
            prev_b = np.maximum(b - 1, 0)
            start = np.where(b > 0, bounds[prev_b], 0.0)
            prev_c = np.where(b > 0, counts[prev_b, cols], 0.0)
            end = bounds[np.minimum(b, nb - 1)]
            count = counts[b, cols] - prev_c
            val = start + (end - start) * ((rank - prev_c) / count)
            val = np.where((b == 0) & (bounds[0] <= 0), bounds[0], val)
            val = np.where(b == nb - 1, bounds[nb - 2], val)
            out = np.where(obs == 0, np.nan, val)
    out = np.where(q < 0, -np.inf, np.where(q > 1, np.inf, out))
    return np.where(np.isnan(q), np.nan, out)


def histogram_quantile(q: FloatArray, vec: Vector) -> Vector:
    groups: dict[Labels, list[tuple[float, int]]] = {}
    out_labels: dict[Labels, Labels] = {}
    for i, lb in enumerate(vec.labels):
        le = _parse_le(get_label(lb, "le"))
        if le is None:
            continue  # no bucket label, or not a number: Prometheus skips the sample
        key = without(lb, frozenset({"le"}))  # grouping keeps the metric name, the output drops it
        groups.setdefault(key, []).append((le, i))
        out_labels.setdefault(key, without(lb, _EXCLUDED))
    t = vec.mask.shape[1]
    labels, rows, masks = [], [], []
    for key, members in groups.items():
        members.sort(key=lambda m: m[0])
        bounds = np.array([m[0] for m in members])
        idx = np.array([m[1] for m in members])
        m = vec.mask[idx]
        c = vec.vals[idx]
        present = m.any(axis=0)
        if not present.any():
            continue
        full = m.all(axis=0)
        value = np.full(t, np.nan)
        if full.any():
            value[full] = _vectorized(q[full], bounds, c[:, full])
        for col in np.nonzero(present & ~full)[0]:
            sel = m[:, col]
            value[col] = bucket_quantile(float(q[col]), list(bounds[sel]), list(c[sel, col]))
        labels.append(out_labels[key])
        rows.append(value)
        masks.append(present)
    if not labels:
        return Vector.empty(t)
    return compact(Vector(labels, np.vstack(rows), np.vstack(masks)))
