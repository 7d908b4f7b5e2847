"""The Grafana dashboards Ray generated for a session (archived by the head's collector, source `grafana`), made
to serve a live cluster and the archive alike (historyserver.grafana adds the datasource variable)."""

from __future__ import annotations

from archive import grafana as grafana_files
from archive.storage import Store
from historyserver.catalog import SessionEntry
from historyserver.errors import EntityNotFound
from historyserver.grafana import with_datasource_variable


def session_dashboards(store: Store, entry: SessionEntry, datasource: str) -> dict[str, dict]:
    """uid -> dashboard, from every head node's archived files (a file that is not a dashboard is skipped)."""
    found: dict[str, dict] = {}
    for node in entry.manifest.nodes:
        if node.is_head:
            for uid, board in grafana_files.dashboards(store, entry.ref.node(node.node_id)).items():
                found[uid] = with_datasource_variable(board, datasource)
    return found


def session_dashboard(store: Store, entry: SessionEntry, uid: str, datasource: str) -> dict:
    boards = session_dashboards(store, entry, datasource)
    if uid not in boards:
        known = ", ".join(sorted(boards)) or "none (its collector predates dashboard archiving, or Ray wrote none)"
        raise EntityNotFound(f"session {entry.ref.id} has no archived Grafana dashboard {uid!r}; it has: {known}")
    return boards[uid]
