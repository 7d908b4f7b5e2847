"""The timeline page's data at any zoom: per-lane density when zoomed out, the exact attempts when zoomed in.

Every answer counts all attempts in the window (`total`) and stays under about 2 MB however large the session:
- attempts: at most MAX_ATTEMPTS attempts overlap the window, so they are sent, each with the state times that
  split it into phases (waiting for arguments, waiting for a node, on the worker, running);
- density: otherwise, for each lane and colour key, how many attempts touch each of `buckets` equal slices of the
  window, as runs (from bucket b on, the count is c, until the lane and key's next run) or, when attempts are
  short against a bucket, as cells (the count of bucket b alone). Runs are computed in DuckDB from +1/-1 steps
  at each attempt's first and past-last bucket, so the work grows with the attempts and never with their
  length; at most MAX_RUNS runs or cells are sent (fewer buckets when a window would need more).
An attempt spans its whole life: from its creation (or start, when Ray recorded no creation) to its end.
Lanes are (node, worker) pairs, ordered by node then worker; beyond MAX_LANES workers, lanes are whole nodes.
Everything is read from the task_timeline table (sorted by time: a window reads only the row groups it overlaps).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from historyserver.errors import BadRequest
from historyserver.queries.session_db import SessionDB

MAX_ATTEMPTS = 3000  # ~1 MB of attempts with their phases: the most one answer sends as single bars
MAX_RUNS = 120_000  # ~1.6 MB of density runs (four short numbers each)
CELL_SPAN = 3  # attempts spanning this many buckets on average or fewer: density counted per bucket directly
# Lanes in the order they are drawn: by node, then worker pid (lane numbers are ids, not an order: a session folded
# while it ran numbers them as its workers appeared, archive/compacted.py).
LANE_ORDER = "n = '', n, w = '', pid, w"
MAX_LANES = 2000  # more workers than this (worker churn) and the lanes are nodes
MAX_WIDTH = 4000
MAX_KEYS = 12  # colour keys of a density answer by function or job: the most frequent, then "other"
MAX_FACETS = 200  # functions offered as filters
NAME_CHARS = 120  # a name longer than this is cut: it is drawn on a bar, never read in full there
COLOR_BY = {"state": "state", "function": "coalesce(func_or_class_name, name, '')", "job": "coalesce(job_id, '')"}
OTHER = "other"
# What an attempt's phases are made of: each phase runs from its time to the next present one (then to the end).
PHASES = (
    ("waiting for arguments", "creation_time_ms"),
    ("waiting for a node", "pending_node_time_ms"),
    ("on the worker", "submitted_time_ms"),
    ("running", "start_time_ms"),
)
ATTEMPT_COLUMNS = (
    "task_id",
    "attempt",
    "name",
    "function",
    "state",
    "unfinished",
    "job_id",
    "lane",
    "pid",
    "error_type",
    "parent_task_id",
    "actor_id",
    "type",
    *(f"{column.removesuffix('_time_ms')}_ms" for _, column in PHASES),
    "end_ms",
)
_FROM, _TO = "from_ms", "to_ms"
TABLE = "task_timeline"


@dataclass(frozen=True)
class ViewFilter:
    """Which attempts the timeline shows: each list is "any of" (empty: all)."""

    jobs: Sequence[str] = ()
    functions: Sequence[str] = ()
    states: Sequence[str] = ()

    def where(self) -> tuple[str, list[Any]]:
        parts, params = ["TRUE"], []
        for column, values in (
            ("lower(job_id)", [v.lower() for v in self.jobs]),
            ("func_or_class_name", list(self.functions)),
            ("state", [v.upper() for v in self.states]),
        ):
            if values:
                parts.append(f"{column} IN ({', '.join('?' * len(values))})")
                params.extend(values)
        return " AND ".join(parts), params

    def key(self) -> str:
        return repr((sorted(self.jobs), sorted(self.functions), sorted(self.states)))


def _lanes(db: SessionDB, f: ViewFilter) -> tuple[str, list[dict[str, Any]]]:
    """The filtered attempts' lanes (memoized per filter): ("worker", lanes) or ("node", lanes); each lane has
    its `id` in the table (lane or node_rank)."""

    def compute() -> tuple[str, list[dict[str, Any]]]:
        where, params = f.where()
        ips = dict(db.query("SELECT node_id, node_ip FROM nodes"))
        rows = db.query(
            f"""SELECT lane, any_value(coalesce(node_id, '')) AS n, any_value(coalesce(worker_id, '')) AS w,
                       max(worker_pid) AS pid
                FROM {TABLE} WHERE {where} GROUP BY lane ORDER BY {LANE_ORDER} LIMIT {MAX_LANES + 1}""",
            params,
        )
        if len(rows) <= MAX_LANES:
            return "worker", [
                {"id": i, "node_id": n, "node_ip": ips.get(n), "worker_id": w, "pid": p} for i, n, w, p in rows
            ]
        nodes = db.query(
            f"""SELECT node_rank, any_value(coalesce(node_id, '')) AS n FROM {TABLE} WHERE {where}
                GROUP BY node_rank ORDER BY n = '', n""",
            params,
        )
        return "node", [{"id": i, "node_id": n, "node_ip": ips.get(n), "worker_id": "", "pid": None} for i, n in nodes]

    result: tuple[str, list[dict[str, Any]]] = db.memo("timeline-lanes " + f.key(), compute)
    return result


def _facets(db: SessionDB) -> dict[str, Any]:
    def compute() -> dict[str, Any]:
        base = f"FROM {TABLE} WHERE TRUE"
        return {
            "jobs": [r[0] for r in db.query(f"SELECT DISTINCT job_id {base} AND job_id IS NOT NULL ORDER BY 1")],
            "functions": [
                r[0]
                for r in db.query(
                    f"SELECT func_or_class_name {base} AND func_or_class_name IS NOT NULL "
                    f"GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT {MAX_FACETS}"
                )
            ],
            "states": [r[0] for r in db.query(f"SELECT state {base} GROUP BY 1 ORDER BY count(*) DESC, 1")],
        }

    facets: dict[str, Any] = db.memo("timeline-facets", compute)
    return facets


def _extent(db: SessionDB, f: ViewFilter) -> tuple[float | None, float | None]:
    def compute() -> tuple[float | None, float | None]:
        where, params = f.where()
        row = db.query(f"SELECT min({_FROM}), max({_TO}) FROM {TABLE} WHERE {where}", params)[0]
        return row[0], row[1]

    extent: tuple[float | None, float | None] = db.memo("timeline-extent " + f.key(), compute)
    return extent


def timeline_view(
    db: SessionDB,
    f: ViewFilter,
    start: float | None = None,
    end: float | None = None,
    width: int = 1000,
    color_by: str = "state",
) -> dict[str, Any]:
    """The answer of GET /api/v1/sessions/{id}/timeline (times in epoch ms)."""
    if color_by not in COLOR_BY:
        raise BadRequest(f"color_by {color_by!r} is not known; use one of {', '.join(COLOR_BY)}")
    if not 1 <= width <= MAX_WIDTH:
        raise BadRequest(f"width must be between 1 and {MAX_WIDTH} (pixels), got {width}")
    lo, hi = _extent(db, f)
    if start is None:
        start = lo if lo is not None else 0.0
    if end is None:
        end = max(hi if hi is not None else start + 1, start + 1)
    if not end > start:
        raise BadRequest(f"end ({end}) must be after start ({start}); both are epoch milliseconds")
    rows, lanes = _lanes(db, f)
    where, params = f.where()
    window = f"{where} AND {_FROM} <= ? AND {_TO} >= ?"
    wparams = params + [end, start]
    total, mean_ms = db.query(f"SELECT count(*), avg({_TO} - {_FROM}) FROM {TABLE} WHERE {window}", wparams)[0]
    answer: dict[str, Any] = {
        "start": start,
        "end": end,
        "width": width,
        "extent": {"start": lo, "end": hi},
        "total": total,
        "rows": rows,
        "lanes": lanes,
        "color_by": color_by,
        "phases": [name for name, _ in PHASES],
        "facets": _facets(db),
        "limits": {"attempts": MAX_ATTEMPTS, "runs": MAX_RUNS, "lanes": MAX_LANES},
    }
    index = {lane["id"]: i for i, lane in enumerate(lanes)}
    if total <= MAX_ATTEMPTS:
        answer["mode"] = "attempts"
        answer["columns"] = list(ATTEMPT_COLUMNS)
        answer["attempts"] = _attempts(db, window, wparams, rows, index)
    else:
        answer["mode"] = "density"
        answer["density"] = _density(db, window, wparams, rows, index, start, end, width, color_by, total, mean_ms)
    return answer


def _attempts(db: SessionDB, window: str, params: list[Any], rows: str, index: dict[int, int]) -> list[list[Any]]:
    lane = "node_rank" if rows == "node" else "lane"
    found = db.query(
        f"""SELECT task_id, attempt_number, left(name, {NAME_CHARS}), left(func_or_class_name, {NAME_CHARS}), state,
                   unfinished, job_id, {lane}, worker_pid, error_type, parent_task_id, actor_id, type,
                   {", ".join(column for _, column in PHASES)}, {_TO}
            FROM {TABLE} WHERE {window} ORDER BY {_FROM}, task_id, attempt_number""",
        params,
    )
    return [[*r[:7], index.get(r[7], -1), *r[8:]] for r in found]


def _density(
    db: SessionDB,
    window: str,
    params: list[Any],
    rows: str,
    index: dict[int, int],
    start: float,
    end: float,
    width: int,
    color_by: str,
    total: int,
    mean_ms: float,
) -> dict[str, Any]:
    lane = "node_rank" if rows == "node" else "lane"
    key = COLOR_BY[color_by]
    top: list[str] | None = None
    if color_by == "state":
        keys = max(1, len(_facets(db)["states"]))
    else:
        top = [
            r[0]
            for r in db.query(
                f"SELECT {key} FROM {TABLE} WHERE {window} GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT {MAX_KEYS - 1}",
                params,
            )
        ]
        keys = len(top) + 1
    # A lane and key's count changes at most twice per attempt and once per bucket: with few attempts every
    # bucket can be sent; with many, only as many buckets as keep lanes x keys x buckets within MAX_RUNS.
    buckets = width if 2 * total <= MAX_RUNS else max(1, min(width, MAX_RUNS // max(1, len(index) * keys)))
    # Zoomed out, most attempts fall in one or two buckets: counting each (lane, key, bucket) directly is a hash
    # aggregate over about `total` rows, where runs would need a sort. Zoomed in, attempts span many buckets,
    # and runs cost what the attempts cost whatever their length.
    cells = (mean_ms or 0) * buckets / (end - start) + 1 <= CELL_SPAN
    found = (
        _cells(db, window, params, lane, key, top, start, end, buckets)
        if cells
        else _runs(db, window, params, lane, key, top, start, end, buckets)
    )
    lanes_found, keys_found, bucket, count = found
    names = sorted(set(keys_found), key=lambda k: (k == OTHER, k))
    code = {name: i for i, name in enumerate(names)}
    return {
        "encoding": "cells" if cells else "runs",
        "buckets": buckets,
        "keys": names,
        "lane": [index.get(v, -1) for v in lanes_found],
        "key": [code[k] for k in keys_found],
        "bucket": bucket,
        "count": count,
    }


def _keyed(key: str, top: list[str] | None) -> tuple[str, list[Any]]:
    if top is None:
        return key, []
    if not top:
        return f"'{OTHER}'", []
    return f"CASE WHEN {key} IN ({', '.join('?' * len(top))}) THEN {key} ELSE '{OTHER}' END", list(top)


def _cells(
    db: SessionDB,
    window: str,
    params: list[Any],
    lane: str,
    key: str,
    top: list[str] | None,
    start: float,
    end: float,
    buckets: int,
) -> list[list[Any]]:
    """The columns lane, key, bucket, count of every bucket with attempts in it."""
    scale = buckets / (end - start)
    keyed, kparams = _keyed(key, top)
    return db.columns(
        f"""
        WITH a AS (
            SELECT {lane} AS lane, {keyed} AS k, least(greatest(0, floor(({_FROM} - ?) * ?)), ? - 1)::BIGINT AS b0,
                   least(floor(({_TO} - ?) * ?)::BIGINT + 1, ?) AS b1
            FROM {TABLE} WHERE {window})
        -- Each attempt's first bucket by a plain count; only the attempts that reach further are unnested.
        SELECT lane, k, b, sum(c)::BIGINT AS c FROM (
            SELECT lane, k, b0 AS b, count(*) AS c FROM a GROUP BY ALL
            UNION ALL
            SELECT lane, k, unnest(range(b0 + 1, b1)) AS b, 1 AS c FROM a WHERE b1 > b0 + 1)
        GROUP BY ALL ORDER BY lane, k, b
        """,
        kparams + [start, scale, buckets, start, scale, buckets] + params,
    )


def _runs(
    db: SessionDB,
    window: str,
    params: list[Any],
    lane: str,
    key: str,
    top: list[str] | None,
    start: float,
    end: float,
    buckets: int,
) -> list[list[Any]]:
    """The columns lane, key, bucket, count of the runs."""
    scale = buckets / (end - start)
    keyed, kparams = _keyed(key, top)
    return db.columns(
        f"""
        WITH a AS (
            SELECT {lane} AS lane, {keyed} AS k,
                   least(greatest(0, floor(({_FROM} - ?) * ?)), ? - 1)::BIGINT AS b0,
                   floor(({_TO} - ?) * ?)::BIGINT + 1 AS b1
            FROM {TABLE} WHERE {window}),
        steps AS (
            SELECT lane, k, b, sum(d) AS d FROM (
                SELECT lane, k, b0 AS b, 1 AS d FROM a
                UNION ALL SELECT lane, k, b1, -1 FROM a WHERE b1 < ?)
            GROUP BY ALL HAVING sum(d) <> 0)
        SELECT lane, k, b, sum(d) OVER (PARTITION BY lane, k ORDER BY b) AS c FROM steps ORDER BY lane, k, b
        """,
        kparams + [start, scale, buckets, start, scale] + params + [buckets],
    )
