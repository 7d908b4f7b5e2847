"""The values an evaluation produces, laid out for numpy: every instant value is evaluated at all steps at once.

- Vector: n series x T steps; `vals` float64 and `mask` bool (a sample may be NaN and still present, so absence is
  the mask, not NaN).
- Scalar: one float per step (always present).
- RangeVector: per-series sample arrays plus the window end of every step (the argument of rate() & co.).
- String: a string literal.

Labels are sorted tuples of (name, value) pairs, including `__name__`; tuples hash and compare like Prometheus's
labels.Compare (Go compares strings bytewise, which is code-point order for UTF-8, as Python does).

QueryResult turns the final value into the Prometheus HTTP API `data` object."""

from __future__ import annotations

import json
import math
import operator
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from .errors import ExecutionError
from .model import BoolArray, FloatArray, IndexArray, IntArray

if TYPE_CHECKING:
    import promql_parser as pp

Labels = tuple[tuple[str, str], ...]

NAME = "__name__"
EMPTY: Labels = ()


def labels_from_dict(d: dict[str, str]) -> Labels:
    # Prometheus has no empty-valued labels: an empty value means the label is absent.
    return tuple(sorted((k, v) for k, v in d.items() if v != ""))


def drop_name(lbls: Labels) -> Labels:
    if lbls and any(k == NAME for k, _ in lbls):
        return tuple(p for p in lbls if p[0] != NAME)
    return lbls


def keep_only(lbls: Labels, names: frozenset[str] | set[str]) -> Labels:
    return tuple(p for p in lbls if p[0] in names)


def without(lbls: Labels, names: frozenset[str] | set[str]) -> Labels:
    return tuple(p for p in lbls if p[0] not in names)


def get_label(lbls: Labels, name: str) -> str:
    for k, v in lbls:
        if k == name:
            return v
    return ""


def set_label(lbls: Labels, name: str, value: str) -> Labels:
    d = dict(lbls)
    if value == "":
        d.pop(name, None)
    else:
        d[name] = value
    return tuple(sorted(d.items()))


def labels_str(lbls: Labels) -> str:
    """Prometheus's labels.String(): {a="b", c="d"}."""
    return "{" + ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in lbls) + "}"


@dataclass
class Vector:
    labels: list[Labels]
    vals: FloatArray  # (n, T)
    mask: BoolArray  # (n, T)

    @staticmethod
    def empty(t: int) -> Vector:
        return Vector([], np.zeros((0, t)), np.zeros((0, t), dtype=bool))

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class Scalar:
    vals: FloatArray  # (T,)


@dataclass
class String:
    value: str


@dataclass
class RangeSeries:
    labels: Labels
    ts: IntArray  # ms, sorted, no staleness markers
    vals: FloatArray


@dataclass
class RangeVector:
    """A range vector at every step: series' samples and, per step, the window [ends - range_ms, ends]."""

    series: list[RangeSeries]
    range_ms: int
    ends: IntArray  # (T,): window end per step (step time minus offset, or the @ time)
    selector: pp.VectorSelector | None = None  # the VectorSelector it came from, for absent_over_time's labels
    windows: dict[int, tuple[IndexArray, IndexArray]] = field(default_factory=dict)  # cache: series i -> (lo, hi)

    def window(self, i: int) -> tuple[IndexArray, IndexArray]:
        """Index bounds [lo, hi) of each step's samples of series i. Prometheus 2.x includes both ends."""
        w = self.windows.get(i)
        if w is None:
            ts = self.series[i].ts
            lo = np.searchsorted(ts, self.ends - self.range_ms, side="left")
            hi = np.searchsorted(ts, self.ends, side="right")
            w = self.windows[i] = (lo, hi)
        return w


Value = Vector | Scalar | String | RangeVector


SAME_LABELSET = "vector cannot contain metrics with the same labelset"


def _groups(labels: list[Labels]) -> dict[Labels, list[int]] | None:
    """Row indices per label set, or None when every label set is distinct (the usual case)."""
    if len(set(labels)) == len(labels):
        return None
    out: dict[Labels, list[int]] = {}
    for i, lb in enumerate(labels):
        out.setdefault(lb, []).append(i)
    return out


