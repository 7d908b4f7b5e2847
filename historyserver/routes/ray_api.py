"""Ray's dashboard API for one archived session, under /sessions/{id}/, in Ray's exact response shapes."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import RedirectResponse, Response

from historyserver.compaction.records import TASK_SUMMARY_KEYS as SUMMARY_TASK_KEYS
from historyserver.errors import BadRequest, EntityNotFound
from historyserver.queries.session_db import Filter, SessionDB
from historyserver.routes.deps import (
    LARGE_PAGE,
    SESSION_PREFIX,
    large_answer,
    ray_limit,
    ray_ok,
    session_db,
    state_envelope,
)

router = APIRouter(prefix=SESSION_PREFIX)


def _filters(keys: list[str], predicates: list[str], values: list[str]) -> list[Filter]:
    if not (len(keys) == len(predicates) == len(values)):
        raise BadRequest("filter_keys, filter_predicates and filter_values must have the same number of entries")
    return [Filter(k, p, v) for k, p, v in zip(keys, predicates, values)]


@router.get("", include_in_schema=False)
def session_root(session_id: str) -> RedirectResponse:
    # Ray's UI loads ./static/... relative to the page: it needs the trailing slash.
    return RedirectResponse(f"/sessions/{session_id}/", status_code=307)


@router.get("/api/jobs/")
def list_jobs(db: SessionDB = Depends(session_db)) -> list[dict]:
    return db.jobs()


@router.get("/api/jobs/{job_or_submission_id}")
def get_job(job_or_submission_id: str, db: SessionDB = Depends(session_db)) -> dict:
    job = db.job(job_or_submission_id)
    if job is None:
        raise EntityNotFound(f"Job {job_or_submission_id} does not exist")
    return job


@router.get("/api/v0/tasks")
def list_tasks(
    request: Request,
    detail: bool = False,
    limit: int | None = None,
    filter_keys: list[str] = Query(default=[]),
    filter_predicates: list[str] = Query(default=[]),
    filter_values: list[str] = Query(default=[]),
    exclude_driver: bool = True,
    db: SessionDB = Depends(session_db),
) -> Response:
    page = db.tasks(
        _filters(filter_keys, filter_predicates, filter_values),
        ray_limit(limit),
        exclude_driver,
        raw=detail,
        admit=lambda rows: large_answer(request, rows > LARGE_PAGE),
    )
    if detail:  # the stored records are Ray's detail rows: spliced into the answer as they are
        return state_envelope(page.total, page.num_filtered, page.rows, raw=True)
    return state_envelope(page.total, page.num_filtered, [{k: r[k] for k in SUMMARY_TASK_KEYS} for r in page.rows])


# Ray's NodeState (ray/util/state/common.py) declares these as detail columns: listed only with ?detail=1.
NODE_DETAIL_KEYS = ("start_time_ms", "end_time_ms")


@router.get("/api/v0/nodes")
def list_nodes(limit: int | None = None, detail: bool = False, db: SessionDB = Depends(session_db)) -> Response:
    nodes = db.nodes()
    if not detail:
        nodes = [{k: v for k, v in n.items() if k not in NODE_DETAIL_KEYS} for n in nodes]
    return state_envelope(len(nodes), len(nodes), nodes[: ray_limit(limit)])


@router.get("/api/v0/workers")
def list_workers(limit: int | None = None, db: SessionDB = Depends(session_db)) -> Response:
    """Derived from tasks, worker log files and drivers: a dead session has no worker table of its own."""
    workers = db.workers()
    return state_envelope(len(workers), len(workers), workers[: ray_limit(limit)])


@router.get("/logical/actors")
def list_actors(db: SessionDB = Depends(session_db)) -> dict:
    actors = db.actors()
    return ray_ok({"actors": {a["actorId"]: a for a in actors}}, "All actors fetched.")


@router.get("/logical/actors/{actor_id}")
def get_actor(actor_id: str, db: SessionDB = Depends(session_db)) -> dict:
    actor = db.actor(actor_id)
    if actor is None:
        raise EntityNotFound(f"Actor {actor_id} does not exist in this session")
    return ray_ok({"detail": actor}, "Actor details fetched.")
