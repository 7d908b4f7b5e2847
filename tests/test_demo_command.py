"""The README's demo command, as a newcomer runs it: it ends by printing a URL that serves the dead cluster."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request

from rayhistory.local_ray import free_port


def test_demo_prints_a_url_that_lists_the_jobs_after_ray_stopped(tmp_path):
    port = free_port()
    env = {**os.environ, "RAYHISTORY_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "rayhistory.cli", "demo", "--archive", str(tmp_path / "archive"), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    try:
        deadline = time.monotonic() + 400
        url = None
        while url is None:
            assert time.monotonic() < deadline, "the demo printed no URL in time"
            line = proc.stdout.readline()
            assert line or proc.poll() is None, f"demo exited {proc.returncode}: {proc.stderr.read()[-3000:]}"
            if line.startswith("http://"):
                url = line.strip()
        assert url.startswith(f"http://127.0.0.1:{port}/sessions/default~demo~session_")
        with urllib.request.urlopen(url + "api/jobs/", timeout=30) as r:
            jobs = json.load(r)
        statuses = sorted((j["type"], j["status"]) for j in jobs)
        assert statuses == [("DRIVER", "SUCCEEDED"), ("SUBMISSION", "FAILED"), ("SUBMISSION", "SUCCEEDED")]
        with urllib.request.urlopen(url + "overview", timeout=30) as r:
            assert b"demo_ok_" in r.read()
        search = proc.stdout.readline().strip()  # printed right after the session's URL
        assert search.startswith(f"http://127.0.0.1:{port}/api/v1/sessions/default~demo~session_")
        with urllib.request.urlopen(search, timeout=60) as r:
            hits = json.load(r)["hits"]
        printed = [h for h in hits if h["kind"] == "log" and h["message"] == "ValueError: intentional failure 1"]
        assert len(printed) == 1 and printed[0]["task_name"] == "flaky" and printed[0]["file"].endswith(".err")
        kept = sorted(
            re.findall(r"ValueError: intentional failure \d", h["message"])[0]
            for h in hits
            if h["kind"] == "task_error"
        )
        assert kept == ["ValueError: intentional failure 1", "ValueError: intentional failure 3"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
