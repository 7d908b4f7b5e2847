"""A real Ray 2.60 cluster with the collector sending logs, events and metrics to SLS (the SLS test server; no
emulator exists) beside the archive, through either of Ray's event paths. The events in SLS, folded to each
entity's last state, count the same per type and state as what the history server compacts from the archive."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections import Counter

import pytest

from archive.layout import SessionRef
from rayhistory import workload
from rayhistory.local_ray import LocalRayCluster, free_port
from tests.helpers import client_for
from tests.servers.sls import running_sls

HTTP_EVENTS = {
    "RAY_enable_core_worker_ray_event_to_aggregator": "1",
    "RAY_enable_ray_event": "1",
    "RAY_DASHBOARD_AGGREGATOR_AGENT_EXPOSABLE_EVENT_TYPES": "ALL",
}
TERMINAL = {"TASK": {"FINISHED", "FAILED"}, "ACTOR": {"DEAD"}, "NODE": {"DEAD"}, "DRIVER_JOB": {"FINISHED"}}


def last_states(items) -> dict[str, Counter]:
    """Per event type, how many entities ended in each state: each entity's latest state by time, a terminal
    state winning (a worker may report RUNNING after its owner saw the task finish), ties broken by arrival."""
    latest: dict[tuple[str, ...], tuple[int, int, str]] = {}
    for n, x in enumerate(items):
        c = x.contents
        kind, state = c["event_type"], c.get("state")
        if not state or kind in ("SUBMISSION_JOB", "PLACEMENT_GROUP"):
            continue
        key = {
            "TASK": (kind, c.get("task_id", ""), c.get("attempt", "0")),
            "ACTOR": (kind, c.get("actor_id", "")),
            "NODE": (kind, c.get("node_id", "")),
            "DRIVER_JOB": (kind, c.get("job_id", "")),
        }[kind]
        rank = (int(state in TERMINAL[kind]), int(c.get("state_ms") or x.time * 1000), n)
        if key not in latest or rank >= latest[key][:3]:
            latest[key] = (*rank, state)
    out: dict[str, Counter] = {}
    for key, (*_, state) in latest.items():
        out.setdefault(key[0], Counter())[state] += 1
    return out


@pytest.mark.parametrize("path", ["export", "http"])
def test_events_in_sls_count_what_the_history_server_compacts(tmp_path, path):
    archive = str(tmp_path / "archive")
    port = free_port()
    ray = LocalRayCluster()
    if path == "http":
        ray.env.update(
            {**HTTP_EVENTS, "RAY_DASHBOARD_AGGREGATOR_AGENT_EVENTS_EXPORT_ADDR": f"http://127.0.0.1:{port}/v1/events"}
        )
    collector = None
    with running_sls() as sls:
        sls.resources.logstores[("p", "ray-metrics")] = {"telemetryType": "Metrics"}
        sls.resources.substores[("p", "ray-metrics")] = {}
        env = {
            **ray.env,
            "ALIBABA_CLOUD_ACCESS_KEY_ID": sls.access_key_id,
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET": sls.access_key_secret,
        }
        try:
            session_dir = ray.start()
            collector = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "rayhistory.cli",
                    "collect",
                    *("--session-dir", str(session_dir), "--archive", archive, "--cluster", "sls", "--namespace", "ns"),
                    *("--interval", "1", "--http-port", str(port), "--metrics-interval", "2", "--api-interval", "2"),
                    *("--sls-endpoint", f"http://{sls.endpoint}", "--sls-project", "p", "--sls-proxy", sls.proxy),
                    *("--sls-logstore", "ray-logs", "--sls-events-logstore", "ray-events"),
                    *("--sls-metricstore", "ray-metrics"),
                ],
                env=env,
            )
            ray.wait_ready()
            workload.run(ray.env, ray.address, ray.dashboard)
            ray.stop()
            collector.send_signal(signal.SIGTERM)
            assert collector.wait(timeout=120) == 0
        finally:
            if collector is not None and collector.poll() is None:
                collector.kill()
            ray.kill()
        events = sls.items("ray-events")
        logs = sls.items("ray-logs")
        series = sls.remote_write.series("ray-metrics")
    ref = SessionRef("ns", "sls", session_dir.name)
    # Task events come by the path Ray was told to use (submission jobs are also written to files either way).
    assert {x.contents["path"] for x in events if x.contents["event_type"] == "TASK"} == {path}
    assert {(x.tags["cluster"], x.tags["namespace"], x.tags["session"]) for x in events} == {("sls", "ns", ref.session)}
    sls_states = last_states(events)
    with client_for(archive, tmp_path / "cache") as client:
        base = f"/sessions/{ref.id}"
        tasks = client.get(f"{base}/api/v0/tasks", params={"detail": 1, "limit": 10000, "exclude_driver": "false"})
        served_tasks = Counter(t["state"] for t in tasks.json()["data"]["result"]["result"])
        actors = client.get(f"{base}/logical/actors").json()["data"]["actors"].values()
        served_actors = Counter(a["state"] for a in actors)
        nodes = client.get(f"{base}/api/v0/nodes").json()["data"]["result"]["result"]
        served_nodes = Counter(n["state"] for n in nodes)
    assert sum(served_tasks.values()) > 10
    assert sls_states["TASK"] == served_tasks
    assert sls_states["ACTOR"] == served_actors
    assert sls_states["NODE"] == served_nodes
    # SQL's example over the same rows: failed tasks by function (the workload's flaky tasks fail).
    failed_tasks = [
        x.contents for x in events if x.contents["event_type"] == "TASK" and x.contents.get("state") == "FAILED"
    ]
    failed = Counter(c.get("func_name") for c in failed_tasks)
    unnamed = [c for c in failed_tasks if not c.get("func_name")]
    assert failed["flaky"] >= 1 and not unnamed, unnamed
    # The other two outputs of the same collector.
    assert logs and {x.tags["node_id"] for x in logs}
    names = {dict(labels)["__name__"] for labels in series}
    assert "ray_node_cpu_count" in names or any(n.startswith("ray_") for n in names), sorted(names)[:20]
    assert all(dict(labels).get("ray_io_cluster") == "sls" for labels in series)
    assert any(dict(labels).get("SessionName") == ref.session for labels in series)
