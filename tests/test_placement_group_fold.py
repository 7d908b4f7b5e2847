"""Placement group events folded into Ray 2.60's records (historyserver/compaction/placement_groups.py): a
definition and its transitions merge, times and unfinished groups, partial and malformed events."""

from __future__ import annotations

import json

from historyserver.compaction.export_events import Damage
from historyserver.compaction.placement_groups import placement_group_rows
from historyserver.compaction.ray_events import normalize
from tests.placement_group_events import (
    END_MS,
    KEPT_PG,
    MS,
    NODE_HEX,
    PENDING_PG,
    REMOVED_PG,
    T0,
    _definition,
    _lifecycle,
    _pg_events,
    _transition,
)

# --- the fold ------------------------------------------------------------------------------------------------


def _rows(events: list[dict], end_ms: int | None = None, damage: Damage | None = None) -> dict[str, dict]:
    normalized = [n for e in events for n in normalize(e)]
    rows = placement_group_rows(normalized, damage or Damage(), end_ms)
    return {r["placement_group_id"]: r for r in rows}


def test_definition_and_transitions_merge_into_ray_records():
    rows = _rows(_pg_events())
    assert set(rows) == {REMOVED_PG, KEPT_PG, PENDING_PG}
    assert json.loads(rows[REMOVED_PG]["record"]) == {
        "placement_group_id": REMOVED_PG,
        "name": "pg_removed",
        "creator_job_id": "01000000",
        "state": "REMOVED",
        "bundles": [
            {
                "bundle_id": {"placement_group_id": REMOVED_PG, "bundle_index": i},
                "unit_resources": {"CPU": 1.0},
                "node_id": NODE_HEX,
                "label_selector": {},
            }
            for i in (0, 1)
        ],
        "is_detached": False,
        "stats": {
            "creation_request_received_ns": str(T0),
            "scheduling_started_time_ns": str(T0 + 200_000),
            "scheduling_latency_us": "4100",
            "end_to_end_creation_latency_us": "4300",
            "scheduling_attempt": 1,
            "highest_retry_delay_ms": 0.0,
            "scheduling_state": "REMOVED",
        },
        "topology_strategy": None,
        "topology_assignments": None,  # not in the events
    }
    kept = json.loads(rows[KEPT_PG]["record"])
    assert kept["state"] == "CREATED" and kept["is_detached"] is True and kept["name"] == "pg_kept"
    assert kept["bundles"] == [
        {
            "bundle_id": {"placement_group_id": KEPT_PG, "bundle_index": 0},
            "unit_resources": {"CPU": 1.0},
            "node_id": NODE_HEX,
            "label_selector": {"zone": "a"},
        }
    ]
    assert kept["stats"] == {
        "creation_request_received_ns": str(T0 + 1000 * MS),
        "scheduling_started_time_ns": str(T0 + 1208 * MS),
        "scheduling_latency_us": "2044",
        "end_to_end_creation_latency_us": "210023",
        "scheduling_attempt": 2,
        "highest_retry_delay_ms": 100.0,
        "scheduling_state": "FINISHED",
    }
    pending = json.loads(rows[PENDING_PG]["record"])
    assert pending["state"] == "PENDING" and pending["name"] == "" and pending["bundles"][0]["node_id"] == ""
    assert pending["bundles"][0]["unit_resources"] == {"CPU": 64.0}
    # Never created: Ray shows zero latencies; the attempt that started is still known.
    assert (pending["stats"]["scheduling_latency_us"], pending["stats"]["end_to_end_creation_latency_us"]) == ("0", "0")
    assert pending["stats"]["scheduling_started_time_ns"] == str(T0 + 2000 * MS)
    assert pending["stats"]["scheduling_state"] == "INFEASIBLE"


def test_table_columns_times_and_unfinished():
    rows = _rows(_pg_events(), END_MS)
    removed, kept, pending = rows[REMOVED_PG], rows[KEPT_PG], rows[PENDING_PG]
    assert (removed["creation_time_ms"], removed["scheduled_time_ms"], removed["removal_time_ms"]) == (
        T0 // MS,
        (T0 + 4_300_000) // MS,
        (T0 + 500 * MS) // MS,
    )  # the late CREATED changed nothing
    assert (removed["strategy"], removed["ray_namespace"], removed["unfinished"]) == ("PACK", "probe", False)
    # Still holding or waiting for resources when the session ended: they stay in their last state.
    assert (kept["state"], kept["strategy"], kept["removal_time_ms"], kept["unfinished"]) == (
        "CREATED",
        "STRICT_SPREAD",
        None,
        True,
    )
    assert (pending["state"], pending["scheduled_time_ms"], pending["ray_namespace"], pending["unfinished"]) == (
        "PENDING",
        None,
        None,
        True,
    )
    assert not any(r["unfinished"] for r in _rows(_pg_events()).values())  # a running session: not yet


def test_partial_and_malformed_events():
    # Only a lifecycle event (its definition was lost): what the events say, the rest null, the shape kept.
    [only] = _rows([_lifecycle(KEPT_PG, _transition(T0, "CREATED", "FINISHED", 1, placed=[0]))]).values()
    record = json.loads(only["record"])
    assert record["state"] == "CREATED" and record["bundles"] == [] and record["creator_job_id"] is None
    assert record["name"] is None and record["is_detached"] is None and only["strategy"] is None
    assert record["stats"]["end_to_end_creation_latency_us"] is None and record["stats"]["scheduling_attempt"] == 1
    # Only a definition: a registered group starts PENDING; nothing is known of its scheduling.
    [defined] = _rows([_definition(PENDING_PG, T0, "x", "PACK", False, [{"CPU": 1.0}])]).values()
    stats = json.loads(defined["record"])["stats"]
    assert defined["state"] == "PENDING" and stats["scheduling_state"] is None
    assert stats["creation_request_received_ns"] == str(T0)
    damage = Damage()
    bad = _lifecycle(KEPT_PG, _transition(T0, "CREATED", "FINISHED"))
    bad["placementGroupLifecycleEvent"]["placementGroupId"] = ""
    worse = _lifecycle(REMOVED_PG, _transition(T0, "CREATED", "FINISHED"))
    worse["placementGroupLifecycleEvent"]["stateTransitions"] = ["not an object"]
    assert _rows([bad, worse] + _pg_events(), damage=damage).keys() == {REMOVED_PG, KEPT_PG, PENDING_PG}
    assert damage.bad_lines == 2 and all("placement group" in e for e in damage.examples)
