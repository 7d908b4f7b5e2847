"""A real Ray 2.60 cluster exporting its events over HTTP to the collector, which also scrapes its metrics and
polls its dashboard; the history server then rebuilds the session from what the collector archived."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
import urllib.request

from archive import logs as archive_logs
from archive.layout import SessionRef
from archive.storage import open_store
from rayhistory import workload
from rayhistory.local_ray import LocalRayCluster, free_port
from tests.helpers import client_for


def test_http_events_metrics_and_api_snapshots_reach_the_archive_and_the_server(tmp_path):
    port = free_port()
    archive = str(tmp_path / "archive")
    ray = LocalRayCluster()
    ray.env.update(
        {
            "RAY_enable_core_worker_ray_event_to_aggregator": "1",
            "RAY_enable_ray_event": "1",
            "RAY_DASHBOARD_AGGREGATOR_AGENT_EVENTS_EXPORT_ADDR": f"http://127.0.0.1:{port}/v1/events",
            "RAY_DASHBOARD_AGGREGATOR_AGENT_EXPOSABLE_EVENT_TYPES": "ALL",
        }
    )
    collector = None
    try:
        session_dir = ray.start()
        collector = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "rayhistory.cli",
                "collect",
                "--session-dir",
                str(session_dir),
                "--archive",
                archive,
                "--cluster",
                "http",
                "--namespace",
                "default",
                "--interval",
                "1",
                "--http-port",
                str(port),
                "--metrics-interval",
                "1",
                "--api-interval",
                "2",
            ],
            env=ray.env,
        )
        ray.wait_ready()
        jobs = workload.run(ray.env, ray.address, ray.dashboard)
        ref = SessionRef("default", "http", session_dir.name)
        store = open_store(archive)
        deadline = time.monotonic() + 90
        while not any("TASK_DEFINITION_EVENT" in line and "square" in line for line in _archived(store, ref)):
            assert time.monotonic() < deadline and collector.poll() is None, "no task events archived in time"
            time.sleep(0.5)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            metrics = r.read().decode()
        assert "rayhistory_collector_shipped_bytes_total" in metrics
        assert 'rayhistory_collector_component_received_total{component="ray_events",kind="source"}' in metrics
        scraped = re.search(
            r'^rayhistory_collector_component_received_total\{component="metrics",kind="source"\} (\S+)$', metrics, re.M
        )
        assert scraped and float(scraped.group(1)) >= 1, "the scraper's counters are not on /metrics"
        assert re.search(
            r'^rayhistory_collector_component_received_total\{component="api",kind="source"\} ', metrics, re.M
        )
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as r:
            assert r.status == 200
        ray.stop()
        collector.send_signal(signal.SIGTERM)
        assert collector.wait(timeout=120) == 0
    finally:
        if collector is not None and collector.poll() is None:
            collector.kill()
        ray.kill()
    [node_id] = store.list_dirs(ref.nodes_prefix)
    node = ref.node(node_id)
    assert archive_logs.list_segments(store, node, source="metrics"), "no metrics archived"
    api = b"".join(
        archive_logs.read_segment(store, node, s)
        for segs in archive_logs.list_segments(store, node, source="api").values()
        for s in segs
    )
    assert b'"/api/jobs/"' in api or b"api/jobs/" in api
    with client_for(archive, tmp_path / "cache") as client:
        served = {
            j["submission_id"]: j["status"]
            for j in client.get(f"/sessions/{ref.id}/api/jobs/").json()
            if j["type"] == "SUBMISSION"
        }
        assert served == jobs
        squares = client.get(
            f"/sessions/{ref.id}/api/v0/tasks",
            params={"filter_keys": "name", "filter_predicates": "=", "filter_values": "square"},
        ).json()["data"]["result"]
        assert squares["num_filtered"] == 8
        # The head's API snapshots: Ray's own last cluster status, served as it answered.
        status = client.get(f"/sessions/{ref.id}/api/cluster_status", params={"format": 1}).json()
        assert status["result"] is True and "Node status" in status["data"]["clusterStatus"]
    # The scraped metrics are compacted beside the rest: Ray's series with the labels its dashboards filter on.
    from historyserver.queries.session_db import SessionDB

    [tables] = list((tmp_path / "cache").glob("compacted-*/*"))
    db = SessionDB(tables)
    [(series,)] = db.query(
        "SELECT count(*) FROM metric_series WHERE name = 'ray_node_cpu_utilization' "
        "AND labels['ray_io_cluster'] = 'http' AND labels['SessionName'] = ?",
        [ref.session],
    )
    assert series >= 1 and db.query("SELECT count(*) FROM metric_samples")[0][0] > series


def _archived(store, ref) -> list[str]:
    lines = []
    for node_id in store.list_dirs(ref.nodes_prefix):
        node = ref.node(node_id)
        for _path, segs in archive_logs.list_segments(store, node, source="ray_events").items():
            data = b"".join(archive_logs.read_segment(store, node, s) for s in archive_logs.covering(segs))
            lines += data.decode(errors="replace").splitlines()
    return lines
