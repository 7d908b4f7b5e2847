"""The values PromQL computes with, and the store contract the engine selects samples through.

Times are integer milliseconds since the epoch everywhere inside the engine (the HTTP layer converts Prometheus's
float seconds). Label sets are plain dicts that include `__name__` for selected series."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol, TypeAlias

import numpy as np
import numpy.typing as npt

# The array types the engine computes with: sample values, timestamps in ms, presence masks, and the index arrays
# searchsorted & co. return.
FloatArray: TypeAlias = npt.NDArray[np.float64]
IntArray: TypeAlias = npt.NDArray[np.int64]
BoolArray: TypeAlias = npt.NDArray[np.bool_]
IndexArray: TypeAlias = npt.NDArray[np.intp]

# Prometheus's staleness marker: a NaN with this exact bit pattern ends a series' lookback at its timestamp.
STALE_NAN_BITS = 0x7FF0000000000002
STALE_NAN = struct.unpack("<d", struct.pack("<Q", STALE_NAN_BITS))[0]


def is_stale(values: FloatArray) -> BoolArray:
    """Boolean mask of staleness markers in a float64 array (ordinary NaN samples are not stale)."""
    stale: BoolArray = values.view(np.uint64) == np.uint64(STALE_NAN_BITS)
    return stale


@dataclass(frozen=True)
class Matcher:
    """One label matcher: op is one of '=', '!=', '=~', '!~' (regexes are fully anchored, RE2 syntax)."""

    name: str
    op: str
    value: str


@dataclass
class RawSeries:
    """Samples of one stored series in [start, end], sorted by time, one per timestamp (staleness markers kept)."""

    labels: dict[str, str]
    ts: IntArray  # int64 ms
    values: FloatArray


class SeriesStore(Protocol):
    """What the engine needs from storage. Implementations: queries/metrics_store.py (one or many sessions'
    metric_series/metric_samples Parquet) and an in-memory one for tests."""

    def select(self, matchers: list[Matcher], start_ms: int, end_ms: int) -> list[RawSeries]:
        """Every series matching all matchers, with its samples whose timestamps lie in [start_ms, end_ms]."""
        ...

    def select_stream(self, matchers: list[Matcher], start_ms: int, end_ms: int) -> Iterator[RawSeries]:
        """select's series, yielded as they are read: the engine reduces each to its steps before the next, so
        a store may hold only the samples at hand (the engine's memory then does not grow with the selector)."""
        ...

    def label_names(self, match_sets: list[list[Matcher]], start_ms: int, end_ms: int) -> list[str]:
        """Sorted label names of the series matching any of the matcher sets (all series if none)."""
        ...

    def label_values(self, name: str, match_sets: list[list[Matcher]], start_ms: int, end_ms: int) -> list[str]: ...

    def series(self, match_sets: list[list[Matcher]], start_ms: int, end_ms: int) -> list[dict[str, str]]:
        """Label sets (with __name__) of the series that have a sample in the range and match any matcher set."""
        ...
