"""The history server's FastAPI application."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from archive.storage import Store
from historyserver import services
from historyserver.errors import HistoryError
from historyserver.folding import LiveFolder
from historyserver.routes import (
    access,
    clusters,
    framework_errors,
    grafana,
    live_api,
    live_prometheus,
    log_view,
    pages,
    prometheus_api,
    ray_api,
    ray_cluster,
    ray_logs,
    ray_tasks,
    ray_ui,
    search_api,
    search_pages,
    sessions_api,
)
from historyserver.routes.errors import handle_history_error
from historyserver.server_metrics import RequestTimer
from historyserver.settings import ServerSettings

log = logging.getLogger("rayhistory.server")


def create_app(settings: ServerSettings, store: Store) -> FastAPI:
    svc = services.build(settings, store)  # everything routes use, typed, built once

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Running sessions are folded while the server serves (not in tests that never start the app).
        folder = LiveFolder(svc.catalog, svc.warehouse, settings.fold_interval) if settings.fold_running else None
        if folder:
            folder.start()
        yield
        if folder:
            folder.stop()
        if not svc.warehouse.wait_for_write_backs(timeout=60):
            log.warning("some compacted tables were not written back to the archive before the server stopped")

    app = FastAPI(title="Ray history server", docs_url="/api/docs", openapi_url="/api/openapi.json", lifespan=lifespan)
    app.state.services = svc
    # Who asks and what they may see, resolved once per request before any route.
    app.add_middleware(access.AccessMiddleware, config=svc.access, metrics=svc.access_metrics)
    app.add_middleware(RequestTimer, metrics=svc.server_metrics)  # outermost: refusals at the edge count too
    if settings.compact_on_end:
        svc.catalog.on_closed.append(svc.compactor.submit)
    app.add_exception_handler(HistoryError, handle_history_error)
    framework_errors.install(app)
    app.include_router(access.router)
    app.include_router(sessions_api.router)
    app.include_router(search_api.router)
    app.include_router(live_api.router)
    app.include_router(clusters.router)
    app.include_router(pages.router)
    app.include_router(log_view.router)
    app.include_router(search_pages.router)
    app.mount("/assets", StaticFiles(directory=pages.STATIC_DIR), name="assets")
    for module in (ray_api, ray_tasks, ray_logs, ray_cluster, prometheus_api, live_prometheus, grafana):
        app.include_router(module.router)
    app.include_router(ray_ui.router)  # last: it serves Ray's web UI files under /sessions/{id}/
    return app
