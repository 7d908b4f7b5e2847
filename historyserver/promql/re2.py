"""Regular expressions as Prometheus runs them: RE2 (here DuckDB's regexp_full_match), in linear time.

Python's re backtracks: `(.|.)*Z` over a 36-character session name would take hours, beyond any query timeout.
"""

from __future__ import annotations

import functools
import threading

import duckdb
import numpy as np

from .errors import BadData

_RE_LOCK = threading.Lock()
_RE_CON: duckdb.DuckDBPyConnection | None = None


def regex_full_matches(pattern: str, values: list[str]) -> np.ndarray:
    """regexp_full_match (RE2, as Prometheus's Go regexps) of each value, evaluated by DuckDB in one statement."""
    global _RE_CON
    with _RE_LOCK:
        if _RE_CON is None:
            _RE_CON = duckdb.connect(":memory:")
        cur = _RE_CON.cursor()
    try:
        rows = cur.execute(
            "SELECT v, regexp_full_match(v, ?) FROM (SELECT unnest(?::VARCHAR[]) AS v)", [pattern, values]
        ).fetchall()
    except duckdb.InvalidInputException as e:  # RE2 refuses the pattern
        raise BadData(f"invalid regular expression in a label matcher: {e}") from e
    finally:
        cur.close()
    hit = dict(rows)
    return np.array([bool(hit[v]) for v in values], dtype=bool)


@functools.lru_cache(maxsize=4096)
def full_match(pattern: str, value: str) -> bool:
    """One value against one pattern, remembered: scope pruning asks the same few (dashboard regex, session name)
    pairs on every request, and each DuckDB statement costs about a millisecond."""
    return bool(regex_full_matches(pattern, [value])[0])
