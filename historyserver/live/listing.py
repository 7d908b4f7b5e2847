"""The session list: live RayClusters and archived sessions in one table, filtered and paged.

A live cluster is one row, carrying its running session when the archive has one; every other session is a row of
its own. Live rows come first (newest first), then sessions, newest first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from archive.manifest import RUNNING
from historyserver.catalog import SessionEntry
from historyserver.errors import BadRequest
from historyserver.live.cluster import cluster_path
from historyserver.live.kube import LiveRow

LIVE = "live"  # the status filter that keeps live clusters, whatever their state


@dataclass(frozen=True)
class Filters:
    namespace: str | None = None
    cluster: str | None = None
    status: str | None = None  # a session status, a RayCluster state, or "live"
    since: int | None = None  # ms: rows alive at or after
    until: int | None = None  # ms: rows that started before
    limit: int = 50
    offset: int = 0

    def check(self) -> Filters:
        if self.limit < 1 or self.limit > 1000:
            raise BadRequest(f"limit must be between 1 and 1000, got {self.limit}")
        if self.offset < 0:
            raise BadRequest(f"offset must not be negative, got {self.offset}")
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise BadRequest(f"since ({self.since}) must be before until ({self.until})")
        return self


def merged_rows(live: list[LiveRow], sessions: list[SessionEntry], base_url: str = "") -> list[dict[str, Any]]:
    clusters = [r for r in live if r.kind == "RayCluster"]
    by_cluster: dict[tuple[str, str], list[SessionEntry]] = {}
    for e in sessions:
        by_cluster.setdefault((e.manifest.namespace, e.manifest.cluster), []).append(e)
    merged_ids = set()
    rows = []
    for c in sorted(clusters, key=lambda r: -(r.created or 0)):
        running = next((e for e in by_cluster.get((c.namespace, c.name), []) if e.status == RUNNING), None)
        if running is not None:
            merged_ids.add(running.ref.id)
        path = cluster_path(c.namespace, c.name)
        rows.append(
            {
                "kind": LIVE,
                "namespace": c.namespace,
                "cluster": c.name,
                "status": c.state,
                "start": c.created,
                "end": None,
                "session": running.summary(base_url) if running is not None else None,
                "cluster_url": f"{base_url}{path}",
                "dashboard_url": f"{base_url}{path}/live/",
                "sessions": len(by_cluster.get((c.namespace, c.name), [])),
            }
        )
    for e in sessions:
        if e.ref.id in merged_ids:
            continue
        m = e.manifest
        path = cluster_path(m.namespace, m.cluster)
        rows.append(
            {
                "kind": "session",
                "namespace": m.namespace,
                "cluster": m.cluster,
                "status": e.status,
                "start": m.start_ms,
                "end": e.end_ms,
                "session": e.summary(base_url),
                "cluster_url": f"{base_url}{path}",
                "dashboard_url": None,
                "sessions": None,
            }
        )
    return rows


def select(rows: list[dict[str, Any]], f: Filters) -> dict[str, Any]:
    """The rows that pass the filters, one page of them, and what the filter choices are."""
    kept = [
        r
        for r in rows
        if (f.namespace is None or r["namespace"] == f.namespace)
        and (f.cluster is None or r["cluster"] == f.cluster)
        and (f.status is None or r["status"] == f.status or (f.status == LIVE and r["kind"] == LIVE))
        and (f.since is None or r["end"] is None or r["end"] >= f.since)
        and (f.until is None or (r["start"] or 0) < f.until)
    ]
    return {
        "total": len(kept),
        "offset": f.offset,
        "limit": f.limit,
        "rows": kept[f.offset : f.offset + f.limit],
        "choices": {
            "namespace": sorted({r["namespace"] for r in rows}),
            "cluster": sorted({r["cluster"] for r in rows if f.namespace is None or r["namespace"] == f.namespace}),
            "status": sorted(
                {r["status"] for r in rows if r["status"]} | ({LIVE} if any(r["kind"] == LIVE for r in rows) else set())
            ),
        },
    }
