"""Placement groups from Ray's HTTP events, as rows of the placement_groups table.

No export file carries placement groups; the HTTP path can (ray_events.py keeps PLACEMENT_GROUP_DEFINITION_EVENT
and PLACEMENT_GROUP_LIFECYCLE_EVENT, snake_case, under source_type RAY_PLACEMENT_GROUP). Note that Ray 2.60's GCS
defines these events but does not emit them (newer releases do), so a 2.60 session gives an empty table.

Each group's definition and state transitions are merged by id. Its record is what Ray 2.60's
/api/v0/placement_groups?detail=1 shows for it (PlacementGroupState: placement_group_id, name, creator_job_id,
state, bundles, is_detached, stats, topology_strategy, topology_assignments): ids in hex, int64 stats as strings.
What only a live GCS knows (the topology fields, a time no event names) is null.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from historyserver.compaction.export_events import Damage
from historyserver.compaction.ids import hex_id
from historyserver.compaction.ray_events import PLACEMENT_GROUP, to_ns

# Protobuf's JSON writes enums by name; a writer that used numbers is read the same way.
_STATES = ("PENDING", "PREPARED", "CREATED", "REMOVED", "RESCHEDULING")
_STRATEGIES = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")
# The event's SchedulingState, as PlacementGroupStats (what Ray's API shows) names it.
_SCHEDULING = (
    "QUEUED",
    "REMOVED",
    "SCHEDULING_STARTED",
    "NO_RESOURCES",
    "INFEASIBLE",
    "FAILED_TO_COMMIT_RESOURCES",
    "FINISHED",
)
_SCHEDULING_NAMES = {"SCHEDULING_REMOVED": "REMOVED"}
WHERE = "ray_events:placement_groups"


class MalformedGroup(ValueError):
    """A placement group event whose fields have the wrong types."""


@dataclass
class _Group:
    definition: dict[str, Any] | None = None
    defined_ns: int | None = None
    transitions: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)  # canonical JSON -> (ns, t)


def placement_group_rows(
    events: Iterable[dict[str, Any]], damage: Damage, session_end_ms: int | None
) -> list[dict[str, Any]]:
    """Rows of the placement_groups table from the normalized HTTP events (other source types are skipped)."""
    groups: dict[str, _Group] = {}
    for e in events:
        if e.get("source_type") != PLACEMENT_GROUP:
            continue
        try:
            _add(groups, e)
        except (MalformedGroup, KeyError, TypeError, ValueError, AttributeError) as err:
            damage.note(WHERE, f"unreadable placement group event ({type(err).__name__}: {err})")
    rows = []
    for pg_id, g in sorted(groups.items()):
        try:
            rows.append(_row(pg_id, g, session_end_ms))
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            damage.note(WHERE, f"placement group {pg_id} ({type(err).__name__}: {err})")
    return rows


def _add(groups: dict[str, _Group], e: dict[str, Any]) -> None:
    d = e["event_data"]
    pg_id = hex_id(d.get("placement_group_id"))
    if not pg_id:
        raise MalformedGroup("no placement_group_id")
    event_ns = int(e.get("timestamp") or 0) * 1_000_000_000
    if d.get("event_type") == "PLACEMENT_GROUP_DEFINITION_EVENT":
        g = groups.setdefault(pg_id, _Group())
        # Definitions are static (GCS sends the same one again after a retry): the first one read is kept.
        if g.definition is None:
            g.definition, g.defined_ns = d, event_ns
        return
    transitions = d.get("state_transitions") or []
    if not isinstance(transitions, list) or not all(isinstance(t, dict) for t in transitions):
        raise MalformedGroup("state_transitions is not a list of objects")
    timed = [(to_ns(t["timestamp"]) if t.get("timestamp") else event_ns, t) for t in transitions]
    g = groups.setdefault(pg_id, _Group())  # only now: a malformed event adds no group
    for ns, t in timed:
        # A batch POSTed twice (the agent retries) repeats its transitions: keep each once.
        g.transitions.setdefault(json.dumps(t, sort_keys=True), (ns, t))


def _enum(value: Any, names: tuple[str, ...], default: str) -> str:
    if value in (None, ""):
        return default  # proto3 JSON omits an enum's zero value
    if isinstance(value, int) and 0 <= value < len(names):
        return names[value]
    if isinstance(value, str):
        return value
    raise MalformedGroup(f"enum value {value!r}")


def _int(value: Any) -> int | None:
    """An int64 as protobuf's JSON writes it (a string); absent or 0 means not known."""
    return int(value) if value not in (None, "", "0", 0) else None


