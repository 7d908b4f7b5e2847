"""The `api` source: the head collector's snapshots of Ray's dashboard API, JSON lines in `api-<seq>.jsonl` files.

One line per snapshot: `{"time_ms", "route", "status", "body"}` (FORMAT.md). The collector writes lines with
`Snapshot.from_response(...).encode()`; readers (compaction, gc) read them with `decode` and `latest_by_route`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from archive.sequenced import SequencedNames

SOURCE = "api"  # the folder under nodes/{node_id}/
FILE_PREFIX, FILE_EXT = "api", "jsonl"  # files `api-<seq:06d>.jsonl`, in write order

# The routes snapshotted, path and query as requested (and as the `route` field holds them).
PLACEMENT_GROUPS_ROUTE = "/api/v0/placement_groups?detail=1&limit=10000"
JOBS_ROUTE = "/api/jobs/"
CLUSTER_STATUS_ROUTES = ("/api/cluster_status?format=0", "/api/cluster_status?format=1")  # index: the format
SERVE_APPLICATIONS_ROUTE = "/api/serve/applications/"
ROUTES = (PLACEMENT_GROUPS_ROUTE, JOBS_ROUTE, *CLUSTER_STATUS_ROUTES, SERVE_APPLICATIONS_ROUTE)

_NAMES = SequencedNames(FILE_PREFIX, FILE_EXT)
file_name = _NAMES.name
parse_file_name = _NAMES.parse


@dataclass(frozen=True)
class Snapshot:
    time_ms: int  # when the request was sent
    route: str
    status: int | None  # the HTTP status
    body: Any  # the answer's JSON value, or its text when it is not JSON

    @classmethod
    def from_response(cls, time_ms: int, route: str, status: int, body: bytes) -> Snapshot:
        text = body.decode("utf-8", errors="replace")
        try:
            value = json.loads(text)
        except ValueError:
            value = text
        return cls(time_ms, route, status, value)

    def encode(self) -> bytes:
        """The snapshot's line, `\\n` included."""
        line = {"time_ms": self.time_ms, "route": self.route, "status": self.status, "body": self.body}
        return (json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


def decode(line: bytes | str) -> Snapshot:
    """One line as a Snapshot; raises ValueError, KeyError or TypeError for a line that is not one."""
    doc = json.loads(line)
    return Snapshot(int(doc["time_ms"]), doc["route"], doc.get("status"), doc.get("body"))


def latest_by_route(
    lines: Iterable[bytes], bad: Callable[[int, Exception], None] | None = None, status: int = 200
) -> dict[str, Snapshot]:
    """route -> its newest snapshot answered with `status` (a later line wins a tie). `bad(line_number, error)`
    hears of every line that is not a snapshot."""
    latest: dict[str, Snapshot] = {}
    for n, line in enumerate(lines, 1):
        try:
            snap = decode(line)
        except (ValueError, KeyError, TypeError) as e:
            if bad is not None:
                bad(n, e)
            continue
        if snap.status == status and (snap.route not in latest or snap.time_ms >= latest[snap.route].time_ms):
            latest[snap.route] = snap
    return latest
