"""The `grafana` source: the Grafana dashboards Ray generated for a session, archived byte for byte by the head's
collector (FORMAT.md), so that a session's dashboards match its Ray version.

The collector ships the files of SESSION_DIR as segments, as it ships logs; readers take them with `dashboards`.
"""

from __future__ import annotations

import json
from typing import Any

from archive import logs as archive_logs
from archive.errors import NotFound
from archive.layout import NodeRef
from archive.storage.base import Store

SOURCE = "grafana"  # the folder under nodes/{node_id}/ (head nodes only)
SESSION_DIR = "metrics/grafana/dashboards"  # where Ray writes them, under the session directory
SUFFIX = ".json"


def is_dashboard_file(path: str) -> bool:
    return path.endswith(SUFFIX)


def parse_dashboard(data: bytes) -> dict[str, Any] | None:
    """A dashboard (a JSON object with a `uid`), or None for a file that is not one."""
    try:
        board = json.loads(data)
    except ValueError:
        return None
    return board if isinstance(board, dict) and board.get("uid") else None


def dashboards(store: Store, node: NodeRef) -> dict[str, dict[str, Any]]:
    """uid -> dashboard, from the node's archived files; files that are not dashboards are skipped."""
    found: dict[str, dict[str, Any]] = {}
    for path in archive_logs.list_segments(store, node, source=SOURCE):
        if not is_dashboard_file(path):
            continue
        try:
            board = parse_dashboard(archive_logs.read_file(store, node, path, source=SOURCE))
        except (NotFound, archive_logs.CorruptSegment):
            continue
        if board is not None:
            found[board["uid"]] = board
    return found
