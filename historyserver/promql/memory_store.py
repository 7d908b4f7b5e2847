"""An in-memory SeriesStore for tests: a list of RawSeries filtered by matchers."""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import lru_cache

import numpy as np

from .model import Matcher, RawSeries


@lru_cache(maxsize=1024)
def _regex(pattern: str) -> re.Pattern[str]:
    # Prometheus anchors regex matchers at both ends.
    return re.compile(pattern)


def matches(labels: dict[str, str], matchers: list[Matcher]) -> bool:
    for m in matchers:
        v = labels.get(m.name, "")
        if m.op == "=":
            ok = v == m.value
        elif m.op == "!=":
            ok = v != m.value
        elif m.op == "=~":
            ok = _regex(m.value).fullmatch(v) is not None
        else:
            ok = _regex(m.value).fullmatch(v) is None
        if not ok:
            return False
    return True


class MemoryStore:
    def __init__(self, series: list[RawSeries]) -> None:
        self._series = series

    def select(self, matchers: list[Matcher], start_ms: int, end_ms: int) -> list[RawSeries]:
        out = []
        for s in self._series:
            if not matches(s.labels, matchers):
                continue
            ts = np.asarray(s.ts, dtype=np.int64)
            lo, hi = np.searchsorted(ts, start_ms, "left"), np.searchsorted(ts, end_ms, "right")
            if hi > lo:
                out.append(RawSeries(dict(s.labels), ts[lo:hi], np.asarray(s.values, dtype=np.float64)[lo:hi]))
        return out

    def select_stream(self, matchers: list[Matcher], start_ms: int, end_ms: int) -> Iterator[RawSeries]:
        return iter(self.select(matchers, start_ms, end_ms))

    def _matching(self, match_sets: list[list[Matcher]], start_ms: int, end_ms: int) -> list[RawSeries]:
        sets = match_sets or [[]]
        seen: dict[tuple[tuple[str, str], ...], RawSeries] = {}
        for ms in sets:
            for s in self.select(ms, start_ms, end_ms):
                seen.setdefault(tuple(sorted(s.labels.items())), s)
        return list(seen.values())

    def label_names(self, match_sets: list[list[Matcher]], start_ms: int, end_ms: int) -> list[str]:
        names: set[str] = set()
        for s in self._matching(match_sets, start_ms, end_ms):
            names.update(k for k, v in s.labels.items() if v != "")
        return sorted(names)

    def label_values(self, name: str, match_sets: list[list[Matcher]], start_ms: int, end_ms: int) -> list[str]:
        vals = {s.labels.get(name, "") for s in self._matching(match_sets, start_ms, end_ms)}
        vals.discard("")
        return sorted(vals)

    def series(self, match_sets: list[list[Matcher]], start_ms: int, end_ms: int) -> list[dict[str, str]]:
        return [dict(sorted(s.labels.items())) for s in self._matching(match_sets, start_ms, end_ms)]
