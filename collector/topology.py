"""The collector as a topology (Vector's model): sources -> sinks, built once per session from the settings.

Every source ends as a folder of growing files: Ray's own (the session's logs/, its Grafana dashboards) or a
spool the collector fills (metrics scrapes, dashboard API snapshots, Ray's HTTP events). The files on disk are
the buffer between sources and sinks, so a slow sink never holds up a source and a crash loses nothing: each
sink keeps its own checkpoint of how far it got. One cycle lists every source once and offers the listing to
each sink that takes that source; a file the source no longer appends to is released (deleted, for a spool)
only once every sink that takes it holds it whole.

    logs ───────┬──> sls          log lines      ┐ each on when its SLS store is named;
                ├──> sls_events   export events  │ their own threads, never in the archive's way
    ray_events ─┼──> sls_events   HTTP events    │ (collector/sinks/sls/outputs.py)
    metrics ────┼──> sls_metrics  remote write   ┘
    grafana ────┤
    api ────────┴──> archive  (every source: byte-range segments, resumed from what the archive holds)
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from archive import api_snapshots, grafana, metrics_blocks
from archive.layout import SessionRef
from archive.manifest import NodeRecord
from archive.storage import Store
from collector.components import Sink, Source
from collector.settings import CollectorSettings
from collector.sinks.archive import ArchiveSink
from collector.sinks.generations import ShipStats
from collector.sources.folders import EventSpool, PulledSpool, RayFolder, event_stats, poll_stats, scrape_stats
from collector.sources.session_dir import SessionDir
from collector.spool import Spool
from collector.stats import ComponentMetrics


class Topology:
    def __init__(self, sources: list[Source], sinks: list[Sink]) -> None:
        self.sources = sources
        # Sinks are offered each listing in this order: put those that never block (SLS) before the archive, so
        # an archive that fails a cycle does not hold them back.
        self.sinks = sinks

    def sinks_of(self, source: str) -> list[Sink]:
        return [s for s in self.sinks if s.inputs is None or source in s.inputs]

    def register(self, metrics: ComponentMetrics) -> None:
        metrics.replace(
            {**{(s.name, "source"): s.stats for s in self.sources}, **{(s.name, "sink"): s.stats for s in self.sinks}}
        )

    def start(self) -> None:
        for source in self.sources:
            source.start()

    def cycle(self, final: bool = False) -> int:
        """List every source once and offer it to its sinks; returns how many files had something pending
        (0: at the time of listing, every sink held everything)."""
        pending = 0
        for source in self.sources:
            listing = source.list()
            sinks = self.sinks_of(source.name)
            for sink in sinks:
                pending += sink.offer(source.name, listing, final)
            for f in listing.files:
                if f.path in listing.finished and all(s.holds(source.name, f) for s in sinks):
                    source.release(f.path)
        for sink in self.sinks:
            sink.flush()
        return pending

    def stop_sources(self) -> None:
        for source in self.sources:
            source.flush()
            source.close()


@dataclass
class SessionState:
    """Where the collector keeps one session's state: beside Ray's session directories by default (Ray's shared
    temp volume), so that it survives a collector restart."""

    checkpoint: Path  # the archive sink's inode checkpoint
    spools: Path  # the pulled sources' spools and the SLS checkpoint

    @classmethod
    def of(cls, state_dir: Path, settings: CollectorSettings, session: SessionDir) -> SessionState:
        # Two collectors may follow one session into two archives: their state must not mix.
        archive_tag = hashlib.sha1(settings.archive.encode()).hexdigest()[:8]
        name = f"{session.name}.{settings.namespace}.{settings.cluster}.{archive_tag}"
        return cls(state_dir / f"{name}.json", state_dir / name)


def build(
    settings: CollectorSettings,
    store: Store,
    ref: SessionRef,
    session: SessionDir,
    node: NodeRecord,
    state: SessionState,
    events: Spool | None = None,
    event_counts: Callable[[], dict] | None = None,
    on_shipped: Callable[[str, ShipStats], None] = lambda source, stats: None,
) -> Topology:
    """One session's topology. Pullers run only when the collector stays (not --once); their spools are shipped
    either way, so what a previous run left is archived."""
    pulling = not settings.once
    sources: list[Source] = [RayFolder("logs", session.logs)]
    if node.is_head:  # Ray writes them once at start; archived like logs, so a rewrite is a new generation
        sources.append(RayFolder(grafana.SOURCE, session.path / grafana.SESSION_DIR))
    sources.append(_metrics(settings, session, state.spools / metrics_blocks.SOURCE, pulling))
    sources.append(_api(settings, session, state.spools / api_snapshots.SOURCE, pulling and node.is_head))
    if events is not None and event_counts is not None:
        sources.append(EventSpool(events, lambda: event_stats(event_counts())))
    sinks: list[Sink] = []
    if settings.sls_endpoint:
        from collector.sinks.sls import outputs  # the SDK (and pyarrow for log lines): only when used

        folders = {s.name: s.folder for s in sources}
        sinks += outputs.build(settings, ref, node.node_id, session.logs, folders, state.spools)
    sinks.append(
        ArchiveSink(store, ref.node(node.node_id), {s.name: s.folder for s in sources}, state.checkpoint, on_shipped)
    )
    return Topology(sources, sinks)


def _metrics(settings: CollectorSettings, session: SessionDir, folder: Path, pulling: bool) -> PulledSpool:
    if not pulling or settings.metrics_interval <= 0:
        return PulledSpool(metrics_blocks.SOURCE, folder)
    from collector.sources.metrics import MetricsScraper

    scraper = MetricsScraper(folder, settings.cluster, session=session, interval=settings.metrics_interval)
    return PulledSpool(
        metrics_blocks.SOURCE,
        folder,
        scraper.run,
        scraper.scrape_once,
        scraper.close,
        lambda: scrape_stats(scraper.stats),
    )


def _api(settings: CollectorSettings, session: SessionDir, folder: Path, pulling: bool) -> PulledSpool:
    if not pulling or settings.api_interval <= 0:
        return PulledSpool(api_snapshots.SOURCE, folder)
    from collector.sources.dashboard_api import (
        DashboardAddress,
        DashboardApiPoller,
    )

    poller = DashboardApiPoller(folder, DashboardAddress(session), interval=settings.api_interval)
    return PulledSpool(
        api_snapshots.SOURCE, folder, poller.run, poller.poll_once, poller.close, lambda: poll_stats(poller.stats)
    )
