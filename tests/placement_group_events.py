"""Placement group events as Ray's aggregator writes them, and small archives of them, for
tests/test_placement_group_*.py.

Ray 2.60 defines PLACEMENT_GROUP_{DEFINITION,LIFECYCLE}_EVENT (../shared/reference/ray-2.60/proto_event_schemas.txt)
but its GCS does not send them, so no real sample exists: the events here are written as the aggregator writes
every RayEvent (camelCase, ids base64, int64 as strings, defaults printed), beside the real samples of
ray_events_http/, and describe the three groups a real 2.60 cluster showed in its API (see tests/test_placement_group_real_cluster.py).
"""

from __future__ import annotations

import base64
import json
from datetime import datetime, timezone
from pathlib import Path

from archive.layout import LogSegment, SessionRef
from archive.logs import encode
from archive.manifest import ENDED, SessionManifest, end_marker
from archive.storage.local import LocalStore
from historyserver.compaction.ray_events import to_ns

SESSION = "session_2026-11-25_19-58-10_578535_6555"
NODE_B64 = "pfmN+H8Rd3HJHKCTSR7l+JHJ5DK/5irIVmq7QA=="
NODE_HEX = "a5f98df87f117771c91ca093491ee5f891c9e432bfe62ac8566abb40"
JOB_B64 = "AQAAAA=="  # 01000000
REMOVED_PG = "0de54504cffca5ace2eef68006f201000000"
KEPT_PG = "0d7f60f073ebd15e67dd23799d1001000000"
PENDING_PG = "25ac7ce3d38179b974fdc5c71b8b01000000"
T0 = 1795636750_000_000_000  # 2026-11-25T19:59:10Z, after the samples' driver started
MS = 1_000_000
END_MS = 1795636900000


def _b64(hex_id: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_id)).decode()