def _row(pg_id: str, g: _Group, session_end_ms: int | None) -> dict[str, Any]:
    d = g.definition or {}
    timeline = sorted(g.transitions.values(), key=lambda x: x[0])
    # Newest state wins, but REMOVED is terminal: a transition stamped after it (a late, stale report) is dropped.
    states = [(ns, _enum(t.get("state"), _STATES, "PENDING"), t) for ns, t in timeline]
    removed_at = next((i for i, (_, s, _) in enumerate(states) if s == "REMOVED"), None)
    if removed_at is not None:
        states = states[: removed_at + 1]
    state = states[-1][1] if states else "PENDING"  # a defined group starts PENDING
    created = [(ns, t) for ns, s, t in states if s == "CREATED"]
    removal_ns = states[-1][0] if state == "REMOVED" else None

    requested_ns = _int(d.get("creation_request_received_ns"))
    creation_ns = requested_ns or g.defined_ns or (states[0][0] if states else None)
    record = {
        "placement_group_id": pg_id,
        "name": (d.get("name") or "") if g.definition else None,
        "creator_job_id": hex_id(d.get("creator_job_id")) if g.definition else None,
        "state": state,
        "bundles": _bundles(pg_id, d, states, bool(created)),
        "is_detached": bool(d.get("is_detached")) if g.definition else None,
        "stats": _stats(requested_ns, states, created[-1] if created else None),
        "topology_strategy": None,  # neither is in the events
        "topology_assignments": None,
    }
    return {
        "placement_group_id": pg_id,
        "name": record["name"],
        "state": state,
        "creator_job_id": record["creator_job_id"],
        "is_detached": record["is_detached"],
        "strategy": _enum(d.get("strategy"), _STRATEGIES, "PACK") if g.definition else None,
        "ray_namespace": d.get("ray_namespace") or None,
        "creation_time_ms": creation_ns // 1_000_000 if creation_ns else None,
        "scheduled_time_ms": created[0][0] // 1_000_000 if created else None,
        "removal_time_ms": removal_ns // 1_000_000 if removal_ns else None,
        # As for tasks: still holding (or waiting for) resources when the session ended.
        "unfinished": session_end_ms is not None and state != "REMOVED",
        "record": json.dumps(record),
    }


def _bundles(pg_id: str, d: dict[str, Any], states: list, was_created: bool) -> list[dict[str, Any]]:
    """Ray's Bundle records. A bundle's node comes from the newest transition that places it; a group never
    created has none placed ("" as Ray shows it); one created without placements in its events: null."""
    placed: dict[int, str] = {}
    for _, _, t in states:
        if t.get("bundle_placements"):
            placed = {int(p.get("bundle_index") or 0): hex_id(p.get("node_id")) or "" for p in t["bundle_placements"]}
    out = []
    for b in sorted(d.get("bundles") or [], key=lambda b: int(b.get("bundle_index") or 0)):
        index = int(b.get("bundle_index") or 0)
        out.append(
            {
                "bundle_id": {"placement_group_id": pg_id, "bundle_index": index},
                "unit_resources": {k: float(v) for k, v in (b.get("unit_resources") or {}).items()},
                "node_id": placed[index] if index in placed else ("" if not was_created else None),
                "label_selector": dict(b.get("label_selector") or {}),
            }
        )
    return out


def _stats(requested_ns: int | None, states: list, created: tuple[int, dict[str, Any]] | None) -> dict[str, Any] | None:
    """Ray's PlacementGroupStats. Newer Ray writes the GCS's own figures into each transition; otherwise they are
    derived from the transitions' times. Latencies are "0" until a group is created, as Ray shows them."""
    if not states and requested_ns is None:
        return None
    last = states[-1][2] if states else {}
    started = _int(last.get("scheduling_started_time_ns"))
    if started is None:
        # The newest scheduling attempt's start, before the creation it led to (if any).
        until = created[0] if created else None
        starts = [
            ns
            for ns, _, t in states
            if _enum(t.get("scheduling_state"), _SCHEDULING, "QUEUED") == "SCHEDULING_STARTED"
            and (until is None or ns <= until)
        ]
        started = starts[-1] if starts else None
    if created is None:
        sched_us, e2e_us = "0", "0"
    else:
        created_ns, t = created
        sched = _int(t.get("scheduling_latency_us"))
        e2e = _int(t.get("end_to_end_creation_latency_us"))
        if sched is None and started is not None and started <= created_ns:
            sched = (created_ns - started) // 1000
        if e2e is None and requested_ns is not None and requested_ns <= created_ns:
            e2e = (created_ns - requested_ns) // 1000
        sched_us, e2e_us = _text(sched), _text(e2e)
    scheduling_state = None
    if states:
        name = _enum(last.get("scheduling_state"), _SCHEDULING, "QUEUED")
        scheduling_state = _SCHEDULING_NAMES.get(name, name)
    return {
        "creation_request_received_ns": _text(requested_ns),
        "scheduling_started_time_ns": _text(started),
        "scheduling_latency_us": sched_us,
        "end_to_end_creation_latency_us": e2e_us,
        "scheduling_attempt": int(last.get("scheduling_attempt") or 0) if states else None,
        "highest_retry_delay_ms": float(last.get("highest_retry_delay_ms") or 0.0) if states else None,
        "scheduling_state": scheduling_state,
    }


def _text(value: int | None) -> str | None:
    return None if value is None else str(value)


__all__ = ["MalformedGroup", "placement_group_rows"]
