"""The head's API snapshots in compaction: placement groups (no Ray 2.60 event carries them), cluster status."""

from __future__ import annotations

import json

from archive.layout import LogSegment, SessionRef
from archive.logs import encode
from archive.storage.local import LocalStore
from tests.helpers import client_for

SESSION = "session_2026-11-25_19-58-10_578535_6555"
NODE = "a5f98df87f117771c91ca093491ee5f891c9e432bfe62ac8566abb40"
STATUS = "======== Autoscaler status: 2026-11-25 ========\nNode status\n---\nActive:\n 1 node_x\nResources\n---\n"


def _snapshot(route: str, at: int, body) -> bytes:
    return json.dumps({"time_ms": at, "route": route, "status": 200, "body": body}).encode() + b"\n"


def test_placement_groups_and_cluster_status_come_from_the_last_snapshots(tmp_path, reference):
    pgs = json.loads((reference / "dashboard_api" / "v0_pgs.json").read_text())["response"]
    older = {**pgs, "data": {"result": {**pgs["data"]["result"], "result": []}}}
    lines = b"".join(
        [
            _snapshot("/api/v0/placement_groups?detail=1&limit=10000", 1000, older),
            _snapshot("/api/v0/placement_groups?detail=1&limit=10000", 2000, pgs),
            _snapshot(
                "/api/cluster_status?format=1",
                2000,
                {"result": True, "msg": "Got formatted cluster status.", "data": {"clusterStatus": STATUS}},
            ),
            _snapshot(
                "/api/cluster_status?format=0",
                2000,
                {"result": True, "msg": "Got cluster status.", "data": {"clusterStatus": {"time": 1.0}}},
            ),
            b"{not json\n",
        ]
    )
    store = LocalStore(tmp_path / "archive")
    ref = SessionRef("default", "snap", SESSION)
    node = ref.node(NODE)
    store.put(node.segment_key(LogSegment("api-000001.jsonl", 0, 0, len(lines), "api")), encode(lines))
    from archive.manifest import ENDED, SessionManifest

    m = SessionManifest(namespace="default", cluster="snap", session_name=SESSION, status=ENDED, start_ms=1, end_ms=3)
    store.put(ref.index_key, m.to_json())
    with client_for(store.url, tmp_path / "cache") as client:
        base = f"/sessions/{ref.id}/"
        served = client.get(base + "api/v0/placement_groups", params={"detail": 1}).json()["data"]["result"]
        expected = pgs["data"]["result"]["result"]
        expected_ids = sorted(g["placement_group_id"] for g in expected if isinstance(g, dict))
        assert sorted(g["placement_group_id"] for g in served["result"]) == expected_ids and expected_ids
        assert client.get(base + "api/cluster_status", params={"format": 1}).json()["data"]["clusterStatus"] == STATUS
        assert client.get(base + "api/cluster_status").json()["data"]["clusterStatus"] == {"time": 1.0}
        damage = client.get(f"/api/v1/sessions/{ref.id}/overview").json()["damage"]
        assert damage["bad_lines"] == 1
