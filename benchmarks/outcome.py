"""A benchmark's exit status: non-zero when any phase errored, missed a target (FAIL), or answered differently
from the baseline. A table that looks fine is not enough: a fast wrong answer, or a crash, is no result."""

from __future__ import annotations

import sys


def exit_status(problems: list[str], benchmark: str) -> int:
    """Print each problem on stderr under one heading; 0 when there are none, 1 otherwise."""
    if not problems:
        return 0
    print(f"\n{benchmark}: FAILED, {len(problems)} problem(s); the numbers above are not a result:", file=sys.stderr)
    for p in problems:
        print(f"  - {p}", file=sys.stderr)
    return 1