def merge_rows_per_step(vec: Vector) -> Vector:
    """Rows with equal labels become one series, as Prometheus's range evaluation merges each step's output by
    label set; two of them present at the same step is the 'same labelset' error."""
    groups = _groups(vec.labels)
    if groups is None:
        return vec
    labels, vals, mask = [], [], []
    for lb, rows in groups.items():
        if len(rows) == 1:
            i = rows[0]
            labels.append(lb)
            vals.append(vec.vals[i])
            mask.append(vec.mask[i])
            continue
        m = vec.mask[rows]
        if (m.sum(axis=0) > 1).any():
            raise ExecutionError(SAME_LABELSET)
        first = np.argmax(m, axis=0)
        labels.append(lb)
        vals.append(vec.vals[rows][first, np.arange(m.shape[1])])
        mask.append(m.any(axis=0))
    return Vector(labels, np.vstack(vals), np.vstack(mask))


def merge_rows_check_all(vec: Vector) -> Vector:
    """Drop empty rows; equal label sets among the rest are an error whatever the steps (Prometheus checks the
    whole matrix after functions of range vectors and after unary minus)."""
    keep = vec.mask.any(axis=1)
    if not keep.all():
        idx = np.nonzero(keep)[0]
        vec = Vector([vec.labels[i] for i in idx], vec.vals[idx], vec.mask[idx])
    if _groups(vec.labels) is not None:
        raise ExecutionError(SAME_LABELSET)
    return vec


def compact(vec: Vector) -> Vector:
    """Drop the rows that have no sample at any step."""
    keep = vec.mask.any(axis=1)
    if keep.all():
        return vec
    idx = np.nonzero(keep)[0]
    return Vector([vec.labels[i] for i in idx], vec.vals[idx], vec.mask[idx])


# ---------------------------------------------------------------------------------------------- JSON encoding
# Dashboards ask for millions of points: values are formatted a whole series at a time (repr of a list runs in C,
# regexes fix the few spellings that differ from Go), timestamps once per query grid.

_TRAILING_ZERO = re.compile(r"\.0(?=[,\]])")
_EXPONENT = re.compile(r"-?[0-9.]+e[-+]?[0-9]+")

# Typed as a module or None (not orjson's own module type) so that mypy also checks the repr fallback below.
_orjson: ModuleType | None
try:  # optional: formats floats ~6x faster than repr (Rust ryu); same shortest round-trip digits
    import orjson as _orjson
except ImportError:  # pragma: no cover - depends on the installation
    _orjson = None


def format_value(v: float) -> str:
    """As Prometheus writes a sample value (util/jsonutil MarshalValue): Go's strconv.FormatFloat(v, 'e', -1, 64)
    when 0 < |v| < 1e-6 or |v| >= 1e21, else FormatFloat(v, 'f', -1, 64); shortest round-trip digits either way.
    Python's repr writes those two ranges in exponent form exactly as Go's 'e' does (`1.5e-07`, `1e+21`)."""
    if v != v:
        return "NaN"
    if v == math.inf:
        return "+Inf"
    if v == -math.inf:
        return "-Inf"
    s = repr(float(v))
    magnitude = abs(v)
    if magnitude != 0 and (magnitude < 1e-6 or magnitude >= 1e21):
        return s
    if "e" in s:
        return np.format_float_positional(v, unique=True, trim="-")
    if s.endswith(".0"):
        return s[:-2]
    return s


