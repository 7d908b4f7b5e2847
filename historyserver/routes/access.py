"""Authentication at the edge: every request gets its principal's Access once, here, before any route runs.

Routes never check users: the session lookup, the catalog listing, the PromQL scopes and the live list read
`request.state.access` (routes/deps.py). Unauthenticated requests are 401 in their API family's error shape;
a browser asking for a page (Accept: text/html) is sent to the login form instead. /healthz, /readyz, /metrics,
/login, /logout and the pages' static assets are open.
"""

from __future__ import annotations

import logging
from urllib.parse import parse_qsl, quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    generate_latest,
)
from starlette.types import ASGIApp, Receive, Scope, Send

from historyserver import services
from historyserver.access.config import AccessConfig
from historyserver.access.metrics import AccessMetrics
from historyserver.access.principal import ANONYMOUS, Access, Principal
from historyserver.routes import prometheus_api
from historyserver.routes.errors import ours, ray_envelope

router = APIRouter()
log = logging.getLogger("rayhistory.access")

COOKIE = "rayhistory_auth"
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/login", "/logout"})
OPEN_PREFIXES = ("/assets/",)


class AccessMiddleware:
    def __init__(self, app: ASGIApp, config: AccessConfig, metrics: AccessMetrics) -> None:
        self.app = app
        self.config = config
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        principal, reason, problem = authenticate(self.config, request)
        path = scope["path"]
        if principal is None and path not in OPEN_PATHS and not path.startswith(OPEN_PREFIXES):
            self.metrics.refused.labels(reason).inc()
            await unauthenticated(self.config, request, problem)(scope, receive, send)
            return
        scope.setdefault("state", {})["access"] = Access(principal or ANONYMOUS, self.config.policy)
        await self.app(scope, receive, send)


def authenticate(config: AccessConfig, request: Request) -> tuple[Principal | None, str, str]:
    """(principal or None, reason label, message saying what to do)."""
    if config.auth == "none":
        return ANONYMOUS, "", ""
    if config.auth == "token":
        return _from_token(config, request)
    return _from_proxy(config, request)


def _from_token(config: AccessConfig, request: Request) -> tuple[Principal | None, str, str]:
    assert config.tokens is not None and config.cookies is not None
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None, "bad_header", "the Authorization header must be 'Bearer <token>'"
        principal = config.tokens.authenticate(token.strip())
        if principal is None:
            return None, "unknown_token", "the bearer token is not one this server knows; ask for a valid one"
        return principal, "", ""
    cookie = request.cookies.get(COOKIE)
    if cookie:
        token_digest = config.cookies.verify(cookie)
        principal = config.tokens.find(token_digest) if token_digest else None
        if principal is None:
            return None, "expired_cookie", "the login has expired or its token was withdrawn: log in again at /login"
        return principal, "", ""
    return (
        None,
        "no_credentials",
        ("authentication required: send 'Authorization: Bearer <token>', or log in at /login in a browser"),
    )


def _from_proxy(config: AccessConfig, request: Request) -> tuple[Principal | None, str, str]:
    peer = request.client.host if request.client else None  # the socket's peer: X-Forwarded-For is not believed
    user = request.headers.get(config.user_header)
    groups = request.headers.get(config.groups_header)
    if not config.trusts(peer):
        if user is not None or groups is not None:
            log.warning(
                "refused %s/%s headers from %s, which is not in --auth-trusted-proxies",
                config.user_header,
                config.groups_header,
                peer,
            )
            return (
                None,
                "untrusted_proxy",
                (
                    f"identity headers ({config.user_header}, {config.groups_header}) are "
                    f"accepted only from the authenticating proxy, and {peer} is not it: "
                    "go through the proxy"
                ),
            )
        return None, "no_credentials", "authentication required: open this server through its authenticating proxy"
    if not (user or "").strip():
        return (
            None,
            "no_user",
            (
                f"the proxy sent no {config.user_header} header: configure it to pass the "
                "authenticated user (oauth2-proxy: --pass-user-headers)"
            ),
        )
    names = tuple(g.strip() for g in (groups or "").split(",") if g.strip())
    return Principal(user.strip(), names), "", ""


def wants_page(request: Request) -> bool:
    return request.method in ("GET", "HEAD") and "text/html" in request.headers.get("accept", "")


