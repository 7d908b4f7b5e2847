"""Ray's cluster events (logs/events/event_*.log: JSON lines, WARNING and above) as rows of a table.

Each row keeps the event in the shape Ray's /events returns it (keys camelCased by Ray's to_google_style), and
the job it belongs to ("global" when none), as Ray's /events groups them.
"""

from __future__ import annotations

import json
from typing import Any

CLUSTER_EVENTS_DIR = "events/"


def is_cluster_events_file(path: str) -> bool:
    name = path[len(CLUSTER_EVENTS_DIR) :]
    return (
        path.startswith(CLUSTER_EVENTS_DIR) and "/" not in name and name.startswith("event_") and name.endswith(".log")
    )


def camel(key: str) -> str:
    """Ray's to_camel_case, applied to resource names too (object_store_memory -> objectStoreMemory)."""
    first, *rest = key.split("_")
    return first + "".join(p.title() for p in rest)


def google_style(value: Any) -> Any:
    """Ray's to_google_style: every dict key camelCased, recursively (lists of dicts included)."""
    if isinstance(value, dict):
        return {camel(k): google_style(v) for k, v in value.items()}
    if isinstance(value, list):
        return [google_style(v) for v in value]
    return value


def parse_event(line: bytes) -> dict[str, Any] | None:
    try:
        event = json.loads(line)
    except ValueError:
        return None  # a line cut by the end of the archive, or not an event
    if not isinstance(event, dict) or "event_id" not in event:
        return None
    if isinstance(event.get("message"), str):
        # As Ray's reader does: the writer escapes newlines to keep one event per line.
        event["message"] = event["message"].replace("\\n", "\n").replace("\\r", "\n")
    return event


def event_time(event: dict[str, Any]) -> float:
    try:
        return float(event.get("timestamp") or 0)
    except (TypeError, ValueError):
        return 0.0


def event_rows(lines: list[bytes], seen: set[str]) -> list[dict[str, Any]]:
    """Table rows of one file's events; `seen` drops an event another node's file already held."""
    rows = []
    for line in lines:
        event = parse_event(line)
        if event is None or event["event_id"] in seen:
            continue
        seen.add(event["event_id"])
        rows.append(
            {
                "event_id": event["event_id"],
                "job_id": (event.get("custom_fields") or {}).get("job_id") or "global",
                "timestamp": event_time(event),
                "severity": event.get("severity"),
                "source_type": event.get("source_type"),
                "record": json.dumps(google_style(event)),
            }
        )
    return rows
