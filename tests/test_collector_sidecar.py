"""The collector as a sidecar starts it: configured by its environment alone (no flags), before Ray and before its
archive can be reached. It must wait for both, retrying and saying so on /healthz and in its metrics (never exiting:
that would be a crash loop), then archive the real Ray session once they are there."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from archive.layout import SessionRef
from archive.manifest import ENDED, SessionManifest
from rayhistory.local_ray import LocalRayCluster, free_port
from tests.servers.fixtures import _FOREIGN_AWS_ENV
from tests.servers.seaweedfs import SeaweedFS

PREFIX = "sidecar"


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError as e:
        return 0, str(e)


def _until(what: str, check, proc: subprocess.Popen, timeout: float = 90):
    """Polls check() until it returns something truthy; fails if the collector exits meanwhile."""
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, f"the collector exited ({proc.returncode}) while waiting for {what}"
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_env_only_sidecar_waits_for_its_archive_and_ray_then_archives_the_session(tmp_path: Path) -> None:
    weed = SeaweedFS(tmp_path / "weed")  # ports chosen now, started later
    ray = LocalRayCluster()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAYHISTORY_") and k not in _FOREIGN_AWS_ENV}
    env.update(weed.env())
    env.update(
        RAYHISTORY_ARCHIVE=f"s3://{weed.bucket}/{PREFIX}",
        RAYHISTORY_SESSION_DIR=str(ray.temp_dir / "session_latest"),
        RAYHISTORY_HTTP_PORT=str(port),
        RAYHISTORY_INTERVAL="2",
        RAYHISTORY_S3_CONNECT_TIMEOUT="1",
        RAYHISTORY_S3_MAX_ATTEMPTS="1",
        RAY_CLUSTER_NAME="sidecar",  # what KubeRay sets
        RAY_CLUSTER_NAMESPACE="team-a",  # KubeRay's injection sets this one, not POD_NAMESPACE
    )
    env.pop("POD_NAMESPACE", None)
    base = f"http://127.0.0.1:{port}"
    collector = subprocess.Popen(
        [sys.executable, "-m", "rayhistory.cli", "collect"], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        # 1. No archive yet: the collector retries, says so, and stays up.
        status, body = _until("/healthz to say why", lambda: _healthz_with(base, "cannot reach"), collector)
        assert status == 503 and "cannot reach the archive" in body, body
        metrics = _until("a counted failure", lambda: _metrics_with(base, 'errors_total{sink="archive"}'), collector)
        assert 'rayhistory_collector_waiting{what="archive"} 1.0' in metrics, metrics

        # 2. The archive appears: now it waits for Ray, still up.
        weed.start()
        weed.client().create_bucket(Bucket=weed.bucket)
        status, body = _until(
            "the collector to wait for Ray", lambda: _healthz_with(base, "session directory"), collector
        )
        assert status == 503, body
        assert 'rayhistory_collector_waiting{what="archive"} 0.0' in _get(base + "/metrics")[1]

        # 3. Ray starts: the session is archived while it runs and ended when it stops.
        session_dir = ray.start()
        ray.wait_ready()
        ref = SessionRef("team-a", "sidecar", session_dir.name)
        s3 = weed.client()
        _until("the head's index entry", lambda: _exists(s3, weed.bucket, ref.index_key), collector, 120)
        driver = subprocess.run(
            [sys.executable, "-c", "import ray; ray.init(address='auto'); ray.get(ray.remote(lambda: 1).remote())"],
            env={**ray.env, "RAY_ADDRESS": ray.address},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert driver.returncode == 0, driver.stderr
        _until("/healthz ok", lambda: _get(base + "/healthz") == (200, "ok\n"), collector)
        ray.stop()
        collector.send_signal(signal.SIGTERM)
        assert collector.wait(timeout=120) == 0, collector.stderr.read()
        stderr = collector.stderr.read()
        assert "cannot reach the archive, retrying" in stderr and "waiting as long as it takes" in stderr, stderr
        manifest = SessionManifest.from_json(
            s3.get_object(Bucket=weed.bucket, Key=f"{PREFIX}/{ref.manifest_key}")["Body"].read()
        )
        assert manifest.status == ENDED and manifest.namespace == "team-a"
        keys = [
            o["Key"]
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=weed.bucket, Prefix=PREFIX)
            for o in page.get("Contents", [])
        ]
        assert any("raylet.out" in k for k in keys) and any("event_EXPORT_TASK" in k for k in keys), keys
    finally:
        if collector.poll() is None:
            collector.kill()
            collector.wait()
        ray.kill()
        weed.stop()


def _exists(s3, bucket: str, key: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=f"{PREFIX}/{key}")
    except Exception:  # botocore's ClientError 404 until the head collector announces itself
        return False
    return True


def _metrics_with(base: str, text: str) -> str | None:
    metrics = _get(base + "/metrics")[1]
    return metrics if text in metrics else None


def _healthz_with(base: str, text: str) -> tuple[int, str] | None:
    answer = _get(base + "/healthz")
    return answer if text in answer[1] else None
