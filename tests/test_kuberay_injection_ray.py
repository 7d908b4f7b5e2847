"""Our collector as KubeRay's injection runs it, against a real Ray 2.60 node: the collector gets exactly the
environment the operator gives its container (tests/test_kuberay_injection.py builds it from the example) and no
arguments; Ray gets the operator's event settings, which point its dashboard agent at `localhost:<EVENTS_PORT>`.
Ray's events must arrive, be archived under the operator's cluster and namespace names, and the session end.

Two deviations, for a shared machine: a free port stands for the operator's 8084 (in both places, as the operator
sets both), and Ray's temp dir is a private one instead of /tmp/ray (RAYHISTORY_SESSION_DIR points there)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from archive import logs as archive_logs
from archive.layout import SessionRef
from archive.manifest import ENDED, SessionManifest
from archive.storage import open_store
from rayhistory.local_ray import LocalRayCluster, free_port
from tests.deploy_manifests import example
from tests.test_kuberay_injection import operator_collector


def test_the_operators_collector_environment_archives_a_real_ray_nodes_http_events(tmp_path):
    (obj,) = example("raycluster-kuberay-injection.yaml")
    container, ray_env = operator_collector(obj, "Head")
    port = str(free_port())
    archive = str(tmp_path / "archive")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAYHISTORY_")}
    for e in container["env"]:
        env[e["name"]] = e.get("value", "stand-in")  # POD_IP and the Secret's keys: not used with a local archive
    env.update(EVENTS_PORT=port, RAYHISTORY_ARCHIVE=archive, RAYHISTORY_INTERVAL="1")
    for name in [k for k in env if k.startswith("AWS_") or k == "POD_NAMESPACE"]:
        env.pop(name)
    ray = LocalRayCluster()
    ray.env.update({k: v.replace(":8084/", f":{port}/") for k, v in ray_env.items()})
    assert ray.env["RAY_DASHBOARD_AGGREGATOR_AGENT_EVENTS_EXPORT_ADDR"] == f"http://localhost:{port}/v1/events"
    env["RAYHISTORY_SESSION_DIR"] = str(ray.temp_dir / "session_latest")
    collector = subprocess.Popen([sys.executable, "-m", "rayhistory.cli", "collect"], env=env)  # no arguments
    try:
        session_dir = ray.start()
        ray.wait_ready()
        driver = subprocess.run(
            [sys.executable, "-c", "import ray; ray.init(); print(ray.get(ray.remote(lambda: 'sq').remote()))"],
            env={**ray.env, "RAY_ADDRESS": ray.address},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert driver.returncode == 0, driver.stderr
        ref = SessionRef("team-a", obj["metadata"]["name"], session_dir.name)
        store = open_store(archive)
        deadline = time.monotonic() + 90
        while not any("TASK_DEFINITION_EVENT" in line for line in _archived(store, ref)):
            assert time.monotonic() < deadline and collector.poll() is None, "no task events archived in time"
            time.sleep(0.5)
        ray.stop()
        collector.send_signal(signal.SIGTERM)
        assert collector.wait(timeout=120) == 0
    finally:
        if collector.poll() is None:
            collector.kill()
            collector.wait()
        ray.kill()
    manifest = SessionManifest.from_json(store.get(ref.manifest_key))
    assert manifest.status == ENDED


def _archived(store, ref: SessionRef) -> list[str]:
    lines: list[str] = []
    for node_id in store.list_dirs(ref.nodes_prefix):
        node = ref.node(node_id)
        for segments in archive_logs.list_segments(store, node, source="ray_events").values():
            data = b"".join(archive_logs.read_segment(store, node, s) for s in archive_logs.covering(segments))
            lines += data.decode(errors="replace").splitlines()
    return lines
