"""Placement groups from Ray's HTTP events, compacted and served as Ray 2.60's /api/v0/placement_groups.

Ray 2.60 defines PLACEMENT_GROUP_{DEFINITION,LIFECYCLE}_EVENT (../shared/reference/ray-2.60/proto_event_schemas.txt)
but its GCS does not send them, so no real sample exists: the events here are written as the aggregator writes
every RayEvent (camelCase, ids base64, int64 as strings, defaults printed), beside the real samples of
ray_events_http/, and describe the three groups a real 2.60 cluster showed in its API (see test_real_cluster...).
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
import urllib.request
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from archive.compacted import PLACEMENT_GROUPS
from archive.layout import LogSegment, SessionRef
from archive.logs import encode
from archive.manifest import ENDED, SessionManifest, end_marker
from archive.storage.local import LocalStore
from historyserver.compaction.build import compact
from historyserver.compaction.export_events import Damage
from historyserver.compaction.placement_groups import placement_group_rows
from historyserver.compaction.ray_events import normalize, to_ns
from historyserver.queries.session_db import SessionDB
from tests.helpers import client_for

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


def _response(reference: Path, name: str) -> dict:
    return json.loads((reference / "dashboard_api" / name).read_text())["response"]


@pytest.fixture(scope="module")
def served(reference, tmp_path_factory):
    root = tmp_path_factory.mktemp("pgs")
    archive, ref = _archive(root, _lines(_sample_events(reference) + _pg_events()))
    with client_for(archive, root / "cache") as client:
        yield client, f"/sessions/{ref.id}"


def _list(client, base, **params) -> dict:
    r = client.get(f"{base}/api/v0/placement_groups", params=params)
    assert r.status_code == 200, r.text
    return r.json()


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


# --- compaction and the route --------------------------------------------------------------------------------


def _same_shape(ours, ref, where: str = "record") -> None:
    """Same keys at every level, and the same JSON type wherever ours has a value (null: not known)."""
    if ours is None:
        return
    if isinstance(ref, dict) and ref:
        assert isinstance(ours, dict) and ours.keys() == ref.keys(), f"{where}: {sorted(ours)} != {sorted(ref)}"
        for k in ref:
            _same_shape(ours[k], ref[k], f"{where}.{k}")
    elif isinstance(ref, list):
        assert isinstance(ours, list), where
        for item in ours:
            _same_shape(item, ref[0], f"{where}[]")
    else:
        assert type(ours) is type(ref), f"{where}: {ours!r} is {type(ours).__name__}, Ray gives {type(ref).__name__}"


def test_route_answers_in_rays_shape(served, reference):
    client, base = served
    ref = _response(reference, "v0_pgs.json")
    body = _list(client, base, detail=1, limit=10000)
    assert body.keys() == ref.keys() and body["data"]["result"].keys() == ref["data"]["result"].keys()
    page = body["data"]["result"]
    assert (page["total"], page["num_after_truncation"], page["num_filtered"]) == (3, 3, 3)
    assert [g["placement_group_id"] for g in page["result"]] == sorted([REMOVED_PG, KEPT_PG, PENDING_PG])
    ref_record = ref["data"]["result"]["result"][0]
    for group in page["result"]:
        _same_shape(group, ref_record)
    assert all(g["topology_strategy"] is None and g["topology_assignments"] is None for g in page["result"])
    [kept] = [g for g in page["result"] if g["name"] == "pg_kept"]
    assert kept["state"] == "CREATED" and kept["bundles"][0]["node_id"] == NODE_HEX

    brief = _list(client, base, limit=10000)["data"]["result"]
    summary_keys = ["placement_group_id", "name", "creator_job_id", "state"]  # PlacementGroupState, detail=False
    assert all(list(g) == summary_keys for g in brief["result"])
    assert list(ref_record)[:4] == summary_keys
    assert brief["result"][0] == {k: page["result"][0][k] for k in summary_keys}


def test_route_filters_and_limit(served):
    client, base = served

    def page(**params):
        return _list(client, base, detail=1, **params)["data"]["result"]

    def where(key, value, predicate="="):
        return page(filter_keys=key, filter_predicates=predicate, filter_values=value)

    created = where("state", "created")  # strings compare case-insensitively, as Ray's do_filter
    assert (created["total"], created["num_filtered"], [g["name"] for g in created["result"]]) == (3, 1, ["pg_kept"])
    assert [g["placement_group_id"] for g in where("name", "PG_REMOVED")["result"]] == [REMOVED_PG]
    assert [g["name"] for g in where("is_detached", "true")["result"]] == ["pg_kept"]
    assert where("is_detached", "0")["num_filtered"] == 2
    assert where("state", "removed", "!=")["num_filtered"] == 2
    assert where("creator_job_id", "01000000")["num_filtered"] == 3
    assert where("placement_group_id", PENDING_PG)["result"][0]["state"] == "PENDING"
    limited = page(limit=1)
    assert (limited["total"], limited["num_filtered"], len(limited["result"])) == (3, 3, 1)
    bad = client.get(
        f"{base}/api/v0/placement_groups",
        params={"filter_keys": "bundles", "filter_predicates": "=", "filter_values": "x"},
    )
    assert bad.status_code == 400 and bad.json()["result"] is False and "bundles" in bad.json()["msg"]
    uneven = client.get(f"{base}/api/v0/placement_groups", params={"filter_keys": "state"})
    assert uneven.status_code == 400 and uneven.json()["data"] is None


def test_session_without_placement_groups_answers_an_empty_envelope(reference, tmp_path):
    archive, ref = _archive(tmp_path, _lines(_sample_events(reference)))
    with client_for(archive, tmp_path / "cache") as client:
        body = _list(client, f"/sessions/{ref.id}", detail=1, limit=10000)
    assert body == {
        "result": True,
        "msg": "",
        "data": {
            "result": {
                "total": 0,
                "num_after_truncation": 0,
                "num_filtered": 0,
                "result": [],
                "partial_failure_warning": "",
                "warnings": None,
            }
        },
    }


def test_compaction_always_writes_the_table(reference, tmp_path):
    archive, ref = _archive(tmp_path, _lines(_sample_events(reference)))
    info = compact(LocalStore(Path(archive)), ref, tmp_path / "empty", END_MS)
    assert info["counts"]["placement_groups"] == 0 and info["damage"]["bad_lines"] == 0
    assert pq.read_schema(tmp_path / "empty" / "placement_groups.parquet").equals(PLACEMENT_GROUPS.schema)

    archive, ref = _archive(tmp_path / "full", _lines(_sample_events(reference) + _pg_events()))
    info = compact(LocalStore(Path(archive)), ref, tmp_path / "full" / "tables", END_MS)
    assert info["counts"]["placement_groups"] == 3 and info["damage"]["bad_lines"] == 0
    db = SessionDB(tmp_path / "full" / "tables")
    assert db.query("SELECT placement_group_id, state, unfinished FROM placement_groups ORDER BY 1") == [
        (KEPT_PG, "CREATED", True),
        (REMOVED_PG, "REMOVED", False),
        (PENDING_PG, "PENDING", True),
    ]
    assert info["counts"]["nodes"] == 1  # the samples' other events are folded as before


# --- a real Ray 2.60 cluster with the HTTP event path ----------------------------------------------------------

_DRIVER = """
import json, sys, ray
from ray.util.placement_group import placement_group, remove_placement_group
ray.init(address=sys.argv[1])
gone = placement_group([{"CPU": 1}, {"CPU": 1}], strategy="PACK", name="pg_removed")
ray.get(gone.ready(), timeout=60)
remove_placement_group(gone)
kept = placement_group([{"CPU": 1}], strategy="STRICT_SPREAD", name="pg_kept", lifetime="detached")
ray.get(kept.ready(), timeout=60)
print(json.dumps([gone.id.hex(), kept.id.hex()]))
"""


class _Spool(BaseHTTPRequestHandler):
    """Ray's aggregator POSTs JSON arrays of RayEvents: each is appended as one JSON line."""

    path_out: Path
    lock = threading.Lock()

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        events = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        with self.lock, self.path_out.open("ab") as f:
            f.write(_lines(events))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def _job_finished(spool: Path) -> bool:
    return any(
        e.get("eventType") == "DRIVER_JOB_LIFECYCLE_EVENT"
        and any(t.get("state") == "FINISHED" for t in e["driverJobLifecycleEvent"].get("stateTransitions", []))
        for e in map(json.loads, spool.read_bytes().splitlines())
    )


