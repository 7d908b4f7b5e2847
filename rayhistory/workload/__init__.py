"""The demo's workload: a driver with tasks (some failing) and actors, and two submitted jobs."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

# What the workload leaves behind, for tests and the demo to check against.
EXPECTED_TASKS = {"square": ("FINISHED", 8), "flaky": (None, 4), "shout": ("FINISHED", 4)}
EXPECTED_FAILED_FLAKY = 2


class WorkloadFailed(RuntimeError):
    pass


def run(env: dict[str, str], address: str, dashboard: str, progress=lambda msg: None) -> dict[str, str]:
    """Run the driver, then submit two jobs; returns {submission_id: final status}."""
    out = subprocess.run(
        [sys.executable, str(HERE / "driver.py")],
        env={**env, "RAY_ADDRESS": address},
        capture_output=True,
        text=True,
        timeout=300,
    )
    if out.returncode != 0:
        raise WorkloadFailed(f"the demo driver failed (exit {out.returncode}):\n{out.stderr[-2000:]}")
    progress("driver finished: tasks, failing tasks, actors")

    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(dashboard)
    stamp = int(time.time())
    submitted = [
        _submit(
            client,
            entrypoint=f"{sys.executable} job.py",
            runtime_env={"working_dir": str(HERE)},
            submission_id=f"demo_ok_{stamp}",
        ),
        _submit(
            client,
            entrypoint=f"{sys.executable} -c 'import sys; print(\"failing on purpose\"); sys.exit(3)'",
            submission_id=f"demo_fail_{stamp}",
        ),
    ]
    final = {}
    deadline = time.monotonic() + 300
    for job_id in submitted:
        while not (status := client.get_job_status(job_id)).is_terminal():
            if time.monotonic() > deadline:
                raise WorkloadFailed(f"job {job_id} did not finish within 300s (last status {status})")
            time.sleep(0.3)
        final[job_id] = str(status.value)
    progress(f"submitted jobs finished: {', '.join(f'{k} {v}' for k, v in final.items())}")
    return final


def _submit(client, timeout: float = 120, **kwargs) -> str:
    """Submit, waiting for the head's job agent: the dashboard answers before the agent has registered."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return client.submit_job(**kwargs)
        except RuntimeError as e:
            if "No available agent" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.5)
