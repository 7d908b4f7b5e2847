"""The topology's sources (collector/topology.py): each one a folder of growing files.

- `RayFolder`: a folder Ray writes (the session's logs/, its Grafana dashboards); nothing is ever released.
- `PulledSpool`: a folder the collector fills by pulling from Ray (metrics scrapes, dashboard API snapshots) on a
  thread of its own; every file but the newest is finished, and deleted once archived.
- `EventSpool`: the durable spool Ray's HTTP event export is received into; a file is finished once it rotates.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from collector.components import Listing
from collector.sources.session_dir import scan_tree
from collector.spool import Spool
from collector.stats import ComponentStats


class RayFolder:
    """Counts what Ray wrote (files seen, bytes grown) and passes all of it on."""

    def __init__(self, name: str, folder: Path) -> None:
        self.name, self.folder = name, folder
        self._stats = ComponentStats()
        self._sizes: dict[int, int] = {}  # inode -> size at the last listing

    def list(self) -> Listing:
        files = scan_tree(self.folder) if self.folder.is_dir() else []
        sizes = {}
        for f in files:
            seen = self._sizes.get(f.inode)
            if seen is None:
                self._stats.received += 1
            grown = f.size - seen if seen is not None and f.size >= seen else f.size  # truncated: counts anew
            self._stats.received_bytes += grown
            sizes[f.inode] = f.size
        self._sizes = sizes
        return Listing(files)

    def stats(self) -> ComponentStats:
        s = self._stats
        return ComponentStats(
            received=s.received, received_bytes=s.received_bytes, sent=s.received, sent_bytes=s.received_bytes
        )

    def start(self) -> None:
        pass

    def release(self, path: str) -> None:
        pass  # Ray's files: never ours to delete

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class PulledSpool:
    """A puller (collector.sources.metrics.MetricsScraper, .dashboard_api.DashboardApiPoller) and its spool
    folder. `puller` is None when pulling is off (--once, interval 0): a previous run's files are still shipped."""

    def __init__(
        self,
        name: str,
        folder: Path,
        run: Callable[[threading.Event], object] | None = None,
        pull_once: Callable[[], object] | None = None,
        close: Callable[[], None] | None = None,
        stats: Callable[[], ComponentStats] | None = None,
    ) -> None:
        self.name, self.folder = name, folder
        self._run, self._pull_once, self._close, self._stats = run, pull_once, close, stats
        self._stop = threading.Event()

    def start(self) -> None:
        if self._run is not None:
            threading.Thread(target=self._run, args=(self._stop,), name=f"pull-{self.name}", daemon=True).start()

    def list(self) -> Listing:
        files = scan_tree(self.folder) if self.folder.is_dir() else []
        return Listing(files, {f.path for f in files[:-1]})  # all but the newest: the puller appends to that one

    def release(self, path: str) -> None:
        (self.folder / path).unlink(missing_ok=True)

    def flush(self) -> None:
        self._stop.set()
        if self._pull_once is not None:
            self._pull_once()

    def close(self) -> None:
        if self._close is not None:
            self._close()

    def stats(self) -> ComponentStats:
        return self._stats() if self._stats is not None else ComponentStats()


class EventSpool:
    """The spool behind collector.sources.http_events.HttpEventsSource. The receiver lives as long as the
    collector; this source is the spool as one session's topology sees it."""

    def __init__(self, spool: Spool, stats: Callable[[], ComponentStats], name: str = "ray_events") -> None:
        self.name, self.spool, self._stats = name, spool, stats
        self.folder = spool.directory

    def list(self) -> Listing:
        files = self.spool.files()
        return Listing(list(files), {f.path for f in files if not f.active})

    def release(self, path: str) -> None:
        self.spool.release(path)

    def stats(self) -> ComponentStats:
        return self._stats()

    def start(self) -> None:
        pass

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass  # the receiver keeps appending for the next session


# --- each source's own stats as the counters every component keeps ---------------------------------------------


def scrape_stats(s) -> ComponentStats:
    """collector.sources.metrics.ScrapeStats; items are scrapes (a failed one is recorded too, with `up` 0)."""
    scrapes = s.scrapes_ok + s.scrapes_failed
    return ComponentStats(
        received=scrapes,
        sent=scrapes - s.write_errors,
        sent_bytes=s.bytes,
        dropped=s.write_errors,
        errors={"scrape": s.scrapes_failed, "write": s.write_errors},
    )


def poll_stats(s) -> ComponentStats:
    """collector.sources.dashboard_api.PollStats; items are route snapshots (unchanged ones are not written, and
    one that failed to write is taken again at the next poll: nothing is dropped)."""
    return ComponentStats(
        received=s.snapshots + s.unchanged,
        sent=s.snapshots,
        sent_bytes=s.bytes,
        errors={"request": s.request_errors, "auth": s.auth_errors, "write": s.write_errors},
    )


def event_stats(s: dict) -> ComponentStats:
    """collector.sources.http_events.HttpEventStats.snapshot(); items are events. A refused batch is not
    dropped: the sender keeps it and retries. `refused` counts refusals that are not the collector's failures
    (bad requests, a full spool); `write` counts those that are (the spool could not store, or a bug)."""
    return ComponentStats(
        received=s["received_events"],
        received_bytes=s["received_bytes"],
        sent=s["stored_events"],
        sent_bytes=s["stored_bytes"],
        errors={"refused": s["refused_requests"] - s["errors"], "write": s["errors"]},
    )
