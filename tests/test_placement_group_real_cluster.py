"""A real Ray 2.60 cluster sending its events over HTTP: whatever placement group events it sends are compacted
and served as its live API showed the groups."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.helpers import client_for
from tests.placement_group_events import (
    _archive,
    _lines,
    _list,
)

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
