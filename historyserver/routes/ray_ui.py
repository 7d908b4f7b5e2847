"""Ray's own web UI (the build shipped in the installed ray package), served unchanged under /sessions/{id}/.

The UI requests everything relative to the page (./static/..., api/jobs/), so under this prefix it talks to the
routes that rebuild that session. This router is included last: anything no other route answered lands here and
is either a file of the build or a 404 in Ray's envelope.
"""

from __future__ import annotations

import mimetypes
import re
from functools import lru_cache
from importlib.util import find_spec
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse

from historyserver.errors import EntityNotFound, HistoryError
from historyserver.routes.deps import SESSION_PREFIX, session_entry

router = APIRouter(prefix=SESSION_PREFIX)

# Names under static/ carry a content hash (main.84605326.js): a new build gets new names, so they never change.
IMMUTABLE = "public, max-age=31536000, immutable"
# index.html, favicon, manifests: same names across Ray versions; revalidate each time (Ray sends no-store).
REVALIDATE = "no-cache"
_HASHED = re.compile(r"\.[0-9a-f]{8,}\.")
CONTENT_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".txt": "text/plain; charset=utf-8",
    ".svg": "image/svg+xml",
    ".ico": "image/x-icon",
    ".png": "image/png",
    ".woff": "font/woff",
    ".woff2": "font/woff2",
    ".ttf": "font/ttf",
}


class WebUIMissing(HistoryError):
    status = 503


@lru_cache(maxsize=1)
def build_dir() -> Path:
    """ray/dashboard/client/build of the installed ray package, found without importing Ray (slow)."""
    spec = find_spec("ray")
    if spec is None or not spec.submodule_search_locations:
        raise WebUIMissing(
            "Ray's web UI is not installed here: pip install 'ray[default]==2.60.0' next to the "
            "history server (its API routes work without it)"
        )
    build = Path(spec.submodule_search_locations[0]) / "dashboard" / "client" / "build"
    if not (build / "index.html").is_file():
        raise WebUIMissing(
            f"the installed ray package has no built web UI at {build}: install 'ray[default]', which ships it"
        )
    return build.resolve()


def _file(rel: str) -> Path:
    """The build's file at rel, refusing anything that would leave the build directory."""
    root = build_dir()
    parts = rel.split("/")
    if any(p in ("..", ".") or "\\" in p or "\x00" in p for p in parts):
        raise EntityNotFound(f"{rel!r} is not a file of Ray's web UI")
    path = (root / rel).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise EntityNotFound(f"{rel!r} is neither a route of this session nor a file of Ray's web UI")
    return path


def _serve(rel: str) -> FileResponse:
    path = _file(rel)
    immutable = rel.startswith("static/") and bool(_HASHED.search(path.name))
    media_type = CONTENT_TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return FileResponse(path, media_type=media_type, headers={"Cache-Control": IMMUTABLE if immutable else REVALIDATE})


@router.get("/", include_in_schema=False)
def index(session_id: str, request: Request) -> FileResponse:
    session_entry(request, session_id)
    return _serve("index.html")


@router.get("/{rel:path}", include_in_schema=False)
def build_file(session_id: str, rel: str, request: Request) -> FileResponse:
    session_entry(request, session_id)
    return _serve(rel)