def test_real_cluster_placement_groups(tmp_path):
    """A real cluster sending its events over HTTP: whatever placement group events it sends are compacted and
    served as the live API showed the groups. Ray 2.60's GCS sends none (checked here, so that an upgrade that
    starts sending them turns this into a comparison); its table is then empty, never made up."""
    from rayhistory.local_ray import LocalRayCluster, wait_for

    spool = tmp_path / "spool.jsonl"
    spool.write_bytes(b"")
    handler = type("Handler", (_Spool,), {"path_out": spool})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    cluster = LocalRayCluster(num_cpus=2)
    cluster.env.update(
        {
            "RAY_enable_ray_event": "1",
            "RAY_enable_core_worker_ray_event_to_aggregator": "1",
            "RAY_DASHBOARD_AGGREGATOR_AGENT_EVENTS_EXPORT_ADDR": f"http://127.0.0.1:{server.server_port}/v1/events",
            "RAY_DASHBOARD_AGGREGATOR_AGENT_EXPOSABLE_EVENT_TYPES": "ALL",
        }
    )
    try:
        cluster.start()
        cluster.wait_ready()
        run = subprocess.run(
            [sys.executable, "-c", _DRIVER, cluster.address],
            env=cluster.env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert run.returncode == 0, run.stderr[-3000:]
        removed_id, kept_id = json.loads(run.stdout.strip().splitlines()[-1])
        # GCS sends a group's events as they happen; the driver's end comes after them.
        wait_for("the driver job's end over HTTP", lambda: _job_finished(spool), 60)
        with urllib.request.urlopen(f"{cluster.dashboard}/api/v0/placement_groups?detail=1&limit=100") as r:
            live = {g["placement_group_id"]: g for g in json.loads(r.read())["data"]["result"]["result"]}
    finally:
        cluster.stop()
        server.shutdown()
    assert live[removed_id]["state"] == "REMOVED" and live[kept_id]["state"] == "CREATED"

    archive, ref = _archive(tmp_path, spool.read_bytes())
    with client_for(archive, tmp_path / "cache") as client:
        page = _list(client, f"/sessions/{ref.id}", detail=1, limit=10000)["data"]["result"]
    sent = b"PLACEMENT_GROUP_" in spool.read_bytes()
    if not sent:
        assert page["total"] == 0 and page["result"] == []
        return
    ours = {g["placement_group_id"]: g for g in page["result"]}
    for pg_id in (removed_id, kept_id):
        for key in ("name", "creator_job_id", "state", "is_detached"):
            assert ours[pg_id][key] == live[pg_id][key], (pg_id, key)
        assert [(b["bundle_id"], b["unit_resources"]) for b in ours[pg_id]["bundles"]] == [
            (b["bundle_id"], b["unit_resources"]) for b in live[pg_id]["bundles"]
        ]
        assert (
            ours[pg_id]["stats"]["creation_request_received_ns"] == live[pg_id]["stats"]["creation_request_received_ns"]
        )
