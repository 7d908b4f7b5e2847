"""Runs the demo workload on a real Ray cluster with collectors attached, for the end-to-end tests."""

from __future__ import annotations

import os
import signal
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

from archive.layout import SessionRef
from archive.storage import open_store
from rayhistory import workload
from rayhistory.demo import start_collector
from rayhistory.local_ray import LocalRayCluster, wait_for


@dataclass
class FinishedCluster:
    ref: SessionRef
    session_dir: Path
    ray_temp_dir: Path
    local_archive: str
    s3_archive: str
    s3_env: dict[str, str]
    jobs: dict[str, str]
    collector_exit_codes: tuple[int, int]


def run_finished_cluster(work: Path, seaweedfs) -> FinishedCluster:
    local_archive = str(work / "archive")
    s3_url = f"s3://{seaweedfs.bucket}/e2e-{uuid.uuid4().hex[:8]}"
    ray = LocalRayCluster()
    collectors: list[subprocess.Popen] = []
    try:
        session_dir = ray.start()
        ref = SessionRef("default", "e2e", session_dir.name)
        s3_env = {**ray.env, **seaweedfs.env()}
        collectors.append(start_collector(session_dir, local_archive, "e2e", "default", ray.env, interval=2))
        collectors.append(start_collector(session_dir, s3_url, "e2e", "default", s3_env, interval=2))
        wait_for(
            "the local collector to register",
            lambda: open_store(local_archive).exists(ref.index_key),
            120,
            collectors[0],
        )
        ray.wait_ready()
        jobs = workload.run(ray.env, ray.address, ray.dashboard)
        ray.stop()
        for c in collectors:
            c.send_signal(signal.SIGTERM)
        codes = tuple(c.wait(timeout=120) for c in collectors)
    finally:
        for c in collectors:
            if c.poll() is None:
                c.kill()
        ray.kill()
    return FinishedCluster(ref, session_dir, ray.temp_dir, local_archive, s3_url, seaweedfs.env(), jobs, codes)


def source_logs(session_dir: Path) -> dict[str, bytes]:
    logs = session_dir / "logs"
    return {
        os.path.relpath(os.path.join(d, f), logs): Path(d, f).read_bytes()
        for d, _, files in os.walk(logs)
        for f in files
    }
