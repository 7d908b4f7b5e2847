"""The collector under faults: killed with SIGKILL mid-stream, and its S3 server down for 30 s mid-run.

What must hold afterwards: every archived file equals its source byte for byte, with no gap and no duplicate.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from archive import logs as archive_logs
from archive.layout import SessionRef
from archive.manifest import SessionManifest
from archive.storage import open_store
from rayhistory.local_ray import free_port
from tests.fake_session import NODE_ID, SESSION_NAME, make_session


class Writer(threading.Thread):
    """Appends numbered lines to a few files, as Ray's processes do, until stopped."""

    def __init__(self, logs: Path, files: int = 4) -> None:
        super().__init__(daemon=True)
        self.paths = [logs / f"worker-{i:056x}-01000000-{100 + i}.out" for i in range(files)]
        self.stop = threading.Event()
        self.lines = 0

    def run(self) -> None:
        handles = [open(p, "ab") for p in self.paths]
        try:
            while not self.stop.is_set():
                for h in handles:
                    h.write(b"line %08d of a task's output, with some text to make it longer\n" % self.lines)
                    h.flush()
                self.lines += 1
                if self.lines % 200 == 0:
                    time.sleep(0.01)
        finally:
            for h in handles:
                h.close()


def collector(session: Path, archive: str, env: dict | None = None, *args: str) -> subprocess.Popen:
    log = open(session.parent / f"collector-{time.monotonic_ns()}.log", "w+")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rayhistory.cli",
            "collect",
            "--session-dir",
            str(session),
            "--archive",
            archive,
            "--cluster",
            "c",
            "--namespace",
            "ns",
            "--interval",
            "0.2",
            "--final-flush-deadline",
            "60",
            *args,
        ],
        env={**os.environ, **(env or {})},
        stderr=log,
    )
    proc.log = log  # type: ignore[attr-defined]
    return proc


def _stderr(proc: subprocess.Popen) -> str:
    proc.log.seek(0)  # type: ignore[attr-defined]
    return proc.log.read()[-3000:]  # type: ignore[attr-defined]


def archive_errors(port: int) -> float:
    """The collector's failed upload cycles to the archive, from its own /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    found = re.search(r'^rayhistory_collector_errors_total\{sink="archive"\} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def segments_of(store, path):
    node = SessionRef("ns", "c", SESSION_NAME).node(NODE_ID)
    return node, archive_logs.list_segments(store, node, path)[path]


def wait_until(check, what, timeout=60):
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def assert_identical_without_gaps_or_duplicates(store, writer: Writer, logs: Path) -> None:
    for path in writer.paths:
        name = path.name
        node, segs = segments_of(store, name)
        assert len({s.start for s in segs}) == len(segs), f"{name}: two segments start at the same byte"
        run = archive_logs.covering(segs)
        assert run == sorted(segs), f"{name}: segments overlap or leave a gap"
        assert archive_logs.read_file(store, node, name) == path.read_bytes(), name


def test_kill_9_mid_stream_then_restart_loses_and_duplicates_nothing(tmp_path):
    session = make_session(tmp_path)
    archive = str(tmp_path / "archive")
    store = open_store(archive)
    writer = Writer(session / "logs")
    writer.start()
    for round_ in range(3):  # killed three times at arbitrary points of its uploads
        proc = collector(session, archive)
        shipped = len(list(store.list("v1/clusters/")))
        wait_until(lambda: len(list(store.list("v1/clusters/"))) > shipped + 8, f"uploads in round {round_}")  # noqa: B023 - waited for within the round
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    writer.stop.set()
    writer.join()
    ref = SessionRef("ns", "c", SESSION_NAME)
    seen = SessionManifest.from_json(store.get(ref.manifest_key)).last_seen_ms
    proc = collector(session, archive)
    wait_until(
        lambda: SessionManifest.from_json(store.get(ref.manifest_key)).last_seen_ms != seen,
        "the restarted collector to announce itself",
    )
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=90) == 0
    assert writer.lines > 1000
    assert_identical_without_gaps_or_duplicates(store, writer, session / "logs")


def test_s3_down_for_30_seconds_mid_run_loses_nothing(tmp_path, seaweedfs, s3_archive):
    session = make_session(tmp_path)
    store = open_store(s3_archive)
    writer = Writer(session / "logs")
    writer.start()
    port = free_port()
    proc = collector(session, s3_archive, seaweedfs.env(), "--http-port", str(port))
    try:
        wait_until(
            lambda: any(True for _ in store.list(SessionRef("ns", "c", SESSION_NAME).nodes_prefix)), "first uploads"
        )
        before = archive_errors(port)
        seaweedfs.stop()
        try:
            outage_end = time.monotonic() + 30
            failed_during = False
            while time.monotonic() < outage_end:  # the collector keeps reading while its archive is gone
                assert proc.poll() is None, f"the collector died during the outage:\n{_stderr(proc)}"
                failed_during = failed_during or archive_errors(port) > before
                writer.stop.wait(0.5)
        finally:
            seaweedfs.start()  # the server is shared by the session's other tests
        # The outage was real to the collector: its uploads failed (and it recovered, below).
        assert failed_during, f"no upload to the archive failed during the outage:\n{_stderr(proc)}"
        writer.stop.set()
        writer.join()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        writer.stop.set()
    assert_identical_without_gaps_or_duplicates(store, writer, session / "logs")
