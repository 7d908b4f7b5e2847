"""Ray's task summaries, task timeline and placement groups for one archived session, in Ray 2.60's shapes."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from historyserver.errors import BadRequest
from historyserver.queries.session_db import Filter, SessionDB
from historyserver.queries.summaries import summarize_tasks, summary_json
from historyserver.queries.timeline import chrome_trace
from historyserver.routes.deps import SESSION_PREFIX, ray_limit, ray_ok, session_db, state_envelope

router = APIRouter(prefix=SESSION_PREFIX)

PLACEMENT_GROUPS_FILE = "placement_groups.parquet"  # written by a later collector from polled API snapshots
# Ray's PlacementGroupState: filterable columns, and the columns shown without detail=1.
PG_FILTER_COLUMNS = {"placement_group_id", "name", "creator_job_id", "state", "is_detached"}
PG_SUMMARY_COLUMNS = ("placement_group_id", "name", "creator_job_id", "state")


def _filters(keys: list[str], predicates: list[str], values: list[str]) -> list[Filter]:
    if not (len(keys) == len(predicates) == len(values)):
        raise BadRequest("filter_keys, filter_predicates and filter_values must have the same number of entries")
    return [Filter(k, p, v) for k, p, v in zip(keys, predicates, values)]


@router.get("/api/v0/tasks/summarize")
def summarize(
    summary_by: str | None = None,
    filter_keys: list[str] = Query(default=[]),
    filter_predicates: list[str] = Query(default=[]),
    filter_values: list[str] = Query(default=[]),
    db: SessionDB = Depends(session_db),
) -> Response:
    summary = summarize_tasks(db, _filters(filter_keys, filter_predicates, filter_values), summary_by)
    # Serialized here, not by FastAPI's encoder: a lineage tree can be deeper than a recursive encoder goes.
    marker = "\u0000summary\u0000"
    text = json.dumps(ray_ok({"result": marker})).replace(json.dumps(marker), summary_json(summary), 1)
    return Response(text, media_type="application/json")


@router.get("/api/v0/tasks/timeline")
def timeline(job_id: str | None = None, download: str | None = None,
             db: SessionDB = Depends(session_db)) -> Response:
    headers = None
    if download == "1":
        # Ray's file name, "None" included when no job is given.
        stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
        headers = {"Content-Disposition": f'attachment; filename="timeline-{job_id}-{stamp}.json"'}
    return Response(json.dumps(chrome_trace(db, job_id)), media_type="application/json", headers=headers)


@router.get("/api/v0/placement_groups")
def list_placement_groups(
    detail: bool = False,
    limit: int | None = None,
    filter_keys: list[str] = Query(default=[]),
    filter_predicates: list[str] = Query(default=[]),
    filter_values: list[str] = Query(default=[]),
    db: SessionDB = Depends(session_db),
) -> dict:
    filters = _filters(filter_keys, filter_predicates, filter_values)
    groups = _placement_groups(db)
    matched = [g for g in groups if all(_matches(g, f) for f in filters)]
    matched.sort(key=lambda g: g.get("placement_group_id") or "")
    rows = matched[: ray_limit(limit)]
    if not detail:
        rows = [{k: g.get(k) for k in PG_SUMMARY_COLUMNS} for g in rows]
    return state_envelope(len(groups), len(matched), rows)


def _placement_groups(db: SessionDB) -> list[dict[str, Any]]:
    """Every archived placement group, Ray-shaped; none until the session holds a placement_groups table
    (no event stream carries placement groups: only polled API snapshots can fill it)."""
    path = db.dir / PLACEMENT_GROUPS_FILE
    if not path.exists():
        return []
    return [json.loads(r[0]) for r in db.query("SELECT record FROM read_parquet(?)", [str(path)])]


def _matches(group: dict[str, Any], f: Filter) -> bool:
    """Ray's do_filter: strings compare case-insensitively, booleans and integers are parsed from the value."""
    key = f.key.lower()
    if key not in PG_FILTER_COLUMNS:
        raise BadRequest(f"filter key {f.key!r} is not supported for placement groups; use one of "
                         f"{sorted(PG_FILTER_COLUMNS)}")
    if f.predicate not in ("=", "!="):
        raise BadRequest(f"filter predicate {f.predicate!r} is not supported; use '=' or '!='")
    if key not in group:
        return False
    value = group[key]
    if isinstance(value, bool):
        if f.value.lower() not in ("true", "false", "1", "0"):
            raise BadRequest(f"filter value {f.value!r} for {key} must be true or false")
        equal = value == (f.value.lower() in ("true", "1"))
    elif isinstance(value, str):
        equal = value.lower() == f.value.lower()
    else:
        equal = value == f.value
    return equal if f.predicate == "=" else not equal