def format_values(vals: FloatArray) -> list[str]:
    """format_value over an array, fast."""
    if len(vals) == 0:
        return []
    if _orjson is not None:
        vals = np.ascontiguousarray(vals, dtype=np.float64)
        finite = np.isfinite(vals)
        all_finite = bool(finite.all())
        raw: bytes = _orjson.dumps(
            vals if all_finite else np.where(finite, vals, 0.0), option=_orjson.OPT_SERIALIZE_NUMPY
        )
        s = _TRAILING_ZERO.sub("", raw.decode())
        if "e" in s:
            s = _EXPONENT.sub(lambda m: format_value(float(m.group())), s)
        out = s[1:-1].split(",")
        if not all_finite:
            for i in np.nonzero(~finite)[0].tolist():
                out[i] = format_value(float(vals[i]))
        return out
    s = repr(vals.tolist())
    s = _TRAILING_ZERO.sub("", s)
    if "e" in s:
        s = _EXPONENT.sub(lambda m: format_value(float(m.group())), s)
    if "n" in s:  # nan, inf
        s = s.replace("nan", "NaN").replace("-inf", "-Inf").replace("inf", "+Inf")
    return s[1:-1].split(", ")


def format_time(ms: int) -> float | int:
    """Seconds as Prometheus marshals them: integral seconds without a fraction, else millisecond precision."""
    ms = int(ms)
    if ms % 1000 == 0:
        return ms // 1000
    return ms / 1000


def format_times(ts: IntArray) -> npt.NDArray[np.object_]:
    """format_time over an array, as an object array (so series can pick their steps by mask)."""
    out = np.empty(len(ts), dtype=object)
    out[:] = [format_time(t) for t in ts.tolist()]
    return out


@dataclass
class QueryResult:
    """resultType plus result. matrix: list of (labels, ts ms array, values array); vector: list of
    (labels, ms, value); scalar: (ms, value); string: (ms, str)."""

    result_type: str  # 'matrix' | 'vector' | 'scalar' | 'string'
    result: Any

    def _matrix_times(self) -> tuple[IntArray, npt.NDArray[np.object_]]:
        # Matrix series of a range query share its step grid: format each distinct timestamp once.
        if not self.result:  # callers check first; typed empties rather than a value they could not unpack
            none = np.zeros(0, dtype=np.int64)
            return none, format_times(none)
        all_ts = np.unique(np.concatenate([ts for _, ts, _ in self.result]))
        return all_ts, format_times(all_ts)

    def to_json(self) -> dict[str, Any]:
        """The Prometheus HTTP API `data` object as Python values."""
        if self.result_type == "matrix":
            out = []
            if self.result:
                all_ts, times = self._matrix_times()
                for lbls, ts, vals in self.result:
                    t = times[np.searchsorted(all_ts, ts)].tolist()
                    out.append({"metric": dict(lbls), "values": list(map(list, zip(t, format_values(vals))))})
            return {"resultType": "matrix", "result": out}
        if self.result_type == "vector":
            return {
                "resultType": "vector",
                "result": [
                    {"metric": dict(lbls), "value": [format_time(t), format_value(v)]} for lbls, t, v in self.result
                ],
            }
        t, v = self.result
        if self.result_type == "scalar":
            return {"resultType": "scalar", "result": [format_time(t), format_value(v)]}
        return {"resultType": "string", "result": [format_time(t), v]}

    def to_json_text(self) -> str:
        """json.dumps(self.to_json()) with compact separators, several times faster for large matrices."""
        return "".join(self.to_json_chunks())

    def to_json_chunks(self) -> Iterator[str]:
        """to_json_text in pieces, a matrix series each: an answer of a few MB is encoded piece by piece instead of
        being copied whole at every step (str, envelope, bytes)."""
        if self.result_type != "matrix" or not self.result:
            yield json.dumps(self.to_json(), separators=(",", ":"), ensure_ascii=False)
            return
        all_ts, times = self._matrix_times()
        prefixes = np.array(["[" + json.dumps(t) + ',"' for t in times.tolist()], dtype=object)
        yield '{"resultType":"matrix","result":['
        for i, (lbls, ts, vals) in enumerate(self.result):
            pre = prefixes[np.searchsorted(all_ts, ts)].tolist()
            body = '"],'.join(map(operator.add, pre, format_values(vals)))
            metric = json.dumps(dict(lbls), separators=(",", ":"), ensure_ascii=False)
            yield ("," if i else "") + '{"metric":' + metric + ',"values":[' + body + '"]]}'
        yield "]}"