def _ts(ns: int) -> str:
    return datetime.fromtimestamp(ns // 10**9, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S") + f".{ns % 10**9:09d}Z"


def _event(kind: str, at_ns: int, payload: dict) -> dict:
    key = (
        "placementGroupDefinitionEvent"
        if kind == "PLACEMENT_GROUP_DEFINITION_EVENT"
        else "placementGroupLifecycleEvent"
    )
    return {
        "eventId": base64.b64encode(f"{kind}{at_ns}".encode()[:28]).decode(),
        "sourceType": "GCS",
        "eventType": kind,
        "timestamp": _ts(at_ns),
        "severity": "INFO",
        "sessionName": SESSION,
        key: payload,
        "nodeId": NODE_B64,
        "message": "",
    }


def _definition(
    pg: str,
    at_ns: int,
    name: str,
    strategy: str,
    detached: bool,
    bundles: list[dict],
    namespace: str = "probe",
    labels: dict | None = None,
) -> dict:
    return _event(
        "PLACEMENT_GROUP_DEFINITION_EVENT",
        at_ns,
        {
            "placementGroupId": _b64(pg),
            "name": name,
            "rayNamespace": namespace,
            "strategy": strategy,
            "isDetached": detached,
            "creatorJobId": JOB_B64,
            "creatorActorId": "",
            "softTargetNodeId": "",
            "creationRequestReceivedNs": str(at_ns),
            "bundles": [
                {"bundleIndex": i, "unitResources": b, "labelSelector": labels or {}} for i, b in enumerate(bundles)
            ],
        },
    )


def _transition(
    at_ns: int, state: str, scheduling: str, attempt: int = 0, delay: float = 0.0, placed: list[int] = (), **extra
) -> dict:
    return {
        "state": state,
        "timestamp": _ts(at_ns),
        "schedulingState": scheduling,
        "schedulingAttempt": attempt,
        "highestRetryDelayMs": delay,
        "bundlePlacements": [{"bundleIndex": i, "nodeId": NODE_B64} for i in placed],
        **extra,
    }


def _lifecycle(pg: str, *transitions: dict) -> dict:
    """GCS sends a group's new transitions a moment after they happen."""
    sent = max(to_ns(t["timestamp"]) for t in transitions) + 1000
    return _event(
        "PLACEMENT_GROUP_LIFECYCLE_EVENT", sent, {"placementGroupId": _b64(pg), "stateTransitions": list(transitions)}
    )


def _pg_events() -> list[dict]:
    """The three groups: created then removed; detached and still created; never placed (infeasible)."""
    removed_created = _lifecycle(REMOVED_PG, _transition(T0 + 4_300_000, "CREATED", "FINISHED", 1, placed=[0, 1]))
    late = T0 + 600 * MS
    return [
        # Its first transitions arrive before its definition: POST batches interleave.
        _lifecycle(
            REMOVED_PG,
            _transition(T0 + 100_000, "PENDING", "QUEUED"),
            _transition(T0 + 200_000, "PENDING", "SCHEDULING_STARTED", 1),
        ),
        _definition(REMOVED_PG, T0, "pg_removed", "PACK", False, [{"CPU": 1.0}, {"CPU": 1.0}]),
        removed_created,
        removed_created,  # the agent retried a POST: the same transition twice
        _lifecycle(REMOVED_PG, _transition(T0 + 500 * MS, "REMOVED", "SCHEDULING_REMOVED", 1)),
        # A report stamped after the removal: REMOVED is terminal.
        _lifecycle(REMOVED_PG, _transition(late, "CREATED", "FINISHED", 1, placed=[0, 1])),
        _definition(KEPT_PG, T0 + 1000 * MS, "pg_kept", "STRICT_SPREAD", True, [{"CPU": 1.0}], labels={"zone": "a"}),
        # Newer Ray writes the GCS's own stats into each transition: they are taken as given.
        _lifecycle(
            KEPT_PG,
            _transition(T0 + 1000 * MS, "PENDING", "QUEUED"),
            _transition(T0 + 1100 * MS, "PENDING", "NO_RESOURCES", 1, 100.0),
            _transition(
                T0 + 1210 * MS,
                "CREATED",
                "FINISHED",
                2,
                100.0,
                placed=[0],
                schedulingStartedTimeNs=str(T0 + 1208 * MS),
                schedulingLatencyUs="2044",
                endToEndCreationLatencyUs="210023",
            ),
        ),
        _definition(PENDING_PG, T0 + 2000 * MS, "", "SPREAD", False, [{"CPU": 64.0}], namespace=""),
        _lifecycle(
            PENDING_PG,
            _transition(T0 + 2000 * MS, "PENDING", "SCHEDULING_STARTED", 1),
            _transition(T0 + 2001 * MS, "PENDING", "INFEASIBLE", 1),
        ),
    ]


def _sample_events(reference: Path) -> list[dict]:
    return list(json.loads((reference / "ray_events_http" / "one_event_per_type.json").read_text())["events"].values())


def _lines(events: list[dict]) -> bytes:
    return b"".join(json.dumps(e).encode() + b"\n" for e in events)


def _archive(root: Path, spool: bytes, end_ms: int = END_MS) -> tuple[str, SessionRef]:
    """A local archive of one ended session whose head spooled `spool` (split in two segments mid-line)."""
    store = LocalStore(root / "archive")
    manifest = SessionManifest(
        namespace="default",
        cluster="pgs",
        session_name=SESSION,
        status=ENDED,
        start_ms=1795636690000,
        end_ms=end_ms,
        ended_by="signal:SIGTERM",
    )
    node = manifest.ref.node(NODE_HEX)
    half = len(spool) // 2
    for start, end in ((0, half), (half, len(spool))):
        store.put(
            node.segment_key(LogSegment("events-0001.jsonl", 0, start, end, source="ray_events")),
            encode(spool[start:end]),
        )
    store.put(manifest.ref.manifest_key, manifest.to_json())
    store.put(manifest.ref.index_key, manifest.to_json())
    store.put(manifest.ref.ended_key, end_marker(end_ms, "signal:SIGTERM"))
    return str(root / "archive"), manifest.ref


def _list(client, base, **params) -> dict:
    r = client.get(f"{base}/api/v0/placement_groups", params=params)
    assert r.status_code == 200, r.text
    return r.json()
