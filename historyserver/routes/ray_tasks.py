"""Ray's task summaries, task timeline and placement groups for one archived session, in Ray 2.60's shapes."""

from __future__ import annotations

import json
from datetime import datetime

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response, StreamingResponse
from starlette.background import BackgroundTask

from historyserver import services
from historyserver.errors import BadRequest
from historyserver.queries import placement_groups
from historyserver.queries.session_db import Filter, SessionDB
from historyserver.queries.summaries import summarize_tasks, summary_json
from historyserver.queries.timeline import chrome_trace_json
from historyserver.routes.deps import SESSION_PREFIX, ray_limit, ray_ok, session_db, state_envelope

router = APIRouter(prefix=SESSION_PREFIX)


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
def timeline(
    request: Request, job_id: str | None = None, download: str | None = None, db: SessionDB = Depends(session_db)
) -> Response:
    headers = None
    if download == "1":
        # Ray's file name, "None" included when no job is given.
        stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
        headers = {"Content-Disposition": f'attachment; filename="timeline-{job_id}-{stamp}.json"'}
    ticket = services.of(request).gates.large.hold()  # held while the trace streams
    return StreamingResponse(
        ticket.stream(chrome_trace_json(db, job_id)),
        media_type="application/json",
        headers=headers,
        background=BackgroundTask(ticket.release),
    )


@router.get("/api/v0/placement_groups")
def list_placement_groups(
    detail: bool = False,
    limit: int | None = None,
    filter_keys: list[str] = Query(default=[]),
    filter_predicates: list[str] = Query(default=[]),
    filter_values: list[str] = Query(default=[]),
    db: SessionDB = Depends(session_db),
) -> Response:
    page = placement_groups.list_placement_groups(
        db, _filters(filter_keys, filter_predicates, filter_values), detail, ray_limit(limit)
    )
    return state_envelope(page.total, page.num_filtered, page.rows)
