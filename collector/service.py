"""The collector's main loop: scan the session's logs, ship new bytes, and close the session on the way out."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Callable

from archive import grafana
from archive.errors import StoreError
from archive.layout import SessionRef
from archive.manifest import ENDED, RUNNING, NodeRecord, SessionManifest, end_marker
from archive.storage import Store
from collector import checkpoint
from collector.settings import CollectorSettings
from collector.sinks.archive import ArchiveSink, ShipStats
from collector.health import CONTENT_TYPE as HEALTH_CONTENT_TYPE, Health, counters
from collector.sources.http_events import HttpEventsSource
from collector.sources.session_dir import NotARaySession, SessionDir, scan_tree
from collector.spool import Spool


log = logging.getLogger("rayhistory.collector")


class NodeIdUnknown(RuntimeError):
    pass


class Collector:
    def __init__(self, settings: CollectorSettings, store: Store, session: SessionDir) -> None:
        self.settings = settings
        self.store = store
        self.stop_event = threading.Event()
        self.stop_reason = "once" if settings.once else "stopped"
        # On Ray's shared temp volume by default, beside the session directories: it survives a collector restart.
        self.state_dir = Path(settings.state_dir) if settings.state_dir else session.path.parent / "rayhistory-collector"
        self.health = Health(stale_after=3 * settings.interval + 60)
        self.events_spool: Spool | None = None
        self.http: HttpEventsSource | None = None
        self._attach(session)

    def _attach(self, session: SessionDir) -> None:
        """Follow one session: everything per session is reset here (a restarted Ray starts a new session)."""
        self.session = session
        self.ref = SessionRef(self.settings.namespace, self.settings.cluster, session.name)
        self.node: NodeRecord | None = None
        self.sink: ArchiveSink | None = None  # the session's logs/
        self.spool_sinks: dict[str, ArchiveSink] = {}  # ray_events, metrics, api
        self.file_sinks: dict[str, ArchiveSink] = {}  # grafana: other files of the session directory
        self._exposed: dict[str, Callable[[], dict]] = {}  # prefix -> the current stats on /metrics
        self.pullers: list = []  # the metrics scraper, the dashboard API poller: threads on pull_stop
        self.pull_stop = threading.Event()
        self.sls = None  # collector.sinks.sls.SlsSink when SLS is configured
        self._announced = False
        self._manifest_written = 0.0
        # Two collectors may follow one session into two archives: their state must not mix.
        archive_tag = hashlib.sha1(self.settings.archive.encode()).hexdigest()[:8]
        name = f"{session.name}.{self.settings.namespace}.{self.settings.cluster}.{archive_tag}"
        self.checkpoint_path = self.state_dir / f"{name}.json"
        self.session_spools = self.state_dir / name
        self._checkpointed: dict = {}

    # --- start ---------------------------------------------------------------------------------------
    def _identify(self, deadline: float) -> NodeRecord:
        """Ray writes its node id a few seconds after the session directory appears: wait for it."""
        while True:
            node_id = self.session.node_id()
            if node_id:
                return NodeRecord(
                    node_id=node_id,
                    is_head=self.session.is_head,
                    ip=self.session.node_ip(),
                    hostname=self.session.hostname(),
                    session_dir=str(self.session.path),
                    ray_version=self.session.ray_version(),
                    start_ms=self.session.start_ms,
                )
            if time.monotonic() > deadline or self.stop_event.wait(0.5):
                raise NodeIdUnknown(
                    f"no Ray node id found in {self.session.path} (no metrics_export_port_<id> file, no raylet.out); "
                    "is Ray running on this node, and is this its session directory?"
                )

    def start(self) -> None:
        self.node = self._identify(time.monotonic() + (5 if self.settings.once else 120))
        node = self.ref.node(self.node.node_id)
        inodes = checkpoint.load(self.checkpoint_path)
        self.sink = ArchiveSink(self.store, node, self.session.logs)
        self._retrying("reading what the archive holds", lambda: self.sink.resume(inodes))
        spool_dirs = {"metrics": self.session_spools / "metrics", "api": self.session_spools / "api"}
        if self.node.is_head:  # Ray writes them once at start; archived like logs, so a rewrite is a new generation
            self.file_sinks[grafana.SOURCE] = ArchiveSink(self.store, node, self.session.path / grafana.SESSION_DIR,
                                                          source=grafana.SOURCE)
            self._retrying("reading what the archive holds", lambda: self.file_sinks[grafana.SOURCE].resume(inodes))
        if self.events_spool is not None:
            spool_dirs["ray_events"] = self.events_spool.directory
        for source, directory in spool_dirs.items():
            self.spool_sinks[source] = ArchiveSink(self.store, node, directory, source=source)
            self._retrying("reading what the archive holds", lambda s=self.spool_sinks[source]: s.resume(inodes))
        self._announced = False  # node.json and the manifest: written by the first cycle that reaches the archive
        if not self.settings.once:
            self._start_pullers(spool_dirs)
        if self.settings.sls_endpoint:
            self.sls = self._sls_sink()
            self._expose("sls", lambda s=self.sls: {k: v for k, v in vars(s.stats()).items() if k != "lag_bytes"})
        log.info("collecting %s (node %s%s) into %s as session %s", self.session.path, self.node.node_id[:12],
                 ", head" if self.node.is_head else "", self.store.url, self.ref.id)

    def _retrying(self, what: str, action) -> None:
        """At start, an archive that stops answering is waited for (with backoff), not fatal: Ray goes on meanwhile."""
        delay = 1.0
        while True:
            try:
                return action()
            except StoreError as e:
                if self.stop_event.is_set():
                    raise
                log.warning("%s failed, retrying in %.0fs: %s", what, delay, e)
                self.stop_event.wait(delay)
                delay = min(delay * 2, 30.0)

    def _announce(self) -> None:
        assert self.node is not None and self.sink is not None
        self.store.put(self.sink.node.node_key, self.node.to_json())
        if self.node.is_head and not self.settings.once:
            self._write_manifest(RUNNING)
        self._announced = True

    def _sls_sink(self):
        """Log lines streamed to SLS: never in the archive's way (its own threads, its own checkpoint)."""
        from collector.sinks.sls import SlsConfig, SlsSink

        missing = [k for k in ("sls_project", "sls_logstore") if not getattr(self.settings, k)]
        key_id = os.environ.get("ALIBABA_CLOUD_ACCESS_KEY_ID", "")
        secret = os.environ.get("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "")
        if missing or not key_id or not secret:
            raise InvalidSettings("SLS is configured (--sls-endpoint) but " + ", ".join(
                [f"--{k.replace('_', '-')}" for k in missing] +
                [v for v, ok in (("ALIBABA_CLOUD_ACCESS_KEY_ID", key_id), ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", secret))
                 if not ok]) + " is missing")
        config = SlsConfig(endpoint=self.settings.sls_endpoint, project=self.settings.sls_project,
                           logstore=self.settings.sls_logstore, access_key_id=key_id, access_key_secret=secret,
                           checkpoint_path=str(self.session_spools / "sls-checkpoint.json"),
                           proxy=self.settings.sls_proxy or None)
        assert self.node is not None
        return SlsSink(config, self.node.node_id, self.session.logs)

    def _start_pullers(self, spool_dirs: dict[str, Path]) -> None:
        """The sources Ray does not write to disk: scrapes of its metrics, and (head) its dashboard API."""
        self.pull_stop = threading.Event()
        self.pullers = []
        if self.settings.metrics_interval > 0:
            from collector.sources.metrics import MetricsScraper

            self.pullers.append(MetricsScraper(spool_dirs["metrics"], self.settings.cluster, session=self.session,
                                               interval=self.settings.metrics_interval))
            self._expose("metrics", lambda p=self.pullers[-1]: dataclasses.asdict(p.stats))
        if self.node is not None and self.node.is_head and self.settings.api_interval > 0:
            from collector.sources.dashboard_api import DashboardApiPoller, dashboard_url_from_session

            self.pullers.append(DashboardApiPoller(spool_dirs["api"], dashboard_url_from_session(self.session),
                                                   interval=self.settings.api_interval))
            self._expose("api", lambda p=self.pullers[-1]: dataclasses.asdict(p.stats))
        for puller in self.pullers:
            threading.Thread(target=puller.run, args=(self.pull_stop,), name=type(puller).__name__,
                             daemon=True).start()

    def _expose(self, prefix: str, stats: Callable[[], dict]) -> None:
        """A source's or sink's stats on /metrics as rayhistory_collector_<prefix>_<field>_total. Registered once
        per prefix; a new session's puller or sink replaces the previous one's."""
        if prefix not in self._exposed:
            self.health.count(lambda: counters(prefix, self._exposed[prefix]()))
        self._exposed[prefix] = stats

    def _stop_pullers(self) -> None:
        """One last scrape and poll (Ray may already be stopping: failures are only counted), then stop."""
        self.pull_stop.set()
        for puller in self.pullers:
            (getattr(puller, "poll_once", None) or puller.scrape_once)()
            puller.close()
        self.pullers = []

    # --- run -----------------------------------------------------------------------------------------
    def ship_once(self, final: bool = False) -> ShipStats:
        assert self.sink is not None
        total = ShipStats()
        files = self.session.scan()
        if self.sls is not None:
            self.sls.offer(files)  # never blocks: SLS reads the files at its own pace
        self.sink.forget_missing({f.inode for f in files})
        for f in files:
            if self.sink.pending(f, final):
                total.add(self._count("logs", self.sink.ship(f)))
        self.sink.flush_renames()
        for source, sink in self.file_sinks.items():
            found = scan_tree(sink.base_dir) if sink.base_dir.is_dir() else []
            for f in found:
                if sink.pending(f, final):
                    total.add(self._count(source, sink.ship(f)))
        for source, sink in self.spool_sinks.items():
            total.add(self._ship_spool(source, sink, final))
        inodes = {k: v for s in (self.sink, *self.file_sinks.values(), *self.spool_sinks.values())
                  for k, v in s.inodes().items()}
        if inodes != self._checkpointed:
            checkpoint.save(self.checkpoint_path, inodes)
            self._checkpointed = inodes
        return total

    def _ship_spool(self, source: str, sink: ArchiveSink, final: bool) -> ShipStats:
        """Ship a spool's files like logs; a file that no longer grows is deleted once wholly archived."""
        total = ShipStats()
        if source == "ray_events":
            assert self.events_spool is not None
            files = [f for f in self.events_spool.files()]
            finished = {f.path for f in files if not f.active}
        else:
            files = scan_tree(sink.base_dir) if sink.base_dir.is_dir() else []
            finished = {f.path for f in files[:-1]}  # all but the newest: the source appends to that one
        sink.forget_missing({f.inode for f in files})
        for f in files:
            if sink.pending(f, final):
                total.add(self._count(source, sink.ship(f)))
            gen = sink.by_inode.get(f.inode)
            if f.path in finished and gen is not None and gen.offset >= f.size:
                if source == "ray_events":
                    self.events_spool.release(f.path)
                else:
                    (sink.base_dir / f.path).unlink(missing_ok=True)
        return total

    def _count(self, source: str, stats: ShipStats) -> ShipStats:
        self.health.shipped(source, "archive", stats.segments, stats.bytes)
        return stats

    def run(self) -> None:
        """Ship every interval until stopped, then flush the rest and mark the node (and session) ended.

        When the given session directory is Ray's `session_latest` link and Ray restarts (a new session), the old
        session is finished ("session-replaced") and the new one followed: both are archived, kept apart."""
        if self.settings.http_port and not self.settings.once:
            self._start_http()
        try:
            self._run()
        finally:
            if self.http is not None:
                self.http.stop()

    def _start_http(self) -> None:
        """Ray's HTTP event export lands in a spool (acknowledged only once on disk); /metrics and /healthz."""
        self.events_spool = Spool(self.state_dir / "ray_events", max_total_bytes=self.settings.spool_max_bytes)
        self.http = HttpEventsSource(self.events_spool, host=self.settings.http_host, port=self.settings.http_port)
        self.http.get_routes["/metrics"] = lambda: (200, HEALTH_CONTENT_TYPE, self._metrics())
        self.http.get_routes["/healthz"] = self._healthz
        self.health.count(lambda: counters("events", self.http.stats.snapshot()))
        self.http.start()

    def _metrics(self) -> bytes:
        if self.events_spool is not None:
            self.health.spool_bytes.set(self.events_spool.size)
        if self.sls is not None:
            self.health.sls_lag_bytes.set(self.sls.stats().lag_bytes)
        return self.health.metrics()

    def _healthz(self) -> tuple[int, str, bytes]:
        ok, message = self.health.healthz()
        return (200 if ok else 503), "text/plain; charset=utf-8", message.encode() + b"\n"

    def _run(self) -> None:
        self.start()
        while not self.settings.once and not self.stop_event.is_set():
            self._cycle()
            replacement = self._replacement()
            if replacement is not None:
                log.info("Ray started a new session %s; finishing %s", replacement.name, self.session.name)
                self.stop_reason = "session-replaced"
                self.finish()
                self.stop_reason = "stopped"
                self._attach(replacement)
                self.start()
                continue
            self.stop_event.wait(self.settings.interval)
        self.finish()

    def _replacement(self) -> SessionDir | None:
        try:
            current = SessionDir(self.settings.session_dir)
        except NotARaySession:
            return None  # the link points nowhere for a moment while Ray restarts
        return current if current.path != self.session.path else None

    def _cycle(self, final: bool = False) -> bool:
        try:
            if not self._announced:
                self._announce()
            if self.node and self.node.is_head and not final and not self.settings.once and \
                    time.monotonic() - self._manifest_written >= self.settings.heartbeat:
                self._write_manifest(RUNNING)
            stats = self.ship_once(final)
        except StoreError as e:
            log.warning("upload failed, will retry: %s", e)
            self.health.failed("archive")
            return False
        self.health.succeeded("archive")
        if stats.segments:
            log.info("shipped %d new segments from %d files (%.1f KiB)", stats.segments, stats.files, stats.bytes / 1024)
        return True

    def finish(self) -> None:
        """Last flush, bounded by the deadline; marks the end only once everything is stored."""
        deadline = time.monotonic() + self.settings.final_flush_deadline
        settle_until = time.monotonic() + (0 if self.settings.once else 2.0)
        self._stop_pullers()
        while True:
            ok = self._cycle(final=True)
            if ok and not self._anything_pending() and time.monotonic() >= settle_until:
                break
            if time.monotonic() > deadline:
                raise FlushIncomplete(
                    f"final upload to {self.store.url} did not finish within {self.settings.final_flush_deadline:.0f}s; "
                    "nothing was marked ended, and a restarted collector resumes where this one stopped"
                )
            time.sleep(0.5)
        assert self.node is not None and self.sink is not None
        if self.sls is not None:
            if not self.sls.close(max(1.0, deadline - time.monotonic())):
                log.warning("SLS did not acknowledge every line before the deadline; its checkpoint resumes there")
            self.sls = None
        end_ms = int(time.time() * 1000)
        self.node.end_ms = end_ms
        self.store.put(self.sink.node.node_key, self.node.to_json())
        self.store.put(self.sink.node.ended_key, end_marker(end_ms, self.stop_reason))
        if self.node.is_head:
            self._write_manifest(ENDED, end_ms)
            self.store.put(self.ref.ended_key, end_marker(end_ms, self.stop_reason))
        log.info("session %s archived; node marked ended (%s)", self.ref.id, self.stop_reason)

    def _anything_pending(self) -> bool:
        if any(self.sink.pending(f, True) for f in self.session.scan()):
            return True
        for source, sink in self.spool_sinks.items():
            files = self.events_spool.files() if source == "ray_events" else (
                scan_tree(sink.base_dir) if sink.base_dir.is_dir() else [])
            if any(sink.pending(f, True) for f in files):
                return True
        return False

    def _write_manifest(self, status: str, end_ms: int | None = None) -> None:
        assert self.node is not None
        manifest = SessionManifest(
            namespace=self.ref.namespace,
            cluster=self.ref.cluster,
            session_name=self.ref.session,
            ray_version=self.node.ray_version,
            start_ms=self.session.start_ms,
            end_ms=end_ms,
            status=status,
            ended_by=self.stop_reason if status == ENDED else None,
            nodes=[self.node],
            last_seen_ms=int(time.time() * 1000),
        )
        body = manifest.to_json()
        self.store.put(self.ref.manifest_key, body)
        self.store.put(self.ref.index_key, body)
        self._manifest_written = time.monotonic()

    def install_signal_handlers(self) -> None:
        def handler(signum: int, _frame: object) -> None:
            self.stop_reason = f"signal:{signal.Signals(signum).name}"
            self.stop_event.set()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)


class FlushIncomplete(RuntimeError):
    pass


class InvalidSettings(ValueError):
    pass
