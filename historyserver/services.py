"""Everything a request may use, built once by the app factory from the settings: one typed object handed to the
routes (`services.of(request)`), instead of attributes attached to the app here and there, or caches held by
modules for the whole process."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fastapi import Request

from archive.storage import Store
from historyserver.access import config as access_config
from historyserver.access.config import AccessConfig
from historyserver.access.metrics import AccessMetrics
from historyserver.admission import Gate
from historyserver.catalog import Catalog
from historyserver.compaction.background import BackgroundCompactor
from historyserver.live.kube import LiveClusters, LiveSettings
from historyserver.queries.metrics_store import MetricsCache
from historyserver.queries.session_series import FailureCache, warehouse_tables
from historyserver.search.log_index import IndexCache
from historyserver.server_metrics import ServerMetrics
from historyserver.settings import ServerSettings
from historyserver.warehouse import Warehouse


@dataclass(frozen=True)
class Gates:
    """Admission of heavy work (historyserver/admission.py): a bounded number at once, then 503 + Retry-After."""

    queries: Gate
    large: Gate
    compactions: Gate
    searches: Gate


@dataclass
class Services:
    settings: ServerSettings
    store: Store
    access: AccessConfig  # who asks and what they may see (raises AccessConfigError when the settings are wrong)
    access_metrics: AccessMetrics  # owns the /metrics registry
    server_metrics: ServerMetrics  # requests, compactions, caches, refusals, in the same registry
    catalog: Catalog
    warehouse: Warehouse
    compactor: BackgroundCompactor  # the one background compactor (--compact-on-end, searches across sessions)
    live: LiveClusters
    gates: Gates
    metrics_cache: MetricsCache  # PromQL's series indexes and decoded samples, shared by requests
    session_failures: FailureCache  # the catalog-derived series' failure counts
    log_indexes: IndexCache  # log search: each session's log-table statistics, read once


def build(settings: ServerSettings, store: Store) -> Services:
    wait = settings.queue_wait
    gates = Gates(
        queries=Gate("PromQL queries", settings.max_concurrent_queries, wait, "max-concurrent-queries"),
        large=Gate("large answers", settings.max_concurrent_large, wait, "max-concurrent-large"),
        compactions=Gate("compactions", settings.max_concurrent_compactions, wait, "max-concurrent-compactions"),
        searches=Gate("log searches", settings.max_concurrent_searches, wait, "max-concurrent-searches"),
    )
    warehouse = Warehouse(
        store,
        Path(settings.cache_dir),
        running_refresh=settings.running_refresh,
        gate=gates.compactions,
        compaction_memory=settings.compaction_memory,
        fold_running=settings.fold_running,
    )
    access_metrics = AccessMetrics()
    svc = Services(
        settings=settings,
        store=store,
        access=access_config.load(settings),
        access_metrics=access_metrics,
        server_metrics=ServerMetrics(access_metrics.registry),
        catalog=Catalog(store, ttl=settings.catalog_ttl),
        warehouse=warehouse,
        compactor=BackgroundCompactor(warehouse),
        live=LiveClusters(LiveSettings.from_settings(settings)),
        gates=gates,
        metrics_cache=MetricsCache(settings.metrics_cache_mb * 2**20),
        session_failures=FailureCache(warehouse_tables(warehouse)),
        log_indexes=IndexCache(),
    )
    svc.server_metrics.watch(svc)
    return svc


def of(request: Request) -> Services:
    services: Services = request.app.state.services
    return services
