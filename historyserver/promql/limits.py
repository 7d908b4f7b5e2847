"""What one query may cost: Prometheus's `--query.max-samples` and `--query.timeout`, with its messages.

Prometheus counts the samples a query holds in memory while it runs. Here every intermediate result of an
evaluation stays memoised until the query ends (evaluate.py), so the count is the samples read from storage plus
every vector, range vector and scalar computed, which is what the query holds. Cheap checks come first: a step grid
is refused before it is allocated, so `count_over_time(up[100y:1s])` fails at once instead of materialising
3 billion steps."""

from __future__ import annotations

import time
from dataclasses import dataclass

from .errors import ExecutionError, QueryTimeout

DEFAULT_MAX_SAMPLES = 50_000_000  # Prometheus's --query.max-samples default
DEFAULT_TIMEOUT_S = 120.0  # Prometheus's --query.timeout default (2m)


class TooManySamples(ExecutionError):
    """Prometheus's ErrTooManySamples (422 execution)."""

    def __init__(self) -> None:
        super().__init__("query processing would load too many samples into memory in query execution")


@dataclass(frozen=True)
class QueryLimits:
    max_samples: int = DEFAULT_MAX_SAMPLES
    timeout_s: float = DEFAULT_TIMEOUT_S

    def budget(self, timeout_s: float | None = None) -> Budget:
        """A budget for one query; a request's own `timeout` can only shorten the server's."""
        t = self.timeout_s if timeout_s is None else min(timeout_s, self.timeout_s)
        return Budget(self.max_samples, time.monotonic() + t)


class Budget:
    """The running cost of one query: samples held, and the deadline."""

    def __init__(self, max_samples: int, deadline: float) -> None:
        self.max_samples = max_samples
        self.deadline = deadline
        self.samples = 0

    def add(self, n: int) -> None:
        self.samples += int(n)
        if self.samples > self.max_samples:
            raise TooManySamples()

    def check_grid(self, steps: int) -> None:
        """Before allocating a step grid: one step is at least one sample."""
        if self.samples + steps > self.max_samples:
            raise TooManySamples()

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise QueryTimeout("query timed out in query execution")