def unauthenticated(config: AccessConfig, request: Request, message: str) -> Response:
    path = request.url.path
    if wants_page(request) and not prometheus_api.is_prometheus_path(path):
        if config.auth == "token":
            target = path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/login?next={quote(target, safe='/')}", status_code=303)
        return login_page(request, config, message, status=401)
    if prometheus_api.is_prometheus_path(path):
        response: Response = prometheus_api.error(401, "unauthorized", message)
    elif path.startswith("/sessions/"):
        response = ray_envelope(401, message)
    else:
        response = ours(401, "Unauthenticated", message)
    if config.auth == "token":
        response.headers["WWW-Authenticate"] = 'Bearer realm="rayhistory"'
    return response


def login_page(
    request: Request,
    config: AccessConfig,
    message: str = "",
    next_path: str = "/",
    status: int = 200,
    reload_to: str = "",
) -> HTMLResponse:
    from historyserver.routes.pages import templates

    context = {"mode": config.auth, "message": message, "next": next_path, "reload_to": reload_to}
    return templates.TemplateResponse(
        request, "login.html", context, status_code=status, headers={"Cache-Control": "no-store"}
    )


def safe_next(value: str | None) -> str:
    """Only a path of this server: an open redirect would let a link send a fresh login elsewhere."""
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")):
        return "/"
    return value


def _https(request: Request) -> bool:
    """Whether the browser talks https to us or to a TLS-terminating proxy in front (X-Forwarded-Proto: a client
    that lies about it only loses the Secure flag on its own cookie)."""
    return request.url.scheme == "https" or request.headers.get("x-forwarded-proto", "").lower() == "https"


def _config(request: Request) -> AccessConfig:
    return services.of(request).access


@router.get("/login", include_in_schema=False)
def login_form(request: Request, next: str = "/", checked: str = "") -> Response:  # noqa: A002 - a URL's name
    config = _config(request)
    target = safe_next(next)
    principal, _, _ = authenticate(config, request)
    if config.auth == "none" or (config.auth == "token" and principal is not None):
        return RedirectResponse(target, status_code=303)
    if config.auth == "token" and not checked:
        # A SameSite=Strict cookie is not sent on a navigation that started on another site (a link pasted in a
        # chat), nor on the redirects that follow it. One reload started by this page is same-site: if the
        # browser holds a login, that request carries it and goes straight on to the target.
        again = f"/login?next={quote(target, safe='/')}&checked=1"
        return login_page(request, config, next_path=target, reload_to=again)
    return login_page(request, config, next_path=target)


@router.post("/login", include_in_schema=False)
async def login(request: Request) -> Response:
    config = _config(request)
    if config.auth != "token":
        return ours(404, "NotFound", f"there is no login form with --auth {config.auth}")
    form = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
    target = safe_next(form.get("next"))
    token = form.get("token", "").strip()
    assert config.tokens is not None and config.cookies is not None
    if not token or config.tokens.authenticate(token) is None:
        services.of(request).access_metrics.logins.labels("refused").inc()
        return login_page(request, config, "That token is not valid.", target, status=401)
    services.of(request).access_metrics.logins.labels("ok").inc()
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        COOKIE,
        config.cookies.issue(token),
        max_age=config.cookies.max_age,
        path="/",
        httponly=True,
        samesite="strict",
        secure=_https(request),
    )
    return response


@router.api_route("/logout", methods=["GET", "POST"], include_in_schema=False)
def logout(request: Request) -> Response:
    response = RedirectResponse("/login" if _config(request).auth == "token" else "/", status_code=303)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict", secure=_https(request))
    return response


@router.get("/healthz", include_in_schema=False)
def healthz() -> dict:
    return {"status": "ok"}  # the process answers; the archive's state is /readyz's


@router.get("/readyz", include_in_schema=False)
def readyz(request: Request) -> Response:
    catalog = services.of(request).catalog
    try:
        catalog.sessions()  # the first call lists the archive; later ones read memory
    except Exception as e:  # noqa: BLE001 - any failure to list means: not ready
        log.warning("not ready: the archive cannot be listed: %s", e)
        return ours(503, "NotReady", "the archive cannot be listed; the server's log says why")
    if catalog.last_error:  # open to anyone: the details (bucket, endpoint) stay in the log
        return ours(503, "NotReady", "the last listing of the archive failed; the server's log says why")
    return JSONResponse({"status": "ready"})


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    return Response(generate_latest(services.of(request).access_metrics.registry), media_type=CONTENT_TYPE_LATEST)
