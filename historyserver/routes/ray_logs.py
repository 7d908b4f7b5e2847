"""Ray's log API for an archived session: /api/v0/logs (a node's files by component) and /api/v0/logs/file
(a file's text, found by name, task, actor, pid or submission id), in Ray 2.60's shapes."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, StreamingResponse

from archive.layout import SessionRef
from historyserver import services
from historyserver.errors import BadRequest, EntityNotFound
from historyserver.queries import logs as q
from historyserver.queries.session_db import SessionDB
from historyserver.routes.deps import SESSION_PREFIX, ray_ok, session_db

router = APIRouter(prefix=SESSION_PREFIX)

INCOMPLETE_HEADER = "X-Rayhistory-Incomplete"


@router.get("/api/v0/logs", response_model=None)
def list_logs(
    node_id: str | None = None, node_ip: str | None = None, glob: str = "*", db: SessionDB = Depends(session_db)
) -> JSONResponse | dict:
    if not node_id and not node_ip:
        # Ray's own answer, envelope included (its data is {"result": null}, not null).
        return JSONResponse(
            {
                "result": False,
                "msg": "Both node id and node ip are not provided. Please provide at least one of them.",
                "data": {"result": None},
            },
            status_code=400,
        )
    node = q.known_node(db, node_id or None, node_ip)
    return ray_ok({"result": q.categorize(q.glob_entries(q.node_paths(db, node), glob))})


@router.get("/api/v0/logs/{media_type}")
def get_log(
    request: Request,
    session_id: str,
    media_type: str,
    node_id: str | None = None,
    node_ip: str | None = None,
    filename: str | None = None,
    actor_id: str | None = None,
    task_id: str | None = None,
    submission_id: str | None = None,
    pid: str | None = None,
    suffix: str = "out",
    attempt_number: str = "0",
    lines: str = str(q.DEFAULT_LINES),
    filter_ansi_code: str = "false",
    download_filename: str = "file.txt",
    interval: str | None = None,  # a dead cluster has nothing to follow: accepted, ignored
    timeout: str | None = None,
    db: SessionDB = Depends(session_db),
) -> StreamingResponse:
    if media_type not in ("file", "stream"):
        raise BadRequest(f"Invalid media type: {media_type}")
    if node_id and node_ip:
        raise BadRequest(
            "Both node_id and node_ip are given. Only one of them can be provided. "
            f"Given node id: {node_id}, given node ip: {node_ip}"
        )
    if not (node_id or node_ip) and not (actor_id or task_id or submission_id):
        raise BadRequest(
            "node_id or node_ip must be provided as constructor arguments when no actor or task_id is "
            "supplied as arguments."
        )
    if not (actor_id or task_id or pid or filename or submission_id):
        raise BadRequest(
            "None of actor_id, task_id, pid, submission_id or filename is provided. At least one of "
            "them is required to fetch logs."
        )
    if suffix not in ("out", "err"):
        raise BadRequest(f"Invalid suffix: {suffix}. Must be one of 'out' or 'err'.")
    n_lines = _int("lines", lines)
    if n_lines < -1:
        raise BadRequest(
            f"lines must be -1 (the whole file), 0 (Ray's default, {q.DEFAULT_LINES}) or positive, got {n_lines}"
        )

    # Ray's precedence: actor, task, submission, pid, then the filename.
    if actor_id:
        target = q.actor_target(db, actor_id, suffix)
    elif task_id:
        target = q.task_target(db, task_id, _int("attempt_number", attempt_number), suffix)
    elif submission_id:
        target = q.submission_target(db, submission_id)
    else:
        node = q.known_node(db, node_id or None, node_ip)
        if pid:
            path = q.worker_file(db, node, suffix, pid=_int("pid", pid))
            if path is None:
                raise EntityNotFound(f"Could not find a log file for pid {pid} (suffix {suffix}) on node {node}")
        else:
            path = q.check_filename(filename or "")
        target = q.Target(node, path)

    prepared = q.prepare(services.of(request).store, SessionRef.from_id(session_id), target, n_lines or q.DEFAULT_LINES)
    # Ray's headers exactly: text/plain without a charset, offered as a download.
    headers = {
        "Content-Type": "text/plain",
        "Content-Disposition": f'attachment; filename="{_safe(download_filename)}"',
    }
    if prepared.incomplete:
        headers[INCOMPLETE_HEADER] = "true"
    filter_ansi = filter_ansi_code.lower() == "true"
    return StreamingResponse(prepared.body(filter_ansi), headers=headers)


def _int(name: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise BadRequest(f"{name} must be an integer, got {value!r}") from None


def _safe(name: str) -> str:
    # The name goes into a header: keep it to printable ASCII without quotes.
    return "".join(c for c in name if " " <= c <= "~" and c not in '"\\') or "file.txt"
