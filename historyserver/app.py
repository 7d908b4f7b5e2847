"""The history server's FastAPI application."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from archive.storage import Store
from historyserver.access import config as access_config
from historyserver.admission import Gate
from historyserver.catalog import Catalog
from historyserver.errors import HistoryError
from historyserver.live.kube import LiveClusters, LiveSettings
from historyserver.queries.metrics_store import MetricsCache
from historyserver.queries.session_series import FailureCache, warehouse_tables
from historyserver.routes import (
    access,
    grafana,
    live_api,
    pages,
    prometheus_api,
    ray_api,
    ray_cluster,
    ray_logs,
    ray_tasks,
    ray_ui,
    sessions_api,
)
from historyserver.routes.errors import handle_history_error
from historyserver.settings import ServerSettings
from historyserver.warehouse import Warehouse


def create_app(settings: ServerSettings, store: Store) -> FastAPI:
    app = FastAPI(title="Ray history server", docs_url="/api/docs", openapi_url="/api/openapi.json")
    app.state.settings = settings
    # Who asks and what they may see, resolved once per request before any route (raises AccessConfigError).
    app.state.access_config = access_config.load(settings)
    app.state.access_metrics = access.AccessMetrics()
    app.add_middleware(access.AccessMiddleware, config=app.state.access_config, metrics=app.state.access_metrics)
    app.state.store = store
    app.state.metrics_cache = MetricsCache(settings.metrics_cache_mb * 2**20)
    app.state.live = LiveClusters(LiveSettings.from_settings(settings))
    app.state.catalog = Catalog(store, ttl=settings.catalog_ttl)
    app.state.query_gate = Gate(
        "PromQL queries", settings.max_concurrent_queries, settings.queue_wait, "max-concurrent-queries"
    )
    app.state.large_gate = Gate(
        "large answers", settings.max_concurrent_large, settings.queue_wait, "max-concurrent-large"
    )
    app.state.compaction_gate = Gate(
        "compactions", settings.max_concurrent_compactions, settings.queue_wait, "max-concurrent-compactions"
    )
    app.state.warehouse = Warehouse(
        store,
        Path(settings.cache_dir),
        running_refresh=settings.running_refresh,
        gate=app.state.compaction_gate,
        compaction_memory=settings.compaction_memory,
    )
    app.state.session_failures = FailureCache(warehouse_tables(app.state.warehouse))
    if settings.compact_on_end:
        compactor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="compactor")  # one at a time: memory
        app.state.catalog.on_closed.append(lambda entry: compactor.submit(_compact_quietly, app, entry))
    app.add_exception_handler(HistoryError, handle_history_error)
    app.include_router(access.router)
    app.include_router(sessions_api.router)
    app.include_router(live_api.router)
    app.include_router(pages.router)
    app.mount("/assets", StaticFiles(directory=pages.STATIC_DIR), name="assets")
    for module in (ray_api, ray_tasks, ray_logs, ray_cluster, prometheus_api, grafana):
        app.include_router(module.router)
    app.include_router(ray_ui.router)  # last: it serves Ray's web UI files under /sessions/{id}/
    return app


def _compact_quietly(app: FastAPI, entry) -> None:
    try:
        app.state.warehouse.db(entry, patient=True)
    except Exception:  # a visitor's request retries it and reports the error in its API's shape
        logging.getLogger("rayhistory.warehouse").exception("background compaction of %s failed", entry.ref.id)
